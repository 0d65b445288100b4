//! The Docker network driver with a real Docker (Debian's docker.io, 20.10): a
//! private dockerd in a namespace of its own uses the daemon's driver socket, as
//! `docker network create -d umacvlan` would. Containers get their interfaces, their
//! addresses and MACs, reach each other and the external host, are disconnected and
//! connected again, and keep their interfaces across a `kill -9` and a SIGTERM of the
//! daemon; removing everything leaves nothing. Bad options are refused naming them.
//!
//! Nothing here touches the machine's Docker, if any: dockerd gets its own socket,
//! data root, exec root, cgroup parent and driver name, all named `umvdk<pid>`, and
//! a run that crashed is reaped at the next start (its dockerd, containerd and shims
//! killed, its mounts unmounted, its cgroups and directories removed).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{ok, DaemonProc};
use common::require_root_and;
use common::runtime;
use common::topo::{Topo, EXT_IP};

const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
const TAG: &str = "umvdk";

/// The names of this run's private Docker.
struct Names {
    /// The driver: `-d umvdk<pid>`, socket /run/docker/plugins/umvdk<pid>.sock.
    driver: String,
    plugin: PathBuf,
    exec_root: PathBuf,
    data_root: PathBuf,
    cgroup_parent: String,
}

impl Names {
    fn of(pid: u32) -> Names {
        let driver = format!("{TAG}{pid}");
        Names {
            plugin: PathBuf::from(format!("/run/docker/plugins/{driver}.sock")),
            exec_root: PathBuf::from(format!("/run/{driver}")),
            data_root: PathBuf::from(format!("/var/lib/{driver}")),
            cgroup_parent: driver.clone(),
            driver,
        }
    }

    fn socket(&self) -> PathBuf {
        self.exec_root.join("docker.sock")
    }
}

/// Removes everything the private Docker of process `pid` left: dockerd, its
/// containerd and shims, mounts under its roots, its cgroups and its directories.
fn reap(pid: u32) {
    let n = Names::of(pid);
    runtime::reap(&[n.exec_root, n.data_root], Some(&n.cgroup_parent));
}

/// What earlier runs whose process is gone left.
fn reap_dead_runs() {
    for pid in runtime::dead_runs(Path::new("/run"), TAG) {
        reap(pid);
        let _ = std::fs::remove_file(Names::of(pid).plugin);
    }
}

/// A private dockerd in namespace `ns`, stopped and reaped on drop.
struct Dockerd {
    child: Child,
    names: Names,
}

impl Dockerd {
    fn start(ns: &str) -> Dockerd {
        reap_dead_runs();
        let names = Names::of(std::process::id());
        reap(std::process::id());
        std::fs::create_dir_all(&names.exec_root).unwrap();
        std::fs::create_dir_all(&names.data_root).unwrap();
        let log = std::fs::File::create(names.exec_root.join("dockerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg(DOCKERD)
            .arg("-H")
            .arg(format!("unix://{}", names.socket().display()))
            .arg("--data-root")
            .arg(&names.data_root)
            .arg("--exec-root")
            .arg(&names.exec_root)
            .arg("--pidfile")
            .arg(names.exec_root.join("dockerd.pid"))
            .args(["--cgroup-parent", &names.cgroup_parent])
            .args(["--storage-driver", "vfs"])
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd");
        let d = Dockerd { child, names };
        let t0 = Instant::now();
        while !d.docker(&["version"]).status.success() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "dockerd did not come up:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.names.exec_root.join("dockerd.log")).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.names.socket().display()))
            .args(args)
            .output()
            .expect("docker")
    }

    /// `docker ARGS`, which must succeed; its stdout, trimmed.
    fn ok(&self, args: &[&str]) -> String {
        runtime::checked("docker", args, &self.docker(args))
    }

    /// `docker ARGS`, which must fail with `want` in its error.
    fn refused(&self, args: &[&str], want: &str) {
        let o = self.docker(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want),
            "docker {} should fail with {want:?}: {err}",
            args.join(" ")
        );
    }

    /// Imports a busybox image (`umvbusybox`) from the machine's busybox-static.
    fn import_busybox(&self) {
        let tar = runtime::busybox_tar(&self.names.exec_root);
        self.ok(&["import", tar.to_str().unwrap(), "umvbusybox"]);
    }

    /// `ping -c 1` from container `c` to `ip`, retried until `deadline`.
    fn ping(&self, c: &str, ip: &str, deadline: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            if self
                .docker(&["exec", c, "ping", "-c", "1", "-W", "1", ip])
                .status
                .success()
            {
                return true;
            }
            if t0.elapsed() > deadline {
                return false;
            }
        }
    }

    /// Container `c`'s interface on the network (its only one but `lo`; Docker names
    /// it `eth0`, or `eth1` after a reconnect): its MAC and IPv4 address with prefix.
    fn eth0(&self, c: &str) -> (String, String) {
        let links = self.ok(&["exec", c, "ip", "-o", "link"]);
        let line = links
            .lines()
            .find(|l| l.split(": ").nth(1).is_some_and(|n| n != "lo"))
            .unwrap_or_else(|| panic!("{c} has no interface but lo: {links}"));
        let word = |l: &str, after: &str| {
            l.split_whitespace()
                .skip_while(|w| *w != after)
                .nth(1)
                .unwrap_or_default()
                .to_string()
        };
        let dev = line
            .split(": ")
            .nth(1)
            .unwrap()
            .split('@')
            .next()
            .unwrap()
            .to_string();
        let addr = self.ok(&["exec", c, "ip", "-o", "-4", "addr", "show", "dev", &dev]);
        (word(line, "link/ether"), word(&addr, "inet"))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Containers first (their shims hold mounts), then dockerd itself.
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t0 = Instant::now();
        while self.child.try_wait().ok().flatten().is_none()
            && t0.elapsed() < Duration::from_secs(15)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        reap(std::process::id());
    }
}

/// `ping -c 1` from namespace `ns` to `ip`, retried until `deadline`.
fn ping_from(t: &Topo, ns: &str, ip: &str, deadline: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if t.lab.try_exec(ns, &["ping", "-c", "1", "-W", "1", ip]) {
            return true;
        }
        if t0.elapsed() > deadline {
            return false;
        }
    }
}

/// Interface names in namespace `ns`.
fn links(t: &Topo, ns: &str) -> Vec<String> {
    let out = t.lab.ip(ns, &["-o", "link", "show"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

#[test]
fn docker_uses_the_umacvlan_driver() {
    if !require_root_and(
        "docker_uses_the_umacvlan_driver",
        &["ping", "nsenter", "tar"],
    ) {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !Path::new(DOCKERD).exists() || !Path::new("/bin/busybox").exists() {
        assert!(
            !ci,
            "dockerd or busybox-static missing: run scripts/setup.sh"
        );
        eprintln!("docker_uses_the_umacvlan_driver: skipped (no dockerd or busybox-static)");
        return;
    }
    // Hairpin on the wire's port: VEPA siblings reach each other through it.
    let mut t = Topo::new(TAG, true, 0);
    let dk = t.lab.quiet_ns("dk");
    let names = Names::of(std::process::id());
    let plugin = names.plugin.to_str().unwrap().to_string();
    let d = DaemonProc::start_with(&t.host, TAG, "", &["--docker-socket", &plugin]);
    let docker = Dockerd::start(&dk);
    docker.import_busybox();
    let drv = names.driver.clone();

    // Bad options are refused at network create, naming them.
    docker.refused(
        &[
            "network",
            "create",
            "-d",
            &drv,
            "-o",
            "parent=par",
            "-o",
            "colour=blue",
            "bad",
        ],
        "option colour",
    );
    docker.refused(
        &[
            "network",
            "create",
            "-d",
            &drv,
            "-o",
            "macvlan_mode=bridge",
            "bad",
        ],
        "option parent is required",
    );
    docker.refused(
        &[
            "network",
            "create",
            "-d",
            &drv,
            "-o",
            "parent=par",
            "-o",
            "macvlan_mode=hairpin",
            "bad",
        ],
        "'hairpin' is not a mode",
    );

    let nid = docker.ok(&[
        "network",
        "create",
        "-d",
        &drv,
        "-o",
        "parent=par",
        "-o",
        "host_port=umvdkhp",
        "--subnet",
        "10.9.0.0/24",
        "--gateway",
        "10.9.0.1",
        "--aux-address",
        &format!("ext={EXT_IP}"),
        "lan",
    ]);
    let net = format!("docker-{}", &nid[..12]);
    assert!(ok(&d.cli(&["network", "ls"])).contains(&net));

    // An address from Docker's IPAM, a chosen one, a chosen MAC.
    let run = |name: &str, extra: &[&str]| {
        let mut a = vec!["run", "-d", "--name", name, "--network", "lan"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["umvbusybox", "sleep", "600"]);
        docker.ok(&a);
    };
    run("c1", &["--ip", "10.9.0.11"]);
    run("c2", &[]);
    run("c3", &["--mac-address", "02:00:00:00:aa:03"]);
    let (m1, ip1) = docker.eth0("c1");
    let (m2, ip2) = docker.eth0("c2");
    let (m3, _) = docker.eth0("c3");
    assert_eq!(ip1, "10.9.0.11/24");
    assert!(ip2.starts_with("10.9.0.") && ip2.ends_with("/24"), "{ip2}");
    assert_eq!(m3, "02:00:00:00:aa:03");
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    for m in [&m1, &m2, &m3] {
        assert!(eps.contains(m.as_str()), "{m} not in endpoint ls:\n{eps}");
    }
    let ip2 = ip2.trim_end_matches("/24").to_string();
    let wait = Duration::from_secs(10);
    assert!(docker.ping("c1", EXT_IP, wait), "c1 → external host");
    assert!(docker.ping("c1", &ip2, wait), "c1 → c2");
    assert!(docker.ping("c3", "10.9.0.11", wait), "c3 → c1");
    assert!(
        ping_from(&t, &t.ext, "10.9.0.11", wait),
        "external host → c1"
    );
    // Nothing of the endpoints is left in dockerd's namespace: Docker moved them.
    assert!(
        !links(&t, &dk).iter().any(|l| l.starts_with("umvd")),
        "{:?}",
        links(&t, &dk)
    );

    // The host reaches a container through the host port.
    t.lab
        .ip(&t.host, &["addr", "add", "10.9.0.3/32", "dev", "umvdkhp"]);
    t.lab.ip(
        &t.host,
        &[
            "route",
            "add",
            "10.9.0.11/32",
            "dev",
            "umvdkhp",
            "src",
            "10.9.0.3",
        ],
    );
    assert!(
        ping_from(&t, &t.host, "10.9.0.11", wait),
        "host → c1 through the host port"
    );

    // Disconnect and connect again.
    docker.ok(&["network", "disconnect", "lan", "c2"]);
    assert!(
        !ok(&d.cli(&["endpoint", "ls"])).contains(&m2),
        "c2's endpoint stays"
    );
    assert!(
        !docker.ping("c1", &ip2, Duration::ZERO),
        "c2 still reachable"
    );
    docker.ok(&["network", "connect", "lan", "c2"]);
    let (_, ip2) = docker.eth0("c2");
    let ip2 = ip2.trim_end_matches("/24").to_string();
    assert!(docker.ping("c1", &ip2, wait), "c1 → c2 connected again");

    // kill -9 of the daemon: the containers keep their interfaces; the new daemon
    // takes them over. How long the external host could not reach c1:
    let before = ok(&d.cli(&["endpoint", "ls"]));
    let t0 = Instant::now();
    let d = d.restart();
    assert!(
        ping_from(&t, &t.ext, "10.9.0.11", wait),
        "ext → c1 after kill -9"
    );
    println!(
        "kill -9 and restart: ext → c1 answered again {:?} after the kill",
        t0.elapsed()
    );
    assert_eq!(
        ok(&d.cli(&["endpoint", "ls"])),
        before,
        "endpoints after kill -9"
    );
    assert_eq!(docker.eth0("c1").0, m1, "c1's MAC after kill -9");
    assert!(docker.ping("c3", &ip2, wait), "c3 → c2 after kill -9");

    // SIGTERM and a new start: the same.
    let (d, _) = d.stop_and_restart();
    assert!(
        ping_from(&t, &t.ext, "10.9.0.11", wait),
        "ext → c1 after SIGTERM"
    );
    assert_eq!(
        ok(&d.cli(&["endpoint", "ls"])),
        before,
        "endpoints after SIGTERM"
    );

    // A container restart gets its address, hence its MAC, again.
    docker.ok(&["restart", "-t", "0", "c1"]);
    assert_eq!(docker.eth0("c1"), (m1.clone(), "10.9.0.11/24".to_string()));
    assert!(
        docker.ping("c1", EXT_IP, wait),
        "c1 → ext after its restart"
    );

    // Private mode: siblings cut off from each other, the wire still reachable.
    docker.ok(&["rm", "-f", "c1", "c2", "c3"]);
    docker.ok(&["network", "rm", "lan"]);
    assert!(!ok(&d.cli(&["network", "ls"])).contains(&net));
    docker.ok(&[
        "network",
        "create",
        "-d",
        &drv,
        "-o",
        "parent=par",
        "-o",
        "macvlan_mode=private",
        "--subnet",
        "10.9.0.0/24",
        "--gateway",
        "10.9.0.1",
        "--aux-address",
        &format!("ext={EXT_IP}"),
        "priv",
    ]);
    run_on(&docker, "p1", "priv", "10.9.0.21");
    run_on(&docker, "p2", "priv", "10.9.0.22");
    assert!(docker.ping("p1", EXT_IP, wait), "private: p1 → ext");
    assert!(
        !docker.ping("p1", "10.9.0.22", Duration::from_secs(2)),
        "private: p1 → p2 must fail"
    );
    let inspect = ok(&d.cli(&["endpoint", "ls"]));
    assert!(inspect.contains(" private "), "{inspect}");

    docker.ok(&["rm", "-f", "p1", "p2"]);
    docker.ok(&["network", "rm", "priv"]);

    // umacvlan's IPAM driver, on a VEPA network: the lowest free address of the
    // range, kept across a kill -9, released ones handed out again; VEPA siblings
    // reach each other through the wire's hairpin.
    docker.ok(&[
        "network",
        "create",
        "-d",
        &drv,
        "--ipam-driver",
        &drv,
        "-o",
        "parent=par",
        "-o",
        "macvlan_mode=vepa",
        "--subnet",
        "10.9.0.0/24",
        "--ip-range",
        "10.9.0.32/28",
        "--gateway",
        "10.9.0.1",
        "--aux-address",
        &format!("ext={EXT_IP}"),
        "vepa",
    ]);
    let run_vepa = |name: &str| {
        docker.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "vepa",
            "umvbusybox",
            "sleep",
            "600",
        ]);
        docker.eth0(name).1
    };
    assert_eq!(run_vepa("v1"), "10.9.0.32/24");
    assert_eq!(run_vepa("v2"), "10.9.0.33/24");
    assert!(
        docker.ping("v1", "10.9.0.33", wait),
        "VEPA: v1 → v2 through the hairpin"
    );
    assert!(docker.ping("v2", EXT_IP, wait), "VEPA: v2 → ext");
    let d = d.restart();
    assert_eq!(run_vepa("v3"), "10.9.0.34/24", "after kill -9");
    docker.ok(&["rm", "-f", "v1"]);
    assert_eq!(run_vepa("v4"), "10.9.0.32/24", "a released address again");
    assert!(docker.ping("v4", "10.9.0.34", wait), "VEPA: v4 → v3");
    docker.ok(&["rm", "-f", "v2", "v3", "v4"]);
    docker.ok(&["network", "rm", "vepa"]);
    let state = std::fs::read_to_string(d.state_dir().join("state.json")).unwrap();
    assert!(
        !state.contains("ipam_pools"),
        "the pool was released:\n{state}"
    );

    // Everything removed: nothing of it is left anywhere.
    assert_eq!(
        ok(&d.cli(&["endpoint", "ls"])).lines().count(),
        1,
        "only the header"
    );
    let left: Vec<String> = links(&t, &t.host)
        .into_iter()
        .chain(links(&t, &dk))
        .filter(|l| l.starts_with("umv"))
        .collect();
    assert!(left.is_empty(), "left: {left:?}");
    let par = String::from_utf8_lossy(&t.lab.ip(&t.host, &["-d", "link", "show", "par"]).stdout)
        .to_string();
    assert!(
        !par.contains("prog/xdp"),
        "an XDP program is left on the parent:\n{par}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.state_dir().join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["networks"], serde_json::json!([]), "{state}");
    assert_eq!(state["endpoints"], serde_json::json!([]), "{state}");
    drop(docker);
    d.stop();
    assert!(!names.plugin.exists(), "the plugin socket was left");
}

fn run_on(docker: &Dockerd, name: &str, net: &str, ip: &str) {
    docker.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        net,
        "--ip",
        ip,
        "umvbusybox",
        "sleep",
        "600",
    ]);
}
