//! The reference model of the kernel's macvlan forwarding (spec §2, §3, §8), written
//! from `shared/spec/macvlan-semantics.md` alone, not from the implementation: shared
//! by the simulation (`tests/sim.rs`) and the pipeline fuzzer
//! (`fuzz/fuzz_targets/pipeline.rs`), which include this file.
#![allow(dead_code)]

use std::cell::Cell;

use umacvlan::mode::Mode::{Bridge, Passthru, Private, Source, Vepa};
use umacvlan::mode::{DropReason, Mode};
use umacvlan::port::PortId;
use umacvlan::port::{FramePool, MemPool, MemPort};
use umacvlan::switch::Switch;
use umacvlan::topology::{HOST, UPLINK};
use umacvlan::wire::MacAddr;

/// EtherType of 802.3x PAUSE frames, never flooded.
pub const ETH_PAUSE: u16 = 0x8808;

/// An endpoint, as the specification describes it.
#[derive(Clone, Debug)]
pub struct Ep {
    pub id: PortId,
    pub name: &'static str,
    pub mac: MacAddr,
    pub mode: Mode,
    pub up: bool,
    /// Source mode: `nodst`.
    pub nodst: bool,
    /// The multicast groups it joined (`None`: PROMISC/ALLMULTI, accepts every group).
    pub groups: Option<Vec<MacAddr>>,
    /// Source mode: the source MACs it gets copies of.
    pub sources: Vec<MacAddr>,
}

impl Ep {
    /// §3.5: the per-endpoint `mc_filter`. Broadcast always passes.
    pub fn mc_accepts(&self, group: MacAddr) -> bool {
        match &self.groups {
            None => true,
            Some(g) => group == MacAddr::BROADCAST || g.contains(&group),
        }
    }
}

/// A frame as sent: where it entered and the header fields the rules read.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub ingress: PortId,
    pub dst: MacAddr,
    pub src: MacAddr,
    /// 0 = untagged.
    pub vlan: u16,
    pub ethertype: u16,
}

/// What the model expects for one frame: the ports that transmit it (a multiset,
/// sorted) and which rule decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub ports: Vec<PortId>,
    pub rule: &'static str,
    /// Whether §3.1 made source-mode copies.
    pub source_copies: bool,
    /// Whether a flood left out an endpoint because of its `mc_filter` (§3.5).
    pub filtered: bool,
}

/// One parent and its endpoints, and the spec's forwarding rules over them.
pub struct Model {
    /// The parent's MAC (a passthru endpoint's too).
    pub parent: MacAddr,
    pub eps: Vec<Ep>,
    /// Set by [`Model::flood`] when an `mc_filter` refused an eligible endpoint.
    pub filtered: Cell<bool>,
}

impl Model {
    pub fn new(parent: MacAddr, eps: Vec<Ep>) -> Model {
        Model {
            parent,
            eps,
            filtered: Cell::new(false),
        }
    }

    pub fn ep(&self, id: PortId) -> Option<&Ep> {
        self.eps.iter().find(|e| e.id == id)
    }

    /// `lookup(M)`: the UP endpoint whose MAC is M (only UP endpoints are in
    /// `vlan_hash`). A passthru endpoint has the parent's MAC.
    pub fn lookup(&self, m: MacAddr) -> Option<&Ep> {
        self.eps.iter().find(|e| e.up && e.mac == m)
    }

    /// The passthru endpoint, up or down, if the port is in passthru mode.
    pub fn passthru(&self) -> Option<&Ep> {
        self.eps.iter().find(|e| e.mode == Passthru)
    }

    /// "Flood(set, except X)": every UP endpoint whose mode is in `modes`, leaving out
    /// X and every endpoint whose `mc_filter` refuses the group. PAUSE frames are never
    /// flooded (`macvlan_broadcast` returns early).
    pub fn flood(&self, modes: &[Mode], except: Option<PortId>, f: &Sent) -> Vec<PortId> {
        if f.ethertype == ETH_PAUSE {
            return Vec::new();
        }
        let eligible = self
            .eps
            .iter()
            .filter(|e| e.up && modes.contains(&e.mode) && Some(e.id) != except);
        let mut out = Vec::new();
        for e in eligible {
            if e.mc_accepts(f.dst) {
                out.push(e.id);
            } else {
                self.filtered.set(true);
            }
        }
        out
    }

    /// §3.1 `macvlan_forward_source`: a copy to every UP source-mode endpoint listing
    /// the frame's source MAC; `consumed` if any listing endpoint (up or down) has
    /// NODST.
    pub fn source_copies(&self, src: MacAddr) -> (Vec<PortId>, bool) {
        let listing = self
            .eps
            .iter()
            .filter(|e| e.mode == Source && e.sources.contains(&src));
        let mut copies = Vec::new();
        let mut consumed = false;
        for e in listing {
            if e.up {
                copies.push(e.id);
            }
            consumed |= e.nodst;
        }
        (copies, consumed)
    }

    /// The expected delivery of `f`.
    pub fn expect(&self, f: &Sent) -> Expect {
        self.filtered.set(false);
        let (mut ports, rule, source_copies) = match f.ingress {
            UPLINK => self.received_from_wire(f),
            // §2.2: what the host stack sends goes to the wire only.
            HOST => (vec![UPLINK], "host-tx", false),
            id => {
                let x = self.ep(id).expect("ingress is an endpoint");
                self.sent_by_endpoint(x, f)
            }
        };
        ports.sort();
        Expect {
            ports,
            rule,
            source_copies,
            filtered: self.filtered.get(),
        }
    }

    /// §2.1: frames sent by endpoint X.
    pub fn sent_by_endpoint(&self, x: &Ep, f: &Sent) -> (Vec<PortId>, &'static str, bool) {
        if !x.up {
            // A down interface transmits nothing.
            return (vec![], "down-tx", false);
        }
        if x.mode != Bridge {
            // T4: vepa, private, passthru, source: no local switching at all.
            return (vec![UPLINK], "T4", false);
        }
        if f.dst.is_multicast() {
            // T1: every other bridge endpoint (filtered), and the wire.
            let mut out = self.flood(&[Bridge], Some(x.id), f);
            out.push(UPLINK);
            return (out, "T1", false);
        }
        match self.lookup(f.dst) {
            // Deliberate difference (1): the kernel would loop it back; dropped here.
            Some(y) if y.mode == Bridge && y.id == x.id => (vec![], "T2-self", false),
            // T2: into the lower's receive path, so §3.1 runs on it, then W1.
            Some(y) if y.mode == Bridge => {
                let (mut out, consumed) = self.source_copies(f.src);
                let copies = !out.is_empty();
                if consumed {
                    return (out, "T2+nodst", copies);
                }
                out.push(y.id);
                (out, "T2", copies)
            }
            // T3: the lower's MAC, a vepa/private/source/down endpoint, unknown.
            _ => (vec![UPLINK], "T3", false),
        }
    }

    /// §3: frames received from the wire.
    pub fn received_from_wire(&self, f: &Sent) -> (Vec<PortId>, &'static str, bool) {
        if f.vlan != 0 {
            // Deliberate difference (2): no network uses this VLAN.
            return (vec![], "unknown-vlan", false);
        }
        // §3.1 runs first, for unicast and multicast alike.
        let (mut out, consumed) = self.source_copies(f.src);
        let copies = !out.is_empty();
        if consumed {
            return (out, "nodst", copies);
        }
        let (rest, rule) = if f.dst.is_multicast() {
            self.wire_multicast(f)
        } else {
            self.wire_unicast(f.dst)
        };
        out.extend(rest);
        (out, rule, copies)
    }

    /// §3.2, W1–W5.
    pub fn wire_unicast(&self, d: MacAddr) -> (Vec<PortId>, &'static str) {
        if let Some(pt) = self.passthru() {
            // W5: the only endpoint gets every unicast, whatever D; dropped if it is
            // down; never the host.
            return if pt.up {
                (vec![pt.id], "W5")
            } else {
                (vec![], "W5-down")
            };
        }
        match self.lookup(d) {
            Some(e) if e.mode != Source => (vec![e.id], "W1"),
            Some(_) => (vec![HOST], "W4"),
            None if d == self.parent => (vec![HOST], "W2"),
            None => (vec![HOST], "W3"),
        }
    }

    /// §3.3, W6–W9, by who sent it (`lookup(source MAC)`).
    pub fn wire_multicast(&self, f: &Sent) -> (Vec<PortId>, &'static str) {
        let with_host = |mut v: Vec<PortId>| {
            v.push(HOST);
            v
        };
        match self.lookup(f.src) {
            None => (
                with_host(self.flood(&[Private, Vepa, Bridge, Passthru], None, f)),
                "W6",
            ),
            Some(x) if x.mode == Vepa => {
                (with_host(self.flood(&[Vepa, Bridge], Some(x.id), f)), "W7")
            }
            Some(x) if x.mode == Bridge => (with_host(self.flood(&[Vepa], Some(x.id), f)), "W8"),
            // Private, passthru or source sender: its own frame back, no mc_filter
            // check, not to the host.
            Some(x) => (vec![x.id], "W9"),
        }
    }
}

/// What [`burst`] saw.
pub struct Burst {
    /// Deliveries the model expects that the buffers could not make (each counted as
    /// `tx_full` or `no_buffer`).
    pub lost: u64,
    /// Frames the model delivers nowhere.
    pub nowhere: u64,
    /// Every delivery: (egress port, length).
    pub delivered: Vec<(PortId, usize)>,
    /// The rule that decided each frame.
    pub rules: Vec<&'static str>,
}

/// Drops of `reasons` counted so far at `ports`.
pub fn drops_of<const B: usize>(
    sw: &Switch<MemPort, MemPool, B>,
    ports: &[PortId],
    reasons: &[DropReason],
) -> u64 {
    ports
        .iter()
        .map(|&p| {
            let st = sw.stats(p).unwrap();
            reasons.iter().map(|&r| st.dropped(r)).sum::<u64>()
        })
        .sum()
}

/// Sends a burst of frames on several ports at once, polls until the switch is idle
/// (draining every transmit queue after each poll, as a NIC would), and checks every
/// delivery against `model`. With short transmit queues and a small pool some
/// deliveries are lost; each must be counted as `tx_full` (a full queue) or
/// `no_buffer` (no frame for a flood copy), and nothing else may be lost, duplicated,
/// reordered (per ingress and egress) or leaked. Frame `first + k` of the burst carries
/// its number in its last 8 bytes (each frame must have room after its header), so
/// every copy names its frame. Every frame of `ports` must be attached.
///
/// # Panics
/// On any disagreement, naming the frame, the rule and the ports.
pub fn burst<const B: usize>(
    sw: &mut Switch<MemPort, MemPool, B>,
    model: &Model,
    ports: &[PortId],
    frames: &[(Sent, Vec<u8>)],
    first: u64,
) -> Burst {
    const SHORTAGE: [DropReason; 2] = [DropReason::TxFull, DropReason::NoBuffer];
    let all = DropReason::ALL;
    let shortage_before = drops_of(sw, ports, &SHORTAGE);
    let other_before = drops_of(sw, ports, &all) - shortage_before;
    let mut sent: Vec<(Sent, Vec<u8>, Expect, Vec<PortId>)> = Vec::new();
    for (k, (f, bytes)) in frames.iter().enumerate() {
        let mut bytes = bytes.clone();
        let at = bytes.len() - 8;
        bytes[at..].copy_from_slice(&(first + k as u64).to_be_bytes());
        let want = model.expect(f);
        let frame = sw
            .pool_mut()
            .alloc_with(&bytes)
            .expect("the pool holds a whole burst");
        sw.port_mut(f.ingress).unwrap().inject(frame);
        sent.push((*f, bytes, want, Vec::new()));
    }
    // The last frame number each egress port got from each ingress port.
    let mut last: std::collections::BTreeMap<(PortId, PortId), u64> = Default::default();
    let mut delivered = Vec::new();
    let mut received = 0;
    loop {
        let n = sw.poll();
        received += n;
        for &p in ports {
            while let Some(c) = sw.port_mut(p).unwrap().pop_tx() {
                let data = sw.pool().data(&c);
                let tag = u64::from_be_bytes(data[data.len() - 8..].try_into().unwrap());
                let k = tag
                    .checked_sub(first)
                    .filter(|k| (*k as usize) < sent.len())
                    .unwrap_or_else(|| panic!("a copy names frame {tag}, not of this burst"))
                    as usize;
                let (f, bytes, _, got) = &mut sent[k];
                assert!(
                    data == &bytes[..],
                    "the copy of frame {tag} sent to port {p} has different bytes"
                );
                if let Some(prev) = last.insert((f.ingress, p), tag) {
                    assert!(
                        prev < tag,
                        "port {p} got frame {tag} from port {} after frame {prev}",
                        f.ingress
                    );
                }
                got.push(p);
                delivered.push((p, data.len()));
                sw.pool_mut().free(c);
            }
        }
        if n == 0 {
            break;
        }
    }
    assert_eq!(received, frames.len(), "every frame received");
    let (mut lost, mut nowhere) = (0, 0);
    for (k, (f, _, want, got)) in sent.iter_mut().enumerate() {
        got.sort();
        let mut missing = want.ports.clone();
        for p in got.iter() {
            let i = missing.iter().position(|q| q == p).unwrap_or_else(|| {
                panic!(
                    "frame {} ({f:?}), rule {}: delivered to port {p}, expected only {:?}",
                    first + k as u64,
                    want.rule,
                    want.ports
                )
            });
            missing.remove(i);
        }
        lost += missing.len() as u64;
        if want.ports.is_empty() {
            nowhere += 1;
        }
    }
    assert_eq!(
        drops_of(sw, ports, &SHORTAGE) - shortage_before,
        lost,
        "every lost delivery is counted as tx_full or no_buffer"
    );
    assert_eq!(
        drops_of(sw, ports, &all) - drops_of(sw, ports, &SHORTAGE) - other_before,
        nowhere,
        "a frame the model delivers nowhere counts one drop, others none"
    );
    assert_eq!(sw.pool().in_use(), 0, "pool slots in use after the burst");
    Burst {
        lost,
        nowhere,
        delivered,
        rules: sent.iter().map(|s| s.2.rule).collect(),
    }
}
