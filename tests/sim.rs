//! Randomised simulation of the whole switch against an independent reference model.
//!
//! Each scenario builds an in-memory switch (uplink, host port and a set of endpoints
//! in mixed modes, some down, some with a multicast filter, some in source mode) and
//! feeds it thousands of random frames, one at a time, from a seeded RNG: unicast to
//! endpoints, to unknown MACs and to the parent's MAC, broadcast, joined and unjoined
//! multicast groups, PAUSE frames, and "reflected" frames (frames arriving on the
//! uplink whose source MAC belongs to an endpoint, as a hairpinning external switch
//! sends them back). A few frames from the wire carry a VLAN tag no network uses.
//!
//! For every frame the multiset of ports that transmitted it must equal the one
//! computed by [`Model`], a plain transcription of the specification
//! (`macvlan-semantics.md` §2, §3 and §8: rules T1–T4, W1–W9, the §3.1 source-mode copy
//! with and without `nodst`, and no PAUSE frame in any flood). The model was written
//! from the specification alone, not from the implementation. It also encodes the two
//! documented deliberate differences from the kernel: a bridge-mode endpoint's unicast
//! to its own MAC is dropped, and a frame from the wire tagged with a VLAN no network
//! uses is dropped.
//!
//! Every delivered copy must hold the bytes that were sent. Buffers: every delivered
//! handle stays alive until the end of its scenario and must name a slot no other live
//! handle names (no duplication), the pool's `in_use()` must equal the number of
//! handles held after every frame (no leak), and after freeing everything and draining
//! every port it must be 0. Counters: per port, `rx_packets`/`rx_bytes` equal what was
//! injected there and `tx_packets`/`tx_bytes` what was delivered there; a frame
//! delivered nowhere counts exactly one drop, any other frame none.
//!
//! A second mode sends *bursts*: up to 40 frames at once on several ports, through
//! transmit queues of 4 frames and a pool of 48, so the switch stages many frames per
//! poll, queues fill in the middle of a burst and floods find no free frame. Every
//! copy names its frame; each frame's deliveries must be a sub-multiset of the
//! model's, arrive in order per (ingress, egress), and every delivery the buffers
//! could not make must be counted as `tx_full` or `no_buffer`, nothing else.
//!
//! The seed can be changed with the environment variable `UMACVLAN_SIM_SEED`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use umacvlan::mode::Mode::{Bridge, Passthru, Private, Source, Vepa};
use umacvlan::mode::{DropReason, Mode};
use umacvlan::port::{Frame, FrameIdx, FramePool, MemPool, MemPort, PortId};
use umacvlan::switch::Switch;
use umacvlan::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
use umacvlan::view::McFilter;
use umacvlan::wire::{emit_header, EtherType, MacAddr};

mod model;
use model::{Ep, Model, Sent, ETH_PAUSE};

// ---------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------

const fn mac(b: [u8; 6]) -> MacAddr {
    MacAddr::new(b)
}

/// The parent's ("lower's") own MAC.
const PARENT: MacAddr = mac([0x02, 0, 0, 0, 0, 0xfe]);
/// Hosts behind the external switch.
const EXT: [MacAddr; 4] = [
    mac([0x02, 0, 0, 0, 0xe0, 1]),
    mac([0x02, 0, 0, 0, 0xe0, 2]),
    mac([0x02, 0, 0, 0, 0xe0, 3]),
    mac([0x00, 0x16, 0x3e, 0, 0, 4]),
];
/// Unicast MACs nobody owns (destinations only).
const UNKNOWN: [MacAddr; 2] = [
    mac([0x02, 0, 0, 0, 0xee, 1]),
    mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
];
const BCAST: MacAddr = MacAddr::BROADCAST;
/// IPv4 all-hosts.
const G1: MacAddr = mac([0x01, 0, 0x5e, 0, 0, 0x01]);
/// mDNS.
const G2: MacAddr = mac([0x01, 0, 0x5e, 0, 0, 0xfb]);
/// IPv6 all-nodes.
const G3: MacAddr = mac([0x33, 0x33, 0, 0, 0, 0x01]);
/// A group no endpoint lists.
const G_UNJOINED: MacAddr = mac([0x01, 0, 0x5e, 0x7f, 0, 0x07]);
/// Destination of 802.3x PAUSE frames.
const PAUSE_DST: MacAddr = mac([0x01, 0x80, 0xc2, 0, 0, 0x01]);
/// Multicast destinations other than PAUSE's.
const GROUPS: [MacAddr; 4] = [G1, G2, G3, G_UNJOINED];

/// The MAC of endpoint number `n`.
const fn ep_mac(n: u8) -> MacAddr {
    mac([0x02, 0, 0, 0, 0x01, n])
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

/// An endpoint of a scenario, in the model's terms.
#[derive(Clone)]
struct EpSpec {
    name: &'static str,
    mac: MacAddr,
    mode: Mode,
    up: bool,
    nodst: bool,
    groups: Option<Vec<MacAddr>>,
    sources: Vec<MacAddr>,
}

fn ep(name: &'static str, mode: Mode, n: u8) -> EpSpec {
    EpSpec {
        name,
        mac: ep_mac(n),
        mode,
        up: true,
        nodst: false,
        groups: None,
        sources: Vec::new(),
    }
}

impl EpSpec {
    fn down(mut self) -> Self {
        self.up = false;
        self
    }
    fn groups(mut self, g: &[MacAddr]) -> Self {
        self.groups = Some(g.to_vec());
        self
    }
    fn sources(mut self, s: &[MacAddr]) -> Self {
        self.sources = s.to_vec();
        self
    }
    fn nodst(mut self) -> Self {
        self.nodst = true;
        self
    }
}

/// Scenario (a): bridge, vepa and private endpoints (some filtered, some down) and a
/// source-mode endpoint without `nodst` (plus a down one).
fn mixed(nodst: bool) -> Vec<EpSpec> {
    // s1 gets copies of an external host, the host's reflected frames and some
    // endpoints' frames (b1, p1, and v1 unless nodst would then hide every VEPA sender).
    let mut s1 = ep("s1", Source, 20).sources(&[EXT[0], ep_mac(1), ep_mac(6), PARENT]);
    if nodst {
        s1 = s1.nodst();
    } else {
        s1.sources.push(ep_mac(4));
    }
    let mut v = vec![
        ep("b1", Bridge, 1),
        ep("b2", Bridge, 2).groups(&[G1]),
        ep("b3", Bridge, 3),
        ep("v1", Vepa, 4),
        ep("v2", Vepa, 5).groups(&[G2, G3]),
        ep("p1", Private, 6),
        ep("p2", Private, 7).groups(&[G1, G3]),
        s1,
        ep("s2", Source, 21).sources(&[EXT[1], ep_mac(3)]).down(),
        ep("d1", Bridge, 30).down(),
        ep("d2", Vepa, 31).down(),
        ep("d3", Private, 32).down(),
    ];
    if nodst {
        // A down nodst endpoint still consumes what it matches.
        v.push(
            ep("s3", Source, 22)
                .sources(&[EXT[2], ep_mac(5)])
                .nodst()
                .down(),
        );
    }
    v
}

/// Scenario (c): one passthru endpoint (it takes the parent's MAC, whatever is asked).
fn passthru(up: bool) -> Vec<EpSpec> {
    let mut p = ep("pt", Passthru, 40).groups(&[G2]);
    p.up = up;
    vec![p]
}

/// Scenario (d): private endpoints only.
fn private_only() -> Vec<EpSpec> {
    vec![
        ep("p1", Private, 1),
        ep("p2", Private, 2).groups(&[G1]),
        ep("p3", Private, 3),
        ep("p4", Private, 4).down(),
    ]
}

/// The topology of a scenario, and its endpoints in the model's terms.
fn build(scenario: &str, specs: &[EpSpec]) -> (Topology, Vec<Ep>) {
    let parent = ParentConfig {
        name: "eth0".into(),
        mac: PARENT,
        mtu: 1500,
    };
    let mut topo = Topology::new(parent, true).expect("parent");
    let mut eps = Vec::new();
    for s in specs {
        let mut c = EndpointConfig::new(s.name, s.mode).with_mac(s.mac);
        c.up = s.up;
        c.nodst = s.nodst;
        c.sources = s.sources.clone();
        c.mc = match &s.groups {
            None => McFilter::All,
            Some(g) => McFilter::Groups(Arc::from(g.as_slice())),
        };
        let id = topo
            .add_endpoint(c)
            .unwrap_or_else(|e| panic!("{scenario}: add {}: {e}", s.name));
        // §5: a passthru endpoint takes the lower's MAC, overriding any address.
        let mac = if s.mode == Passthru { PARENT } else { s.mac };
        assert_eq!(
            topo.endpoint(s.name).unwrap().mac(),
            mac,
            "{scenario}: MAC of {}",
            s.name
        );
        eps.push(Ep {
            id,
            name: s.name,
            mac,
            mode: s.mode,
            up: s.up,
            nodst: s.nodst,
            groups: s.groups.clone(),
            sources: s.sources.clone(),
        });
    }
    (topo, eps)
}

// ---------------------------------------------------------------------------------
// The simulation harness
// ---------------------------------------------------------------------------------

struct Sim {
    scenario: &'static str,
    seed: u64,
    sw: Switch<MemPort, MemPool>,
    model: Model,
    /// Every port: uplink, host, endpoints.
    ports: Vec<PortId>,
    /// Every delivered frame, held until the end.
    live: Vec<Frame>,
    slots: HashSet<FrameIdx>,
    /// Per port: (packets, bytes) injected / delivered.
    injected: BTreeMap<PortId, (u64, u64)>,
    delivered: BTreeMap<PortId, (u64, u64)>,
    frames: u64,
    nowhere: u64,
    /// How often each rule decided.
    rules: BTreeMap<&'static str, u64>,
}

impl Sim {
    fn new(scenario: &'static str, seed: u64, specs: &[EpSpec]) -> Sim {
        Self::with_buffers(scenario, seed, specs, 65536, 1 << 16)
    }

    /// A switch over a pool of `slots` frames whose ports' transmit queues hold
    /// `tx_cap` frames each.
    fn with_buffers(
        scenario: &'static str,
        seed: u64,
        specs: &[EpSpec],
        slots: u32,
        tx_cap: usize,
    ) -> Sim {
        let (topo, eps) = build(scenario, specs);
        let mut sw: Switch<MemPort, MemPool> = Switch::new(topo.reader(), MemPool::new(slots, 512));
        let mut ports = vec![UPLINK, HOST];
        ports.extend(eps.iter().map(|e| e.id));
        for &p in &ports {
            sw.attach(p, MemPort::new(tx_cap)).expect("attach");
        }
        // The switch reads the table through `reader()`; the topology may go.
        drop(topo);
        Sim {
            scenario,
            seed,
            sw,
            model: Model::new(PARENT, eps),
            ports,
            live: Vec::new(),
            slots: HashSet::new(),
            injected: BTreeMap::new(),
            delivered: BTreeMap::new(),
            frames: 0,
            nowhere: 0,
            rules: BTreeMap::new(),
        }
    }

    fn name(&self, p: PortId) -> String {
        match p {
            UPLINK => "uplink".into(),
            HOST => "host".into(),
            p => self
                .model
                .ep(p)
                .map_or_else(|| format!("{p}"), |e| e.name.to_string()),
        }
    }

    fn names(&self, ps: &[PortId]) -> String {
        let v: Vec<String> = ps.iter().map(|&p| self.name(p)).collect();
        format!("{{{}}}", v.join(", "))
    }

    fn total_drops(&self) -> u64 {
        self.ports
            .iter()
            .map(|&p| self.sw.stats(p).unwrap().total_drops())
            .sum()
    }

    fn describe(&self, n: u64, f: &Sent, len: usize) -> String {
        let mut s = String::new();
        write!(
            s,
            "scenario {} (seed {:#x}), frame #{n}: ingress {}, dst {}, src {}, ethertype {:#06x}",
            self.scenario,
            self.seed,
            self.name(f.ingress),
            f.dst,
            f.src,
            f.ethertype
        )
        .unwrap();
        if f.vlan != 0 {
            write!(s, ", vlan {}", f.vlan).unwrap();
        }
        write!(s, ", {len} bytes").unwrap();
        s
    }

    /// Sends one frame and checks where it went.
    fn step(&mut self, f: &Sent, bytes: &[u8]) {
        let n = self.frames;
        self.frames += 1;
        let want = self.model.expect(f);
        let pause = f.ethertype == ETH_PAUSE;
        let extra = [
            (want.source_copies, "§3.1 copies"),
            (want.filtered, "§3.5 filtered"),
            (pause && want.rule == "W9", "W9 PAUSE"),
            (pause && want.rule == "W6", "W6 PAUSE"),
        ];
        let tags = extra.iter().filter(|t| t.0).map(|t| t.1);
        for r in std::iter::once(want.rule).chain(tags) {
            *self.rules.entry(r).or_default() += 1;
        }

        let drops_before = self.total_drops();
        let frame = self
            .sw
            .pool_mut()
            .alloc_with(bytes)
            .expect("the pool has room");
        self.sw.port_mut(f.ingress).unwrap().inject(frame);
        let inj = self.injected.entry(f.ingress).or_default();
        inj.0 += 1;
        inj.1 += bytes.len() as u64;
        assert_eq!(
            self.sw.poll(),
            1,
            "{}: one frame received",
            self.describe(n, f, bytes.len())
        );

        let mut got = Vec::new();
        for i in 0..self.ports.len() {
            let p = self.ports[i];
            while let Some(c) = self.sw.port_mut(p).unwrap().pop_tx() {
                let same = self.sw.pool().data(&c) == bytes;
                let idx = c.idx();
                let fresh = self.slots.insert(idx);
                self.live.push(c);
                assert!(
                    same,
                    "{}: the copy sent to {} has different bytes",
                    self.describe(n, f, bytes.len()),
                    self.name(p)
                );
                assert!(
                    fresh,
                    "{}: slot {idx:?} handed to {} is already held",
                    self.describe(n, f, bytes.len()),
                    self.name(p)
                );
                let d = self.delivered.entry(p).or_default();
                d.0 += 1;
                d.1 += bytes.len() as u64;
                got.push(p);
            }
        }
        got.sort();
        assert!(
            got == want.ports,
            "{}: rule {}{}: expected {}, got {}",
            self.describe(n, f, bytes.len()),
            want.rule,
            if want.source_copies {
                " (+ §3.1 copies)"
            } else {
                ""
            },
            self.names(&want.ports),
            self.names(&got)
        );

        let drops = self.total_drops() - drops_before;
        if got.is_empty() {
            self.nowhere += 1;
            assert_eq!(
                drops,
                1,
                "{}: a frame delivered nowhere counts one drop",
                self.describe(n, f, bytes.len())
            );
        } else {
            assert_eq!(
                drops,
                0,
                "{}: a delivered frame counts no drop",
                self.describe(n, f, bytes.len())
            );
        }
        assert_eq!(
            self.sw.pool().in_use(),
            self.live.len(),
            "{}: pool slots in use",
            self.describe(n, f, bytes.len())
        );
    }

    /// Drops of `reasons` counted so far, over every port.
    fn drops_of(&self, reasons: &[DropReason]) -> u64 {
        model::drops_of(&self.sw, &self.ports, reasons)
    }

    /// Sends a burst of frames on several ports at once ([`model::burst`]) and keeps
    /// the per-port accounts. Returns the deliveries lost to short buffers.
    fn burst(&mut self, burst: &[(Sent, Vec<u8>)]) -> u64 {
        let out = model::burst(&mut self.sw, &self.model, &self.ports, burst, self.frames);
        self.frames += burst.len() as u64;
        for (f, bytes) in burst {
            let inj = self.injected.entry(f.ingress).or_default();
            inj.0 += 1;
            inj.1 += bytes.len() as u64;
        }
        for (p, len) in out.delivered {
            let d = self.delivered.entry(p).or_default();
            d.0 += 1;
            d.1 += len as u64;
        }
        for r in out.rules {
            *self.rules.entry(r).or_default() += 1;
        }
        self.nowhere += out.nowhere;
        out.lost
    }

    /// The per-port counters against what was injected and delivered (after bursts).
    fn check_counters(&self) {
        for &p in &self.ports {
            let st = self.sw.stats(p).unwrap();
            let inj = self.injected.get(&p).copied().unwrap_or_default();
            let del = self.delivered.get(&p).copied().unwrap_or_default();
            let who = self.name(p);
            let sc = self.scenario;
            assert_eq!((st.rx_packets, st.rx_bytes), inj, "{sc}: rx of {who}");
            assert_eq!((st.tx_packets, st.tx_bytes), del, "{sc}: tx of {who}");
        }
    }

    /// Checks the counters, frees everything and checks nothing leaked.
    fn finish(mut self, must_see: &[&str]) {
        let sc = self.scenario;
        eprintln!(
            "{sc}: {} frames, {} deliveries, {} delivered nowhere; rules {:?}",
            self.frames,
            self.live.len(),
            self.nowhere,
            self.rules
        );
        for r in must_see {
            assert!(
                self.rules.contains_key(r),
                "{sc}: the random frames never exercised rule {r}"
            );
        }

        let (mut rx_total, mut tx_total) = (0, 0);
        for &p in &self.ports {
            let st = self.sw.stats(p).unwrap().clone();
            let inj = self.injected.get(&p).copied().unwrap_or_default();
            let del = self.delivered.get(&p).copied().unwrap_or_default();
            let who = self.name(p);
            assert_eq!(
                (st.rx_packets, st.rx_bytes),
                inj,
                "{sc}: rx packets/bytes of {who}"
            );
            assert_eq!(
                (st.tx_packets, st.tx_bytes),
                del,
                "{sc}: tx packets/bytes of {who}"
            );
            assert_eq!(
                st.dropped(DropReason::TxFull),
                0,
                "{sc}: TxFull drops at {who}"
            );
            assert_eq!(
                st.dropped(DropReason::NoBuffer),
                0,
                "{sc}: NoBuffer drops at {who}"
            );
            rx_total += st.rx_packets;
            tx_total += st.tx_packets;
        }
        assert_eq!(
            rx_total, self.frames,
            "{sc}: rx_packets summed over ports = frames injected"
        );
        assert_eq!(
            tx_total,
            self.live.len() as u64,
            "{sc}: tx_packets summed over ports = deliveries"
        );
        assert_eq!(
            self.total_drops(),
            self.nowhere,
            "{sc}: drops = frames delivered nowhere"
        );

        for f in self.live.drain(..) {
            self.sw.pool_mut().free(f);
        }
        let mut leftover = Vec::new();
        for &p in &self.ports {
            let port = self.sw.port_mut(p).unwrap();
            leftover.extend(port.drain_all().map(|f| (p, f)));
        }
        let stray: Vec<PortId> = leftover.iter().map(|(p, _)| *p).collect();
        for (_, f) in leftover {
            self.sw.pool_mut().free(f);
        }
        assert!(
            stray.is_empty(),
            "{sc}: frames left queued at {}",
            self.names(&stray)
        );
        assert_eq!(
            self.sw.pool().in_use(),
            0,
            "{sc}: pool slots still in use after freeing everything"
        );
    }
}

/// Random frames over a scenario's addresses.
struct Gen {
    rng: SmallRng,
    endpoints: Vec<PortId>,
    ep_macs: Vec<MacAddr>,
}

impl Gen {
    fn new(seed: u64, model: &Model) -> Gen {
        Gen {
            rng: SmallRng::seed_from_u64(seed),
            endpoints: model.eps.iter().map(|e| e.id).collect(),
            ep_macs: model.eps.iter().map(|e| e.mac).collect(),
        }
    }

    fn pick(&mut self, v: &[MacAddr]) -> MacAddr {
        *v.choose(&mut self.rng).expect("non-empty")
    }

    /// A random frame and its bytes.
    fn frame(&mut self) -> (Sent, Vec<u8>) {
        let r = self.rng.gen_range(0..100);
        let ingress = match r {
            0..=49 => UPLINK,
            50..=59 => HOST,
            _ => *self.endpoints.choose(&mut self.rng).unwrap(),
        };
        let ep_macs = self.ep_macs.clone();
        let (dst, mut ethertype) = match self.rng.gen_range(0..100) {
            0..=29 => (self.pick(&ep_macs), 0),
            30..=37 => (PARENT, 0),
            38..=47 => (self.pick(&UNKNOWN), 0),
            48..=67 => (BCAST, 0),
            68..=89 => (self.pick(&GROUPS), 0),
            _ => (PAUSE_DST, ETH_PAUSE),
        };
        if ethertype == 0 {
            ethertype = match self.rng.gen_range(0..100) {
                0..=39 => EtherType::IPV4.0,
                40..=69 => EtherType::ARP.0,
                70..=96 => EtherType::IPV6.0,
                // A PAUSE ethertype to some other destination.
                _ => ETH_PAUSE,
            };
        }
        let src = match self.rng.gen_range(0..100) {
            0..=44 => self.pick(&ep_macs),
            45..=59 => PARENT,
            _ => self.pick(&EXT),
        };
        let vlan = if ingress == UPLINK && self.rng.gen_ratio(1, 30) {
            self.rng.gen_range(100..200)
        } else {
            0
        };
        let len = self.rng.gen_range(60..=200);
        let mut bytes = vec![0u8; len];
        let h = emit_header(
            &mut bytes,
            dst,
            src,
            (vlan != 0).then_some(vlan),
            EtherType(ethertype),
        );
        self.rng.fill(&mut bytes[h..]);
        (
            Sent {
                ingress,
                dst,
                src,
                vlan,
                ethertype,
            },
            bytes,
        )
    }
}

fn seed(scenario: u64) -> u64 {
    let base = std::env::var("UMACVLAN_SIM_SEED")
        .ok()
        .and_then(|s| {
            s.strip_prefix("0x")
                .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or(0x6d61_6376_6c61_6e00);
    base ^ scenario.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn run(scenario: &'static str, index: u64, specs: &[EpSpec], frames: usize, must_see: &[&str]) {
    let seed = seed(index);
    let mut sim = Sim::new(scenario, seed, specs);
    let mut gen = Gen::new(seed, &sim.model);
    for _ in 0..frames {
        let (f, bytes) = gen.frame();
        sim.step(&f, &bytes);
    }
    sim.finish(must_see);
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

/// Rules every mixed scenario must have exercised.
const MIXED_RULES: [&str; 15] = [
    "host-tx",
    "down-tx",
    "T1",
    "T2",
    "T2-self",
    "T3",
    "T4",
    "unknown-vlan",
    "W1",
    "W2",
    "W3",
    "W4",
    "W6",
    "W7",
    "W8",
];

#[test]
fn mixed_modes() {
    let mut must = MIXED_RULES.to_vec();
    must.extend(["W9", "W9 PAUSE", "§3.1 copies", "§3.5 filtered"]);
    run("mixed", 1, &mixed(false), 5000, &must);
}

#[test]
fn mixed_modes_with_nodst_source() {
    let mut must = MIXED_RULES.to_vec();
    must.extend(["W9", "nodst", "T2+nodst", "§3.1 copies", "§3.5 filtered"]);
    run("mixed+nodst", 2, &mixed(true), 5000, &must);
}

#[test]
fn passthru_up() {
    run(
        "passthru",
        3,
        &passthru(true),
        2000,
        &[
            "host-tx",
            "T4",
            "unknown-vlan",
            "W5",
            "W6",
            "W9",
            "W9 PAUSE",
            "§3.5 filtered",
        ],
    );
}

#[test]
fn passthru_down() {
    run(
        "passthru-down",
        4,
        &passthru(false),
        1000,
        &["host-tx", "down-tx", "unknown-vlan", "W5-down", "W6"],
    );
}

#[test]
fn all_private() {
    run(
        "private",
        5,
        &private_only(),
        2500,
        &[
            "W9 PAUSE",
            "§3.5 filtered",
            "host-tx",
            "down-tx",
            "T4",
            "unknown-vlan",
            "W1",
            "W2",
            "W3",
            "W6",
            "W9",
        ],
    );
}

/// Bursts of up to 40 frames at once, on several ports, through transmit queues of 4
/// frames and a pool of 48: staging many frames per poll, a queue that fills in the
/// middle of a burst and floods that find no free frame all meet the model, and every
/// delivery the buffers could not make is counted.
#[test]
fn bursts_with_short_queues_and_a_small_pool_match_the_model() {
    for (i, (name, specs)) in [
        ("burst-mixed", mixed(false)),
        ("burst-mixed+nodst", mixed(true)),
        ("burst-passthru", passthru(true)),
        ("burst-private", private_only()),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = seed(100 + i as u64);
        let mut sim = Sim::with_buffers(name, seed, &specs, 48, 4);
        let mut gen = Gen::new(seed, &sim.model);
        let mut rng = SmallRng::seed_from_u64(seed ^ 1);
        let (mut lost, mut multi) = (0, 0);
        for _ in 0..150 {
            let n = rng.gen_range(1..=40);
            let burst: Vec<_> = (0..n).map(|_| gen.frame()).collect();
            let mut per_port: BTreeMap<PortId, usize> = BTreeMap::new();
            for (f, _) in &burst {
                *per_port.entry(f.ingress).or_default() += 1;
            }
            multi += per_port.values().filter(|&&c| c > 1).count();
            lost += sim.burst(&burst);
        }
        sim.check_counters();
        let (tx_full, no_buffer) = (
            sim.drops_of(&[DropReason::TxFull]),
            sim.drops_of(&[DropReason::NoBuffer]),
        );
        eprintln!(
            "{name}: {} frames in 150 bursts, {multi} multi-frame port bursts, {lost} deliveries lost ({tx_full} tx_full, {no_buffer} no_buffer)",
            sim.frames
        );
        assert!(multi > 100, "{name}: too few multi-frame bursts ({multi})");
        assert!(tx_full > 0, "{name}: no transmit queue ever filled");
        if name != "burst-passthru" {
            // Passthru has one endpoint: its floods need no copies worth running out of.
            assert!(no_buffer > 0, "{name}: no flood ever ran out of frames");
        }
    }
}

/// The model itself against the spec's worked examples (§4's mixed row and §3.3).
#[test]
fn reference_model_reproduces_spec_examples() {
    let spec = [ep("e1", Bridge, 1), ep("e2", Vepa, 2), ep("e3", Private, 3)];
    let eps: Vec<Ep> = spec
        .iter()
        .enumerate()
        .map(|(i, s)| Ep {
            id: PortId(2 + i as u16),
            name: s.name,
            mac: s.mac,
            mode: s.mode,
            up: true,
            nodst: false,
            groups: None,
            sources: vec![],
        })
        .collect();
    let (e1, e2, e3) = (PortId(2), PortId(3), PortId(4));
    let m = Model::new(PARENT, eps);
    let bc = |ingress, src| Sent {
        ingress,
        dst: BCAST,
        src,
        vlan: 0,
        ethertype: EtherType::ARP.0,
    };
    let to = |ports: &[PortId]| {
        let mut v = ports.to_vec();
        v.sort();
        v
    };
    // "broadcast from e1(b) is seen by ext / ext, e2, host": T1, then reflected W8.
    assert_eq!(m.expect(&bc(e1, ep_mac(1))).ports, to(&[UPLINK]));
    assert_eq!(m.expect(&bc(UPLINK, ep_mac(1))).ports, to(&[e2, HOST]));
    // "e2(v): ext / ext, e1, host": T4, then W7.
    assert_eq!(m.expect(&bc(e2, ep_mac(2))).ports, to(&[UPLINK]));
    assert_eq!(m.expect(&bc(UPLINK, ep_mac(2))).ports, to(&[e1, HOST]));
    // Private: the reflected broadcast returns to the sender alone (W9).
    assert_eq!(m.expect(&bc(UPLINK, ep_mac(3))).ports, to(&[e3]));
    // The host's reflected broadcast reaches everyone (W6).
    assert_eq!(m.expect(&bc(UPLINK, PARENT)).ports, to(&[e1, e2, e3, HOST]));
    // PAUSE is never flooded, but the host still gets it.
    let pause = Sent {
        ethertype: ETH_PAUSE,
        dst: PAUSE_DST,
        ..bc(UPLINK, EXT[0])
    };
    assert_eq!(m.expect(&pause).ports, to(&[HOST]));
    // Unicast e1(b) -> e2(v) goes via the wire (T3); from the wire it is W1.
    let uc = |ingress, dst| Sent {
        dst,
        ..bc(ingress, ep_mac(1))
    };
    assert_eq!(m.expect(&uc(e1, ep_mac(2))).ports, to(&[UPLINK]));
    assert_eq!(m.expect(&uc(UPLINK, ep_mac(3))).ports, to(&[e3]));
    assert_eq!(m.expect(&uc(UPLINK, PARENT)).rule, "W2");

    // Passthru: the host's own reflected broadcast goes to the endpoint only (W9).
    let pt = Model::new(
        PARENT,
        vec![Ep {
            id: PortId(2),
            name: "pt",
            mac: PARENT,
            mode: Passthru,
            up: true,
            nodst: false,
            groups: None,
            sources: vec![],
        }],
    );
    assert_eq!(pt.expect(&bc(UPLINK, PARENT)).ports, to(&[PortId(2)]));
    assert_eq!(pt.expect(&uc(UPLINK, UNKNOWN[0])).ports, to(&[PortId(2)]));
}

/// The kernel fast path moves work, never an outcome: for every scenario above (and
/// one with VLAN networks and strict private endpoints), every ingress, destination,
/// source, VLAN, tag stack and length, a frame the compiled fast path forwards goes
/// exactly where `decide` sends it, to that one egress alone; where `decide` gives
/// anything else the frame is the switch's. Some ports are left out of the kernel's
/// reach (an in-process endpoint's), and the fast path must route around them.
#[test]
fn the_fast_path_forwards_only_what_decide_sends_to_one_egress() {
    use umacvlan::fastpath::{FastTable, Reach};
    use umacvlan::mode::{decide, Facts, Verdict};

    let mut vlans = vec![
        ep("b1", Bridge, 1),
        ep("b2", Bridge, 2),
        ep("p1", Private, 6),
        ep("v1", Vepa, 4),
    ];
    let mut scenarios: Vec<(&str, Topology)> = vec![
        ("mixed", build("mixed", &mixed(false)).0),
        ("mixed+nodst", build("mixed+nodst", &mixed(true)).0),
        ("passthru", build("passthru", &passthru(true)).0),
        ("passthru-down", build("passthru-down", &passthru(false)).0),
        ("private", build("private", &private_only()).0),
        ("bridges", build("bridges", &vlans[..2]).0),
    ];
    // Networks on VLANs 20 and 30 beside the untagged one, strict private endpoints.
    let (mut t, _) = build("vlans", &vlans);
    for (i, (vlan, strict)) in [(20u16, false), (20, true), (30, true)].iter().enumerate() {
        let n = 50 + i as u8;
        let mut c = EndpointConfig::new(format!("x{n}"), if *strict { Private } else { Bridge })
            .with_mac(ep_mac(n));
        c.vlan = *vlan;
        c.strict = *strict;
        t.add_endpoint(c).unwrap();
        vlans.push(ep("x", Bridge, n));
    }
    let mut c = EndpointConfig::new("y20", Bridge).with_mac(ep_mac(60));
    c.vlan = 20;
    t.add_endpoint(c).unwrap();
    scenarios.push(("vlans", t));

    let mut fast_taken = 0u64;
    let mut checked = 0u64;
    for (name, topo) in &scenarios {
        let t = topo.table();
        let eps: Vec<(PortId, MacAddr, u16, bool)> = t
            .ports()
            .filter_map(|(id, p)| p.endpoint().map(|e| (id, e.mac, e.vlan, e.up)))
            .collect();
        // Every third endpoint is out of the kernel's reach (in-process).
        let unreachable: HashSet<PortId> = eps.iter().map(|e| e.0).step_by(3).collect();
        for masked in [false, true] {
            let reach = |p: PortId| {
                if masked && unreachable.contains(&p) {
                    Reach::default()
                } else {
                    Reach {
                        ingress: true,
                        egress: true,
                    }
                }
            };
            let ft = FastTable::compile(&t, reach);
            let mut dsts: Vec<MacAddr> = eps.iter().map(|e| e.1).collect();
            dsts.extend([PARENT, BCAST, G1, G3]);
            dsts.extend(EXT);
            dsts.extend(UNKNOWN);
            let srcs = dsts.clone();
            let vlan_ids: Vec<u16> = [0u16, 20, 30, 99].to_vec();
            for &(x, own, _, _) in &eps {
                for &dst in &dsts {
                    for &src in &[own, EXT[0], ep_mac(2)] {
                        for tagged in [false, true] {
                            for payload in [46usize, 1500, 1501] {
                                let f = Facts {
                                    dst,
                                    src,
                                    vlan: 0,
                                    ethertype: EtherType::IPV4,
                                };
                                checked += 1;
                                let Some(q) = ft.from_endpoint(x, own, &f, tagged, payload) else {
                                    continue;
                                };
                                fast_taken += 1;
                                let v = decide(x, &f, &t);
                                assert_eq!(
                                    v,
                                    Verdict::Forward(q),
                                    "{name}: {x} {src} -> {dst}: fast to {q}, decide {v:?}"
                                );
                                assert!(
                                    !tagged
                                        && q != x
                                        && !(masked && unreachable.contains(&q) && q != UPLINK),
                                    "{name}: {x} -> {dst} fast to {q}"
                                );
                                assert!(payload <= t.port(q).unwrap().mtu as usize);
                            }
                        }
                    }
                }
            }
            for &dst in &dsts {
                for &src in &srcs {
                    for &vlan in &vlan_ids {
                        for inner in [false, true] {
                            let f = Facts {
                                dst,
                                src,
                                vlan,
                                ethertype: EtherType::IPV4,
                            };
                            let src_ep = t.lookup(vlan, src).is_some();
                            let (sources, passthru) = (t.has_sources(), t.passthru().is_some());
                            checked += 1;
                            let Some(q) = ft.from_wire(&f, inner, 100, src_ep, sources, passthru)
                            else {
                                continue;
                            };
                            fast_taken += 1;
                            let v = decide(UPLINK, &f, &t);
                            assert_eq!(v, Verdict::Forward(q), "{name}: wire {src} -> {dst} vlan {vlan}: fast to {q}, decide {v:?}");
                            assert!(
                                !(masked && unreachable.contains(&q)),
                                "{name}: wire fast to unreachable {q}"
                            );
                        }
                    }
                }
            }
        }
    }
    // The fast path is not vacuous: it takes a good share of what it may.
    assert!(
        fast_taken > 1000,
        "fast path taken {fast_taken} of {checked} times"
    );
}
