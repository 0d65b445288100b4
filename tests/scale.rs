//! Root test: many endpoints on one parent, every one of them forwarding, with the
//! time each `add_endpoint` took. `UMACVLAN_SCALE` endpoints (default 120 in CI;
//! `UMACVLAN_SCALE=1000` for the full run), spread over 10 namespaces as `m<i>`.
//! With the kernel fast path an endpoint keeps no UMEM frames, and its kernel
//! entries grow with the endpoints (one class for all bridge siblings), so neither
//! limits the count before the switch's 1022 endpoint ports do.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::require_root;
use common::switch::with_switch_then;
use common::topo::Topo;
use umacvlan::dataplane::{DataplaneConfig, EndpointNet};
use umacvlan::mode::Mode;
use umacvlan::topology::EndpointConfig;
use umacvlan::wire::MacAddr;

const GROUPS: usize = 10;
const EXT_MAC: &str = "02:00:00:00:00:e0";
const COPIES: u64 = 3;

fn mac(i: usize) -> MacAddr {
    MacAddr::new([0x02, 0x10, 0, 0, (i >> 8) as u8, i as u8])
}

/// Interface `name`'s received frames in `ns`, from /proc/net/dev.
fn rx_by_ifname(t: &Topo, ns: &str) -> BTreeMap<String, u64> {
    let out = t.lab.exec(ns, &["cat", "/proc/net/dev"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(':')?;
            let rx = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((name.to_string(), rx))
        })
        .collect()
}

/// Sends `COPIES` frames (EtherType 0x88b5) from each `(ifname, src)` to `dst` in
/// namespace `ns`, or, with `ifname` `None`, from `eth0` to each MAC.
fn send(t: &Topo, ns: &str, frames: &[(String, MacAddr, MacAddr)]) {
    let hex = |m: &MacAddr| {
        m.octets()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let list: Vec<String> = frames
        .iter()
        .map(|(i, s, d)| format!("{i},{},{}", hex(s), hex(d)))
        .collect();
    let script = format!(
        "import socket\nsocks={{}}\n\
         for e in '{}'.split(';'):\n  i,src,dst=e.split(',')\n  s=socks.get(i)\n  \
         if s is None:\n    s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n    s.bind((i,0))\n    socks[i]=s\n  \
         f=bytes.fromhex(dst+src+'88b5')+bytes(46)\n  \
         for _ in range({COPIES}):\n    s.send(f)\n",
        list.join(";")
    );
    let out = t.lab.exec(ns, &["python3", "-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_one_of_many_endpoints_forwards() {
    if !require_root("every_one_of_many_endpoints_forwards") {
        return;
    }
    let n: usize = std::env::var("UMACVLAN_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let t = Topo::new("umvz", false, GROUPS);
    // No IPv6 on the endpoints' interfaces: a thousand of them soliciting routers
    // and checking addresses would be a multicast storm of their own.
    for ns in &t.eps {
        for s in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            t.lab.exec(ns, &["sysctl", "-qw", s]);
        }
    }
    let ns_of = |i: usize| t.eps[i % GROUPS].clone();
    let ext_mac: MacAddr = EXT_MAC.parse().unwrap();
    let ((), (add_times, stats)) = with_switch_then(
        &t.host,
        DataplaneConfig::new("par"),
        |_| Ok(()),
        || {},
        |dp| {
            let mut times = Vec::with_capacity(n);
            for i in 0..n {
                let c = EndpointConfig::new(format!("m{i}"), Mode::Bridge).with_mac(mac(i));
                let net = EndpointNet {
                    netns: ns_of(i),
                    ifname: format!("m{i}"),
                    addrs: vec![],
                    queues: None,
                    adopt: None,
                };
                let t0 = Instant::now();
                dp.add_endpoint(c, net)
                    .unwrap_or_else(|e| panic!("endpoint m{i}: {e}"));
                times.push(t0.elapsed());
            }
            // Wire → every endpoint, and every endpoint → the wire.
            let before: Vec<BTreeMap<String, u64>> =
                t.eps.iter().map(|ns| rx_by_ifname(&t, ns)).collect();
            let ext_before = rx_by_ifname(&t, &t.ext)["eth0"];
            let to_eps: Vec<(String, MacAddr, MacAddr)> = (0..n)
                .map(|i| ("eth0".to_string(), ext_mac, mac(i)))
                .collect();
            send(&t, &t.ext, &to_eps);
            for (g, ns) in t.eps.iter().enumerate() {
                let from: Vec<(String, MacAddr, MacAddr)> = (g..n)
                    .step_by(GROUPS)
                    .map(|i| (format!("m{i}"), mac(i), ext_mac))
                    .collect();
                send(&t, ns, &from);
            }
            // Every endpoint received its frames; the external host all of theirs.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let now: Vec<BTreeMap<String, u64>> =
                    t.eps.iter().map(|ns| rx_by_ifname(&t, ns)).collect();
                let missing: Vec<usize> = (0..n)
                    .filter(|&i| {
                        let (g, name) = (i % GROUPS, format!("m{i}"));
                        now[g].get(&name).copied().unwrap_or(0)
                            < before[g].get(&name).copied().unwrap_or(0) + COPIES
                    })
                    .collect();
                let ext_got = rx_by_ifname(&t, &t.ext)["eth0"] - ext_before;
                if missing.is_empty() && ext_got >= COPIES * n as u64 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {n} endpoints did not get their frames (e.g. m{:?}); the wire got {ext_got} of {}",
                    missing.len(),
                    missing.first(),
                    COPIES * n as u64
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            (times, dp.stats().unwrap())
        },
    )
    .unwrap_or_else(|e| panic!("scale: {e}"));
    // Every endpoint sent and received through the switch's counters too.
    for i in 0..n {
        let name = format!("m{i}");
        let s = &stats.iter().find(|(p, _)| *p == name).expect("counted").1;
        assert!(
            s.rx_packets >= COPIES && s.tx_packets >= COPIES,
            "{name}: {s:?}"
        );
    }
    let avg = |from: usize, to: usize| {
        let w = &add_times[from.min(n)..to.min(n)];
        w.iter().sum::<Duration>() / w.len().max(1) as u32
    };
    println!("{n} endpoints, each forwarding; time per endpoint add:");
    for k in [10usize, 100, 1000] {
        if k <= n {
            println!("  around the {k:>4}th: {:?}", avg(k - 10, k));
        }
    }
}
