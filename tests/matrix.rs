//! Root test: the reachability matrix and broadcast receivers of each macvlan mode,
//! for umacvlan and for the kernel macvlan it re-implements, in the same run,
//! with the external switch's hairpin off and on, in the topology of spec §4. The
//! kernel's results are also checked against the cells the spec measured, so the
//! harness itself is known to see what the spec saw.

mod common;

use common::require_root;
use common::switch::{add_topo_endpoints, with_switch};
use common::topo::{measure, Matrix, Topo};
use umacvlan::dataplane::{DataplaneConfig, ParentHook};
use umacvlan::mode::Mode;

const CONFIGS: [(&str, &[&str]); 5] = [
    ("bridge", &["bridge", "bridge", "bridge"]),
    ("vepa", &["vepa", "vepa", "vepa"]),
    ("private", &["private", "private", "private"]),
    ("passthru", &["passthru"]),
    ("mixed", &["bridge", "vepa", "private"]),
];

fn kernel(name: &str, modes: &[&str], hairpin: bool) -> Matrix {
    let t = Topo::new("umvk", hairpin, modes.len());
    t.add_kernel_macvlans(modes);
    let m = measure(&t);
    println!(
        "kernel   {name:<8} hairpin={:<3} {m}",
        if hairpin { "on" } else { "off" }
    );
    m
}

/// The same measurement with umacvlan switching for the parent: the dataplane runs
/// on a thread inside the host namespace for the duration of the measurement, with
/// the kernel fast path on or off.
fn umacvlan(name: &str, modes: &[&str], hairpin: bool, fastpath: bool, hook: ParentHook) -> Matrix {
    let t = Topo::new("umvu", hairpin, modes.len());
    let modes: Vec<Mode> = modes.iter().map(|m| m.parse().unwrap()).collect();
    let mut cfg = DataplaneConfig::new("par");
    cfg.fastpath = fastpath;
    cfg.parent_hook = hook;
    let path = format!("{} parent={hook}", if fastpath { "fast" } else { "slow" });
    let (m, stats) = with_switch(
        &t.host,
        cfg,
        |dp| add_topo_endpoints(dp, &t, &modes, |_, _| {}),
        || {
            let m = measure(&t);
            println!(
                "umacvlan {name:<8} hairpin={:<3} {path} {m}",
                if hairpin { "on" } else { "off" }
            );
            m
        },
    )
    .unwrap_or_else(|e| panic!("umacvlan {name}: {e}"));
    for (port, s) in stats {
        println!(
            "  {port:<8} rx {:>5} tx {:>5} (fast rx {:>5} tx {:>5}) drops {:?}",
            s.rx_packets,
            s.tx_packets,
            s.fast.rx_packets,
            s.fast.tx_packets,
            s.drop_reasons().collect::<Vec<_>>()
        );
    }
    m
}

#[test]
fn umacvlan_matches_kernel_macvlan_in_every_mode() {
    if !require_root("umacvlan_matches_kernel_macvlan_in_every_mode") {
        return;
    }
    let only = std::env::var("UMACVLAN_MATRIX").ok();
    let mut diffs = Vec::new();
    for (name, modes) in CONFIGS {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        for hairpin in [false, true] {
            let k = kernel(name, modes, hairpin);
            check_spec(name, &k, hairpin);
            // The fast path moves work, never an outcome: every way equals the kernel.
            // Slow path with XDP on the parent; fast path steered from tc (a veth
            // parent's default) and from XDP (a real NIC's).
            for (fastpath, hook) in [
                (false, ParentHook::Auto),
                (true, ParentHook::Auto),
                (true, ParentHook::Xdp),
            ] {
                let u = umacvlan(name, modes, hairpin, fastpath, hook);
                if k != u {
                    diffs.push(format!(
                        "{name} hairpin={hairpin} fastpath={fastpath} parent={hook}:\n  kernel   {k}\n  umacvlan {u}"
                    ));
                }
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "umacvlan differs from kernel macvlan:\n{}",
        diffs.join("\n")
    );
}

/// Spec §4's measured cells: checks the harness itself on the kernel's macvlan.
fn check_spec(name: &str, m: &Matrix, hairpin: bool) {
    // Spec §4, the cells every mode shares: endpoint↔ext and host↔ext work,
    // except passthru, which takes the host's unicast away.
    assert!(ok(m, "e1", "ext") && ok(m, "ext", "e1"), "{name}: e↔ext");
    assert_eq!(ok(m, "host", "ext"), name != "passthru", "{name}: host↔ext");
    match (name, hairpin) {
        ("bridge", false) => {
            assert!(ok(m, "e1", "e2") && !ok(m, "e1", "host") && !ok(m, "host", "e1"))
        }
        ("bridge", true) => {
            assert!(ok(m, "e1", "e2") && ok(m, "e1", "host") && ok(m, "host", "e1"))
        }
        ("vepa", false) => assert!(!ok(m, "e1", "e2") && !ok(m, "e1", "host")),
        ("vepa", true) => {
            assert!(ok(m, "e1", "e2") && ok(m, "e1", "host") && ok(m, "host", "e1"))
        }
        ("private", false) => assert!(!ok(m, "e1", "e2") && !ok(m, "host", "e1")),
        ("private", true) => {
            assert!(!ok(m, "e1", "e2") && !ok(m, "e1", "host") && ok(m, "host", "e1"))
        }
        _ => {}
    }
}

fn ok(m: &Matrix, a: &str, b: &str) -> bool {
    m.pings[&(a.to_string(), b.to_string())]
}
