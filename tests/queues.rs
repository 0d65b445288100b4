//! Multi-queue parents through the daemon: every receive queue of the parent is bound
//! at start and when the parent grows, whichever queue a flow lands on. Flows are put
//! on each queue on purpose (XPS on the wire side of the parent's veth), so nothing
//! depends on the flow hash's seed; `ethtool -S par` proves where they landed.
//!
//! The parent is steered from XDP here (`parent_hook = 'xdp'`), as a real NIC is:
//! AF_XDP serves a frame only from a socket on its receive queue, which is what is
//! tested. A veth parent steered from tc (the default with the fast path) hands the
//! switch its frames through the mirror, whatever their queue.

mod common;

use common::daemon::{lan_config, DaemonProc};
use common::topo::Topo;
use common::{require_root_and, wait_for};
use std::time::Instant;

/// For each queue k in `queues`: everything from the wire goes to parent queue k,
/// and endpoint e(k+1) pings ext and back; only queue k carries it.
fn every_queue_reaches_its_endpoint(t: &Topo, d: &DaemonProc, queues: std::ops::Range<u32>) {
    for k in queues {
        t.steer_to_queue(Some(k));
        let e = format!("e{}", k + 1);
        let before = t.parent_queue_packets();
        let seen = || {
            format!(
                "parent queues {:?}\n{}",
                t.parent_queue_packets(),
                d.parent_stats()
            )
        };
        assert!(
            t.ping("ext", &e),
            "ext → {e} over parent queue {k}: {}",
            seen()
        );
        assert!(
            t.ping(&e, "ext"),
            "{e} → ext over parent queue {k}: {}",
            seen()
        );
        let after = t.parent_queue_packets();
        assert_eq!(before.len(), after.len());
        for (j, (b, a)) in before.iter().zip(&after).enumerate() {
            if j == k as usize {
                assert!(a > b, "queue {k} carried nothing: {before:?} → {after:?}");
            } else {
                assert_eq!(a, b, "only queue {k} was to carry: {before:?} → {after:?}");
            }
        }
    }
    t.steer_to_queue(None);
}

/// `config` with the parent steered from XDP.
fn xdp_config(config: String) -> String {
    format!("[daemon]\nparent_hook = 'xdp'\n{config}")
}

fn daemon_serves_every_queue(q: u32) {
    // A tag per queue count: the tests run in parallel, each with its own socket.
    let tag = format!("umvq{q}");
    let t = Topo::with_queues(&tag, false, q as usize, q);
    let with_mac: Vec<usize> = (1..=q as usize).collect();
    let d = DaemonProc::start_logged(
        &t.host,
        &tag,
        &xdp_config(lan_config(&t, q as usize, &with_mac)),
    );
    assert_eq!(t.parent_queue_packets().len(), q as usize, "ethtool -S par");
    every_queue_reaches_its_endpoint(&t, &d, 0..q);
    let st = d.parent_stats();
    assert_eq!(st["queues"], q, "{st}");
    assert_eq!(st["kernel"]["xdp_unbound_queue"], 0, "{st}");
    // Every AF_XDP port reports its sockets' kernel counters (XDP_STATISTICS).
    for p in st["ports"].as_array().unwrap() {
        if p["port"] != "host" {
            for k in [
                "rx_dropped",
                "rx_ring_full",
                "rx_fill_ring_empty",
                "tx_invalid_descs",
            ] {
                assert!(p["sockets"][k].is_u64(), "{k} of {}: {p}", p["port"]);
            }
        }
    }
    let workers = st["workers"].as_u64().unwrap();
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(workers, u64::from(q).min(cores), "{st}");
    let log = d.stop();
    assert!(
        log.contains(&format!("dataplane started: {q} receive queues bound")),
        "{log}"
    );
}

#[test]
fn a_one_queue_parent_is_served() {
    if require_root_and("a_one_queue_parent_is_served", &["ethtool"]) {
        daemon_serves_every_queue(1);
    }
}

#[test]
fn every_queue_of_a_two_queue_parent_is_served() {
    if require_root_and("every_queue_of_a_two_queue_parent_is_served", &["ethtool"]) {
        daemon_serves_every_queue(2);
    }
}

#[test]
fn every_queue_of_a_four_queue_parent_is_served() {
    if require_root_and("every_queue_of_a_four_queue_parent_is_served", &["ethtool"]) {
        daemon_serves_every_queue(4);
    }
}

#[test]
fn the_daemon_binds_queues_the_parent_gains_while_running() {
    if !require_root_and(
        "the_daemon_binds_queues_the_parent_gains_while_running",
        &["ethtool"],
    ) {
        return;
    }
    // Made with 4 queues, using 2 when the daemon starts.
    let t = Topo::with_queues("umvg", false, 4, 4);
    t.lab
        .exec(&t.host, &["ethtool", "-L", "par", "rx", "2", "tx", "2"]);
    t.lab
        .exec(&t.wire, &["ethtool", "-L", "wpar", "rx", "2", "tx", "2"]);
    let d = DaemonProc::start_logged(
        &t.host,
        "umvg",
        &xdp_config(lan_config(&t, 4, &[1, 2, 3, 4])),
    );
    assert_eq!(d.parent_stats()["queues"], 2);
    every_queue_reaches_its_endpoint(&t, &d, 0..2);

    // The parent grows to 4 receive queues (veth: the peer may then transmit on 4).
    t.lab.exec(&t.host, &["ethtool", "-L", "par", "rx", "4"]);
    t.lab.exec(&t.wire, &["ethtool", "-L", "wpar", "tx", "4"]);
    let t0 = Instant::now();
    wait_for("the daemon binds the new queues", || {
        let st = d.parent_stats();
        if st["queues"] == 4 {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    println!("new queues bound after {:?}", t0.elapsed());
    every_queue_reaches_its_endpoint(&t, &d, 0..4);

    // The kernel refuses to take away a queue an AF_XDP socket is bound to.
    t.lab.exec(&t.wire, &["ethtool", "-L", "wpar", "tx", "2"]);
    assert!(
        !t.lab
            .try_exec(&t.host, &["ethtool", "-L", "par", "rx", "2"]),
        "ethtool -L removed queues bound by the switch"
    );
    let st = d.parent_stats();
    assert_eq!(st["kernel"]["xdp_unbound_queue"], 0, "{st}");
    let log = d.stop();
    assert!(log.contains("receive queues changed: 0..4 bound"), "{log}");
}
