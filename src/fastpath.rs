//! The kernel fast path's forwarding, compiled from the port table by [`decide`].
//!
//! Frames whose verdict is one unicast egress with nothing for the switch to do can
//! be forwarded by the kernel itself (a tc program redirecting the skb straight into
//! the destination's namespace, or to the parent), without the round trip through
//! AF_XDP and userspace. Userspace stays the one place where forwarding is decided:
//! [`FastTable::compile`] asks [`decide`] — the datapath's own function — what each
//! frame the kernel could see gets, and writes an entry only where the answer is
//! exactly one egress the kernel can reach. Everything else (broadcast, multicast,
//! unknown unicast that floods, strict private, source mode, passthru, a frame above
//! the egress MTU, an endpoint not yet published) has no entry, or an explicit
//! "to the switch" one, and takes the AF_XDP path.
//!
//! [`FastTable::from_endpoint`] and [`FastTable::from_wire`] state what the kernel
//! programs do with the table, rule by rule; `tests` holds them to [`decide`] for
//! every scenario of the simulation.

use std::collections::{BTreeMap, BTreeSet};

use crate::mode::{decide, Facts, Verdict};
use crate::port::PortId;
use crate::view::PortTable;
use crate::wire::{EtherType, MacAddr};

/// What the kernel can do for a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Frames the port sends pass the kernel's fast-path program first (an endpoint
    /// veth with the tc program instead of XDP).
    pub ingress: bool,
    /// The kernel can deliver into the port directly (a veth whose peer is in
    /// another namespace: `bpf_redirect_peer`).
    pub egress: bool,
}

/// One fast-path entry: where the kernel sends the frame, or `None`: to the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The egress port (an endpoint or the uplink); `None`: the switch decides.
    pub egress: Option<PortId>,
    /// The egress's MTU: a longer payload goes to the switch (which counts it).
    pub mtu: u16,
    /// Towards the uplink: the tag pushed (the sender's network's VLAN, 0 = none).
    pub vlan: u16,
}

impl Entry {
    /// The switch decides.
    pub const SWITCH: Entry = Entry {
        egress: None,
        mtu: 0,
        vlan: 0,
    };
}

/// What the kernel does with the unicast a sender sends: an entry per destination
/// MAC the table knows in its network (where it differs from the default), and the
/// default for every other destination. A frame to the sender's own MAC always goes
/// to the switch. Senders with the same row share it (a *class*), so the kernel
/// holds one row per class, not one per sender: bridge-mode siblings of a network
/// have one between them, and the entries grow with the endpoints, not their square.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    /// For destinations without an entry.
    pub default: Entry,
    /// Destination MAC → entry.
    pub exact: BTreeMap<MacAddr, Entry>,
}

/// The compiled fast path of one switch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FastTable {
    /// The distinct rows, by class number.
    pub classes: Vec<Row>,
    /// Ingress endpoint → its class (an index into `classes`).
    pub ingress: BTreeMap<PortId, usize>,
    /// Endpoints the wire reaches directly: (VLAN, MAC) → endpoint and its MTU, for
    /// unicast from a source that is not an endpoint's.
    pub wire: BTreeMap<(u16, MacAddr), (PortId, u16)>,
}

/// A MAC none of `known` is: the representative of every unknown destination.
fn unknown_mac(known: &BTreeSet<MacAddr>) -> MacAddr {
    (1u32..)
        .map(|i| {
            let b = i.to_be_bytes();
            MacAddr::new([0x02, 0xfa, b[0], b[1], b[2], b[3]])
        })
        .find(|m| !known.contains(m))
        .expect("a free MAC")
}

/// A source MAC no endpoint of `t` has.
fn foreign_mac(t: &PortTable) -> MacAddr {
    let known: BTreeSet<MacAddr> = t
        .ports()
        .filter_map(|(_, p)| p.endpoint().map(|e| e.mac))
        .chain([t.parent_mac()])
        .collect();
    unknown_mac(&known)
}

/// A class being formed: its default and, per known destination, its entry or `None`
/// where only a member's own MAC is (whose frames never use the slot).
struct Class {
    default: Entry,
    full: BTreeMap<MacAddr, Option<Entry>>,
}

impl Class {
    /// Whether a sender with MAC `own`, `default` and entries `row` (every known
    /// destination but `own`) forwards every frame it may send as this class does.
    fn admits(&self, default: Entry, own: MacAddr, row: &BTreeMap<MacAddr, Entry>) -> bool {
        default == self.default
            && row.iter().all(|(d, e)| match self.full.get(d) {
                Some(Some(c)) => c == e,
                Some(None) => true,
                None => *e == self.default,
            })
            && self
                .full
                .iter()
                .all(|(d, c)| *d == own || row.contains_key(d) || c.is_none_or(|c| c == default))
    }

    fn join(&mut self, own: MacAddr, row: BTreeMap<MacAddr, Entry>) {
        for (d, e) in row {
            let slot = self.full.entry(d).or_insert(None);
            if slot.is_none() {
                *slot = Some(e);
            }
        }
        self.full.entry(own).or_insert(None);
    }

    /// The row: entries that differ from the default (a slot only a member's own MAC
    /// fills takes the default: no frame uses it).
    fn into_row(self) -> Row {
        let default = self.default;
        Row {
            default,
            exact: self
                .full
                .into_iter()
                .filter_map(|(d, e)| e.filter(|e| *e != default).map(|e| (d, e)))
                .collect(),
        }
    }
}

impl FastTable {
    /// Compiles the fast path of table `t`; `reach` says what the kernel can do for
    /// each port.
    pub fn compile(t: &PortTable, reach: impl Fn(PortId) -> Reach) -> FastTable {
        let mut out = FastTable::default();
        let mut cands: Vec<Class> = Vec::new();
        // (network, mode) → the first sender's MAC and class.
        let mut reps: BTreeMap<(u16, u8), (MacAddr, usize)> = BTreeMap::new();
        let mut known_of: BTreeMap<u16, (BTreeSet<MacAddr>, MacAddr)> = BTreeMap::new();
        // An egress the kernel reaches, with its MTU (and the sender's tag, to the wire).
        let single = |v: Verdict, vlan: u16| -> Entry {
            match v {
                Verdict::Forward(q) if q == t.uplink() || reach(q).egress => Entry {
                    egress: Some(q),
                    mtu: t.port(q).map_or(0, |p| p.mtu),
                    vlan: if q == t.uplink() { vlan } else { 0 },
                },
                _ => Entry::SWITCH,
            }
        };
        for (x, info) in t.ports() {
            let Some(e) = info.endpoint() else { continue };
            if !e.up || !reach(x).ingress {
                continue;
            }
            // The MACs its network knows, and one it does not (once per network).
            let (known, unknown) = known_of.entry(e.vlan).or_insert_with(|| {
                let k: BTreeSet<MacAddr> = t
                    .members(e.vlan)
                    .iter()
                    .filter_map(|&p| t.endpoint(p).map(|m| m.mac))
                    .chain([t.parent_mac()])
                    .collect();
                let u = unknown_mac(&k);
                (k, u)
            });
            let facts = |dst| Facts {
                dst,
                src: e.mac,
                vlan: 0,
                ethertype: EtherType::IPV4,
            };
            let default = single(decide(x, &facts(*unknown), t), e.vlan);
            // Senders alike in all that decide reads of a sender — network, mode, up,
            // and no source-mode entry listing its MAC — forward alike: the first of
            // them is asked about every destination, each other one about that first
            // one's MAC only (the slot its own row left open), so a compile costs
            // O(endpoints), not their square. tests/sim.rs holds every sender's
            // result to decide.
            let alike = t.sources(e.vlan, e.mac).is_empty();
            let key = (e.vlan, e.mode as u8);
            if let Some(&(r_mac, c)) = reps.get(&key).filter(|_| alike) {
                let entry = single(decide(x, &facts(r_mac), t), e.vlan);
                let class = &mut cands[c];
                let fits = class.default == default
                    && match class.full.get(&r_mac) {
                        None | Some(None) => true,
                        Some(Some(had)) => *had == entry,
                    };
                if fits {
                    class.full.insert(r_mac, Some(entry));
                    class.full.entry(e.mac).or_insert(None);
                    out.ingress.insert(x, c);
                    continue;
                }
            }
            // Every destination but its own MAC (those frames are the switch's).
            let row: BTreeMap<MacAddr, Entry> = known
                .iter()
                .filter(|&&d| d != e.mac)
                .map(|&d| (d, single(decide(x, &facts(d), t), e.vlan)))
                .collect();
            let c = match cands.iter().position(|c| c.admits(default, e.mac, &row)) {
                Some(i) => i,
                None => {
                    cands.push(Class {
                        default,
                        full: BTreeMap::new(),
                    });
                    cands.len() - 1
                }
            };
            cands[c].join(e.mac, row);
            out.ingress.insert(x, c);
            if alike {
                reps.entry(key).or_insert((e.mac, c));
            }
        }
        out.classes = cands.into_iter().map(Class::into_row).collect();
        // From the wire: a source-mode entry or a passthru endpoint puts every frame's
        // fate in the switch's hands (the kernel program checks the same flags).
        if t.passthru().is_none() && !t.has_sources() {
            let src = foreign_mac(t);
            for (p, info) in t.ports() {
                let Some(e) = info.endpoint() else { continue };
                if !e.up || !reach(p).egress {
                    continue;
                }
                let f = Facts {
                    dst: e.mac,
                    src,
                    vlan: e.vlan,
                    ethertype: EtherType::IPV4,
                };
                if decide(t.uplink(), &f, t) == Verdict::Forward(p) {
                    out.wire.insert((e.vlan, e.mac), (p, info.mtu));
                }
            }
        }
        out
    }

    /// What the kernel does with a frame endpoint `x` sent: `Some(egress)` forwards
    /// it there, `None` hands it to the switch. `tagged`: it carries a VLAN tag;
    /// `payload`: its length after the Ethernet header. (The kernel program forwards
    /// a GSO skb whatever its length, as the kernel's `dev_forward_skb` does for a
    /// macvlan child; the switch never sees one that large.)
    pub fn from_endpoint(
        &self,
        x: PortId,
        own_mac: MacAddr,
        f: &Facts,
        tagged: bool,
        payload: usize,
    ) -> Option<PortId> {
        if tagged || f.dst.is_multicast() || f.src != own_mac || f.dst == own_mac {
            return None;
        }
        let row = self.classes.get(*self.ingress.get(&x)?)?;
        let e = row.exact.get(&f.dst).unwrap_or(&row.default);
        e.egress.filter(|_| payload <= e.mtu as usize)
    }

    /// Whether any entry forwards to `p` or takes frames from it (for checks after
    /// a port is removed).
    pub fn names(&self, p: PortId) -> bool {
        let to_p = |e: &Entry| e.egress == Some(p);
        self.ingress.contains_key(&p)
            || self
                .ingress
                .values()
                .filter_map(|&c| self.classes.get(c))
                .any(|r| to_p(&r.default) || r.exact.values().any(to_p))
            || self.wire.values().any(|(q, _)| *q == p)
    }

    /// What the kernel does with a frame from the wire: `Some(endpoint)` delivers it
    /// there, `None` hands it to the switch. `inner_tag`: a second VLAN tag follows
    /// the outer one; `payload`: its length after the Ethernet header and tags;
    /// `src_is_endpoint`: the source MAC is an UP endpoint's in the frame's VLAN
    /// (the kernel program's FDB lookup); `sources`, `passthru`: the parent's flags.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        &self,
        f: &Facts,
        inner_tag: bool,
        payload: usize,
        src_is_endpoint: bool,
        sources: bool,
        passthru: bool,
    ) -> Option<PortId> {
        if passthru || sources || inner_tag || src_is_endpoint || f.dst.is_multicast() {
            return None;
        }
        let &(p, mtu) = self.wire.get(&(f.vlan, f.dst))?;
        (payload <= mtu as usize).then_some(p)
    }

    /// Entries the kernel holds: one per sender, one per destination of each class,
    /// one per endpoint reachable from the wire.
    pub fn len(&self) -> usize {
        self.ingress.len()
            + self.classes.iter().map(|r| r.exact.len()).sum::<usize>()
            + self.wire.len()
    }

    /// No entries at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::Mode;
    use crate::topology::{EndpointConfig, ParentConfig, Topology, UPLINK};

    fn topo() -> Topology {
        let parent = ParentConfig {
            name: "eth1".into(),
            mac: "02:00:00:00:00:fe".parse().unwrap(),
            mtu: 1500,
        };
        Topology::new(parent, true).unwrap()
    }

    fn mac(i: u8) -> MacAddr {
        MacAddr::new([2, 0, 0, 0, 0, i])
    }

    fn all(_: PortId) -> Reach {
        Reach {
            ingress: true,
            egress: true,
        }
    }

    /// Endpoints `(name, mode)` with MACs 02:..:01, 02:..:02, ...
    fn with_endpoints(eps: &[(&str, Mode)]) -> (Topology, Vec<PortId>) {
        let mut t = topo();
        let ids = eps
            .iter()
            .zip(1..)
            .map(|(&(name, mode), i)| {
                t.add_endpoint(EndpointConfig::new(name, mode).with_mac(mac(i)))
                    .unwrap()
            })
            .collect();
        (t, ids)
    }

    #[test]
    fn bridge_siblings_go_direct_and_everything_else_by_its_rule() {
        let (t, ids) =
            with_endpoints(&[("a", Mode::Bridge), ("b", Mode::Bridge), ("v", Mode::Vepa)]);
        let (a, b, v) = (ids[0], ids[1], ids[2]);
        let ft = FastTable::compile(&t.table(), all);
        let f = |src, dst| Facts {
            dst,
            src,
            vlan: 0,
            ethertype: EtherType::IPV4,
        };
        assert_eq!(
            ft.from_endpoint(a, mac(1), &f(mac(1), mac(2)), false, 60),
            Some(b)
        );
        // T3: to a VEPA sibling, and anywhere unknown, by the wire.
        assert_eq!(
            ft.from_endpoint(a, mac(1), &f(mac(1), mac(3)), false, 60),
            Some(UPLINK)
        );
        assert_eq!(
            ft.from_endpoint(a, mac(1), &f(mac(1), mac(99)), false, 60),
            Some(UPLINK)
        );
        // Its own MAC (Loop), a spoofed source, a tag, a broadcast, a long frame: the switch.
        assert_eq!(
            ft.from_endpoint(a, mac(1), &f(mac(1), mac(1)), false, 60),
            None
        );
        assert_eq!(
            ft.from_endpoint(a, mac(1), &f(mac(9), mac(2)), false, 60),
            None
        );
        assert_eq!(
            ft.from_endpoint(a, mac(1), &f(mac(1), mac(2)), true, 60),
            None
        );
        let bc = f(mac(1), MacAddr::BROADCAST);
        assert_eq!(ft.from_endpoint(a, mac(1), &bc, false, 60), None);
        assert_eq!(
            ft.from_endpoint(a, mac(1), &f(mac(1), mac(2)), false, 1501),
            None
        );
        // T4: VEPA sends everything to the wire.
        assert_eq!(
            ft.from_endpoint(v, mac(3), &f(mac(3), mac(1)), false, 60),
            Some(UPLINK)
        );
        // From the wire, W1 from a foreign source; a reflected frame goes to the switch.
        assert_eq!(
            ft.from_wire(&f(mac(50), mac(2)), false, 60, false, false, false),
            Some(b)
        );
        assert_eq!(
            ft.from_wire(&f(mac(3), mac(2)), false, 60, true, false, false),
            None
        );
    }

    #[test]
    fn only_ports_the_kernel_reaches_get_entries() {
        let (t, ids) = with_endpoints(&[("a", Mode::Bridge), ("b", Mode::Bridge)]);
        let (a, b) = (ids[0], ids[1]);
        // b is in-process: no ingress program, not reachable by a redirect.
        let ft = FastTable::compile(
            &t.table(),
            |p| {
                if p == b {
                    Reach::default()
                } else {
                    all(p)
                }
            },
        );
        let f = Facts {
            dst: mac(2),
            src: mac(1),
            vlan: 0,
            ethertype: EtherType::IPV4,
        };
        assert_eq!(ft.from_endpoint(a, mac(1), &f, false, 60), None);
        assert!(!ft.ingress.contains_key(&b));
        assert!(!ft.wire.contains_key(&(0, mac(2))));
    }

    #[test]
    fn siblings_share_a_row_so_entries_grow_with_the_endpoints() {
        let mut t = topo();
        for i in 0..300u16 {
            let mode = if i % 3 == 2 { Mode::Vepa } else { Mode::Bridge };
            let m = MacAddr::new([2, 0, 0, 0, (i >> 8) as u8 + 1, i as u8]);
            t.add_endpoint(EndpointConfig::new(format!("e{i}"), mode).with_mac(m))
                .unwrap();
        }
        let ft = FastTable::compile(&t.table(), all);
        // The 200 bridge senders share one row (an entry per bridge sibling), the 100
        // VEPA senders another (everything by the wire): 200 entries, not 300².
        assert_eq!(ft.ingress.len(), 300);
        assert_eq!(
            ft.classes.len(),
            2,
            "{:?}",
            ft.classes.iter().map(|r| r.exact.len()).collect::<Vec<_>>()
        );
        // Senders, the bridge class's entries, and one per endpoint from the wire.
        assert_eq!(ft.len(), 300 + 200 + 300);
    }
}
