//! Root tests of the benchmark harness, in process: the generator and the sink count
//! exactly, and every system forwards in every scenario. (`tests/bench.rs` drives the
//! `umacvlan bench` command itself.)

use std::time::Duration;

use umacvlan::link::Netns;

#[path = "../../../../tests/common/lab.rs"]
mod common;

use super::lab::{C1_MAC, C2_MAC};
use super::{BenchConfig, FrameSpec, Generator, Limit, Scenario, System};
use common::{assert_no_bench_leftovers, in_ns, require_root, Lab};
use umacvlan::bpf::{Sink, SinkHook, XdpMode};

#[test]
fn generator_and_sink_count_every_frame() {
    if !require_root("generator_and_sink_count_every_frame") {
        return;
    }
    let mut lab = Lab::new("umvg");
    let a = lab.quiet_ns("a");
    let b = lab.quiet_ns("b");
    common::run(
        "ip",
        &[
            "-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b,
        ],
    );
    common::run("ip", &["-n", &a, "link", "set", "eth0", "up"]);
    common::run("ip", &["-n", &b, "link", "set", "eth0", "up"]);
    for (size, hook) in [
        (64, SinkHook::TcIngress),
        (1518, SinkHook::TcIngress),
        (64, SinkHook::Xdp(XdpMode::Native)),
        (300, SinkHook::Xdp(XdpMode::Generic)),
    ] {
        let sink = in_ns(&b, || {
            Sink::attach(umacvlan::sys::if_nametoindex("eth0").unwrap(), hook).unwrap()
        });
        let mut spec = FrameSpec::new(C1_MAC, C2_MAC);
        spec.size = size;
        let mut gen = in_ns(&a, || {
            Generator::open(umacvlan::sys::if_nametoindex("eth0").unwrap(), &spec).unwrap()
        });
        let n = 20_000;
        let r = gen.run(Limit {
            count: Some(n),
            duration: Duration::from_secs(10),
            rate: Some(200_000.0),
        });
        assert_eq!(r.sent, n, "size {size}: the generator stops at its count");
        // Rate-limited: 20 000 frames at 200 000/s take about 0.1 s.
        assert!(r.elapsed >= Duration::from_millis(95), "{:?}", r.elapsed);
        // The generator is done; the last frames may still be on their way to the sink.
        let t0 = std::time::Instant::now();
        let c = loop {
            let c = sink.count().unwrap();
            if c.frames >= n || t0.elapsed() > Duration::from_secs(5) {
                break c;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            c.frames, n,
            "size {size}, {hook:?}: every frame counted once"
        );
        assert_eq!(
            c.bytes,
            n * (size as u64 - 4),
            "size {size}: bytes without the FCS"
        );
        assert_eq!(c.other, 0, "counting everything: nothing is other");
        drop(sink);
        // Detached: nothing counts, the interface's stack sees frames again.
        let hooked = in_ns(&b, || {
            let tc = common::run("tc", &["qdisc", "show", "dev", "eth0"]);
            let ip = common::run("ip", &["link", "show", "dev", "eth0"]);
            String::from_utf8_lossy(&tc.stdout).contains("clsact")
                || String::from_utf8_lossy(&ip.stdout).contains("xdp")
        });
        assert!(!hooked, "the sink removed its hook");
    }
}

fn quick(systems: &[&str]) -> BenchConfig {
    BenchConfig {
        scenarios: Scenario::ALL.to_vec(),
        sizes: vec![64],
        systems: systems
            .iter()
            .map(|s| s.parse::<System>().unwrap())
            .collect(),
        rounds: 1,
        seconds: Duration::from_millis(300),
        zero_loss_steps: 2,
        zero_loss_seconds: Duration::from_millis(200),
        ..BenchConfig::default()
    }
}

/// The tests that build bench labs (`umvb-<pid>-*`) run one at a time, so that each
/// one's check for leftovers sees its own namespaces only.
fn labs_alone() -> std::sync::MutexGuard<'static, ()> {
    static LABS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LABS.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn every_system_forwards_in_every_scenario() {
    if !require_root("every_system_forwards_in_every_scenario") {
        return;
    }
    let _alone = labs_alone();
    let ovs_missing = super::ovs::Ovs::unavailable();
    if let Some(why) = &ovs_missing {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true: {why} (scripts/setup.sh installs it)"
        );
        eprintln!("every_system_forwards_in_every_scenario: OVS not measured ({why})");
    }
    let cfg = quick(&[
        "umacvlan",
        "macvlan",
        "bridge",
        "ovs",
        "l2fwd",
        "umacvlan:generic,budget=128",
    ]);
    let ms = super::run(&cfg, &mut |_| {}).unwrap();
    assert_eq!(ms.len(), 3 * 6);
    for m in &ms {
        if m.system == "ovs" && ovs_missing.is_some() {
            assert!(m.skipped.is_some());
            continue;
        }
        assert!(m.skipped.is_none(), "{}: {:?}", m.system, m.skipped);
        let t = m.max;
        assert!(
            t.delivered > 10_000 && t.delivered <= t.sent,
            "{} {:?}: sent {} delivered {}",
            m.system,
            m.scenario,
            t.sent,
            t.delivered
        );
        assert!(
            t.cpu_ns.is_some_and(|c| c > 0),
            "{}: CPU time measured",
            m.system
        );
        assert_eq!(t.unfinished, 0, "{}: every frame completed", m.system);
        let zl = m.zero_loss.expect("searched");
        assert!(
            zl <= t.sent_rate() * 1.05,
            "{}: zero-loss {zl} above the offered load",
            m.system
        );
        assert!(!m.zero_loss_trials.is_empty());
    }
    assert_no_bench_leftovers(std::process::id());
}

#[test]
fn the_rfc2889_run_reaches_every_endpoint_and_counts_broadcast_at_each() {
    if !require_root("the_rfc2889_run_reaches_every_endpoint_and_counts_broadcast_at_each") {
        return;
    }
    let _alone = labs_alone();
    use super::scale::{self, ScaleConfig};
    let cfg = ScaleConfig {
        counts: vec![3, 12],
        rounds: 1,
        seconds: Duration::from_millis(400),
        namespaces: 4,
        ..ScaleConfig::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let ms = scale::run_until(&cfg, &mut |_| {}, &stop).unwrap();
    assert_eq!(ms.len(), 2 * 2, "two counts × two systems");
    for m in &ms {
        let n = m.endpoints;
        let what = format!("{} at N = {n}", m.system);
        assert!(m.complete(), "{what}: {:?}", m.failed);
        assert_eq!((m.added, m.add_us.len()), (n, n), "{what}");
        assert!(m.add_us.iter().all(|&t| t > 0.0), "{what}: {:?}", m.add_us);
        assert!(
            m.add_seconds * 1e6 >= m.add_us.iter().sum::<f64>(),
            "{what}"
        );
        assert_eq!(
            m.receivers,
            (0..n).collect::<Vec<_>>(),
            "{what}: all receive"
        );
        assert_eq!(m.receivers_note, None, "{what}");
        let c = m.capacity.as_ref().unwrap();
        assert_eq!(c.sent, n as u64, "{what}: one frame per endpoint");
        assert_eq!((c.reached, c.probed), (n, n), "{what}: every MAC reached");
        assert_eq!(c.misdelivered, 0, "{what}: nothing flooded");
        let b = m.broadcast.as_ref().unwrap();
        assert_eq!(b.delivered.len(), n, "{what}");
        assert!(
            b.delivered.iter().all(|&d| d > 0 && d <= b.sent),
            "{what}: every receiver got broadcast, no more than was sent: {:?} of {}",
            b.delivered,
            b.sent
        );
        assert!(b.offered() > 0.0 && b.total_rate() > 0.0, "{what}: {b:?}");
        assert!(b.window_seconds > 0.0 && b.window_seconds < b.send_seconds);
        assert_eq!(
            b.switch_drops.is_some(),
            m.system == "umacvlan",
            "{what}: the switch's drops, umacvlan's only"
        );
    }
    let rows = scale::summarize(&cfg, &ms);
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .all(|r| r.reached == Some(r.endpoints) && r.rounds == 1));
    let t = scale::table(&cfg, &rows);
    assert!(t.contains("| umacvlan | 12 | 12 | "), "{t}");
    assert_no_bench_leftovers(std::process::id());

    // Fewer receivers than endpoints: an evenly spaced subset, and the figures say so.
    let cfg = ScaleConfig {
        counts: vec![12],
        systems: vec!["umacvlan".parse().unwrap()],
        receivers: 4,
        ..cfg
    };
    let ms = scale::run_until(&cfg, &mut |_| {}, &stop).unwrap();
    let m = &ms[0];
    assert!(m.complete(), "{:?}", m.failed);
    assert_eq!(m.receivers, vec![0, 3, 7, 11]);
    assert!(m.receivers_note.as_deref().unwrap().contains("4 of 12"));
    let c = m.capacity.as_ref().unwrap();
    assert_eq!((c.sent, c.reached, c.probed), (12, 4, 4));
    assert_eq!(c.misdelivered, 0);
    assert!(m
        .broadcast
        .as_ref()
        .unwrap()
        .delivered
        .iter()
        .all(|&d| d > 0));
    assert_no_bench_leftovers(std::process::id());
}
