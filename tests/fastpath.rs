//! Root tests of the kernel fast path on real interfaces: unicast between siblings,
//! to and from the wire goes through the kernel and is counted per port; what the
//! fast path must not take (broadcast, a frame above the egress MTU) still reaches
//! the switch; endpoints come and go without a frame forwarded to a port that is gone.

mod common;

use common::require_root;
use common::switch::{add_topo_endpoints, stat, with_switch_then};
use common::topo::{ep_ip, Topo, EXT_IP};
use umacvlan::bpf::Counter;
use umacvlan::dataplane::{DataplaneConfig, EndpointNet};
use umacvlan::mode::{DropReason, Mode};
use umacvlan::topology::EndpointConfig;

fn fast_config() -> DataplaneConfig {
    let mut c = DataplaneConfig::new("par");
    c.fastpath = true;
    c
}

#[test]
fn unicast_takes_the_kernel_and_the_rest_the_switch_all_counted() {
    if !require_root("unicast_takes_the_kernel_and_the_rest_the_switch_all_counted") {
        return;
    }
    let t = Topo::new("umvf", false, 3);
    let (failed, (stats, counters)) = with_switch_then(
        &t.host,
        fast_config(),
        // e3 takes at most 1000 bytes: longer frames for it are the switch's to drop.
        |dp| {
            add_topo_endpoints(dp, &t, &[Mode::Bridge; 3], |n, c| {
                if n == 3 {
                    c.mtu = Some(1000);
                }
            })
        },
        || {
            let mut failed = Vec::new();
            for (ns, ip) in [
                (&t.eps[0], ep_ip(2)),
                (&t.eps[1], ep_ip(1)),
                (&t.eps[0], EXT_IP.to_string()),
                (&t.ext, ep_ip(2)),
                (&t.eps[2], ep_ip(1)),
            ] {
                if !t.lab.try_exec(
                    ns,
                    &["ping", "-q", "-n", "-c", "5", "-i", "0.05", "-W", "1", &ip],
                ) {
                    failed.push(format!("{ns} -> {ip}"));
                }
            }
            // Full-size broadcasts from an endpoint reach the switch through the
            // collector (shim and all) and are flooded to e2.
            let before = t.eth0_rx_packets(&t.eps[1]);
            let script = "import socket\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
                          s.bind(('eth0',0))\nf=b'\\xff'*6+bytes.fromhex('020000000001')+b'\\x88\\xb5'+bytes(1500)\n\
                          for _ in range(20): s.send(f)\n";
            t.lab.exec(&t.eps[0], &["python3", "-c", script]);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while t.eth0_rx_packets(&t.eps[1]) < before + 20 {
                if std::time::Instant::now() > deadline {
                    failed.push(format!(
                        "full-size broadcasts: e2 got {} of 20",
                        t.eth0_rx_packets(&t.eps[1]) - before
                    ));
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            // Too long for e3: no reply, a drop the switch counts.
            if t.lab.try_exec(
                &t.eps[0],
                &[
                    "ping",
                    "-q",
                    "-n",
                    "-c",
                    "3",
                    "-i",
                    "0.05",
                    "-W",
                    "1",
                    "-s",
                    "1200",
                    "-M",
                    "dont",
                    &ep_ip(3),
                ],
            ) {
                failed.push("a 1228-byte packet reached e3 (MTU 1000)".into());
            }
            failed
        },
        |dp| (dp.stats().unwrap(), dp.steering().counters().unwrap()),
    )
    .unwrap_or_else(|e| panic!("fast path: {e}"));
    assert!(failed.is_empty(), "{failed:?}");
    let c = |k: Counter| counters[k.index()];
    for (name, s) in &stats {
        println!(
            "{name:<8} rx {:>4} (fast {:>4}) tx {:>4} (fast {:>4}) drops {:?}",
            s.rx_packets,
            s.fast.rx_packets,
            s.tx_packets,
            s.fast.tx_packets,
            s.drop_reasons().collect::<Vec<_>>()
        );
    }
    let (e1, e2, e3, par) = (
        stat(&stats, "e1"),
        stat(&stats, "e2"),
        stat(&stats, "e3"),
        stat(&stats, "par"),
    );
    // Echo requests and replies between siblings and with the wire: the kernel's.
    assert!(
        e1.fast.rx_packets >= 10 && e2.fast.tx_packets >= 10,
        "{e1:?} {e2:?}"
    );
    assert!(
        par.fast.tx_packets >= 5 && par.fast.rx_packets >= 5,
        "{par:?}"
    );
    // Fast frames count in the totals too.
    assert!(e1.rx_packets > e1.fast.rx_packets);
    // ARP is broadcast: the switch's, through the collector.
    assert!(
        c(Counter::TcToSwitch) > 0 && c(Counter::TcFast) > 0,
        "{counters:?}"
    );
    // The long frames for e3 went to the switch, which counted them.
    assert!(e3.dropped(DropReason::MtuExceeded) >= 3, "{e3:?}");
    for k in [Counter::TcFastFail, Counter::TcShimFail] {
        assert_eq!(c(k), 0, "{}", k.name());
    }
    assert!(stats.iter().all(|(_, s)| s.fast.failed == 0));
}

#[test]
fn endpoints_come_and_go_and_no_entry_outlives_its_port() {
    if !require_root("endpoints_come_and_go_and_no_entry_outlives_its_port") {
        return;
    }
    let t = Topo::new("umvg", false, 3);
    let net = |n: usize| EndpointNet {
        netns: t.eps[n - 1].clone(),
        ifname: "eth0".into(),
        addrs: vec![format!("{}/24", ep_ip(n)).parse().unwrap()],
        queues: None,
        adopt: None,
    };
    let cfg = |n: usize| {
        EndpointConfig::new(format!("e{n}"), Mode::Bridge)
            .with_mac(common::topo::ep_mac(n).parse().unwrap())
    };
    let (pinger_tx, pinger_rx) = std::sync::mpsc::channel();
    let ((), (churned, out)) = with_switch_then(
        &t.host,
        fast_config(),
        |dp| add_topo_endpoints(dp, &t, &[Mode::Bridge; 2], |_, _| {}),
        || {
            // Warm the ARP caches, then ping continuously while e3 comes and goes.
            assert!(t.lab.try_exec(
                &t.eps[0],
                &["ping", "-q", "-n", "-c", "1", "-W", "1", &ep_ip(2)]
            ));
            pinger_tx
                .send(common::topo::ping_in_background(&t.eps[0], &ep_ip(2), 150))
                .unwrap();
        },
        move |dp| {
            let churned = (|| -> Result<(), String> {
                let e = |r: Result<_, umacvlan::dataplane::Error>| r.map_err(|e| e.to_string());
                for round in 0..3 {
                    e(dp.add_endpoint(cfg(3), net(3)))?;
                    let id = dp.topology().endpoint("e3").unwrap().id;
                    let ft = dp.fast_table().clone();
                    if !ft.ingress.contains_key(&id) || !ft.wire.values().any(|(p, _)| *p == id) {
                        return Err(format!("round {round}: e3 has no fast entries: {ft:?}"));
                    }
                    dp.remove_endpoint("e3").map_err(|e| e.to_string())?;
                    let ft = dp.fast_table();
                    let names_it = ft.names(id);
                    if names_it {
                        return Err(format!(
                            "round {round}: an entry names the removed e3: {ft:?}"
                        ));
                    }
                }
                Ok(())
            })();
            // Keep switching until the pinger is done.
            let out = pinger_rx.recv().unwrap().join().unwrap();
            (churned, out)
        },
    )
    .unwrap_or_else(|e| panic!("churn: {e}"));
    churned.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("150 received"),
        "pings lost while e3 came and went:\n{text}"
    );
}

/// A redirect into a peer that is down is dropped by the kernel without a count, so
/// an endpoint whose interface its container set down stops being a fast-path egress
/// (within the 200 ms of the membership watch), and is one again once it is up.
#[test]
fn a_peer_set_down_is_no_fast_egress_until_it_is_up() {
    if !require_root("a_peer_set_down_is_no_fast_egress_until_it_is_up") {
        return;
    }
    let t = Topo::new("umvh", false, 2);
    let is_egress = |ft: &umacvlan::fastpath::FastTable, p| {
        ft.wire.values().any(|(q, _)| *q == p)
            || ft.classes.iter().any(|r| {
                r.default.egress == Some(p) || r.exact.values().any(|e| e.egress == Some(p))
            })
    };
    let wait = |dp: &mut umacvlan::dataplane::Dataplane, p, want: bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            dp.sync_multicast().unwrap();
            if is_egress(dp.fast_table(), p) == want {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let (reached, (went, came_back)) = with_switch_then(
        &t.host,
        fast_config(),
        |dp| add_topo_endpoints(dp, &t, &[Mode::Bridge; 2], |_, _| {}),
        || t.ping("e1", "e2"),
        |dp| {
            let e2 = dp.topology().endpoint("e2").unwrap().id;
            let up = wait(dp, e2, true);
            t.lab.ip(&t.eps[1], &["link", "set", "eth0", "down"]);
            let went = up && wait(dp, e2, false);
            t.lab.ip(&t.eps[1], &["link", "set", "eth0", "up"]);
            (went, wait(dp, e2, true))
        },
    )
    .unwrap_or_else(|e| panic!("peer down: {e}"));
    assert!(reached, "e1 -> e2 before");
    assert!(went, "e2 set down stayed a fast-path egress");
    assert!(came_back, "e2 up again did not become a fast-path egress");
}
