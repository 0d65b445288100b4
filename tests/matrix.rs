//! Root test: the reachability matrix and broadcast receivers of each macvlan mode,
//! with the external switch's hairpin off and on, measured on the kernel's own
//! macvlan in the topology of spec §4.

mod common;

use common::topo::{measure, Matrix, Topo};
use common::require_root;

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
    println!("kernel   {name:<8} hairpin={:<3} {m}", if hairpin { "on" } else { "off" });
    m
}

fn ok(m: &Matrix, a: &str, b: &str) -> bool {
    m.pings[&(a.to_string(), b.to_string())]
}

#[test]
fn kernel_macvlan_matches_the_spec_tables() {
    if !require_root("kernel_macvlan_matches_the_spec_tables") {
        return;
    }
    for (name, modes) in CONFIGS {
        for hairpin in [false, true] {
            let m = kernel(name, modes, hairpin);
            // Spec §4, the cells every mode shares: endpoint↔ext and host↔ext work,
            // except passthru, which takes the host's unicast away.
            assert!(ok(&m, "e1", "ext") && ok(&m, "ext", "e1"), "{name}: e↔ext");
            assert_eq!(ok(&m, "host", "ext"), name != "passthru", "{name}: host↔ext");
            match (name, hairpin) {
                ("bridge", false) => assert!(ok(&m, "e1", "e2") && !ok(&m, "e1", "host") && !ok(&m, "host", "e1")),
                ("bridge", true) => assert!(ok(&m, "e1", "e2") && ok(&m, "e1", "host") && ok(&m, "host", "e1")),
                ("vepa", false) => assert!(!ok(&m, "e1", "e2") && !ok(&m, "e1", "host")),
                ("vepa", true) => assert!(ok(&m, "e1", "e2") && ok(&m, "e1", "host") && ok(&m, "host", "e1")),
                ("private", false) => assert!(!ok(&m, "e1", "e2") && !ok(&m, "host", "e1")),
                ("private", true) => assert!(!ok(&m, "e1", "e2") && !ok(&m, "e1", "host") && ok(&m, "host", "e1")),
                _ => {}
            }
        }
    }
}
