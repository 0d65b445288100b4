//! Root test: source mode on real interfaces (spec §3.1) against the kernel's
//! source-mode macvlan, in the same run, on identical topologies: e1 in source mode
//! listing the external host's MAC, with and without `nodst`, beside e2 in bridge
//! mode. Cells: which pings work (ext → host, ext → e2, e2 → ext, e1's own MAC is
//! the host's, spec W4) and whether e1 received copies of ext's frames (its
//! interface's receive counter), for ext's unicast to the host and to e2 and for its
//! broadcast. The cells must equal the kernel's.

mod common;

use std::collections::BTreeMap;

use common::require_root;
use common::switch::{add_topo_endpoints, with_switch};
use common::topo::{ep_ip, Topo, EXT_IP, HOST_IP};
use umacvlan::dataplane::DataplaneConfig;
use umacvlan::mode::Mode;

/// ext's MAC (tests/common/topo.rs).
const EXT_MAC: &str = "02:00:00:00:00:e0";

/// Runs `what` and returns whether e1 received at least `min` frames meanwhile.
fn copies(t: &Topo, min: u64, what: impl FnOnce() -> bool) -> (bool, bool) {
    let before = t.eth0_rx_packets(&t.eps[0]);
    let ok = what();
    (ok, t.eth0_rx_packets(&t.eps[0]) - before >= min)
}

fn measure(t: &Topo) -> BTreeMap<&'static str, (bool, bool)> {
    let mut m = BTreeMap::new();
    m.insert("ext → host", copies(t, 2, || t.ping_ip(&t.ext, HOST_IP)));
    m.insert("ext → e2", copies(t, 2, || t.ping_ip(&t.ext, &ep_ip(2))));
    m.insert("e2 → ext", copies(t, 2, || t.ping_ip(&t.eps[1], EXT_IP)));
    m.insert(
        "ext broadcast",
        copies(t, 2, || {
            t.lab.try_exec(
                &t.ext,
                &[
                    "ping",
                    "-q",
                    "-n",
                    "-b",
                    "-c",
                    "2",
                    "-i",
                    "0.2",
                    "-W",
                    "1",
                    "10.9.0.255",
                ],
            )
        }),
    );
    // e1's own MAC is not a destination (W4): frames to it go the host's way, and
    // e1 has them as copies of ext's frames.
    m.insert("ext → e1", copies(t, 0, || t.ping_ip(&t.ext, &ep_ip(1))));
    m
}

fn kernel(nodst: bool) -> BTreeMap<&'static str, (bool, bool)> {
    let t = Topo::new("umvsk", false, 2);
    t.add_kernel_macvlans(&["source", "bridge"]);
    let e1 = &t.eps[0];
    if nodst {
        t.lab.ip(
            e1,
            &[
                "link", "set", "dev", "eth0", "type", "macvlan", "mode", "source", "flag", "nodst",
            ],
        );
    }
    t.lab.ip(
        e1,
        &[
            "link", "set", "dev", "eth0", "type", "macvlan", "macaddr", "add", EXT_MAC,
        ],
    );
    measure(&t)
}

fn umacvlan(nodst: bool) -> BTreeMap<&'static str, (bool, bool)> {
    let t = Topo::new("umvsu", false, 2);
    let (m, stats) = with_switch(
        &t.host,
        DataplaneConfig::new("par"),
        |dp| {
            add_topo_endpoints(dp, &t, &[Mode::Source, Mode::Bridge], |n, cfg| {
                if n == 1 {
                    cfg.sources = vec![EXT_MAC.parse().unwrap()];
                    cfg.nodst = nodst;
                }
            })
        },
        || measure(&t),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (port, s) in stats {
        println!(
            "  {port:<6} rx {:>4} tx {:>4} drops {:?}",
            s.rx_packets,
            s.tx_packets,
            s.drop_reasons().collect::<Vec<_>>()
        );
    }
    m
}

#[test]
fn source_mode_copies_frames_as_the_kernel_does() {
    if !require_root("source_mode_copies_frames_as_the_kernel_does") {
        return;
    }
    let mut diffs = Vec::new();
    for nodst in [false, true] {
        let k = kernel(nodst);
        let u = umacvlan(nodst);
        println!("nodst={nodst}\n  kernel   (ping ok, e1 got copies) {k:?}\n  umacvlan (ping ok, e1 got copies) {u:?}");
        // The harness sees what the spec measured (§3.1).
        assert!(
            k["ext → e2"].1,
            "kernel: e1 gets copies of ext's frames: {k:?}"
        );
        assert_eq!(k["ext → host"].0, !nodst, "kernel: nodst consumes: {k:?}");
        if k != u {
            diffs.push(format!("nodst={nodst}: kernel {k:?}\n umacvlan {u:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "source mode differs:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn source_mode_is_reachable_from_the_daemon() {
    if !require_root("source_mode_is_reachable_from_the_daemon") {
        return;
    }
    use common::daemon::{ok, refused, DaemonProc};
    let t = Topo::new("umvsd", false, 1);
    let d = DaemonProc::start(&t.host, "umvsd", "");
    ok(&d.cli(&["network", "create", "lan", "--parent", "par"]));
    let e1 = &t.eps[0];
    refused(
        &d.cli(&[
            "endpoint",
            "add",
            "e1",
            "--network",
            "lan",
            "--netns",
            e1,
            "--source",
            EXT_MAC,
        ]),
        "endpoint 'e1'.sources: applies to mode source only",
    );
    refused(
        &d.cli(&[
            "endpoint",
            "add",
            "e1",
            "--network",
            "lan",
            "--netns",
            e1,
            "--mode",
            "source",
            "--source",
            "02:00:00:00:00",
        ]),
        "endpoint 'e1'.sources: '02:00:00:00:00'",
    );
    assert!(t.ping_ip(&t.ext, HOST_IP), "ext → host before");
    ok(&d.cli(&[
        "endpoint",
        "add",
        "e1",
        "--network",
        "lan",
        "--netns",
        e1,
        "--mode",
        "source",
        "--source",
        EXT_MAC,
        "--nodst",
        "--ip",
        &format!("{}/24", ep_ip(1)),
    ]));
    let v: serde_json::Value =
        serde_json::from_str(&ok(&d.cli(&["network", "inspect", "lan"]))).unwrap();
    let ep = &v["endpoints"][0];
    assert_eq!(ep["mode"], "source", "{v}");
    assert_eq!(ep["sources"], serde_json::json!([EXT_MAC]), "{v}");
    assert_eq!(ep["nodst"], true, "{v}");
    // nodst: ext's frames are consumed (e1 gets the copies), so ext no longer
    // reaches the host; e1's counter shows the copies.
    let (reached, copied) = copies(&t, 2, || t.ping_ip(&t.ext, HOST_IP));
    assert!(
        !reached && copied,
        "nodst: reached {reached}, copies {copied}"
    );
    ok(&d.cli(&["endpoint", "rm", "e1"]));
    assert!(t.ping_ip(&t.ext, HOST_IP), "ext → host once e1 is gone");
}
