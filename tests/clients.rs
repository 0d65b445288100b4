//! Hostile clients and input, through the real daemon: idle and trickling connections
//! neither stall the control socket nor delay SIGTERM, connections beyond the limit
//! are refused at once with a message, names that are not Docker names are refused
//! with the field named, and what the daemon prints and exports stays clean.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::daemon::{lan_config, DaemonProc};
use common::require_root;
use common::topo::Topo;

/// The daemon's connection limit (`src/bin/umacvlan/server.rs`).
const MAX_CLIENTS: usize = 64;

/// The first line the daemon writes on `s`, waiting at most `within`.
fn answer(s: &UnixStream, within: Duration) -> Option<String> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut line = String::new();
    match BufReader::new(s).read_line(&mut line) {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

#[test]
fn idle_and_trickling_clients_stall_nothing() {
    if !require_root("idle_and_trickling_clients_stall_nothing") {
        return;
    }
    let t = Topo::new("umvc", false, 1);
    let d = DaemonProc::start_logged(&t.host, "umvc", &lan_config(&t, 1, &[1]));

    // MAX_CLIENTS idle connections take every slot; the next ten are refused at once.
    let idle: Vec<UnixStream> = (0..MAX_CLIENTS)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    // Let the daemon accept them all before the extra ones knock.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) && d.cli(&["endpoint", "ls"]).status.success() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let extra: Vec<UnixStream> = (0..10)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    for s in &extra {
        let a = answer(s, Duration::from_secs(2)).expect("a refusal, at once");
        assert!(a.contains("serving 64 clients already"), "{a}");
    }
    // The idle ones get no more than their 2 s for a whole request.
    let t0 = Instant::now();
    for s in &idle {
        let a = answer(s, Duration::from_secs(10)).expect("an answer after the deadline");
        assert!(a.contains("request timed out after 2 s"), "{a}");
    }
    println!(
        "{MAX_CLIENTS} idle clients answered within {:?}",
        t0.elapsed()
    );
    drop(idle);
    drop(extra);

    // A client sending a byte every 400 ms gets the same 2 s in all; meanwhile others
    // are served.
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    let trickle = std::thread::spawn(move || {
        let t0 = Instant::now();
        for b in br#"{"version":1,"op":"network_ls"}"# {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(400));
            if t0.elapsed() > Duration::from_secs(4) {
                break;
            }
        }
        (answer(&slow, Duration::from_secs(5)), t0.elapsed())
    });
    let t0 = Instant::now();
    let out = d.cli(&["endpoint", "ls"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("endpoint ls beside a trickling client: {:?}", t0.elapsed());
    let (a, took) = trickle.join().unwrap();
    let a = a.expect("the trickling client is answered");
    assert!(a.contains("request timed out after 2 s"), "{a}");
    println!("trickling client cut off after {took:?}");

    // SIGTERM is honoured while clients hold connections.
    let held: Vec<UnixStream> = (0..MAX_CLIENTS)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    let t0 = Instant::now();
    d.stop();
    let took = t0.elapsed();
    println!("SIGTERM with {MAX_CLIENTS} clients connected: exited after {took:?}");
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");
    drop(held);
}

#[test]
fn names_are_docker_names_and_output_stays_clean() {
    if !require_root("names_are_docker_names_and_output_stays_clean") {
        return;
    }
    let t = Topo::new("umvn", false, 1);
    let d = DaemonProc::start(&t.host, "umvn", &lan_config(&t, 1, &[]));
    let long = "n".repeat(300);
    for (name, why) in [
        ("a/b", "'a/b' is not a valid network name"),
        ("..", "'..' is not a valid network name"),
        ("has space", "'has space' is not a valid network name"),
        ("x\ny", "'x\\ny' is not a valid network name"),
        (
            "\u{1b}[31mred",
            "'\\u{1b}[31mred' is not a valid network name",
        ),
        (long.as_str(), "at most 64 characters"),
    ] {
        let out = d.cli(&["network", "create", name, "--parent", "par", "--vlan", "7"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{name:?}: {err}"
        );
    }
    // The host port's internal name cannot be a user's: '/' is not allowed.
    let out = d.cli(&[
        "endpoint",
        "add",
        "lan/host",
        "--network",
        "lan",
        "--netns",
        &t.eps[0],
    ]);
    assert!(!out.status.success());
    // A network on one of the daemon's own interfaces is refused.
    let links = String::from_utf8_lossy(&t.lab.exec(&t.host, &["ip", "-o", "link", "show"]).stdout)
        .to_string();
    let own = links
        .split(['\n', ':', '@'])
        .map(str::trim)
        .find(|n| n.starts_with("umv") && n.ends_with("ma"))
        .expect("the mirror pair")
        .to_string();
    let out = d.cli(&["network", "create", "x", "--parent", &own, "--vlan", "9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is an interface of this daemon"),
        "{own}: {err}"
    );
    // Nothing changed: still the one network, and a table with aligned columns.
    let ls = String::from_utf8_lossy(&d.cli(&["network", "ls"]).stdout).to_string();
    let rows: Vec<&str> = ls.lines().collect();
    assert_eq!(rows.len(), 2, "{ls}");
    assert_eq!(rows[0].len(), rows[1].len(), "columns line up:\n{ls}");
    // A client whose reader is gone (`umacvlan stats | head -0`) ends quietly: its
    // stdout is a pipe whose read end is already closed, so its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(common::daemon::BIN)
        .args(["stats", "--socket", d.socket.to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(13),
        "ends by SIGPIPE: {:?}",
        out.status
    );
    d.stop();
}

#[test]
fn metrics_are_served_beside_the_control_socket() {
    if !require_root("metrics_are_served_beside_the_control_socket") {
        return;
    }
    let t = Topo::new("umvp", false, 1);
    let config = format!(
        "[daemon]\nmetrics = '127.0.0.1:9482'\n\n{}",
        lan_config(&t, 1, &[1])
    );
    let d = DaemonProc::start(&t.host, "umvp", &config);
    assert!(t.ping("e1", "ext"));
    // The daemon listens in its own namespace: ask from there.
    let get = |path: &str| {
        let py = format!(
            "import urllib.request, urllib.error\ntry:\n    r = urllib.request.urlopen('http://127.0.0.1:9482{path}', timeout=5)\n    print(r.status); print(r.read().decode())\nexcept urllib.error.HTTPError as e:\n    print(e.code)\n"
        );
        String::from_utf8_lossy(&t.lab.exec(&t.host, &["python3", "-c", &py]).stdout).to_string()
    };
    let m = get("/metrics");
    assert!(m.starts_with("200"), "{m}");
    for want in [
        "umacvlan_rx_packets_total{parent=\"par\",port=\"e1\"}",
        "umacvlan_fdb_entries{parent=\"par\"} 1",
        "umacvlan_steering_total{parent=\"par\",counter=\"xdp_redirect\"}",
        "umacvlan_steering_total{parent=\"par\",counter=\"xdp_unbound_queue\"} 0",
    ] {
        assert!(m.contains(want), "{want} missing from:\n{m}");
    }
    let e1_tx: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("umacvlan_tx_packets_total{parent=\"par\",port=\"e1\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("e1's tx counter");
    assert!(e1_tx >= 2, "the pings' replies went to e1: {e1_tx}");
    // The dashboard's gauges: worker load, ring occupancy, kernel maps, UMEM frames.
    let value = |series: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from:\n{m}"))
    };
    let busy = value("umacvlan_worker_busy_seconds_total{parent=\"par\",worker=\"0\"} ");
    let up = value("umacvlan_worker_seconds_total{parent=\"par\",worker=\"0\"} ");
    assert!(
        busy > 0.0 && busy <= up,
        "the worker switched the ARP: busy {busy} of {up} s"
    );
    // The uplink's fill ring: 1024 frames lent of its 2048 (per socket).
    let fill = value("umacvlan_ring_entries{parent=\"par\",port=\"par\",ring=\"fill\"} ");
    let size = value("umacvlan_ring_size{parent=\"par\",port=\"par\",ring=\"fill\"} ");
    assert!(fill > 0.0 && fill <= size, "fill ring {fill} of {size}");
    assert_eq!(
        value("umacvlan_map_entries{parent=\"par\",map=\"fdb\"} "),
        1.0
    );
    assert!(value("umacvlan_umem_frames{parent=\"par\",state=\"free\"} ") > 0.0);
    assert!(get("/other").starts_with("404"));
    d.stop();
}
