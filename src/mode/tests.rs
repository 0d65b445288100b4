//! The truth table: one row per rule of `shared/spec/macvlan-semantics.md`, named by
//! its id, plus the invariants every verdict must satisfy.

use super::*;
use crate::view::{McFilter, PortInfo};
use std::sync::Arc;

const UPLINK: PortId = PortId(0);
const HOST: PortId = PortId(1);
const PARENT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xff]);
const EXT: MacAddr = MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
const UNKNOWN: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x01]);
const GROUP: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0, 0, 0xfb]);
const BCAST: MacAddr = MacAddr::BROADCAST;

/// Endpoint `i` (1-based) is port `i + 1` with MAC 02:00:00:00:00:0i.
fn e(i: u16) -> PortId {
    PortId(i + 1)
}
fn mac(i: u16) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, i as u8])
}

/// One endpoint of a fixture.
#[derive(Clone)]
struct Ep {
    mode: Mode,
    up: bool,
    nodst: bool,
    strict: bool,
    mc: McFilter,
    sources: Vec<MacAddr>,
}

fn ep(mode: Mode) -> Ep {
    Ep {
        mode,
        up: true,
        nodst: false,
        strict: false,
        mc: McFilter::All,
        sources: vec![],
    }
}

fn table(eps: &[Ep]) -> PortTable {
    let info = |name: &str, role| PortInfo {
        name: Arc::from(name),
        role,
        mtu: 1500,
    };
    let mut t = PortTable::new(
        UPLINK,
        info("uplink", Role::Uplink),
        Some((HOST, info("host", Role::Host))),
        PARENT,
    );
    t.add_network(0);
    for (i, x) in eps.iter().enumerate() {
        let i = i as u16 + 1;
        let m = if x.mode == Mode::Passthru {
            PARENT
        } else {
            mac(i)
        };
        let ei = EndpointInfo {
            mac: m,
            mode: x.mode,
            vlan: 0,
            up: x.up,
            nodst: x.nodst,
            strict: x.strict,
            mc: x.mc.clone(),
        };
        t.add_endpoint(e(i), info(&format!("e{i}"), Role::Endpoint(ei)), &x.sources)
            .unwrap();
    }
    t
}

fn facts(dst: MacAddr, src: MacAddr) -> Facts {
    Facts {
        dst,
        src,
        vlan: 0,
        ethertype: EtherType::IPV4,
    }
}

fn pause(src: MacAddr) -> Facts {
    Facts {
        dst: MacAddr([0x01, 0x80, 0xc2, 0, 0, 1]),
        src,
        vlan: 0,
        ethertype: EtherType::PAUSE,
    }
}

fn set(ports: &[PortId]) -> Verdict {
    match ports {
        [] => panic!("use a drop"),
        [p] => Verdict::Forward(*p),
        _ => Verdict::Multi(ports.iter().copied().collect()),
    }
}

/// A row: rule id, endpoints, ingress port, frame facts, expected verdict.
struct Row {
    id: &'static str,
    eps: Vec<Ep>,
    ingress: PortId,
    f: Facts,
    want: Verdict,
}

/// The rule [`explain`] must name for row `id` (its leading rule id; `None` where the
/// row shows a rule not applying).
fn rule_of_row(id: &str, want: &Verdict) -> Option<&'static str> {
    let ids = [
        "T1", "T2", "T3", "T4", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9",
    ];
    Some(match id {
        _ if id.starts_with("S3.1 non-listed") => return None,
        _ if id.starts_with("S2.2") => "§2.2",
        _ if id.starts_with("S3.1") => "§3.1",
        _ if id.starts_with("diff: bridge") => "loop",
        _ if id.starts_with("diff: tagged") => "unknown-vlan",
        _ if id.starts_with("strict private") => {
            if *want == Verdict::Drop(DropReason::PrivateIsolation) {
                "strict"
            } else {
                "W1"
            }
        }
        _ if id.starts_with("down endpoint") => "down",
        _ if id.starts_with("unknown ingress") => "unknown-port",
        _ => ids
            .into_iter()
            .find(|r| id.split_whitespace().next() == Some(*r))
            .unwrap_or_else(|| panic!("row {id:?} names no rule")),
    })
}

fn check(rows: Vec<Row>) {
    let mut failed = Vec::new();
    for r in rows {
        let t = table(&r.eps);
        let got = decide(r.ingress, &r.f, &t);
        // `explain` is the same decision, and names the row's rule.
        let (explained, rules) = explain(r.ingress, &r.f, &t);
        assert_eq!(explained, got, "{}: explain and decide differ", r.id);
        let named: Vec<&str> = rules.iter().map(|r| r.id()).collect();
        if let Some(want) = rule_of_row(r.id, &r.want) {
            if !named.contains(&want) {
                failed.push(format!("{}: explain names {named:?}, not {want}", r.id));
            }
        }
        // A Multi of one port and a Forward to it mean the same delivery.
        if got.targets() != r.want.targets()
            || matches!(got, Verdict::Drop(_)) != matches!(r.want, Verdict::Drop(_))
            || (matches!(got, Verdict::Drop(_)) && got != r.want)
        {
            failed.push(format!("{}: got {:?}, want {:?}", r.id, got, r.want));
        }
    }
    assert!(failed.is_empty(), "rules broken:\n{}", failed.join("\n"));
}

use Mode::{Bridge as B, Passthru as P, Private as PR, Source as S, Vepa as V};

fn mixed() -> Vec<Ep> {
    // e1 bridge, e2 bridge, e3 vepa, e4 private, e5 vepa
    vec![ep(B), ep(B), ep(V), ep(PR), ep(V)]
}

#[test]
fn t1_to_t4_endpoint_transmit() {
    let mut e2_no_groups = mixed();
    e2_no_groups[1].mc = McFilter::Groups(Arc::from([]));
    let mut e2_down = mixed();
    e2_down[1].up = false;
    check(vec![
        Row {
            id: "T1 bridge broadcast: other bridge siblings + wire",
            eps: mixed(),
            ingress: e(1),
            f: facts(BCAST, mac(1)),
            want: set(&[UPLINK, e(2)]),
        },
        Row {
            id: "T1 bridge multicast filtered by mc_filter",
            eps: e2_no_groups.clone(),
            ingress: e(1),
            f: facts(GROUP, mac(1)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T1 broadcast always passes mc_filter",
            eps: e2_no_groups,
            ingress: e(1),
            f: facts(BCAST, mac(1)),
            want: set(&[UPLINK, e(2)]),
        },
        Row {
            id: "T1 PAUSE never flooded",
            eps: mixed(),
            ingress: e(1),
            f: pause(mac(1)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T1 down sibling not flooded",
            eps: e2_down.clone(),
            ingress: e(1),
            f: facts(BCAST, mac(1)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T2 bridge to up bridge sibling: local only",
            eps: mixed(),
            ingress: e(1),
            f: facts(mac(2), mac(1)),
            want: set(&[e(2)]),
        },
        Row {
            id: "T3 bridge to vepa sibling: wire",
            eps: mixed(),
            ingress: e(1),
            f: facts(mac(3), mac(1)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T3 bridge to private sibling: wire",
            eps: mixed(),
            ingress: e(1),
            f: facts(mac(4), mac(1)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T3 bridge to parent MAC: wire",
            eps: mixed(),
            ingress: e(1),
            f: facts(PARENT, mac(1)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T3 bridge to unknown: wire",
            eps: mixed(),
            ingress: e(1),
            f: facts(UNKNOWN, mac(1)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T3 bridge to down bridge sibling: wire",
            eps: e2_down,
            ingress: e(1),
            f: facts(mac(2), mac(1)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T4 vepa to bridge sibling: wire",
            eps: mixed(),
            ingress: e(3),
            f: facts(mac(1), mac(3)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T4 vepa broadcast: wire only",
            eps: mixed(),
            ingress: e(3),
            f: facts(BCAST, mac(3)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T4 private to vepa sibling: wire",
            eps: mixed(),
            ingress: e(4),
            f: facts(mac(5), mac(4)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T4 private broadcast: wire only",
            eps: mixed(),
            ingress: e(4),
            f: facts(BCAST, mac(4)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T4 passthru: wire",
            eps: vec![ep(P)],
            ingress: e(1),
            f: facts(BCAST, PARENT),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T4 source: wire",
            eps: vec![ep(B), ep(S)],
            ingress: e(2),
            f: facts(mac(1), mac(2)),
            want: set(&[UPLINK]),
        },
        Row {
            id: "T4 vepa to parent MAC: wire, never host",
            eps: mixed(),
            ingress: e(3),
            f: facts(PARENT, mac(3)),
            want: set(&[UPLINK]),
        },
    ]);
}

#[test]
fn w1_to_w5_wire_unicast() {
    let mut down = mixed();
    down[2].up = false;
    let mut pt_down = vec![ep(P)];
    pt_down[0].up = false;
    check(vec![
        Row {
            id: "W1 to a vepa endpoint",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(mac(3), EXT),
            want: set(&[e(3)]),
        },
        Row {
            id: "W1 to a bridge endpoint",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(mac(1), EXT),
            want: set(&[e(1)]),
        },
        Row {
            id: "W1 reflected private->private unicast is delivered",
            eps: vec![ep(PR), ep(PR)],
            ingress: UPLINK,
            f: facts(mac(2), mac(1)),
            want: set(&[e(2)]),
        },
        Row {
            id: "W1 reflected to the sender's own MAC",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(mac(3), mac(3)),
            want: set(&[e(3)]),
        },
        Row {
            id: "W2 parent's own MAC: host",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(PARENT, EXT),
            want: set(&[HOST]),
        },
        Row {
            id: "W3 unknown unicast: host",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(UNKNOWN, EXT),
            want: set(&[HOST]),
        },
        Row {
            id: "W3 down endpoint: host",
            eps: down,
            ingress: UPLINK,
            f: facts(mac(3), EXT),
            want: set(&[HOST]),
        },
        Row {
            id: "W4 source endpoint's MAC: host",
            eps: vec![ep(B), ep(S)],
            ingress: UPLINK,
            f: facts(mac(2), EXT),
            want: set(&[HOST]),
        },
        Row {
            id: "W5 passthru gets the parent's unicast",
            eps: vec![ep(P)],
            ingress: UPLINK,
            f: facts(PARENT, EXT),
            want: set(&[e(1)]),
        },
        Row {
            id: "W5 passthru gets unknown unicast",
            eps: vec![ep(P)],
            ingress: UPLINK,
            f: facts(UNKNOWN, EXT),
            want: set(&[e(1)]),
        },
        Row {
            id: "W5 passthru down: dropped, never host",
            eps: pt_down,
            ingress: UPLINK,
            f: facts(PARENT, EXT),
            want: Verdict::Drop(DropReason::PassthruDown),
        },
    ]);
}

#[test]
fn w6_to_w9_wire_multicast() {
    let mut groups = mixed();
    groups[2].mc = McFilter::Groups(Arc::from([GROUP]));
    groups[4].mc = McFilter::Groups(Arc::from([]));
    groups[3].mc = McFilter::Groups(Arc::from([]));
    let with_source = vec![
        ep(B),
        ep(V),
        ep(PR),
        Ep {
            sources: vec![EXT],
            ..ep(S)
        },
    ];
    check(vec![
        Row {
            id: "W6 external broadcast: every non-source endpoint + host",
            eps: with_source.clone(),
            ingress: UPLINK,
            f: facts(BCAST, EXT),
            want: set(&[HOST, e(1), e(2), e(3), e(4)]),
        },
        Row {
            id: "W6 source endpoints are never flooded",
            eps: vec![ep(B), ep(S)],
            ingress: UPLINK,
            f: facts(BCAST, EXT),
            want: set(&[HOST, e(1)]),
        },
        Row {
            id: "W6 the parent's own broadcast reflected",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(BCAST, PARENT),
            want: set(&[HOST, e(1), e(2), e(3), e(4), e(5)]),
        },
        Row {
            id: "W6 multicast honours mc_filter",
            eps: groups.clone(),
            ingress: UPLINK,
            f: facts(GROUP, EXT),
            want: set(&[HOST, e(1), e(2), e(3)]),
        },
        Row {
            id: "W6 passthru endpoint flooded",
            eps: vec![ep(P)],
            ingress: UPLINK,
            f: facts(BCAST, EXT),
            want: set(&[HOST, e(1)]),
        },
        Row {
            id: "W6 PAUSE: host only",
            eps: mixed(),
            ingress: UPLINK,
            f: pause(EXT),
            want: set(&[HOST]),
        },
        Row {
            id: "W7 reflected vepa broadcast: vepa+bridge others + host",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(BCAST, mac(3)),
            want: set(&[HOST, e(1), e(2), e(5)]),
        },
        Row {
            id: "W8 reflected bridge broadcast: vepa others + host",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(BCAST, mac(1)),
            want: set(&[HOST, e(3), e(5)]),
        },
        Row {
            id: "W9 reflected private broadcast: sender only, no host",
            eps: mixed(),
            ingress: UPLINK,
            f: facts(BCAST, mac(4)),
            want: set(&[e(4)]),
        },
        Row {
            id: "W9 skips mc_filter",
            eps: groups,
            ingress: UPLINK,
            f: facts(GROUP, mac(4)),
            want: set(&[e(4)]),
        },
        Row {
            id: "W9 passthru: the host's own broadcast goes to the endpoint only",
            eps: vec![ep(P)],
            ingress: UPLINK,
            f: facts(BCAST, PARENT),
            want: set(&[e(1)]),
        },
        Row {
            id: "W9 source-mode sender",
            eps: vec![ep(B), ep(S)],
            ingress: UPLINK,
            f: facts(BCAST, mac(2)),
            want: set(&[e(2)]),
        },
    ]);
}

#[test]
fn source_mode_with_and_without_nodst() {
    let src = |nodst: bool, up: bool| {
        vec![
            ep(B),
            ep(V),
            Ep {
                sources: vec![EXT, mac(1)],
                nodst,
                up,
                ..ep(S)
            },
        ]
    };
    check(vec![
        Row {
            id: "S3.1 unicast from a listed source: copy + normal delivery",
            eps: src(false, true),
            ingress: UPLINK,
            f: facts(mac(2), EXT),
            want: set(&[e(2), e(3)]),
        },
        Row {
            id: "S3.1 unknown unicast: copy + host",
            eps: src(false, true),
            ingress: UPLINK,
            f: facts(UNKNOWN, EXT),
            want: set(&[HOST, e(3)]),
        },
        Row {
            id: "S3.1 broadcast: copy + W6 flood + host",
            eps: src(false, true),
            ingress: UPLINK,
            f: facts(BCAST, EXT),
            want: set(&[HOST, e(1), e(2), e(3)]),
        },
        Row {
            id: "S3.1 nodst: consumed, copy only, host too loses it",
            eps: src(true, true),
            ingress: UPLINK,
            f: facts(mac(2), EXT),
            want: set(&[e(3)]),
        },
        Row {
            id: "S3.1 nodst broadcast: copy only",
            eps: src(true, true),
            ingress: UPLINK,
            f: facts(BCAST, EXT),
            want: set(&[e(3)]),
        },
        Row {
            id: "S3.1 nodst with the endpoint down still consumes",
            eps: src(true, false),
            ingress: UPLINK,
            f: facts(BCAST, EXT),
            want: Verdict::Drop(DropReason::NodstConsumed),
        },
        Row {
            id: "S3.1 non-listed source: no copy",
            eps: src(false, true),
            ingress: UPLINK,
            f: facts(mac(2), UNKNOWN),
            want: set(&[e(2)]),
        },
        Row {
            id: "T2 bridge-local unicast also gets the source copy",
            eps: vec![
                ep(B),
                ep(B),
                Ep {
                    sources: vec![mac(1)],
                    ..ep(S)
                },
            ],
            ingress: e(1),
            f: facts(mac(2), mac(1)),
            want: set(&[e(2), e(3)]),
        },
        Row {
            id: "T2 bridge-local unicast consumed by nodst",
            eps: vec![
                ep(B),
                ep(B),
                Ep {
                    sources: vec![mac(1)],
                    nodst: true,
                    ..ep(S)
                },
            ],
            ingress: e(1),
            f: facts(mac(2), mac(1)),
            want: set(&[e(3)]),
        },
        Row {
            id: "T1 bridge flood does not run source matching",
            eps: vec![
                ep(B),
                ep(B),
                Ep {
                    sources: vec![mac(1)],
                    ..ep(S)
                },
            ],
            ingress: e(1),
            f: facts(BCAST, mac(1)),
            want: set(&[UPLINK, e(2)]),
        },
    ]);
}

#[test]
fn host_port_and_deliberate_differences() {
    let mut down = mixed();
    down[0].up = false;
    let strict = vec![
        Ep {
            strict: true,
            ..ep(PR)
        },
        ep(PR),
        ep(V),
    ];
    let tagged = |v| Facts {
        vlan: v,
        ..facts(mac(1), EXT)
    };
    check(vec![
        Row {
            id: "S2.2 host transmit goes to the wire only",
            eps: mixed(),
            ingress: HOST,
            f: facts(BCAST, PARENT),
            want: set(&[UPLINK]),
        },
        Row {
            id: "S2.2 host unicast to an endpoint goes to the wire",
            eps: mixed(),
            ingress: HOST,
            f: facts(mac(1), PARENT),
            want: set(&[UPLINK]),
        },
        Row {
            id: "down endpoint cannot send",
            eps: down,
            ingress: e(1),
            f: facts(BCAST, mac(1)),
            want: Verdict::Drop(DropReason::PortDown),
        },
        Row {
            id: "diff: bridge endpoint to its own MAC is not looped",
            eps: mixed(),
            ingress: e(1),
            f: facts(mac(1), mac(1)),
            want: Verdict::Drop(DropReason::Loop),
        },
        Row {
            id: "diff: tagged frame for an unknown VLAN",
            eps: mixed(),
            ingress: UPLINK,
            f: tagged(42),
            want: Verdict::Drop(DropReason::UnknownVlan),
        },
        Row {
            id: "strict private: reflected unicast to a sibling blocked",
            eps: strict.clone(),
            ingress: UPLINK,
            f: facts(mac(2), mac(1)),
            want: Verdict::Drop(DropReason::PrivateIsolation),
        },
        Row {
            id: "strict private: sibling to strict endpoint blocked",
            eps: strict.clone(),
            ingress: UPLINK,
            f: facts(mac(1), mac(3)),
            want: Verdict::Drop(DropReason::PrivateIsolation),
        },
        Row {
            id: "strict private: external unicast still delivered",
            eps: strict.clone(),
            ingress: UPLINK,
            f: facts(mac(1), EXT),
            want: set(&[e(1)]),
        },
        Row {
            id: "strict private: non-strict private pair keeps kernel parity",
            eps: strict,
            ingress: UPLINK,
            f: facts(mac(2), mac(3)),
            want: set(&[e(2)]),
        },
        Row {
            id: "unknown ingress port",
            eps: mixed(),
            ingress: PortId(99),
            f: facts(BCAST, EXT),
            want: Verdict::Drop(DropReason::UnknownPort),
        },
    ]);
}

#[test]
fn switch_without_host_port_drops_host_only_frames() {
    let info = |name: &str, role| PortInfo {
        name: Arc::from(name),
        role,
        mtu: 1500,
    };
    let mut t = PortTable::new(UPLINK, info("uplink", Role::Uplink), None, PARENT);
    t.add_network(0);
    assert_eq!(
        decide(UPLINK, &facts(UNKNOWN, EXT), &t),
        Verdict::Drop(DropReason::NoDestination)
    );
}

#[test]
fn mode_names_parse_and_print() {
    for m in Mode::ALL {
        assert_eq!(m.as_str().parse::<Mode>().unwrap(), m);
        assert_eq!(m.to_string(), m.as_str());
    }
    let e = "passthrough".parse::<Mode>().unwrap_err();
    assert!(e.to_string().contains("spelled 'passthru'"), "{e}");
    assert!("Bridge"
        .parse::<Mode>()
        .unwrap_err()
        .to_string()
        .contains("lower case"));
    assert!("macvtap"
        .parse::<Mode>()
        .unwrap_err()
        .to_string()
        .contains("unknown macvlan mode 'macvtap'"));
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
}

/// Invariants over random topologies and frames: never back out the ingress port, and
/// never back to the sending endpoint except under W9; PAUSE never reaches endpoints
/// by flooding.
#[test]
fn invariants_hold_for_random_frames() {
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let modes = [B, V, PR, S, B, V];
    for _ in 0..300 {
        let n = rng.gen_range(1..8);
        let passthru = rng.gen_ratio(1, 10);
        let eps: Vec<Ep> = if passthru {
            vec![Ep {
                up: rng.gen_bool(0.8),
                ..ep(P)
            }]
        } else {
            (0..n)
                .map(|_| Ep {
                    up: rng.gen_bool(0.8),
                    nodst: rng.gen_bool(0.2),
                    sources: if rng.gen_bool(0.5) {
                        vec![EXT, mac(rng.gen_range(1..8))]
                    } else {
                        vec![]
                    },
                    ..ep(modes[rng.gen_range(0..modes.len())])
                })
                .collect()
        };
        let t = table(&eps);
        let addrs = [
            BCAST,
            GROUP,
            EXT,
            PARENT,
            UNKNOWN,
            mac(1),
            mac(2),
            mac(3),
            mac(4),
        ];
        for _ in 0..50 {
            let ingress = PortId(rng.gen_range(0..(eps.len() as u16 + 2)));
            let dst = addrs[rng.gen_range(0..addrs.len())];
            let src = addrs[rng.gen_range(2..addrs.len())];
            let is_pause = rng.gen_ratio(1, 8);
            let f = Facts {
                ethertype: if is_pause {
                    EtherType::PAUSE
                } else {
                    EtherType::IPV4
                },
                ..facts(dst, src)
            };
            let v = decide(ingress, &f, &t);
            let s = v.targets();
            assert!(
                !s.contains(ingress),
                "back out the ingress port: {ingress:?} {f:?} -> {v:?}"
            );
            // A reflected frame's sender is the endpoint owning its source MAC.
            if let Some(x) = t.lookup(0, src).filter(|_| ingress == UPLINK) {
                let w9 =
                    dst.is_multicast() && matches!(t.endpoint(x).map(|e| e.mode), Some(PR | P | S));
                let unicast_to_x =
                    !dst.is_multicast() && (t.lookup(0, dst) == Some(x) || t.passthru() == Some(x));
                let source_copy = t.sources(0, src).iter().any(|e| e.port == x);
                if s.contains(x) && !w9 && !unicast_to_x && !source_copy {
                    panic!(
                        "delivered back to its sender outside W9: {f:?} from {ingress:?} -> {v:?}"
                    );
                }
            }
            if is_pause && dst.is_multicast() {
                let flooded = s.iter().filter(|p| t.endpoint(*p).is_some()).count();
                let allowed = usize::from(t.lookup(0, src).is_some_and(|x| s.contains(x)))
                    + t.sources(0, src).len();
                assert!(flooded <= allowed, "PAUSE flooded: {f:?} -> {v:?}");
            }
        }
    }
}
