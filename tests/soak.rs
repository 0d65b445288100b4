//! Root test: a soak. Traffic in every direction (endpoint ↔ endpoint, endpoint ↔
//! wire, broadcast from the wire) while endpoints are added and removed through the
//! CLI and the daemon is restarted, with SIGTERM and with `kill -9`. Then:
//! - in one daemon's life, churn returns its resources to their baseline: open fds,
//!   the kernel maps' entries and the UMEMs' frames exactly, RSS within a bound;
//! - across restarts, a daemon with the same endpoints holds the same fds, map entries
//!   and UMEM frames as the first one did;
//! - after the last SIGTERM, nothing is left: no interface, XDP program, tc filter or
//!   qdisc, endpoint interface, MAC in the parent's filter, control socket file, and
//!   none of the BPF programs any of the daemons attached is still loaded.
//!
//! `UMACVLAN_SOAK_SECS` sets the duration of each half (default 15 s in CI; the long
//! run: `UMACVLAN_SOAK_SECS=600 cargo test --test soak -- --nocapture`).

mod common;

use std::collections::BTreeSet;
use std::process::Child;
use std::time::{Duration, Instant};

use common::daemon::{assert_nothing_left, endpoint_add, lan_config, ok, DaemonProc};
use common::topo::{ep_ip, Topo, EXT_IP};
use common::{require_root_and, wait_for};
use serde_json::Value;

/// What one daemon holds.
#[derive(Clone, Debug, PartialEq)]
struct Held {
    rss_kib: u64,
    fds: usize,
    /// Entries of each kernel map.
    maps: Value,
    /// The UMEMs' frames, AF_XDP sockets registered on them, frames the switch holds,
    /// and frames lent to sockets that are gone (lent minus lent to the open ones).
    umem_total: u64,
    sockets: u64,
    umem_held: u64,
    lent_elsewhere: u64,
    /// Frames lent to the open sockets: their fill rings are topped up in batches,
    /// so this varies by less than a batch per socket.
    lent_to_sockets: u64,
}

impl Held {
    /// What must return exactly (not RSS, which the allocator rounds, nor the fill
    /// rings' level).
    fn exact(&self) -> (usize, &Value, u64, u64, u64, u64) {
        (
            self.fds,
            &self.maps,
            self.umem_total,
            self.sockets,
            self.umem_held,
            self.lent_elsewhere,
        )
    }
}

fn held(d: &DaemonProc) -> Held {
    let pid = d.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let p = d.parent_stats();
    let u = &p["umem"];
    let n = |k: &str| u[k].as_u64().unwrap_or_else(|| panic!("umem.{k} in {p}"));
    Held {
        rss_kib,
        fds,
        maps: p["maps"].clone(),
        umem_total: n("total"),
        sockets: n("sockets"),
        umem_held: n("held"),
        lent_elsewhere: n("lent") - n("lent_to_open_sockets"),
        lent_to_sockets: n("lent_to_open_sockets"),
    }
}

/// [`held`] once the daemon is idle: frames in flight come back and a client's fd
/// closes, so wait (bounded) until two readings 200 ms apart agree.
fn held_idle(d: &DaemonProc) -> Held {
    let mut last = held(d);
    let t0 = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = held(d);
        if now.exact() == last.exact() || t0.elapsed() > Duration::from_secs(10) {
            return now;
        }
        last = now;
    }
}

/// Ids of the BPF programs attached in the host namespace: XDP on any interface, tc
/// filters on the parent.
fn attached_programs(t: &Topo) -> BTreeSet<u32> {
    let links = String::from_utf8_lossy(&t.lab.exec(&t.host, &["ip", "-d", "link", "show"]).stdout)
        .to_string();
    let tc = String::from_utf8_lossy(
        &common::run(
            "tc",
            &["-n", &t.host, "filter", "show", "dev", "par", "ingress"],
        )
        .stdout,
    )
    .to_string();
    let mut ids = BTreeSet::new();
    for text in [links, tc] {
        let words: Vec<&str> = text.split_whitespace().collect();
        for w in words.windows(2) {
            if w[0] == "id" || w[0] == "prog/xdp" {
                if let Ok(id) = w[1].parse() {
                    ids.insert(id);
                }
            }
        }
    }
    ids
}

/// Background traffic for `secs`: pings both ways between e1 and e2 and with the wire,
/// and broadcasts from the wire (about 500 a second). Losses are expected while the
/// daemon restarts; what matters is what it holds afterwards.
fn traffic(t: &Topo, secs: u64) -> Vec<Child> {
    let w = secs.to_string();
    let ping = |ns: &str, ip: &str| {
        std::process::Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-q", "-n", "-i", "0.01", "-W", "1", "-w", &w, ip,
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let bcast = format!(
        "import socket,time\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\n\
         f=b'\\xff'*6+bytes.fromhex('0200000000e0')+b'\\x88\\xb5'+bytes(100)\n\
         end=time.time()+{secs}\n\
         while time.time()<end:\n  s.send(f)\n  time.sleep(0.002)\n"
    );
    vec![
        ping(&t.eps[0], &ep_ip(2)),
        ping(&t.eps[1], &ep_ip(1)),
        ping(&t.eps[0], EXT_IP),
        ping(&t.ext, &ep_ip(2)),
        std::process::Command::new("ip")
            .args(["netns", "exec", &t.ext, "python3", "-c", &bcast])
            .spawn()
            .unwrap(),
    ]
}

/// e1 reaches `ip` (retried for up to 10 s: a restart takes a moment).
fn reaches(t: &Topo, from: usize, ip: &str) {
    wait_for(&format!("e{from} → {ip}"), || {
        if t.lab.try_exec(
            &t.eps[from - 1],
            &["ping", "-q", "-n", "-c", "1", "-W", "1", ip],
        ) {
            Ok(())
        } else {
            Err("unreachable".into())
        }
    });
}

fn add(d: &DaemonProc, t: &Topo, i: usize) {
    endpoint_add(d, t, i, &["--ip", &format!("{}/24", ep_ip(i))]);
}

fn rm(d: &DaemonProc, i: usize) {
    ok(&d.cli(&["endpoint", "rm", &format!("e{i}")]));
}

/// One round of churn: e3 and e4 come, are reached, and go.
fn churn(d: &DaemonProc, t: &Topo) {
    add(d, t, 3);
    add(d, t, 4);
    reaches(t, 3, &ep_ip(1));
    reaches(t, 4, EXT_IP);
    rm(d, 3);
    rm(d, 4);
}

#[test]
fn a_soak_of_traffic_churn_and_restarts_leaves_nothing_behind() {
    if !require_root_and(
        "a_soak_of_traffic_churn_and_restarts_leaves_nothing_behind",
        &["tc"],
    ) {
        return;
    }
    let secs: u64 = std::env::var("UMACVLAN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let t = Topo::new("umvq", false, 4);
    let config = lan_config(&t, 2, &[1, 2]);
    let mut d = DaemonProc::start(&t.host, "umvq", &config);
    let socket = d.socket.clone();
    reaches(&t, 1, &ep_ip(2));
    reaches(&t, 1, EXT_IP);
    let mut programs = attached_programs(&t);
    // The baseline, after a first round (lazily allocated things are allocated).
    churn(&d, &t);
    let first = held_idle(&d);
    println!("baseline: {first:?}");

    // Half one: traffic, churn, restarts of both kinds.
    let load = traffic(&t, secs);
    let t0 = Instant::now();
    let (mut rounds, mut terms, mut kills) = (0, 0, 0);
    while t0.elapsed() < Duration::from_secs(secs) {
        add(&d, &t, 3);
        add(&d, &t, 4);
        reaches(&t, 3, &ep_ip(1));
        programs.extend(attached_programs(&t));
        // A restart with the runtime endpoints in place: the state brings them back.
        match rounds % 3 {
            0 => {
                let t1 = Instant::now();
                d = d.stop_and_restart().0;
                terms += 1;
                println!("SIGTERM restart {terms}: {:?}", t1.elapsed());
            }
            1 => {
                d.kill9();
                d = d.restart();
                kills += 1;
            }
            _ => {}
        }
        reaches(&t, 4, EXT_IP);
        reaches(&t, 3, &ep_ip(2));
        programs.extend(attached_programs(&t));
        rm(&d, 3);
        rm(&d, 4);
        rounds += 1;
    }
    for mut c in load {
        c.wait().unwrap();
    }
    println!("half one: {rounds} rounds, {terms} SIGTERM and {kills} kill -9 restarts");
    assert!(
        terms > 0 && kills > 0,
        "the soak restarted the daemon both ways"
    );
    reaches(&t, 1, &ep_ip(2));
    reaches(&t, 1, EXT_IP);
    let after_restarts = held_idle(&d);
    println!("after the restarts: {after_restarts:?}");
    assert_eq!(
        after_restarts.exact(),
        first.exact(),
        "a restarted daemon with the same endpoints holds what the first one did \
         (fds, map entries, UMEM frames, sockets, frames held, frames lent elsewhere)"
    );

    // Half two: one life, traffic and churn, no restart.
    let base = held_idle(&d);
    let load = traffic(&t, secs);
    let t0 = Instant::now();
    let mut rounds = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        churn(&d, &t);
        rounds += 1;
    }
    for mut c in load {
        c.wait().unwrap();
    }
    let end = held_idle(&d);
    println!("half two: {rounds} rounds in one life: {base:?} -> {end:?}");
    assert_eq!(
        end.exact(),
        base.exact(),
        "churn in one life returns fds, map entries, sockets and UMEM frames to their baseline"
    );
    // Fill rings are topped up in batches of 64: less than a batch apart per socket.
    let slack = 64 * base.sockets;
    assert!(
        end.lent_to_sockets.abs_diff(base.lent_to_sockets) < slack,
        "frames lent to the sockets went from {} to {} (fill batches allow {slack})",
        base.lent_to_sockets,
        end.lent_to_sockets
    );
    let bound = base.rss_kib + (base.rss_kib / 10).max(4096);
    assert!(
        end.rss_kib <= bound,
        "RSS grew from {} KiB to {} KiB over {rounds} rounds (bound {bound} KiB)",
        base.rss_kib,
        end.rss_kib
    );

    // The end: SIGTERM, and nothing is left.
    programs.extend(attached_programs(&t));
    d.stop();
    assert!(!socket.exists(), "the control socket was left behind");
    // No interface, XDP program, qdisc, endpoint interface or filtered MAC left.
    assert_nothing_left(&t);
    assert!(!programs.is_empty(), "the daemons attached programs");
    // A program goes once its last reference does (freed after an RCU grace period).
    wait_for("the daemons' BPF programs unloaded", || {
        let loaded: BTreeSet<u32> = libbpf_rs::query::ProgInfoIter::default()
            .map(|p| p.id)
            .collect();
        let left: Vec<&u32> = programs.intersection(&loaded).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?} of {programs:?} loaded"))
        }
    });
}
