//! Bursts of frames through the datapath against the reference model (`tests/model`):
//! the input chooses, frame by frame, the ingress port, the header (from the
//! addresses the rules care about: endpoints, the parent, unknown unicast, broadcast,
//! multicast groups, PAUSE; a VLAN tag on the wire), the length, and where a burst
//! ends. The switch runs with transmit queues of 4 frames and a pool of 40, so bursts
//! stage many frames per poll, fill queues mid-burst and run floods out of frames.
//! Every delivery must be one the model expects, in order, with the bytes sent; every
//! one it could not make is counted (`tx_full`, `no_buffer`); nothing leaks. Records
//! marked raw carry arbitrary bytes: they must not panic, leak, or come back out of
//! their ingress port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use umacvlan::mode::Mode;
use umacvlan::port::{FramePool, MemPool, MemPort};
use umacvlan::switch::Switch;
use umacvlan::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
use umacvlan::wire::{emit_header, EtherType, MacAddr};

#[path = "../../tests/model/mod.rs"]
mod model;
use model::{Ep, Model, Sent, ETH_PAUSE};

const PARENT: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);
const MODES: [Mode; 5] = [Mode::Bridge, Mode::Bridge, Mode::Vepa, Mode::Private, Mode::Source];
const POOL: u32 = 40;
const MAX_BURST: usize = 24;

fn ep_mac(i: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, i as u8 + 1])
}

/// Destinations and sources the rules distinguish.
fn addr(b: u8, eps: usize) -> MacAddr {
    match b % 8 {
        0..=2 => ep_mac(b as usize / 8 % eps),
        3 => PARENT,
        4 => MacAddr([2, 0, 0, 0, 0x77, b]),
        5 => MacAddr::BROADCAST,
        6 => MacAddr([1, 0, 0x5e, 0, 0, b & 3]),
        _ => MacAddr([1, 0x80, 0xc2, 0, 0, 1]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let mut topo = Topology::new(ParentConfig { name: "fz0".into(), mac: PARENT, mtu: 1500 }, true).unwrap();
    let sources = vec![ep_mac(0), MacAddr([0, 0x11, 0x22, 0x33, 0x44, 0x55])];
    let mut ports = vec![UPLINK, HOST];
    let mut eps = Vec::new();
    for (i, m) in MODES.into_iter().enumerate() {
        let mut c = EndpointConfig::new(format!("e{i}"), m).with_mac(ep_mac(i));
        // Some endpoints down, chosen by the first byte.
        c.up = cfg & (1 << i) == 0;
        if m == Mode::Source {
            c.sources = sources.clone();
            c.nodst = cfg & 0x80 != 0;
        }
        let id = topo.add_endpoint(c.clone()).unwrap();
        ports.push(id);
        eps.push(Ep {
            id,
            name: "e",
            mac: ep_mac(i),
            mode: m,
            up: c.up,
            nodst: c.nodst,
            groups: None,
            sources: c.sources.clone(),
        });
    }
    let model = Model::new(PARENT, eps);
    let mut sw: Switch<MemPort, MemPool, 8> = Switch::new(topo.reader(), MemPool::new(POOL, 2048));
    for &id in &ports {
        sw.attach(id, MemPort::new(4)).unwrap();
    }
    let mut seq = 0u64;
    let mut burst: Vec<(Sent, Vec<u8>)> = Vec::new();
    let mut raw_rx = 0u64;
    // Records: [kind, ingress, a, b, len]; kind bit 0 ends the burst after this frame,
    // bit 1 makes it raw (the next `len` input bytes are the frame).
    while rest.len() >= 5 {
        let (r, tail) = rest.split_at(5);
        rest = tail;
        let ingress = ports[r[1] as usize % ports.len()];
        let len = 60 + r[4] as usize % 140;
        if r[0] & 2 != 0 {
            // A raw frame, alone: only the invariants hold for arbitrary bytes.
            let n = (r[4] as usize).min(rest.len());
            let (bytes, tail) = rest.split_at(n);
            rest = tail;
            let f = sw.pool_mut().alloc_with(bytes).expect("the pool is empty between bursts");
            sw.port_mut(ingress).unwrap().inject(f);
            raw_rx += 1;
            while sw.poll() > 0 {
                for &id in &ports {
                    while let Some(f) = sw.port_mut(id).unwrap().pop_tx() {
                        assert_ne!(id, ingress, "sent back out of its ingress port");
                        sw.pool_mut().free(f);
                    }
                }
            }
            assert_eq!(sw.pool().in_use(), 0, "frames leaked");
            continue;
        }
        let dst = addr(r[2], MODES.len());
        let src = addr(r[3] ^ 0x5a, MODES.len());
        let ethertype = if dst == MacAddr([1, 0x80, 0xc2, 0, 0, 1]) || r[3] & 0xc0 == 0xc0 {
            ETH_PAUSE
        } else {
            [EtherType::IPV4.0, EtherType::ARP.0, EtherType::IPV6.0][r[2] as usize / 64 % 3]
        };
        let vlan = if ingress == UPLINK && r[0] & 0xf0 == 0xf0 { 100 + u16::from(r[3] & 7) } else { 0 };
        let mut bytes = vec![0u8; len];
        let h = emit_header(&mut bytes, dst, src, (vlan != 0).then_some(vlan), EtherType(ethertype));
        bytes[h..].fill(r[4]);
        burst.push((Sent { ingress, dst, src, vlan, ethertype }, bytes));
        if r[0] & 1 != 0 || burst.len() == MAX_BURST {
            model::burst(&mut sw, &model, &ports, &burst, seq);
            seq += burst.len() as u64;
            burst.clear();
        }
    }
    model::burst(&mut sw, &model, &ports, &burst, seq);
    seq += burst.len() as u64;
    let rx: u64 = ports.iter().map(|&id| sw.stats(id).unwrap().rx_packets).sum();
    assert_eq!(rx, seq + raw_rx, "every frame is received exactly once");
    assert_eq!(sw.pool().in_use(), 0, "frames leaked");
});
