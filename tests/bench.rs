//! Root tests of the `umacvlan bench` command: it writes its table, JSON and plot,
//! refuses bad options, and an interrupted run reports what it measured and leaves
//! nothing behind. (The harness itself is tested in process, in the binary's own
//! tests: `src/bin/umacvlan/bench/root_tests.rs`.)

mod common;

use std::time::Duration;

use common::{assert_no_bench_leftovers, require_root};

/// Whether Open vSwitch's tools are installed (then the bench runs it too).
fn ovs_installed() -> bool {
    std::process::Command::new("ovs-vswitchd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
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
    let systems = if ovs_installed() {
        "ovs;macvlan"
    } else {
        "macvlan"
    };
    let mut child = std::process::Command::new(bin)
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
    // Interrupt it once its first measurement is reported (its signal handlers are
    // installed by then): read its output on a thread, line by line.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stdout = String::new();
    let t0 = std::time::Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120).saturating_sub(t0.elapsed()))
            .unwrap_or_else(|_| panic!("no measurement reported within 120 s:\n{stdout}"));
        let measured = line.contains(" round 1 ") && line.contains(" sent ");
        stdout += &line;
        stdout.push('\n');
        if measured {
            break;
        }
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    stdout.extend(rx.try_iter().map(|l| l + "\n"));
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
    assert_no_bench_leftovers(pid);
}
