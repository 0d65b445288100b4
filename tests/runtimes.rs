//! The CNI plugin under real runtimes: Podman 4.3 (Debian's, CNI backend) and
//! containerd's `ctr run --cni`, each a private instance in the topology's host
//! namespace (where the daemon and the parent are), with a conflist naming
//! `"type": "umacvlan"`. Containers get their addresses from host-local, reach each
//! other and the external host, keep their interfaces across a `kill -9` of the
//! daemon, and leave nothing in it when removed.
//!
//! Podman runs with its own configuration, storage, network directory and plugin
//! directory (`CONTAINERS_CONF`, flags); containerd's `ctr run --cni` reads fixed
//! paths (`/etc/cni/net.d`, `/opt/cni/bin`), where the test places and then removes
//! only its own files. A crashed run is reaped at the next start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{ok, DaemonProc};
use common::require_root_and;
use common::runtime::{self, PluginDir, REFERENCE_PLUGINS};
use common::topo::{Topo, EXT_IP};

/// `args`, run in namespace `ns` (`nsenter --net`, which keeps the mounts and
/// cgroups of the caller, unlike `ip netns exec`).
fn nsenter(ns: &str, prog: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}")).arg(prog);
    c
}

/// Retries `f` until it holds or `deadline` passes.
fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A private Podman: configuration, storage and networks under `/var/tmp/umvpm<pid>`.
struct Podman {
    dir: PathBuf,
    ns: String,
}

impl Podman {
    fn new(ns: &str, plugins: &Path) -> Podman {
        for pid in runtime::dead_runs(Path::new("/var/tmp"), "umvpm") {
            runtime::reap(&[PathBuf::from(format!("/var/tmp/umvpm{pid}"))], None);
        }
        let dir = PathBuf::from(format!("/var/tmp/umvpm{}", std::process::id()));
        runtime::reap(std::slice::from_ref(&dir), None);
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        // Measured here: runc cannot raise rlimits in this VM, so the defaults are
        // lowered; cgroupfs and file events (no systemd); CNI, not netavark.
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=20000:20000\"]\n\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{}\"\n\n[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\"]\nnetwork_config_dir = \"{}\"\n",
                dir.join("events.log").display(),
                plugins.display(),
                dir.join("net.d").display()
            ),
        )
        .unwrap();
        Podman {
            dir,
            ns: ns.to_string(),
        }
    }

    fn podman(&self, args: &[&str]) -> Output {
        let d = |x: &str| self.dir.join(x).to_string_lossy().into_owned();
        nsenter(&self.ns, "podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .args(["--root", &d("root"), "--runroot", &d("runroot")])
            .args(["--storage-driver", "vfs", "--tmpdir", &d("tmp")])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--network-config-dir", &d("net.d")])
            .args(args)
            .output()
            .expect("podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        runtime::checked("podman", args, &self.podman(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-f", "-a", "-t", "0"]);
        runtime::reap(std::slice::from_ref(&self.dir), None);
    }
}

/// The MAC and IPv4 address (with prefix) of `dev` from `ip -o link` and `ip -o -4
/// addr` output.
fn mac_and_ip(link: &str, addr: &str) -> (String, String) {
    let word = |l: &str, after: &str| {
        l.split_whitespace()
            .skip_while(|w| *w != after)
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    (word(link, "link/ether"), word(addr, "inet"))
}

#[test]
fn podman_runs_containers_on_a_umacvlan_cni_network() {
    if !require_root_and(
        "podman_runs_containers_on_a_umacvlan_cni_network",
        &["nsenter", "ping", "tar"],
    ) {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !Path::new("/usr/bin/podman").exists() || !Path::new(REFERENCE_PLUGINS).exists() {
        assert!(
            !ci,
            "podman or containernetworking-plugins missing: run scripts/setup.sh"
        );
        eprintln!("skipped: no podman");
        return;
    }
    let t = Topo::new("umvpm", false, 0);
    let d = DaemonProc::start(&t.host, "umvpm", "");
    let plugins = PluginDir::new("umvpm");
    let pm = Podman::new(&t.host, &plugins.0);
    std::fs::write(
        pm.dir.join("net.d/umvpod.conflist"),
        runtime::conflist(
            "umvpod",
            &d.socket,
            &pm.dir.join("ipam"),
            "10.9.0.50",
            "10.9.0.59",
        ),
    )
    .unwrap();
    let tar = runtime::busybox_tar(&pm.dir);
    pm.ok(&["import", tar.to_str().unwrap(), "umvbusybox"]);
    pm.ok(&["network", "ls"]);
    pm.ok(&[
        "run",
        "-d",
        "--name",
        "p1",
        "--network",
        "umvpod",
        "umvbusybox",
        "sleep",
        "600",
    ]);
    pm.ok(&[
        "run",
        "-d",
        "--name",
        "p2",
        "--network",
        "umvpod",
        "--ip",
        "10.9.0.57",
        "--mac-address",
        "02:00:00:00:dd:02",
        "umvbusybox",
        "sleep",
        "600",
    ]);
    let iface = |c: &str| {
        mac_and_ip(
            &pm.ok(&["exec", c, "ip", "-o", "link", "show", "eth0"]),
            &pm.ok(&["exec", c, "ip", "-o", "-4", "addr", "show", "eth0"]),
        )
    };
    let (m1, ip1) = iface("p1");
    assert_eq!(ip1, "10.9.0.50/24");
    assert_eq!(
        iface("p2"),
        ("02:00:00:00:dd:02".to_string(), "10.9.0.57/24".to_string())
    );
    let ping = |c: &str, ip: &str| {
        eventually(Duration::from_secs(10), || {
            pm.podman(&["exec", c, "ping", "-c", "1", "-W", "1", ip])
                .status
                .success()
        })
    };
    assert!(ping("p1", "10.9.0.57"), "p1 → p2");
    assert!(ping("p2", EXT_IP), "p2 → external host");
    pm.ok(&["exec", "p1", "ping", "-c", "2", "10.9.0.57"]);
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    println!("$ umacvlan endpoint ls\n{eps}");
    assert!(
        eps.contains(&m1) && eps.contains("02:00:00:00:dd:02"),
        "{eps}"
    );

    // kill -9 of the daemon: the containers keep their interfaces.
    let d = d.restart();
    assert!(ping("p1", EXT_IP), "p1 → external host after kill -9");
    assert_eq!(iface("p1").0, m1);

    pm.ok(&["rm", "-f", "-t", "0", "p1", "p2"]);
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    assert_eq!(eps.lines().count(), 1, "podman rm left endpoints:\n{eps}");
}

/// Writes an OCI image archive of the busybox root file system in `dir`, named
/// `docker.io/library/umvbusybox:latest`; returns its path.
fn oci_archive(dir: &Path) -> PathBuf {
    let layer = runtime::busybox_tar(dir);
    let layout = dir.join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let sha = |p: &Path| -> String {
        let o = common::run("sha256sum", &[p.to_str().unwrap()]);
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    // A blob: stored under its digest; (digest, size).
    let blob = |p: &Path| -> (String, u64) {
        let d = sha(p);
        std::fs::copy(p, blobs.join(&d)).unwrap();
        (format!("sha256:{d}"), std::fs::metadata(p).unwrap().len())
    };
    let json_blob = |name: &str, v: serde_json::Value| {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        blob(&p)
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let (layer_digest, layer_size) = blob(&layer);
    let (config_digest, config_size) = json_blob(
        "config.json",
        serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": { "Cmd": ["sh"] },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        }),
    );
    let (manifest_digest, manifest_size) = json_blob(
        "manifest.json",
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size }],
        }),
    );
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_size,
                "annotations": {
                    "io.containerd.image.name": "docker.io/library/umvbusybox:latest",
                    "org.opencontainers.image.ref.name": "latest",
                },
            }],
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("image.tar");
    common::run(
        "tar",
        &[
            "-C",
            layout.to_str().unwrap(),
            "-cf",
            archive.to_str().unwrap(),
            ".",
        ],
    );
    archive
}

/// The fixed places `ctr run --cni` reads, and what this run put there (removed on
/// drop; a crashed run's are removed by the next).
struct FixedCniFiles {
    made: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

const NET_D: &str = "/etc/cni/net.d";
const OPT_BIN: &str = "/opt/cni/bin";

impl FixedCniFiles {
    /// Our conflist, first in `/etc/cni/net.d`, and `umacvlan`, `host-local` and
    /// `loopback` in `/opt/cni/bin` where they are missing.
    fn place(conflist: &str) -> FixedCniFiles {
        // A crashed run's conflist names its pid.
        for e in std::fs::read_dir(NET_D).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n
                .strip_prefix("00-umvctr")
                .and_then(|r| r.strip_suffix(".conflist"))
            {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let mut f = FixedCniFiles {
            made: vec![],
            dirs: vec![],
        };
        for d in [NET_D, OPT_BIN] {
            if !Path::new(d).exists() {
                std::fs::create_dir_all(d).unwrap();
                f.dirs.push(d.into());
            }
        }
        let conf = Path::new(NET_D).join(format!("00-umvctr{}.conflist", std::process::id()));
        std::fs::write(&conf, conflist).unwrap();
        f.made.push(conf);
        for (name, target) in [
            ("umacvlan", PathBuf::from(common::daemon::BIN)),
            (
                "host-local",
                Path::new(REFERENCE_PLUGINS).join("host-local"),
            ),
            ("loopback", Path::new(REFERENCE_PLUGINS).join("loopback")),
        ] {
            let p = Path::new(OPT_BIN).join(name);
            match std::fs::read_link(&p) {
                // A link an earlier run of these tests left (its binary may be gone).
                Ok(old) if old == target || old.to_string_lossy().contains("/target/") => {
                    let _ = std::fs::remove_file(&p);
                }
                _ => {}
            }
            if !p.exists() {
                std::os::unix::fs::symlink(&target, &p).unwrap();
                f.made.push(p);
            } else {
                assert!(
                    name != "umacvlan",
                    "{} exists and is not this test's: move it away to run the containerd test",
                    p.display()
                );
            }
        }
        f
    }
}

impl Drop for FixedCniFiles {
    fn drop(&mut self) {
        for p in self.made.drain(..) {
            let _ = std::fs::remove_file(p);
        }
        for d in self.dirs.drain(..).rev() {
            let _ = std::fs::remove_dir(&d);
            let _ = d.parent().map(std::fs::remove_dir);
        }
    }
}

/// A private containerd in namespace `ns`: root, state and socket under
/// `/var/tmp/umvctr<pid>`; stopped and reaped on drop.
struct Containerd {
    dir: PathBuf,
    child: Child,
}

impl Containerd {
    fn start(ns: &str) -> Containerd {
        for pid in runtime::dead_runs(Path::new("/var/tmp"), "umvctr") {
            runtime::reap(
                &[PathBuf::from(format!("/var/tmp/umvctr{pid}"))],
                Some(&format!("umvctr{pid}")),
            );
        }
        let dir = PathBuf::from(format!("/var/tmp/umvctr{}", std::process::id()));
        runtime::reap(std::slice::from_ref(&dir), None);
        std::fs::create_dir_all(&dir).unwrap();
        let p = |x: &str| dir.join(x).to_string_lossy().into_owned();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n",
                p("root"), p("state"), p("containerd.sock"), p("containerd.sock.ttrpc")
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = nsenter(ns, "containerd")
            .args(["--config", &p("config.toml")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd");
        let c = Containerd { dir, child };
        assert!(
            eventually(Duration::from_secs(30), || c
                .ctr(&["version"])
                .status
                .success()),
            "containerd did not come up: {}",
            std::fs::read_to_string(c.dir.join("containerd.log")).unwrap_or_default()
        );
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .args([
                "-a",
                &self.dir.join("containerd.sock").to_string_lossy(),
                "-n",
                "umv",
            ])
            .args(args)
            .output()
            .expect("ctr")
    }

    fn ok(&self, args: &[&str]) -> String {
        runtime::checked("ctr", args, &self.ctr(args))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        runtime::reap(std::slice::from_ref(&self.dir), None);
    }
}

#[test]
fn containerd_runs_containers_on_a_umacvlan_cni_network() {
    if !require_root_and(
        "containerd_runs_containers_on_a_umacvlan_cni_network",
        &["nsenter", "tar", "sha256sum"],
    ) {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !Path::new("/usr/bin/containerd").exists() || !Path::new(REFERENCE_PLUGINS).exists() {
        assert!(
            !ci,
            "containerd or containernetworking-plugins missing: run scripts/setup.sh"
        );
        eprintln!("skipped: no containerd");
        return;
    }
    let t = Topo::new("umvct", false, 0);
    let d = DaemonProc::start(&t.host, "umvct", "");
    let ctrd = Containerd::start(&t.host);
    let files = FixedCniFiles::place(&runtime::conflist(
        "umvctr",
        &d.socket,
        &ctrd.dir.join("ipam"),
        "10.9.0.60",
        "10.9.0.69",
    ));
    let image = oci_archive(&ctrd.dir);
    ctrd.ok(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        image.to_str().unwrap(),
    ]);
    let img = "docker.io/library/umvbusybox:latest";
    ctrd.ok(&[
        "run",
        "-d",
        "--cni",
        "--snapshotter",
        "native",
        img,
        "cr1",
        "sleep",
        "600",
    ]);
    let addr = ctrd.ok(&[
        "task",
        "exec",
        "--exec-id",
        "a1",
        "cr1",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(addr.contains("10.9.0.60/24"), "{addr}");
    // A second container, in the foreground, pings the first and the external host;
    // --rm tears its network down.
    let ping = ctrd.ok(&[
        "run",
        "--rm",
        "--cni",
        "--snapshotter",
        "native",
        img,
        "cr2",
        "sh",
        "-c",
        &format!("ping -c 2 -W 2 10.9.0.60 && ping -c 2 -W 2 {EXT_IP}"),
    ]);
    assert!(ping.contains("0% packet loss"), "{ping}");
    let eps = ok(&d.cli(&["endpoint", "ls"]));
    println!("$ umacvlan endpoint ls\n{eps}");
    assert_eq!(
        eps.lines().count(),
        2,
        "cr1's endpoint alone after cr2's --rm:\n{eps}"
    );
    ctrd.ok(&["task", "kill", "-s", "SIGKILL", "cr1"]);
    assert!(eventually(Duration::from_secs(10), || ctrd
        .ctr(&["task", "rm", "cr1"])
        .status
        .success()));
    ctrd.ok(&["container", "rm", "cr1"]);
    // ctr 1.6 does not call DEL for a detached container; its namespace went with
    // its last process, and the veth with it: the daemon removes the endpoint.
    common::wait_for("cr1's endpoint removed", || {
        let eps = ok(&d.cli(&["endpoint", "ls"]));
        if eps.lines().count() == 1 {
            Ok(())
        } else {
            Err(eps)
        }
    });
    drop(files);
}
