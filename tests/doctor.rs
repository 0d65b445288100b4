//! Root test: `umacvlan doctor PARENT --json`, the real binary run in a test namespace
//! on a veth parent. A clean parent gives no error (exit status 0). Then two deliberate
//! problems: a jumbo MTU (9000) above what a UMEM frame holds and above what native
//! XDP on a veth accepts — an error — and the namespace's default route through the
//! parent — a warning; each is found with its fix, the doctor exits 1, and running the
//! printed fix makes the error go. The doctor changes nothing: no program, no qdisc.

mod common;

use std::process::Command;

use common::{require_root, Lab};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_umacvlan");

/// Runs `umacvlan doctor ARGS --json` in namespace `ns`: its exit status and findings.
fn doctor(ns: &str, args: &[&str]) -> (i32, Vec<Value>) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, BIN, "doctor", "--json"])
        .args(args)
        .output()
        .expect("ip netns exec umacvlan doctor");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor {args:?}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = v["findings"].as_array().expect("findings").clone();
    (out.status.code().unwrap_or(-1), findings)
}

/// The one finding of `check` about `parent`.
fn finding<'a>(fs: &'a [Value], parent: &str, check: &str) -> &'a Value {
    let mut it = fs
        .iter()
        .filter(|f| f["parent"] == parent && f["check"] == check);
    let f = it
        .next()
        .unwrap_or_else(|| panic!("no {check} finding for {parent}: {fs:#?}"));
    assert!(it.next().is_none(), "two {check} findings: {fs:#?}");
    f
}

/// The checks that found an error.
fn errors(fs: &[Value]) -> Vec<String> {
    fs.iter()
        .filter(|f| f["level"] == "error")
        .map(|f| format!("{}: {}", f["check"], f["detail"]))
        .collect()
}

#[test]
fn doctor_finds_a_deliberate_problem_on_a_veth_parent() {
    if !require_root("doctor_finds_a_deliberate_problem_on_a_veth_parent") {
        return;
    }
    let mut lab = Lab::new("umvd");
    let ns = lab.quiet_ns("host");
    lab.veth(&ns, "par", "par-wire");

    // A clean veth parent: no error, exit status 0.
    let (code, fs) = doctor(&ns, &["par"]);
    assert!(errors(&fs).is_empty(), "{:#?}", errors(&fs));
    assert_eq!(code, 0, "{fs:#?}");
    for check in [
        "link",
        "xdp_native",
        "mtu",
        "xdp_program",
        "tc_filter",
        "default_route",
    ] {
        assert_eq!(
            finding(&fs, "par", check)["level"],
            "ok",
            "{check}: {fs:#?}"
        );
    }

    // The deliberate problems: jumbo frames on both ends, and the default route out
    // of the parent.
    for dev in ["par", "par-wire"] {
        lab.ip(&ns, &["link", "set", "dev", dev, "mtu", "9000"]);
    }
    lab.ip(&ns, &["addr", "add", "10.99.0.2/24", "dev", "par"]);
    lab.ip(
        &ns,
        &["route", "add", "default", "via", "10.99.0.1", "dev", "par"],
    );
    let (code, fs) = doctor(&ns, &["par"]);
    assert_eq!(code, 1, "an error must fail the doctor: {fs:#?}");
    let mtu = finding(&fs, "par", "mtu");
    assert_eq!(mtu["level"], "error", "{mtu:#?}");
    let detail = mtu["detail"].as_str().unwrap();
    assert!(
        detail.contains("MTU 9000") && detail.contains("UMEM") && detail.contains("veth"),
        "{detail}"
    );
    let fix = mtu["fix"].as_str().expect("the MTU error has a fix");
    assert_eq!(
        fix,
        "ip link set dev par mtu 3506 && ip link set dev par-wire mtu 3506"
    );
    let route = finding(&fs, "par", "default_route");
    assert_eq!(route["level"], "warning", "{route:#?}");
    assert!(
        route["detail"].as_str().unwrap().contains("IPv4"),
        "{route:#?}"
    );
    assert!(
        route["fix"].as_str().unwrap().contains("--host-port"),
        "{route:#?}"
    );
    assert_eq!(errors(&fs).len(), 1, "only the MTU is an error: {fs:#?}");

    // Read-only: no program, no filter, no qdisc appeared on the parent.
    let link = lab.ip(&ns, &["-d", "link", "show", "dev", "par"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "{}",
        String::from_utf8_lossy(&link.stdout)
    );
    let tc = common::run("tc", &["-n", &ns, "qdisc", "show", "dev", "par"]);
    assert!(
        !String::from_utf8_lossy(&tc.stdout).contains("clsact"),
        "{}",
        String::from_utf8_lossy(&tc.stdout)
    );

    // The printed fix is a command that fixes it.
    lab.exec(&ns, &["sh", "-c", fix]);
    let (code, fs) = doctor(&ns, &["par"]);
    assert_eq!(finding(&fs, "par", "mtu")["level"], "ok", "{fs:#?}");
    assert!(errors(&fs).is_empty(), "{:#?}", errors(&fs));
    assert_eq!(code, 0);

    // No such parent: an error with what to do.
    let (code, fs) = doctor(&ns, &["nosuch0"]);
    assert_eq!(code, 1);
    let link = finding(&fs, "nosuch0", "link");
    assert_eq!(link["level"], "error", "{link:#?}");
    assert!(
        link["fix"].as_str().unwrap().contains("ip link"),
        "{link:#?}"
    );
}
