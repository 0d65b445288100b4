//! State across restarts, through the real binary: networks and endpoints created at
//! run time come back after `kill -9` and after SIGTERM, with the same MACs and
//! addresses; the network's IPAM hands out addresses, refuses bad ones and takes
//! released ones back; an unusable state file stops the start, naming the file.

mod common;

use std::process::Command;

use common::daemon::{endpoint_add, ok, refused, DaemonProc, BIN};
use common::require_root;
use common::topo::{ep_ip, Topo, EXT_IP};

/// `(endpoint, mac, ip)` of network `lan`, from `network inspect`.
fn endpoints(d: &DaemonProc) -> Vec<(String, String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&d.cli(&["network", "inspect", "lan"]))).unwrap();
    let mut eps: Vec<_> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            (s("name"), s("mac"), s("ip"))
        })
        .collect();
    eps.sort();
    eps
}

#[test]
fn runtime_networks_endpoints_macs_and_addresses_survive_restarts() {
    if !require_root("runtime_networks_endpoints_macs_and_addresses_survive_restarts") {
        return;
    }
    let t = Topo::new("umvst", false, 3);
    let d = DaemonProc::start_logged(&t.host, "umvst", "");
    // Handed out from 10.9.0.8/29, less the auxiliary .8 .. .10: e1 and e2 get
    // ep_ip(1) and ep_ip(2), the addresses the topology's pings use.
    ok(&d.cli(&[
        "network",
        "create",
        "lan",
        "--parent",
        "par",
        "--subnet",
        "10.9.0.0/24",
        "--gateway",
        "10.9.0.1",
        "--ip-range",
        "10.9.0.8/29",
        "--aux-address",
        "a=10.9.0.8",
        "--aux-address",
        "b=10.9.0.9",
        "--aux-address",
        "c=10.9.0.10",
        "--aux-address",
        &format!("ext={EXT_IP}"),
    ]));
    for i in [1, 2] {
        let out = endpoint_add(&d, &t, i, &[]);
        assert!(
            out.contains(&format!("\"ip\": \"{}/24\"", ep_ip(i))),
            "{out}"
        );
    }
    let e3 = &t.eps[2];
    let add3 = |ip: &str| {
        d.cli(&[
            "endpoint",
            "add",
            "e3",
            "--network",
            "lan",
            "--netns",
            e3,
            "--ip",
            ip,
        ])
    };
    refused(
        &add3(&format!("{}/24", ep_ip(2))),
        &format!("endpoint 'e3'.ip: {} is in use by endpoint 'e2'", ep_ip(2)),
    );
    refused(
        &add3(&format!("{EXT_IP}/24")),
        "is reserved in this network (an auxiliary address)",
    );
    refused(
        &add3("10.9.0.1/24"),
        "is reserved in this network (the gateway)",
    );
    refused(
        &add3("10.8.0.5/24"),
        "10.8.0.5 is not in the network's subnet 10.9.0.0/24",
    );
    refused(
        &add3("10.9.0.200/16"),
        "the network's subnet is 10.9.0.0/24",
    );
    assert!(
        t.ping("e1", "e2") && t.ping("e1", "ext"),
        "forwarding before any restart"
    );
    let before = endpoints(&d);
    assert_eq!(before.len(), 2, "{before:?}");
    let state = std::fs::read_to_string(d.state_dir().join("state.json")).unwrap();
    assert!(
        state.contains("\"10.9.0.8/29\"") && state.contains(&before[0].1),
        "{state}"
    );

    // kill -9: the state was written before each answer, so all of it comes back.
    let d = d.restart();
    assert_eq!(endpoints(&d), before, "after kill -9");
    assert!(
        t.ping("e1", "e2") && t.ping("ext", "e1"),
        "forwarding after kill -9"
    );

    // SIGTERM, then a new daemon: the same again.
    let (d, log) = d.stop_and_restart();
    assert!(!log.contains("dropped"), "{log}");
    assert_eq!(endpoints(&d), before, "after SIGTERM");
    assert!(t.ping("e2", "e1"), "forwarding after SIGTERM and start");

    // A removed endpoint's address is handed out again, and removal is recorded.
    ok(&d.cli(&["endpoint", "rm", "e2"]));
    let out = ok(&d.cli(&["endpoint", "add", "e3", "--network", "lan", "--netns", e3]));
    assert!(
        out.contains(&format!("\"ip\": \"{}/24\"", ep_ip(2))),
        "{out}"
    );
    let now = endpoints(&d);
    let d = d.restart();
    assert_eq!(endpoints(&d), now, "e2 stays removed, e3 is back");

    // A recorded network whose parent is missing at start is kept, not lost: listed
    // as pending, refusing endpoints with a reason, still in the state, removable.
    let (socket, dir) = (d.socket.clone(), d.state_dir());
    d.stop();
    std::fs::create_dir_all(&dir).unwrap();
    let gone = r#"{"version":1,"networks":[{"name":"gone","parent":"nope0","mode":"bridge","vlan":null,"subnet":null,"gateway":null,"ip_range":null,"host_port":null}],
        "endpoints":[{"network":"gone","from_config":false,"endpoint":{"name":"g1","netns":"g1","ifname":"eth0","mac":"02:00:00:00:00:77","ip":null,"mode":null}}]}"#;
    std::fs::write(dir.join("state.json"), gone).unwrap();
    let d = DaemonProc::start_logged(&t.host, "umvst", "");
    let ls = ok(&d.cli(&["network", "ls"]));
    assert!(ls.contains("gone") && ls.contains("pending"), "{ls}");
    refused(
        &d.cli(&["endpoint", "add", "g2", "--network", "gone", "--netns", e3]),
        "network 'gone' was not restored at start",
    );
    let kept = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(
        kept.contains("nope0") && kept.contains("02:00:00:00:00:77"),
        "{kept}"
    );
    ok(&d.cli(&["network", "rm", "gone"]));
    let kept = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(!kept.contains("nope0") && !kept.contains("g1"), "{kept}");
    let log = d.stop();
    assert!(
        log.contains("network 'gone' of the state not restored, kept"),
        "{log}"
    );

    // A torn state file: the start is refused, naming the file; nothing is applied.
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");
    std::fs::write(&file, "{\"version\":1,\"networks\":[{\"name\":\"la").unwrap();
    let cfg = dir.join("empty.toml");
    std::fs::write(&cfg, "").unwrap();
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.host,
            BIN,
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "--state-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    refused(&o, &format!("state file {} is unusable", file.display()));
    assert!(!socket.exists(), "a refused start leaves no socket");
    let links =
        String::from_utf8_lossy(&t.lab.exec(&t.host, &["ip", "-o", "link"]).stdout).to_string();
    assert!(
        !links.contains(": umv"),
        "a refused start creates nothing:\n{links}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
