//! Root test, through the real daemon: `umacvlan explain` answers with the datapath's
//! own decision against the running topology — bridge siblings (T2, by the kernel fast
//! path), VEPA siblings (T4, and W1 when the wire reflects), private ones (T4, W9 for
//! a reflected broadcast, strict isolation for reflected unicast) — by name, by IP
//! and from a pcap file; it follows a removal, and bad input gets a clear error.

mod common;

use common::daemon::{ok, refused, DaemonProc};
use common::require_root;
use common::topo::{ep_ip, ep_mac, Topo};
use serde_json::Value;

fn explain(d: &DaemonProc, args: &[&str]) -> Value {
    let mut a = vec!["explain"];
    a.extend_from_slice(args);
    a.push("--json");
    serde_json::from_str(&ok(&d.cli(&a))).expect("explain --json")
}

fn rules(d: &Value) -> Vec<String> {
    d["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn egress(d: &Value) -> Vec<String> {
    d["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// A pcap file holding one frame `dst`, `src`, EtherType 0x88b5.
fn pcap_file(path: &std::path::Path, dst: &str, src: &str) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    let mut f: Vec<u8> = Vec::new();
    for m in [dst, src] {
        f.extend(m.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()));
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&[0; 46]);
    for v in [1u32, 0, f.len() as u32, f.len() as u32] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&f);
    std::fs::write(path, b).unwrap();
}

#[test]
fn explain_answers_with_the_rule_the_datapath_applies() {
    if !require_root("explain_answers_with_the_rule_the_datapath_applies") {
        return;
    }
    let t = Topo::new("umvx", true, 6);
    // web, api: bridge; v1, v2: VEPA; db: private; vault: strict private.
    let eps = [
        ("web", "bridge", ""),
        ("api", "bridge", ""),
        ("v1", "vepa", ""),
        ("v2", "vepa", ""),
        ("db", "private", ""),
        ("vault", "private", "strict = true\n"),
    ];
    let mut config = "[[network]]\nname = 'lan'\nparent = 'par'\n".to_string();
    for (i, (name, mode, extra)) in eps.iter().enumerate() {
        config += &format!(
            "\n[[network.endpoint]]\nname = '{name}'\nnetns = '{}'\nmac = '{}'\nip = '{}/24'\nmode = '{mode}'\n{extra}",
            t.eps[i],
            ep_mac(i + 1),
            ep_ip(i + 1)
        );
    }
    let d = DaemonProc::start(&t.host, "umvx", &config);

    // Bridge: delivered directly, by the kernel.
    let v = explain(&d, &["web", "api"]);
    println!("{}", ok(&d.cli(&["explain", "web", "api"])));
    assert_eq!(egress(&v["decision"]), ["api"], "{v}");
    assert_eq!(rules(&v["decision"]), ["T2"], "{v}");
    assert_eq!(v["decision"]["fast_path"], "api", "{v}");
    assert_eq!(v["modes"]["from"], "bridge");
    assert!(
        v["if_reflected"].is_null(),
        "T2 never reaches the wire: {v}"
    );

    // VEPA: out by the wire; a reflecting switch (hairpin) brings it to v2 (W1).
    let v = explain(&d, &["v1", &ep_ip(4)]);
    println!("{}", ok(&d.cli(&["explain", "v1", &ep_ip(4)])));
    assert_eq!(v["to"], "v2", "by IP: {v}");
    assert_eq!(rules(&v["decision"]), ["T4"], "{v}");
    assert_eq!(egress(&v["decision"]), ["par"], "{v}");
    assert_eq!(rules(&v["if_reflected"]), ["W1"], "{v}");
    assert_eq!(egress(&v["if_reflected"]), ["v2"], "{v}");

    // Private: a reflected broadcast returns to its sender only (W9).
    let v = explain(&d, &["db", "broadcast"]);
    println!("{}", ok(&d.cli(&["explain", "db", "broadcast"])));
    assert_eq!(rules(&v["decision"]), ["T4"], "{v}");
    assert_eq!(rules(&v["if_reflected"]), ["W9"], "{v}");
    assert_eq!(egress(&v["if_reflected"]), ["db"], "{v}");
    // Strict private: reflected unicast to a sibling is blocked.
    let v = explain(&d, &["db", "vault"]);
    println!("{}", ok(&d.cli(&["explain", "db", "vault"])));
    assert_eq!(rules(&v["if_reflected"]), ["strict"], "{v}");
    assert_eq!(v["if_reflected"]["drop"], "private_isolation", "{v}");
    // From the wire, by MAC, and a frame from a pcap file.
    let v = explain(&d, &["wire", &ep_mac(1)]);
    assert_eq!(rules(&v["decision"]), ["W1"], "{v}");
    let file = std::env::temp_dir().join(format!("umvx-{}.pcap", std::process::id()));
    pcap_file(&file, &ep_mac(2), &ep_mac(1));
    let out = ok(&d.cli(&["explain", "web", "--pcap", file.to_str().unwrap()]));
    std::fs::remove_file(&file).unwrap();
    assert!(
        out.starts_with("frame 1: web (bridge) → api (bridge) on lan: delivered to api"),
        "{out}"
    );

    // The running topology: api removed, its MAC is unknown and leaves by the wire.
    ok(&d.cli(&["endpoint", "rm", "api"]));
    refused(
        &d.cli(&["explain", "web", "api"]),
        "destination 'api': no endpoint of that name",
    );
    let v = explain(&d, &["web", &ep_mac(2)]);
    assert_eq!(rules(&v["decision"]), ["T3"], "{v}");
    // Bad input: named.
    refused(
        &d.cli(&["explain", "nobody", "web"]),
        "no endpoint named 'nobody'",
    );
    refused(
        &d.cli(&["explain", "web", "zz:zz"]),
        "not a MAC or an IP address",
    );
    refused(
        &d.cli(&["explain", "web", "10.9.0.99"]),
        "no endpoint has the address 10.9.0.99",
    );
    refused(&d.cli(&["explain", "web"]), "give a destination");
    d.stop();
}
