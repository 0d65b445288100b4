//! Open vSwitch's userspace datapath with `afxdp` ports, as a competitor: a private
//! instance (its own database, sockets and logs under `/tmp/umvb-ovs-<pid>-<n>`),
//! never the system's. `ovs-vswitchd` runs in the lab's host namespace, so its XDP
//! programs and its `br0`/`ovs-netdev` devices stay there; one PMD thread is pinned
//! to the switch's core and busy-polls, as umacvlan's worker does.
//!
//! Needs Debian's `openvswitch-switch` (3.1 has AF_XDP); [`Ovs::available`] says
//! whether it is installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Error;
use umacvlan::bpf::XdpMode;
use umacvlan::link::Netns;

const TOOLS: [&str; 5] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-appctl",
];
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const DIR_TAG: &str = "umvb-ovs-";

/// A running private Open vSwitch; stopped (daemons exited, directory removed) on drop.
#[derive(Debug)]
pub struct Ovs {
    dir: PathBuf,
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

impl Ovs {
    /// Why Open vSwitch cannot run here, or `None` if it can.
    pub fn unavailable() -> Option<String> {
        let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !which(t)).collect();
        if !missing.is_empty() {
            return Some(format!(
                "Open vSwitch is not installed (missing {}); `apt-get install openvswitch-switch` \
                 (scripts/setup.sh does it)",
                missing.join(", ")
            ));
        }
        if !Path::new(SCHEMA).is_file() {
            return Some(format!("Open vSwitch's schema {SCHEMA} is missing"));
        }
        None
    }

    /// Starts a private instance whose vswitchd runs in namespace `host`, with bridge
    /// `br0` (`datapath_type=netdev`) over `ports` as `afxdp` ports in `mode`, the
    /// NORMAL (learning) pipeline, and one PMD thread on `core`. Returns once every
    /// port is polled.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if it is not installed; [`Error::Tool`] if a step fails
    /// (its output is in the error); what was started is stopped again.
    pub fn start(host: &str, ports: &[&str], mode: XdpMode, core: usize) -> Result<Ovs, Error> {
        if let Some(why) = Self::unavailable() {
            return Err(Error::Unavailable(why));
        }
        if core >= 64 {
            return Err(Error::Config(format!("OVS PMD core {core}: at most 63")));
        }
        remove_stale();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{DIR_TAG}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Config(format!("create {}: {e}", dir.display())))?;
        let ovs = Ovs { dir };
        let d = ovs.dir.display().to_string();
        let db = format!("unix:{d}/db.sock");
        ovs.tool("ovsdb-tool", &["create", &format!("{d}/conf.db"), SCHEMA])?;
        ovs.tool(
            "ovsdb-server",
            &[
                &format!("{d}/conf.db"),
                &format!("--remote=punix:{d}/db.sock"),
                &format!("--unixctl={d}/ovsdb-server.ctl"),
                &format!("--pidfile={d}/ovsdb-server.pid"),
                &format!("--log-file={d}/ovsdb-server.log"),
                "--detach",
                "--no-chdir",
            ],
        )?;
        ovs.vsctl(&["--no-wait", "init"])?;
        ovs.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("other_config:pmd-cpu-mask={:#x}", 1u64 << core),
        ])?;
        // vswitchd in the host namespace: the child inherits the spawning thread's.
        let args = vec![
            db.clone(),
            format!("--unixctl={d}/ovs-vswitchd.ctl"),
            format!("--pidfile={d}/ovs-vswitchd.pid"),
            format!("--log-file={d}/ovs-vswitchd.log"),
            "--detach".into(),
            "--no-chdir".into(),
        ];
        let env = ovs.env();
        let out = Netns::open(host)?
            .run(move || Command::new("ovs-vswitchd").args(&args).envs(env).output())?;
        check("ovs-vswitchd", out)?;
        ovs.vsctl(&[
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
        ])?;
        let m = match mode {
            XdpMode::Generic => "generic",
            _ => "native",
        };
        for (i, p) in ports.iter().enumerate() {
            ovs.vsctl(&[
                "add-port",
                "br0",
                p,
                "--",
                "set",
                "interface",
                p,
                "type=afxdp",
                &format!("ofport_request={}", i + 1),
                "options:n_rxq=1",
                &format!("options:xdp-mode={m}"),
            ])?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let show = ovs.appctl("ovs-vswitchd.ctl", &["dpif-netdev/pmd-rxq-show"])?;
            if ports.iter().all(|p| show.contains(&format!("port: {p} "))) {
                break;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(ovs.dir.join("ovs-vswitchd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                return Err(Error::Tool {
                    tool: "ovs-vswitchd",
                    output: format!(
                        "afxdp ports not polled after 10 s; pmd-rxq-show:\n{show}\nlog tail:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(ovs)
    }

    fn env(&self) -> Vec<(String, String)> {
        let d = self.dir.display().to_string();
        ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"]
            .iter()
            .map(|k| (k.to_string(), d.clone()))
            .collect()
    }

    fn tool(&self, tool: &'static str, args: &[&str]) -> Result<String, Error> {
        let out = Command::new(tool).args(args).envs(self.env()).output();
        check(tool, out)
    }

    fn vsctl(&self, args: &[&str]) -> Result<String, Error> {
        let db = format!("--db=unix:{}/db.sock", self.dir.display());
        let mut a = vec![db.as_str(), "--timeout=10"];
        a.extend_from_slice(args);
        self.tool("ovs-vsctl", &a)
    }

    fn appctl(&self, ctl: &str, args: &[&str]) -> Result<String, Error> {
        let t = format!("{}/{ctl}", self.dir.display());
        let mut a = vec!["-t", t.as_str()];
        a.extend_from_slice(args);
        self.tool("ovs-appctl", &a)
    }
}

fn check(tool: &'static str, out: std::io::Result<std::process::Output>) -> Result<String, Error> {
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(Error::Tool {
            tool,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        }),
        Err(e) => Err(Error::Tool {
            tool,
            output: e.to_string(),
        }),
    }
}

/// Stops the daemons whose pidfiles are in `dir` (politely, then SIGKILL after
/// 5 s) and removes `dir`.
fn stop_dir(dir: &Path) {
    for (daemon, ctl) in [
        ("ovs-vswitchd", "ovs-vswitchd.ctl"),
        ("ovsdb-server", "ovsdb-server.ctl"),
    ] {
        let pidfile = dir.join(format!("{daemon}.pid"));
        let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let _ = Command::new("ovs-appctl")
            .args(["-t", &dir.join(ctl).display().to_string(), "exit"])
            .output();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pidfile.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Only a daemon of this very instance: its command line names the directory
        // (a stale pidfile's number may belong to anyone by now).
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&dir.display().to_string()));
        if pidfile.exists() && ours {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Stops instances left by a bench run that was killed (their pid is gone).
pub fn remove_stale() {
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_TAG)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            stop_dir(&e.path());
        }
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        stop_dir(&self.dir);
    }
}
