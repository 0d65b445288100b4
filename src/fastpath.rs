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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// The egress port (an endpoint or the uplink); `None`: the switch decides.
    pub egress: Option<PortId>,
    /// The egress's MTU: a longer payload goes to the switch (which counts it).
    pub mtu: u16,
}

/// The compiled fast path of one switch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FastTable {
    /// (ingress endpoint, destination MAC) → entry, for every MAC the table knows in
    /// the ingress's network (endpoints, up or down, and the parent's).
    pub exact: BTreeMap<(PortId, MacAddr), Entry>,
    /// Ingress endpoint → entry for every other unicast destination.
    pub default: BTreeMap<PortId, Entry>,
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

impl FastTable {
    /// Compiles the fast path of table `t`; `reach` says what the kernel can do for
    /// each port.
    pub fn compile(t: &PortTable, reach: impl Fn(PortId) -> Reach) -> FastTable {
        let mut out = FastTable::default();
        // An egress the kernel reaches, with its MTU.
        let single = |v: Verdict| -> Entry {
            match v {
                Verdict::Forward(q) if q == t.uplink() || reach(q).egress => Entry {
                    egress: Some(q),
                    mtu: t.port(q).map_or(0, |p| p.mtu),
                },
                _ => Entry {
                    egress: None,
                    mtu: 0,
                },
            }
        };
        for (x, info) in t.ports() {
            let Some(e) = info.endpoint() else { continue };
            if !e.up || !reach(x).ingress {
                continue;
            }
            let known: BTreeSet<MacAddr> = t
                .members(e.vlan)
                .iter()
                .filter_map(|&p| t.endpoint(p).map(|m| m.mac))
                .chain([t.parent_mac()])
                .collect();
            let facts = |dst| Facts {
                dst,
                src: e.mac,
                vlan: 0,
                ethertype: EtherType::IPV4,
            };
            let default = single(decide(x, &facts(unknown_mac(&known)), t));
            out.default.insert(x, default);
            for &d in &known {
                let entry = single(decide(x, &facts(d), t));
                if entry != default {
                    out.exact.insert((x, d), entry);
                }
            }
        }
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
    /// `payload`: its length after the Ethernet header.
    pub fn from_endpoint(
        &self,
        x: PortId,
        own_mac: MacAddr,
        f: &Facts,
        tagged: bool,
        payload: usize,
    ) -> Option<PortId> {
        if tagged || f.dst.is_multicast() || f.src != own_mac {
            return None;
        }
        let e = self
            .exact
            .get(&(x, f.dst))
            .or_else(|| self.default.get(&x))?;
        e.egress.filter(|_| payload <= e.mtu as usize)
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

    /// Entries in all.
    pub fn len(&self) -> usize {
        self.exact.len() + self.default.len() + self.wire.len()
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

    #[test]
    fn bridge_siblings_go_direct_and_everything_else_by_its_rule() {
        let mut t = topo();
        let a = t
            .add_endpoint(EndpointConfig::new("a", Mode::Bridge).with_mac(mac(1)))
            .unwrap();
        let b = t
            .add_endpoint(EndpointConfig::new("b", Mode::Bridge).with_mac(mac(2)))
            .unwrap();
        let v = t
            .add_endpoint(EndpointConfig::new("v", Mode::Vepa).with_mac(mac(3)))
            .unwrap();
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
        let mut t = topo();
        let a = t
            .add_endpoint(EndpointConfig::new("a", Mode::Bridge).with_mac(mac(1)))
            .unwrap();
        let b = t
            .add_endpoint(EndpointConfig::new("b", Mode::Bridge).with_mac(mac(2)))
            .unwrap();
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
        assert!(!ft.default.contains_key(&b));
        assert!(!ft.wire.contains_key(&(0, mac(2))));
    }
}
