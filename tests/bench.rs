//! Root tests of the benchmark: the generator and the sink count exactly, every
//! system forwards in every scenario, and `umacvlan bench run` writes its results.

mod common;

use std::time::Duration;

use common::{in_ns, require_root, Lab};
use umacvlan::bench::lab::{C1_MAC, C2_MAC};
use umacvlan::bench::{self, BenchConfig, FrameSpec, Generator, Limit, Scenario, System};
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
        std::thread::sleep(Duration::from_millis(50));
        let c = sink.count().unwrap();
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

/// No bench namespace and no OVS directory of process `pid` is left.
fn assert_nothing_left(pid: u32) {
    let named = |dir: &std::path::Path, prefix: String| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    let netns = named("/run/netns".as_ref(), format!("umvb-{pid}-"));
    assert!(netns.is_empty(), "namespaces left: {netns:?}");
    let ovs = named(&std::env::temp_dir(), format!("umvb-ovs-{pid}-"));
    assert!(ovs.is_empty(), "OVS instances left: {ovs:?}");
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

#[test]
fn every_system_forwards_in_every_scenario() {
    if !require_root("every_system_forwards_in_every_scenario") {
        return;
    }
    let ovs_missing = bench::ovs::Ovs::unavailable();
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
    let ms = bench::run(&cfg, &mut |_| {}).unwrap();
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
    assert_nothing_left(std::process::id());
}

#[test]
fn bench_command_writes_table_json_and_plot_and_refuses_bad_options() {
    if !require_root("bench_command_writes_table_json_and_plot_and_refuses_bad_options") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_umacvlan");
    let dir = std::env::temp_dir().join(format!("umvb-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = std::process::Command::new(bin)
        .args([
            "bench",
            "run",
            "--scenarios",
            "ep-ep",
            "--sizes",
            "64,1518",
            "--rounds",
            "1",
            "--seconds",
            "0.3",
            "--zero-loss-steps",
            "1",
            "--zero-loss-seconds",
            "0.2",
            "--systems",
            "umacvlan;macvlan",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| umacvlan |") && stdout.contains("paired ratio vs macvlan"),
        "{stdout}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(j["measurements"].as_array().unwrap().len(), 4);
    assert_eq!(j["summary"].as_array().unwrap().len(), 4);
    assert!(j["measurements"][0]["max"]["delivered"].as_u64().unwrap() > 0);
    let svg = std::fs::read_to_string(dir.join("plot.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert!(std::fs::read_to_string(dir.join("table.md"))
        .unwrap()
        .contains("endpoint → endpoint, 1518 B"));
    let _ = std::fs::remove_dir_all(&dir);

    for (args, says) in [
        (&["--sizes", "63"][..], "outside 64..=1518"),
        (&["--systems", "docker"][..], "unknown system"),
        (&["--systems", "macvlan;macvlan"][..], "listed twice"),
        (&["--seconds", "0"][..], "positive number"),
        (&["--systems", "umacvlan:core=7"][..], "does not exist"),
    ] {
        let out = std::process::Command::new(bin)
            .args(["bench", "run", "--scenarios", "ep-ep", "--rounds", "1"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn an_interrupted_run_reports_what_it_measured_and_leaves_nothing_behind() {
    if !require_root("an_interrupted_run_reports_what_it_measured_and_leaves_nothing_behind") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_umacvlan");
    let dir = std::env::temp_dir().join(format!("umvb-int-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // OVS too, when installed: its daemons must go with the run.
    let systems = if bench::ovs::Ovs::available() {
        "ovs;macvlan"
    } else {
        "macvlan"
    };
    let child = std::process::Command::new(bin)
        .args([
            "bench",
            "run",
            "--scenarios",
            "ep-ep",
            "--sizes",
            "64",
            "--rounds",
            "50",
            "--seconds",
            "0.5",
            "--zero-loss-steps",
            "0",
            "--systems",
            systems,
            "--out",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(4));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("interrupted: reporting the"), "{stdout}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let n = j["measurements"].as_array().unwrap().len();
    assert!((1..100).contains(&n), "{n} measurements");
    let _ = std::fs::remove_dir_all(&dir);
    assert_nothing_left(pid);
}
