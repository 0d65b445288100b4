//! Root test: IPv6 with multicast filtering on. Neighbour discovery sends its
//! solicitations to solicited-node groups, which the stack joins by itself; an
//! endpoint's filter must follow those joins or `ping -6` fails. Kernel macvlan and
//! umacvlan on identical topologies, bridge, VEPA and private, hairpin off and on:
//! endpoint ↔ endpoint and endpoint ↔ external host, cold neighbour caches. The
//! cells must equal the kernel's.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::require_root;
use common::switch::{add_topo_endpoints, with_switch};
use common::topo::Topo;
use umacvlan::dataplane::DataplaneConfig;
use umacvlan::mode::Mode;

const CONFIGS: [(&str, &[&str]); 4] = [
    ("bridge", &["bridge", "bridge"]),
    ("vepa", &["vepa", "vepa"]),
    ("private", &["private", "private"]),
    ("passthru", &["passthru"]),
];

/// The namespace and IPv6 address of `ext`, `e1`, `e2`.
fn node(t: &Topo, n: &str) -> (String, String) {
    match n {
        "ext" => (t.ext.clone(), "fd09::100".into()),
        e => {
            let i: usize = e[1..].parse().unwrap();
            (t.eps[i - 1].clone(), format!("fd09::{i}"))
        }
    }
}

/// Turns IPv6 on for `eth0` of ext and the endpoints, with a ULA each (no DAD).
fn enable_ipv6(t: &Topo) {
    for n in names(t) {
        let (ns, addr) = node(t, &n);
        for k in ["all", "default", "eth0"] {
            t.lab.exec(
                &ns,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{k}.disable_ipv6=0"),
                ],
            );
        }
        t.lab.ip(
            &ns,
            &[
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        );
    }
}

/// ext and the endpoints.
fn names(t: &Topo) -> Vec<String> {
    let mut v = vec!["ext".to_string()];
    v.extend((1..=t.eps.len()).map(|i| format!("e{i}")));
    v
}

/// Whether `ping -6` from `a` reaches `b` within 3 s, neighbour caches flushed.
fn ping6(t: &Topo, a: &str, b: &str) -> bool {
    for n in names(t) {
        let _ = t
            .lab
            .try_exec(&node(t, &n).0, &["ip", "-6", "neigh", "flush", "all"]);
    }
    let (ns, _) = node(t, a);
    let (_, ip) = node(t, b);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        if t.lab
            .try_exec(&ns, &["ping", "-6", "-q", "-n", "-c", "1", "-W", "1", &ip])
        {
            return true;
        }
    }
    false
}

fn measure(t: &Topo) -> BTreeMap<String, bool> {
    enable_ipv6(t);
    let pairs: &[(&str, &str)] = if t.eps.len() > 1 {
        &[("e1", "e2"), ("e2", "e1"), ("e1", "ext"), ("ext", "e2")]
    } else {
        &[("e1", "ext"), ("ext", "e1")]
    };
    pairs
        .iter()
        .map(|(a, b)| (format!("{a}→{b}"), ping6(t, a, b)))
        .collect()
}

fn kernel(modes: &[&str], hairpin: bool) -> BTreeMap<String, bool> {
    let t = Topo::new("umv6k", hairpin, modes.len());
    t.add_kernel_macvlans(modes);
    measure(&t)
}

fn umacvlan(modes: &[&str], hairpin: bool) -> BTreeMap<String, bool> {
    let t = Topo::new("umv6u", hairpin, modes.len());
    let modes: Vec<Mode> = modes.iter().map(|m| m.parse().unwrap()).collect();
    let (m, _) = with_switch(
        &t.host,
        DataplaneConfig::new("par"),
        |dp| add_topo_endpoints(dp, &t, &modes, |_, _| {}),
        || measure(&t),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    m
}

#[test]
fn ipv6_neighbour_discovery_and_ping_work_with_multicast_filtering() {
    if !require_root("ipv6_neighbour_discovery_and_ping_work_with_multicast_filtering") {
        return;
    }
    let mut diffs = Vec::new();
    for (name, modes) in CONFIGS {
        for hairpin in [false, true] {
            let k = kernel(modes, hairpin);
            let u = umacvlan(modes, hairpin);
            println!(
                "{name} hairpin={hairpin}: kernel {k:?}\n{:>24} umacvlan {u:?}",
                ""
            );
            // What every mode shares (spec §4): endpoint ↔ external host.
            assert!(
                k.iter()
                    .filter(|(p, _)| p.contains("ext"))
                    .all(|(_, ok)| *ok),
                "{name}: kernel e↔ext over IPv6: {k:?}"
            );
            if k != u {
                diffs.push(format!(
                    "{name} hairpin={hairpin}: kernel {k:?} umacvlan {u:?}"
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "IPv6 differs:\n{}", diffs.join("\n"));
}
