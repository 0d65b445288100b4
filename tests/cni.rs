//! The CNI plugin, driven exactly as a runtime drives it: the `umacvlan` binary
//! found in `CNI_PATH`, the environment variables, the configuration on stdin, the
//! result or the error on stdout. Every command, with Debian's `host-local` IPAM
//! delegated to; DEL twice, DEL after the namespace is gone and without
//! `CNI_NETNS`; CHECK after the interface was deleted behind its back; STATUS with the
//! daemon stopped; GC; a `kill -9` of the daemon in between; and the reference
//! `macvlan` plugin's result beside ours.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::daemon::{ok, DaemonProc};
use common::require_root_and;
use common::runtime::{PluginDir, REFERENCE_PLUGINS};
use common::topo::{Topo, EXT_IP};
use serde_json::{json, Value};

/// One plugin run: exit success and the JSON it printed.
struct Answer {
    ok: bool,
    out: Value,
}

/// Runs plugin `plugin` with `cmd` in namespace `ns` (where the daemon and the
/// parent are), as a runtime would.
#[allow(clippy::too_many_arguments)]
fn cni(
    dir: &PluginDir,
    ns: &str,
    plugin: &str,
    cmd: &str,
    container: &str,
    netns: &str,
    ifname: &str,
    args: &str,
    conf: &Value,
) -> Answer {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(dir.0.join(plugin))
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_ARGS", args)
        .env("CNI_PATH", &dir.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let out = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{cmd}: not JSON ({e}): {text}"))
    };
    println!(
        "{plugin} {cmd} {container}/{ifname}: exit {} {out}",
        o.status
    );
    Answer {
        ok: o.status.success(),
        out,
    }
}

/// Every key path of a JSON value (array elements as `[]`), for comparing shapes.
fn shape(v: &Value, at: String, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                shape(x, p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                shape(x, format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_plugin_answers_every_command_as_a_runtime_drives_it() {
    if !require_root_and(
        "the_plugin_answers_every_command_as_a_runtime_drives_it",
        &["ping"],
    ) {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !Path::new(REFERENCE_PLUGINS).join("host-local").exists() {
        assert!(
            !ci,
            "containernetworking-plugins missing: run scripts/setup.sh"
        );
        eprintln!("skipped: no containernetworking-plugins");
        return;
    }
    let mut t = Topo::new("umvcn", false, 0);
    let c: Vec<String> = (1..=4).map(|i| t.lab.quiet_ns(&format!("c{i}"))).collect();
    let path = |ns: &str| format!("/run/netns/{ns}");
    let d = DaemonProc::start(&t.host, "umvcn", "");
    let dir = PluginDir::new("umvcn");
    let ipam_dir = dir.0.with_extension("ipam");
    let _ = std::fs::remove_dir_all(&ipam_dir);
    let sock = d.socket.clone();
    let conf = |version: &str, kind: &str, data: &str, start: &str, end: &str| {
        json!({
            "cniVersion": version, "name": "cnilan", "type": kind, "master": "par",
            "socket": sock,
            "ipam": {
                "type": "host-local", "subnet": "10.9.0.0/24", "rangeStart": start, "rangeEnd": end,
                "gateway": "10.9.0.1", "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": ipam_dir.join(data),
            },
        })
    };
    let v1 = conf("1.0.0", "umacvlan", "u", "10.9.0.20", "10.9.0.29");
    let run = |cmd: &str, container: &str, netns: &str, args: &str, conf: &Value| {
        cni(
            &dir, &t.host, "umacvlan", cmd, container, netns, "eth0", args, conf,
        )
    };

    // VERSION.
    let v = run("VERSION", "", "", "", &json!({ "cniVersion": "1.0.0" }));
    assert!(v.ok && v.out["supportedVersions"].to_string().contains("1.1.0"));

    // ADD: host-local's address, its route, the result of the spec.
    let a1 = run("ADD", "ctr-1", &path(&c[0]), "", &v1);
    assert!(a1.ok, "{}", a1.out);
    assert_eq!(a1.out["ips"][0]["address"], "10.9.0.20/24");
    assert_eq!(a1.out["interfaces"][0]["sandbox"], path(&c[0]));
    let mac1 = a1.out["interfaces"][0]["mac"].as_str().unwrap().to_string();
    let addr = String::from_utf8_lossy(
        &t.lab
            .ip(&c[0], &["-o", "addr", "show", "dev", "eth0"])
            .stdout,
    )
    .to_string();
    assert!(addr.contains("10.9.0.20/24"), "{addr}");
    let route = String::from_utf8_lossy(&t.lab.ip(&c[0], &["route"]).stdout).to_string();
    assert!(route.contains("default via 10.9.0.1 dev eth0"), "{route}");
    // CNI_ARGS MAC= as Podman passes --mac-address.
    let a2 = run(
        "ADD",
        "ctr-2",
        &path(&c[1]),
        "IgnoreUnknown=1;MAC=02:00:00:00:cc:02",
        &v1,
    );
    assert!(a2.ok, "{}", a2.out);
    assert_eq!(a2.out["interfaces"][0]["mac"], "02:00:00:00:cc:02");
    let ip2 = a2.out["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/24")
        .to_string();
    // An interface of that name in the namespace already: refused, nothing kept.
    let again = run("ADD", "ctr-1b", &path(&c[0]), "", &v1);
    assert!(
        !again.ok && again.out["code"].as_u64().unwrap() >= 100,
        "{}",
        again.out
    );
    assert!(
        again.out["msg"].as_str().unwrap().contains("exists"),
        "{}",
        again.out
    );
    assert!(t.ping_ip(&c[0], &ip2), "c1 → c2");
    assert!(t.ping_ip(&c[0], EXT_IP), "c1 → external host");
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    assert!(
        eps.contains("ctr-1") && eps.contains("ctr-2") && !eps.contains("ctr-1b"),
        "{eps}"
    );

    // CHECK against the ADD's result; after a kill -9 of the daemon, the same.
    let mut with_prev = v1.clone();
    with_prev["prevResult"] = a1.out.clone();
    assert!(run("CHECK", "ctr-1", &path(&c[0]), "", &with_prev).ok);
    let d = d.restart();
    assert!(
        run("CHECK", "ctr-1", &path(&c[0]), "", &with_prev).ok,
        "CHECK after kill -9"
    );
    assert!(t.ping_ip(&c[0], &ip2), "c1 → c2 after kill -9");
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    assert!(
        eps.contains(&mac1) && eps.contains("ctr-1"),
        "after kill -9:\n{eps}"
    );
    // The interface deleted behind the plugin's back: CHECK says so.
    t.lab.ip(&c[0], &["link", "del", "eth0"]);
    let bad = run("CHECK", "ctr-1", &path(&c[0]), "", &with_prev);
    assert!(!bad.ok && bad.out["code"] == 101, "{}", bad.out);
    assert!(
        bad.out["msg"].as_str().unwrap().contains("missing"),
        "{}",
        bad.out
    );

    // DEL twice; DEL after the namespace is gone; DEL without CNI_NETNS.
    assert!(run("DEL", "ctr-1", &path(&c[0]), "", &v1).ok);
    assert!(run("DEL", "ctr-1", &path(&c[0]), "", &v1).ok, "DEL twice");
    common::run("ip", &["netns", "del", &c[1]]);
    assert!(
        run("DEL", "ctr-2", &path(&c[1]), "", &v1).ok,
        "DEL after the netns is gone"
    );
    let a3 = run("ADD", "ctr-3", &path(&c[2]), "", &v1);
    assert!(a3.ok, "{}", a3.out);
    assert!(run("DEL", "ctr-3", "", "", &v1).ok, "DEL without CNI_NETNS");
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    assert_eq!(eps.lines().count(), 1, "every endpoint gone:\n{eps}");

    // 1.1.0: GC removes what is not a valid attachment; STATUS.
    let mut v11 = conf("1.1.0", "umacvlan", "u", "10.9.0.20", "10.9.0.29");
    assert!(run("ADD", "ctr-4", &path(&c[3]), "", &v11).ok);
    assert!(run("ADD", "ctr-3", &path(&c[2]), "", &v11).ok);
    v11["cni.dev/valid-attachments"] = json!([{ "containerID": "ctr-3", "ifname": "eth0" }]);
    assert!(run("GC", "", "", "", &v11).ok);
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    assert!(eps.contains("ctr-3") && !eps.contains("ctr-4"), "{eps}");
    assert!(run("STATUS", "", "", "", &v11).ok);
    let mut no_parent = v11.clone();
    no_parent["name"] = json!("other");
    no_parent["master"] = json!("umvnosuch0");
    let st = run("STATUS", "", "", "", &no_parent);
    assert!(!st.ok && st.out["code"] == 50, "{}", st.out);
    assert!(run("DEL", "ctr-3", &path(&c[2]), "", &v11).ok);
    d.stop();
    let st = run("STATUS", "", "", "", &v11);
    assert!(!st.ok && st.out["code"] == 50, "{}", st.out);
    assert!(
        st.out["msg"]
            .as_str()
            .unwrap()
            .contains("umacvlan daemon not running"),
        "{}",
        st.out
    );
    let down = run("ADD", "ctr-5", &path(&c[3]), "", &v1);
    assert!(!down.ok && down.out["code"] == 11, "{}", down.out);

    // The reference macvlan plugin, same configuration: a result of the same shape.
    let mut reference = conf("1.0.0", "macvlan", "m", "10.9.0.40", "10.9.0.49");
    reference.as_object_mut().unwrap().remove("socket");
    let m = cni(
        &dir,
        &t.host,
        "macvlan",
        "ADD",
        "ref-1",
        &path(&c[3]),
        "eth0",
        "",
        &reference,
    );
    assert!(m.ok, "{}", m.out);
    let (mut ours, mut theirs) = (BTreeSet::new(), BTreeSet::new());
    shape(&a1.out, String::new(), &mut ours);
    shape(&m.out, String::new(), &mut theirs);
    assert_eq!(
        ours, theirs,
        "result shapes differ: ours {} theirs {}",
        a1.out, m.out
    );
    let _ = std::fs::remove_dir_all(&ipam_dir);
}

/// `ip -o link` of namespace `ns` names `eth0`.
fn has_eth0(t: &Topo, ns: &str) -> bool {
    String::from_utf8_lossy(&t.lab.ip(ns, &["-o", "link", "show"]).stdout).contains(": eth0@")
}

#[test]
fn a_stop_keeps_containers_interfaces_unless_told_to_clean_up() {
    if !require_root_and(
        "a_stop_keeps_containers_interfaces_unless_told_to_clean_up",
        &["ping"],
    ) {
        return;
    }
    let mut t = Topo::new("umvck", false, 0);
    let c1 = t.lab.quiet_ns("c1");
    let dir = PluginDir::new("umvck");
    let conf = |socket: &Path| {
        json!({
            "cniVersion": "1.0.0", "name": "keep", "type": "umacvlan", "master": "par",
            "socket": socket,
            "ipam": { "type": "umacvlan", "subnet": "10.9.0.0/24", "ip_range": "10.9.0.80/29" },
        })
    };
    let add = |d: &DaemonProc| {
        let a = cni(
            &dir,
            &t.host,
            "umacvlan",
            "ADD",
            "k1",
            &format!("/run/netns/{c1}"),
            "eth0",
            "",
            &conf(&d.socket),
        );
        assert!(a.ok, "{}", a.out);
        assert_eq!(
            a.out["ips"][0]["address"], "10.9.0.80/24",
            "the daemon's IPAM"
        );
    };
    // By default SIGTERM keeps a container's interface; the next start takes it over.
    let d = DaemonProc::start(&t.host, "umvck", "");
    add(&d);
    let (d, _) = d.stop_and_restart();
    assert!(
        has_eth0(&t, &c1),
        "SIGTERM removed the container's interface"
    );
    assert!(t.ping_ip(&c1, EXT_IP), "c1 → ext after SIGTERM and a start");
    // --cleanup-on-exit removes it.
    let (d, _) = d.with_args(&["--cleanup-on-exit"]).stop_and_restart();
    assert!(has_eth0(&t, &c1), "taken over by the new start");
    d.stop();
    assert!(
        !has_eth0(&t, &c1),
        "--cleanup-on-exit left the container's interface"
    );
}
