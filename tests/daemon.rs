//! The daemon and its CLI, through the real binary: a config file, hot endpoint
//! changes over the control socket, clear refusals of bad input that change nothing,
//! stats, a clean SIGTERM shutdown, and a restart after `kill -9` that removes the
//! killed daemon's leftovers and restores its networks.

mod common;

use std::process::Command;

use common::daemon::{
    assert_nothing_left, host_links, lan_config, ok, parent_uc_filter, refused, umv_links,
    DaemonProc, BIN,
};
use common::topo::{ep_ip, ep_mac, Topo};
use common::{require_root, require_root_and};

#[test]
fn a_bad_config_is_refused_with_the_field_named() {
    let dir = std::env::temp_dir().join(format!("umvcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(
        &f,
        "[[network]]\nname = 'lan'\nparent = 'eth1'\nmode = 'passthrough'\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args([
            "run",
            "--config",
            f.to_str().unwrap(),
            "--socket",
            dir.join("s").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    refused(&o, "network 'lan'.mode: unknown macvlan mode 'passthrough'");
    assert!(String::from_utf8_lossy(&o.stderr).contains("spelled 'passthru'"));
    assert!(
        !dir.join("s").exists(),
        "a refused start must not leave a socket"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tc -n <host> ARGS` output.
fn host_tc(t: &Topo, args: &[&str]) -> String {
    let mut a = vec!["-n", t.host.as_str()];
    a.extend_from_slice(args);
    String::from_utf8_lossy(&common::run("tc", &a).stdout).to_string()
}

#[test]
fn daemon_runs_a_config_takes_hot_changes_and_cleans_up_on_sigterm() {
    if !require_root("daemon_runs_a_config_takes_hot_changes_and_cleans_up_on_sigterm") {
        return;
    }
    let t = Topo::new("umvc", false, 3);
    let config = lan_config(&t, 2, &[1]);
    let d = DaemonProc::start_logged(&t.host, "umvc", &config);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777,
        0o600,
        "control socket mode"
    );
    let ping = |from: usize, to: usize| {
        t.lab.try_exec(
            &t.eps[from - 1],
            &[
                "ping",
                "-q",
                "-n",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "1",
                &ep_ip(to),
            ],
        )
    };
    assert!(ping(1, 2), "e1 → e2 from the config");
    // As a kernel macvlan does with its lower device: the endpoints' MACs are in the
    // parent's unicast filter, so a NIC hands their frames to XDP.
    let uc = parent_uc_filter(&t);
    assert!(
        uc.contains(&ep_mac(1)),
        "e1's MAC in the parent's filter: {uc:?}"
    );
    assert_eq!(uc.len(), 2, "e1's and e2's: {uc:?}");

    // Hot add, through the CLI.
    let e3 = t.eps[2].clone();
    let ip3 = format!("{}/24", ep_ip(3));
    let out = ok(&d.cli(&[
        "endpoint",
        "add",
        "e3",
        "--network",
        "lan",
        "--netns",
        &e3,
        "--ip",
        &ip3,
    ]));
    assert!(out.contains("\"name\": \"e3\""), "{out}");
    assert!(ping(1, 3), "e1 → e3 after a hot add");

    // Bad input: refused, named, and nothing changes.
    let before = ok(&d.cli(&["endpoint", "ls"]));
    refused(
        &d.cli(&[
            "endpoint",
            "add",
            "e4",
            "--network",
            "lan",
            "--netns",
            &e3,
            "--mac",
            "zz",
        ]),
        "endpoint 'e4'.mac: 'zz'",
    );
    refused(
        &d.cli(&[
            "endpoint",
            "add",
            "e4",
            "--network",
            "lan",
            "--netns",
            &e3,
            "--ip",
            "10.9.0.14",
        ]),
        "endpoint 'e4'.ip",
    );
    refused(
        &d.cli(&["endpoint", "add", "e3", "--network", "lan", "--netns", &e3]),
        "an endpoint named 'e3' already exists",
    );
    refused(
        &d.cli(&["endpoint", "add", "e4", "--network", "nope", "--netns", &e3]),
        "no network named 'nope'",
    );
    refused(
        &d.cli(&[
            "endpoint",
            "add",
            "e4",
            "--network",
            "lan",
            "--netns",
            &e3,
            "--mac",
            "02:00:00:00:00:01",
        ]),
        "already in use by endpoint 'e1'",
    );
    refused(
        &d.cli(&[
            "endpoint",
            "add",
            "e4",
            "--network",
            "lan",
            "--netns",
            "no-such-ns-umv",
        ]),
        "no-such-ns-umv",
    );
    refused(
        &d.cli(&[
            "network", "create", "pt", "--parent", "par", "--mode", "passthru",
        ]),
        "cannot use mode passthru, macvlan network 'lan' is already using parent interface par",
    );
    refused(
        &d.cli(&["network", "create", "x", "--parent", "nosuchif0"]),
        "nosuchif0",
    );
    refused(
        &d.cli(&[
            "network", "create", "v", "--parent", "par", "--vlan", "5000",
        ]),
        "network 'v'.vlan: 5000 is out of range",
    );
    refused(&d.cli(&["network", "rm", "lan"]), "still has endpoints");
    // A parent the daemon must not use: the loopback device.
    refused(
        &d.cli(&["network", "create", "lo-net", "--parent", "lo"]),
        "lo is not an Ethernet device",
    );
    // A second endpoint on a passthru network (on a parent of its own: a fresh veth).
    t.lab.veth(&t.host, "ptpar", "ptwire");
    ok(&d.cli(&[
        "network", "create", "pt", "--parent", "ptpar", "--mode", "passthru",
    ]));
    ok(&d.cli(&[
        "endpoint",
        "add",
        "p1",
        "--network",
        "pt",
        "--netns",
        &t.eps[2],
        "--ifname",
        "pt0",
    ]));
    let ls = ok(&d.cli(&["endpoint", "ls"]));
    refused(
        &d.cli(&[
            "endpoint",
            "add",
            "p2",
            "--network",
            "pt",
            "--netns",
            &t.eps[2],
            "--ifname",
            "pt1",
        ]),
        "cannot add endpoint 'p2': parent ptpar is in passthru mode, owned by endpoint 'p1'",
    );
    assert_eq!(
        ls,
        ok(&d.cli(&["endpoint", "ls"])),
        "the refused passthru endpoint changed something"
    );
    ok(&d.cli(&["endpoint", "rm", "p1"]));
    ok(&d.cli(&["network", "rm", "pt"]));
    assert_eq!(
        before,
        ok(&d.cli(&["endpoint", "ls"])),
        "a refused request changed the endpoints"
    );
    assert!(ping(1, 3), "still forwarding after the refusals");

    // A malformed and a truncated control message.
    for raw in [
        &b"this is not json\n"[..],
        &b"{\"version\":1,\"op\":\"stats\""[..],
        &b"{\"version\":9,\"op\":\"stats\"}\n"[..],
    ] {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        s.write_all(raw).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.contains("\"ok\":false"), "{answer}");
    }

    // Stats, as JSON.
    let stats: serde_json::Value = serde_json::from_str(&ok(&d.cli(&["stats", "--json"]))).unwrap();
    let ports = stats[0]["ports"].as_array().unwrap();
    let e3s = ports
        .iter()
        .find(|p| p["port"] == "e3")
        .expect("e3 in stats");
    assert!(e3s["tx_packets"].as_u64().unwrap() >= 2, "{e3s}");
    assert_eq!(stats[0]["parent"], "par");

    // Hot remove, then SIGTERM: everything the daemon made is gone.
    assert_eq!(parent_uc_filter(&t).len(), 3, "e1, e2 and e3 in the filter");
    ok(&d.cli(&["endpoint", "rm", "e3"]));
    assert_eq!(parent_uc_filter(&t).len(), 2, "e3's MAC out of the filter");
    assert!(!ping(1, 3), "e3 still reachable after endpoint rm");
    assert!(ping(1, 2));
    let socket = d.socket.clone();
    d.stop();
    assert!(!socket.exists(), "the control socket was left behind");
    assert_nothing_left(&t);
}

#[test]
fn daemon_recovers_after_kill_9() {
    if !require_root_and("daemon_recovers_after_kill_9", &["tc"]) {
        return;
    }
    // The parent steered from XDP, and from tc (the default on this veth parent).
    for hook in ["xdp", "auto"] {
        recovers_after_kill_9(hook);
    }
}

fn recovers_after_kill_9(hook: &str) {
    let t = Topo::new("umvk", false, 1);
    let config = format!(
        "[daemon]\nparent_hook = '{hook}'\n{}",
        lan_config(&t, 1, &[1])
    );
    let mut d = DaemonProc::start_logged(&t.host, "umvk", &config);
    assert!(t.ping("e1", "ext"), "e1 → ext from the config");
    assert!(t.ping("ext", "e1"), "ext → e1 from the config");

    // kill -9: no cleanup runs. Everything the daemon made is still there.
    let status = d.kill9();
    assert!(!status.success(), "killed: {status}");
    let links = host_links(&t);
    let par_xdp = links
        .lines()
        .skip_while(|l| !l.contains(" par@"))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with(' '))
        .any(|(_, l)| l.contains("prog/xdp"));
    assert_eq!(
        par_xdp,
        hook == "xdp",
        "{hook}: the killed daemon's XDP program is on the parent, if it put one there:\n{links}"
    );
    assert!(
        umv_links(&links) >= 3,
        "the killed daemon's mirror pair and endpoint veth are there:\n{links}"
    );
    assert!(
        host_tc(&t, &["filter", "show", "dev", "par", "ingress"]).contains("mirror"),
        "the killed daemon's tc filter is on the parent"
    );
    assert!(
        String::from_utf8_lossy(&t.lab.exec(&t.eps[0], &["ip", "link", "show"]).stdout)
            .contains("eth0"),
        "the killed daemon's endpoint interface is in e1"
    );

    // The next start removes the leftovers and restores the configured network.
    let d = d.restart();
    assert!(t.ping("e1", "ext"), "e1 → ext after the restart");
    assert!(t.ping("ext", "e1"), "ext → e1 after the restart");
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    assert!(eps.contains("e1"), "{eps}");

    let socket = d.socket.clone();
    let log = d.stop();
    let xdp_leftover = "removed a leftover of an earlier run: XDP program steer";
    for what in [
        xdp_leftover,
        "removed a leftover of an earlier run: tc ingress filter running mirror",
        "removed a leftover of an earlier run: interface umv",
    ] {
        assert_eq!(
            log.contains(what),
            what != xdp_leftover || hook == "xdp",
            "{hook}: the restart should log {what:?} (if it was left):\n{log}"
        );
    }
    assert!(!socket.exists(), "the control socket was left behind");
    assert_nothing_left(&t);
    let qdiscs = host_tc(&t, &["qdisc", "show", "dev", "par"]);
    assert!(
        !qdiscs.contains("clsact"),
        "a clsact qdisc was left:\n{qdiscs}"
    );
}
