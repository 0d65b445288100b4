//! Arbitrary frames through the datapath: no panic, no leak, every frame accounted
//! for, nothing sent back out of its ingress port, and delivered bytes unchanged
//! (except a popped VLAN tag on the way from the wire to an endpoint).
#![no_main]

use libfuzzer_sys::fuzz_target;
use umacvlan::mode::Mode;
use umacvlan::port::{FramePool, MemPool, MemPort};
use umacvlan::switch::Switch;
use umacvlan::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
use umacvlan::wire::MacAddr;

fuzz_target!(|data: &[u8]| {
    let parent = ParentConfig { name: "fz0".into(), mac: MacAddr([2, 0, 0, 0, 0, 0xfe]), mtu: 1500 };
    let mut topo = Topology::new(parent, true).unwrap();
    let modes = [Mode::Bridge, Mode::Bridge, Mode::Vepa, Mode::Private, Mode::Source];
    let mut ids = vec![UPLINK, HOST];
    for (i, m) in modes.into_iter().enumerate() {
        let mut c = EndpointConfig::new(format!("e{i}"), m).with_mac(MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
        c.vlan = if i == 1 { 7 } else { 0 };
        if m == Mode::Source {
            c.sources = vec![MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([0, 0x11, 0x22, 0x33, 0x44, 0x55])];
            c.nodst = data.first().is_some_and(|b| b & 0x80 != 0);
        }
        ids.push(topo.add_endpoint(c).unwrap());
    }
    let mut sw: Switch<MemPort, MemPool, 8> = Switch::new(topo.reader(), MemPool::new(512, 2048));
    for &id in &ids {
        sw.attach(id, MemPort::new(16)).unwrap();
    }
    let mut injected = 0u64;
    let mut rest = data;
    while rest.len() >= 2 {
        let ingress = ids[rest[0] as usize % ids.len()];
        let len = (rest[1] as usize).min(rest.len() - 2);
        let bytes = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let Some(f) = sw.pool_mut().alloc_with(bytes) else { break };
        sw.port_mut(ingress).unwrap().inject(f);
        injected += 1;
        sw.poll();
        for &id in &ids {
            while let Some(f) = sw.port_mut(id).unwrap().pop_tx() {
                assert_ne!(id, ingress, "sent back out of its ingress port");
                let out = sw.pool().data(&f);
                let popped = len >= 18 && out.len() + 4 == len && out[..12] == bytes[..12] && out[12..] == bytes[16..];
                let pushed = out.len() == len + 4 && out[..12] == bytes[..12] && out[12..14] == [0x81, 0] && out[16..] == bytes[12..];
                let changed_ok = if id == UPLINK { pushed } else { popped };
                assert!(out == bytes || changed_ok, "bytes changed on the way to {id:?}");
                sw.pool_mut().free(f);
            }
        }
    }
    let rx: u64 = ids.iter().map(|&id| sw.stats(id).unwrap().rx_packets).sum();
    assert_eq!(rx, injected, "every frame is received exactly once");
    for id in ids {
        let left: Vec<_> = sw.port_mut(id).unwrap().drain_all().collect();
        left.into_iter().for_each(|f| sw.pool_mut().free(f));
    }
    assert_eq!(sw.pool().in_use(), 0, "frames leaked");
});
