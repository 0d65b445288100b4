//! Root tests of the dataplane on real interfaces: an in-process endpoint answering
//! ping, bad and excessive traffic, and refusing a parent that already carries
//! someone else's XDP program.

mod common;

use std::net::Ipv4Addr;
use std::sync::mpsc;

use common::switch::{stat, with_switch, with_switch_then};
use common::topo::{ep_ip, ep_mac, ping_in_background, Topo, EXT_IP};
use common::{in_ns, require_root, require_root_and};
use umacvlan::app::Responder;
use umacvlan::bpf::Counter;
use umacvlan::dataplane::{Dataplane, DataplaneConfig, EndpointNet, ParentHook};
use umacvlan::link::Netns;
use umacvlan::mode::{DropReason, Mode};
use umacvlan::switch::PortStats;
use umacvlan::topology::EndpointConfig;
use umacvlan::wire::MacAddr;

const APP_MAC: &str = "02:00:00:00:00:64";
const APP_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 64);

/// Runs a dataplane on `par` in the topology's host namespace on its own thread:
/// `setup` adds endpoints, then `body` runs on the calling thread while it switches,
/// then the per-port counters are returned.
fn with_dataplane(
    t: &Topo,
    setup: impl FnOnce(&mut Dataplane) -> Result<(), String> + Send,
    body: impl FnOnce(),
) -> Vec<(String, PortStats)> {
    with_switch(&t.host, DataplaneConfig::new("par"), setup, body)
        .unwrap_or_else(|e| panic!("dataplane setup: {e}"))
        .1
}

/// [`with_dataplane`], returning what `finish` takes from the dataplane after the body.
fn with_dataplane_then<R: Send>(
    t: &Topo,
    setup: impl FnOnce(&mut Dataplane) -> Result<(), String> + Send,
    body: impl FnOnce(),
    finish: impl FnOnce(&mut Dataplane) -> R + Send,
) -> R {
    with_switch_then(&t.host, DataplaneConfig::new("par"), setup, body, finish)
        .unwrap_or_else(|e| panic!("dataplane setup: {e}"))
        .1
}

fn endpoint(t: &Topo, n: usize, mode: Mode) -> (EndpointConfig, EndpointNet) {
    let cfg = EndpointConfig::new(format!("e{n}"), mode).with_mac(ep_mac(n).parse().unwrap());
    let net = EndpointNet {
        netns: t.eps[n - 1].clone(),
        ifname: "eth0".into(),
        addrs: vec![format!("{}/24", ep_ip(n)).parse().unwrap()],
        queues: None,
        adopt: None,
    };
    (cfg, net)
}

#[test]
fn in_process_endpoint_answers_arp_and_ping() {
    if !require_root("in_process_endpoint_answers_arp_and_ping") {
        return;
    }
    let t = Topo::new("umvd", false, 1);
    let (cfg, net) = endpoint(&t, 1, Mode::Bridge);
    let stats = with_dataplane(
        &t,
        move |dp| {
            dp.add_endpoint(cfg, net).map_err(|e| e.to_string())?;
            let app = EndpointConfig::new("app", Mode::Bridge).with_mac(APP_MAC.parse().unwrap());
            let mac: MacAddr = APP_MAC.parse().unwrap();
            dp.add_app_endpoint(app, move || Box::new(Responder::new(mac, APP_IP)))
                .map_err(|e| e.to_string())?;
            Ok(())
        },
        || {
            let app = APP_IP.to_string();
            // e1 → app is switched locally (T2); ext → app arrives from the wire (W1).
            assert!(
                t.lab.try_exec(
                    &t.eps[0],
                    &["ping", "-q", "-n", "-c", "3", "-i", "0.2", "-W", "1", &app]
                ),
                "e1 cannot ping the in-process endpoint"
            );
            assert!(
                t.lab.try_exec(
                    &t.ext,
                    &["ping", "-q", "-n", "-c", "3", "-i", "0.2", "-W", "1", &app]
                ),
                "ext cannot ping the in-process endpoint"
            );
        },
    );
    let app = stat(&stats, "app");
    assert!(app.tx_packets >= 6 && app.rx_packets >= 6, "{app:?}");
}

/// Sends `count` copies of `frame` (hex) out of `ifname` in namespace `ns` through a
/// raw packet socket.
fn send_raw(t: &Topo, ns: &str, ifname: &str, frame: &[u8], count: u32) {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('{ifname}',0))\nf=bytes.fromhex('{hex}')\nfor _ in range({count}):\n  try: s.send(f)\n  except BlockingIOError: pass\n  except OSError as e: print(e)\n"
    );
    t.lab.exec(ns, &["python3", "-c", &script]);
}

fn frame(dst: &str, src: &str, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    // The local experimental EtherType: the wire's bridge (with br_netfilter, as on
    // Docker hosts) would drop a malformed IPv4 packet before it reached the parent.
    umacvlan::wire::emit_header(
        &mut f,
        dst.parse().unwrap(),
        src.parse().unwrap(),
        None,
        umacvlan::wire::EtherType(0x88b5),
    );
    f
}

#[test]
fn oversize_and_flooding_traffic_is_counted_and_forwarding_goes_on() {
    if !require_root("oversize_and_flooding_traffic_is_counted_and_forwarding_goes_on") {
        return;
    }
    let t = Topo::new("umvd", false, 2);
    // The wire and the parent take 2000-byte frames; endpoint e1 only 1500.
    for (ns, dev) in [
        (&t.wire, "br0"),
        (&t.wire, "wext"),
        (&t.wire, "wpar"),
        (&t.ext, "eth0"),
        (&t.host, "par"),
    ] {
        t.lab.ip(ns, &["link", "set", dev, "mtu", "2000"]);
    }
    let (mut c1, n1) = endpoint(&t, 1, Mode::Bridge);
    c1.mtu = Some(1500);
    let (c2, n2) = endpoint(&t, 2, Mode::Bridge);
    let (stats, sockets) = with_dataplane_then(
        &t,
        move |dp| {
            dp.add_endpoint(c1, n1).map_err(|e| e.to_string())?;
            dp.add_endpoint(c2, n2).map_err(|e| e.to_string())?;
            Ok(())
        },
        || {
            let ext = "02:00:00:00:00:e0";
            send_raw(&t, &t.ext, "eth0", &frame(&ep_mac(1), ext, 1800), 50);
            // A burst far larger than the 1024-entry rings, to e2.
            send_raw(&t, &t.ext, "eth0", &frame(&ep_mac(2), ext, 64), 20_000);
            // Forwarding still works afterwards.
            assert!(
                t.lab.try_exec(
                    &t.eps[0],
                    &["ping", "-q", "-n", "-c", "2", "-i", "0.3", "-W", "1", EXT_IP]
                ),
                "e1→ext after the flood"
            );
            assert!(
                t.lab.try_exec(
                    &t.eps[0],
                    &[
                        "ping",
                        "-q",
                        "-n",
                        "-c",
                        "2",
                        "-i",
                        "0.3",
                        "-W",
                        "1",
                        &ep_ip(2)
                    ]
                ),
                "e1→e2 after the flood"
            );
        },
        |dp| (dp.stats().unwrap(), dp.socket_stats().unwrap()),
    );
    for (n, s) in &stats {
        println!("{n}: {s:?}");
    }
    let e1 = stat(&stats, "e1");
    assert_eq!(
        e1.dropped(DropReason::MtuExceeded),
        50,
        "oversize frames to e1 are counted: {e1:?}"
    );
    let e2 = stat(&stats, "e2");
    let par = stat(&stats, "par");
    let par_sockets = sockets
        .iter()
        .find(|(n, _)| n == "par")
        .map(|(_, s)| s.rx_losses())
        .expect("the parent's sockets");
    println!(
        "flood: parent rx {} e2 tx {} drops {:?}; lost at the parent's sockets {:?}",
        par.rx_packets,
        e2.tx_packets,
        e2.drop_reasons().collect::<Vec<_>>(),
        par_sockets
    );
    // What the switch received it forwarded or counted; what the kernel dropped before
    // the rings is the kernel's (rx_ring_full), not a stall.
    assert!(
        e2.tx_packets + e2.total_drops() >= 1000,
        "the flood did not get through: {e2:?}"
    );
}

/// What steers `dev` in the calling thread's namespace, as the kernel says: the XDP
/// program's id (0: none) and the ids of the programs its tc ingress filters run.
fn steering_programs(dev: &str) -> (u32, Vec<u32>) {
    let out = |args: &[&str]| {
        let o = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("iproute2");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let id_after = |text: &str, key: &str| -> Vec<u32> {
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == key)
            .filter_map(|w| w[1].parse().ok())
            .collect()
    };
    let link = out(&["ip", "-d", "link", "show", "dev", dev]);
    let xdp = link
        .lines()
        .find(|l| l.trim_start().starts_with("prog/xdp"))
        .map_or(0, |l| id_after(l, "id").first().copied().unwrap_or(0));
    let filters = out(&["tc", "filter", "show", "dev", dev, "ingress"]);
    (xdp, id_after(&filters, "id"))
}

#[test]
fn a_parent_with_a_foreign_xdp_program_is_refused() {
    if !require_root("a_parent_with_a_foreign_xdp_program_is_refused") {
        return;
    }
    let t = Topo::new("umvd", false, 1);
    // Each way the first switch steers, against each way the second would: the
    // second is refused, naming the first's program, and the first is untouched.
    for (first_hook, second_hook) in [
        (ParentHook::Xdp, ParentHook::Xdp),
        (ParentHook::Tc, ParentHook::Tc),
        (ParentHook::Tc, ParentHook::Xdp),
        (ParentHook::Xdp, ParentHook::Tc),
    ] {
        let case = format!("first from {first_hook}, second from {second_hook}");
        let (msg, prog, before, after) = in_ns(&t.host, || {
            let cfg = |hook| {
                let mut c = DataplaneConfig::new("par");
                c.parent_hook = hook;
                c
            };
            let first = Dataplane::start(cfg(first_hook)).expect("first dataplane");
            assert_eq!(first.parent_hook(), first_hook);
            let before = steering_programs("par");
            let second = Dataplane::start(cfg(second_hook));
            let msg = second.err().map(|e| e.to_string());
            let after = steering_programs("par");
            let prog = match first_hook {
                ParentHook::Tc => first.steering().tc_prog_id(),
                _ => first.steering().xdp_prog_id(),
            };
            first.stop();
            (msg, prog, before, after)
        });
        let msg = msg.unwrap_or_else(|| panic!("{case}: a second switch must be refused"));
        assert!(
            msg.contains("par") && msg.contains(&prog.to_string()),
            "{case}: the error must name the interface and program id: {msg}"
        );
        // The refusal touched nothing of the first switch's, nor left anything.
        assert_eq!(before, after, "{case}: the parent's programs changed");
        match first_hook {
            ParentHook::Tc => assert!(before.0 == 0 && before.1.contains(&prog), "{case}"),
            _ => assert_eq!(before.0, prog, "{case}"),
        }
    }
    let missing = in_ns(&t.host, || {
        Dataplane::start(DataplaneConfig::new("nosuchpar0"))
            .err()
            .map(|e| e.to_string())
    });
    assert!(
        missing.is_some_and(|m| m.contains("nosuchpar0")),
        "a missing parent is named"
    );
}

#[test]
fn passthru_refuses_a_second_endpoint_on_real_interfaces() {
    if !require_root("passthru_refuses_a_second_endpoint_on_real_interfaces") {
        return;
    }
    let t = Topo::new("umvd", false, 2);
    let (c1, n1) = endpoint(&t, 1, Mode::Passthru);
    let (c2, n2) = endpoint(&t, 2, Mode::Bridge);
    let e2ns = t.eps[1].clone();
    let (tx, rx) = mpsc::channel();
    with_dataplane(
        &t,
        move |dp| {
            dp.add_endpoint(c1, n1).map_err(|e| e.to_string())?;
            let err = dp
                .add_endpoint(c2, n2)
                .expect_err("a second endpoint on a passthru parent");
            tx.send(err.to_string()).unwrap();
            Ok(())
        },
        || {
            // The passthru endpoint owns the parent's unicast: ext reaches it.
            assert!(t.lab.try_exec(
                &t.ext,
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
                    &ep_ip(1)
                ]
            ));
        },
    );
    let msg = rx.recv().unwrap();
    assert_eq!(
        msg,
        "cannot add endpoint 'e2': parent par is in passthru mode, owned by endpoint 'e1'"
    );
    // Nothing of the refused endpoint was created in its namespace.
    let out = t.lab.exec(&e2ns, &["ip", "-o", "link", "show"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("eth0"),
        "the refused endpoint left an interface"
    );
}

/// Adds and removes endpoint `c3` 20 times, and checks that every UMEM frame of the
/// removed sockets came back.
fn churn(dp: &mut Dataplane, c3: EndpointConfig, n3: EndpointNet) -> Result<(), String> {
    let before = dp.umem_accounting().map_err(|e| e.to_string())?;
    let sockets = dp.umem_sockets().map_err(|e| e.to_string())?;
    for i in 0..20 {
        dp.add_endpoint(c3.clone(), n3.clone())
            .map_err(|e| format!("add #{i}: {e}"))?;
        dp.remove_endpoint("e3")
            .map_err(|e| format!("remove #{i}: {e}"))?;
    }
    // Every frame of the removed sockets came back: none is stuck with a closed socket.
    // A socket's frames come back before its UMEM entry goes, so the same sockets
    // means nothing is stuck with a closed one. While traffic flows, each live
    // socket's fill ring refills in batches of `fill_batch` and transmits are in
    // flight, so `lent` moves by less than a batch per socket; one leaked socket
    // alone would keep `fill_level` (8 batches).
    let after = dp.umem_accounting().map_err(|e| e.to_string())?;
    let sockets_after = dp.umem_sockets().map_err(|e| e.to_string())?;
    let batch = DataplaneConfig::new("par").xsk.fill_batch;
    if after.free + after.lent + after.held != after.total
        || sockets_after != sockets
        || after.lent >= before.lent + batch * sockets as u32
    {
        return Err(format!(
            "UMEM frames leaked by endpoint churn: before {before:?} on {sockets} sockets, after {after:?} on {sockets_after}"
        ));
    }
    Ok(())
}

#[test]
fn endpoints_come_and_go_while_traffic_flows() {
    if !require_root("endpoints_come_and_go_while_traffic_flows") {
        return;
    }
    let t = Topo::new("umvd", false, 3);
    let (c1, n1) = endpoint(&t, 1, Mode::Bridge);
    let (c2, n2) = endpoint(&t, 2, Mode::Bridge);
    let (c3, n3) = endpoint(&t, 3, Mode::Bridge);
    let (pinger_tx, pinger_rx) = mpsc::channel();
    let ((), (churned, out)) = with_switch_then(
        &t.host,
        DataplaneConfig::new("par"),
        move |dp| {
            dp.add_endpoint(c1, n1).map_err(|e| e.to_string())?;
            dp.add_endpoint(c2, n2).map_err(|e| e.to_string())?;
            Ok(())
        },
        || {
            // Warm the ARP caches, then ping continuously while e3 comes and goes.
            assert!(t.lab.try_exec(
                &t.eps[0],
                &["ping", "-q", "-n", "-c", "1", "-W", "1", &ep_ip(2)]
            ));
            pinger_tx
                .send(ping_in_background(&t.eps[0], &ep_ip(2), 100))
                .unwrap();
        },
        move |dp| {
            let churned = churn(dp, c3, n3);
            // Keep switching until the pinger is done.
            let out = pinger_rx.recv().unwrap().join().unwrap();
            (churned, out)
        },
    )
    .unwrap_or_else(|e| panic!("dataplane setup: {e}"));
    churned.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("100 received"),
        "pings lost while endpoints changed:\n{text}"
    );
}

#[test]
fn two_workers_switch_every_pair() {
    if !require_root("two_workers_switch_every_pair") {
        return;
    }
    let t = Topo::with_queues("umvd", false, 3, 2);
    let mut eps: Vec<(EndpointConfig, EndpointNet)> =
        (1..=3).map(|n| endpoint(&t, n, Mode::Bridge)).collect();
    // e3's veth has more queues than there are workers: worker q % 2 serves queue q.
    eps[2].1.queues = Some(3);
    let mut cfg = DataplaneConfig::new("par");
    cfg.queues = Some(2);
    cfg.workers = Some(2);
    let (failed, acc) = with_switch_then(
        &t.host,
        cfg,
        |dp| {
            // One queue cannot serve two workers: refused, nothing left of it.
            let (c, mut n) = eps[0].clone();
            n.queues = Some(1);
            let e = dp.add_endpoint(c, n).unwrap_err().to_string();
            assert!(
                e.starts_with(
                    "endpoint 'e1': 1 queues do not fit: every one of the 2 workers needs a queue"
                ),
                "{e}"
            );
            assert!(dp.topology().endpoint("e1").is_none());
            for (c, n) in eps {
                dp.add_endpoint(c, n).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
        || {
            let mut failed = Vec::new();
            for (a, b) in [
                ("e1", "e2"),
                ("e2", "e3"),
                ("e3", "e1"),
                ("e1", "ext"),
                ("ext", "e2"),
                ("e3", "ext"),
            ] {
                let ns = match a {
                    "ext" => t.ext.clone(),
                    e => t.eps[e[1..].parse::<usize>().unwrap() - 1].clone(),
                };
                let ip = match b {
                    "ext" => EXT_IP.to_string(),
                    e => ep_ip(e[1..].parse().unwrap()),
                };
                // Several flows (ping identifiers) so both queues, hence both workers, carry some.
                for _ in 0..3 {
                    if !t.lab.try_exec(
                        &ns,
                        &["ping", "-q", "-n", "-c", "2", "-i", "0.2", "-W", "1", &ip],
                    ) {
                        failed.push(format!("{a}→{b}"));
                    }
                }
            }
            failed
        },
        |dp| dp.umem_accounting().unwrap(),
    )
    .unwrap_or_else(|e| panic!("two workers: {e}"));
    assert!(
        failed.is_empty(),
        "unreachable with two workers: {failed:?}"
    );
    assert_eq!(
        acc.total,
        2 * DataplaneConfig::new("par").frames,
        "one UMEM per worker"
    );
    // A configuration the parent cannot serve is refused up front.
    let host = Netns::open(&t.host).unwrap();
    let err = host
        .run(|| {
            let mut cfg = DataplaneConfig::new("par");
            cfg.queues = Some(1);
            cfg.workers = Some(2);
            Dataplane::start(cfg).err().map(|e| e.to_string())
        })
        .unwrap()
        .expect("two workers on one queue must be refused");
    assert!(
        err.contains("workers (2) must be between 1 and 1: each worker receives on a parent queue of its own"),
        "{err}"
    );
}

#[test]
fn a_frame_on_a_queue_without_a_socket_is_counted() {
    if !require_root_and(
        "a_frame_on_a_queue_without_a_socket_is_counted",
        &["ethtool"],
    ) {
        return;
    }
    // Two queues, only queue 0 bound (the library's explicit override).
    let t = Topo::with_queues("umvu", false, 1, 2);
    let mut cfg = DataplaneConfig::new("par");
    cfg.queues = Some(1);
    // The AF_XDP path's queues: the kernel fast path needs no socket for ext → e1.
    cfg.fastpath = false;
    let (e1, n1) = endpoint(&t, 1, Mode::Bridge);
    let (reach, unbound) = with_switch_then(
        &t.host,
        cfg,
        move |dp| {
            assert_eq!((dp.queues(), dp.workers()), (1, 1));
            dp.add_endpoint(e1, n1)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
        || {
            t.steer_to_queue(Some(0));
            let on_bound = t.ping("ext", "e1");
            t.steer_to_queue(Some(1));
            let on_unbound = t.ping("ext", "e1");
            (on_bound, on_unbound)
        },
        |dp| dp.steering().counter(Counter::XdpUnboundQueue).unwrap(),
    )
    .unwrap();
    assert_eq!(reach, (true, false), "(queue 0, queue 1) → e1");
    assert!(
        unbound >= 2,
        "ext's echo requests on the unbound queue were not counted: {unbound}"
    );
}

#[test]
fn an_endpoint_the_umem_cannot_feed_is_refused_and_every_accepted_one_forwards() {
    if !require_root("an_endpoint_the_umem_cannot_feed_is_refused_and_every_accepted_one_forwards")
    {
        return;
    }
    umem_room(false);
    // With the kernel fast path an endpoint's sockets only transmit and keep no frames
    // in a fill ring: every endpoint fits (the collector takes the mirror's place).
    umem_room(true);
}

/// Six endpoints on one worker with 4096 frames: four fit on the AF_XDP path, all six
/// with the fast path; every accepted one forwards.
fn umem_room(fastpath: bool) {
    // One worker with 4096 frames, 512 in each socket's fill ring and 1024 kept for
    // traffic: the parent queue and the mirror take two sockets, four endpoints fit.
    let t = Topo::with_queues("umvm", false, 6, 1);
    let eps: Vec<(EndpointConfig, EndpointNet)> =
        (1..=6).map(|n| endpoint(&t, n, Mode::Bridge)).collect();
    let mut cfg = DataplaneConfig::new("par");
    cfg.frames = 4096;
    cfg.fastpath = fastpath;
    let (fit, refuse) = if fastpath { (6, 0) } else { (4, 2) };
    let (reach, added) = with_switch_then(
        &t.host,
        cfg,
        |dp| {
            let mut refused = Vec::new();
            for (c, n) in eps {
                let name = c.name.clone();
                if let Err(e) = dp.add_endpoint(c, n) {
                    assert!(dp.topology().endpoint(&name).is_none(), "{name} half made");
                    refused.push((name, e.to_string()));
                }
            }
            assert_eq!(refused.len(), refuse, "{refused:?}");
            for (name, e) in &refused {
                assert!(
                    e.contains(&format!(
                        "endpoint '{name}' does not fit: a worker's UMEM has 4096 frames"
                    )),
                    "{e}"
                );
            }
            Ok(())
        },
        || {
            (1..=fit)
                .map(|i| t.ping("ext", &format!("e{i}")))
                .collect::<Vec<_>>()
        },
        |dp| dp.topology().endpoints().count(),
    )
    .unwrap();
    assert_eq!(added, fit);
    assert_eq!(reach, vec![true; fit], "every accepted endpoint forwards");
}
