//! Running the real `umacvlan` daemon in a test namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::topo::{ep_ip, ep_mac, Topo};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_umacvlan");

/// A config of one network `lan` on the topology's parent `par` with endpoints e1..=e`n`
/// in their namespaces at their addresses; those in `with_mac` also with their MAC.
pub fn lan_config(t: &Topo, n: usize, with_mac: &[usize]) -> String {
    let mut config = "[[network]]\nname = 'lan'\nparent = 'par'\n".to_string();
    for i in 1..=n {
        config += &format!(
            "\n[[network.endpoint]]\nname = 'e{i}'\nnetns = '{}'\nip = '{}/24'\n",
            t.eps[i - 1],
            ep_ip(i)
        );
        if with_mac.contains(&i) {
            config += &format!("mac = '{}'\n", ep_mac(i));
        }
    }
    config
}

/// A daemon process started with `ip netns exec NS umacvlan run`, killed on drop.
pub struct DaemonProc {
    /// The process (the daemon itself: `ip netns exec` execs it).
    child: Child,
    /// Its control socket.
    pub socket: PathBuf,
    /// The namespace it runs in.
    ns: String,
    /// Its config file, removed on drop; `None` once handed to a restarted daemon.
    config: Option<PathBuf>,
    /// Whether it was stopped with SIGTERM: then removing the socket was its job, and
    /// drop leaves the check to the test.
    stopped: bool,
    /// Whether its log (stderr) is captured for [`DaemonProc::stop`] rather than
    /// passed through to the test's stderr.
    logged: bool,
    /// More arguments of `umacvlan run`.
    extra: Vec<String>,
}

impl DaemonProc {
    /// Writes `config` to `<tmp>/<tag>-<pid>.toml` and starts the daemon in namespace
    /// `ns` on the control socket `<tmp>/<tag>-<pid>.sock`, its log on the test's
    /// stderr; waits (bounded) until it answers on the socket, i.e. its configuration
    /// is applied.
    pub fn start(ns: &str, tag: &str, config: &str) -> DaemonProc {
        Self::write_and_spawn(ns, tag, config, false, &[])
    }

    /// [`DaemonProc::start`] with more arguments of `umacvlan run`, kept by
    /// [`DaemonProc::restart`].
    pub fn start_with(ns: &str, tag: &str, config: &str, extra: &[&str]) -> DaemonProc {
        Self::write_and_spawn(ns, tag, config, false, extra)
    }

    /// [`DaemonProc::start`], with the daemon's log (stderr) captured: an early exit
    /// shows it and [`DaemonProc::stop`] returns it.
    pub fn start_logged(ns: &str, tag: &str, config: &str) -> DaemonProc {
        Self::write_and_spawn(ns, tag, config, true, &[])
    }

    fn write_and_spawn(
        ns: &str,
        tag: &str,
        config: &str,
        logged: bool,
        extra: &[&str],
    ) -> DaemonProc {
        let base = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let (cfg, socket) = (base.with_extension("toml"), base.with_extension("sock"));
        std::fs::write(&cfg, config).unwrap();
        let extra = extra.iter().map(|a| a.to_string()).collect();
        Self::spawn(ns, cfg, socket, logged, extra)
    }

    /// Starts the daemon in `ns` on the existing config file `config` and the control
    /// socket `socket`, and waits (bounded) until it answers there.
    fn spawn(
        ns: &str,
        config: PathBuf,
        socket: PathBuf,
        logged: bool,
        extra: Vec<String>,
    ) -> DaemonProc {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                BIN,
                "run",
                "--config",
                config.to_str().unwrap(),
                "--socket",
                socket.to_str().unwrap(),
                "--state-dir",
                socket.with_extension("state").to_str().unwrap(),
            ])
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(if logged {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap();
        let mut d = DaemonProc {
            child,
            socket,
            ns: ns.to_string(),
            config: Some(config),
            stopped: false,
            logged,
            extra,
        };
        let t0 = Instant::now();
        // A socket file may be a killed daemon's, and the daemon binds its socket
        // before it applies its configuration: wait for an answer, not for the file.
        while !(d.socket.exists() && d.cli(&["endpoint", "ls"]).status.success()) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the daemon did not come up"
            );
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("the daemon exited early: {st}\n{}", d.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// `umacvlan stats --json` for the first (usually only) parent.
    pub fn parent_stats(&self) -> serde_json::Value {
        let out = self.cli(&["stats", "--json"]);
        assert!(
            out.status.success(),
            "stats: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
        v[0].clone()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a client command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.socket, args)
    }

    /// `kill -9`: no cleanup runs. Returns the exit status.
    pub fn kill9(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// Starts a new daemon in the same namespace on the same config file and control
    /// socket (killing this one first if it still runs), and waits (bounded) until it
    /// answers. The new one removes the config file on drop.
    pub fn restart(mut self) -> DaemonProc {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let config = self.config.take().expect("a config file");
        let extra = std::mem::take(&mut self.extra);
        Self::spawn(&self.ns, config, self.socket.clone(), self.logged, extra)
    }

    /// The `umacvlan run` arguments of the next [`DaemonProc::restart`] or
    /// [`DaemonProc::stop_and_restart`] (beyond config, socket and state).
    pub fn with_args(mut self, extra: &[&str]) -> DaemonProc {
        self.extra = extra.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Sends SIGTERM, waits (bounded) for the daemon to exit, checks that it exited
    /// cleanly, and returns its log (empty unless started with
    /// [`DaemonProc::start_logged`]).
    pub fn stop(mut self) -> String {
        let log = self.terminate();
        self.stopped = true;
        log
    }

    /// [`DaemonProc::stop`], then a new daemon as [`DaemonProc::restart`] starts it:
    /// same namespace, config, control socket and state. Returns it and the first
    /// one's log.
    pub fn stop_and_restart(mut self) -> (DaemonProc, String) {
        let log = self.terminate();
        let config = self.config.take().expect("a config file");
        let extra = std::mem::take(&mut self.extra);
        let d = Self::spawn(&self.ns, config, self.socket.clone(), self.logged, extra);
        (d, log)
    }

    /// The state directory the daemon runs with.
    pub fn state_dir(&self) -> PathBuf {
        self.socket.with_extension("state")
    }

    fn terminate(&mut self) -> String {
        let pid = self.child.id().to_string();
        // `ip netns exec` replaces itself with the daemon (exec), so the pid is the daemon's.
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let t0 = Instant::now();
        let st = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let log = self.log();
        assert!(st.success(), "daemon exit status {st}\n{log}");
        log
    }

    /// The captured log of a daemon that exited (empty if it was not captured).
    fn log(&mut self) -> String {
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut log);
        }
        log
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(config) = self.config.take() {
            let _ = std::fs::remove_file(config);
            let _ = std::fs::remove_dir_all(self.socket.with_extension("state"));
            if !self.stopped {
                // A killed daemon's socket.
                let _ = std::fs::remove_file(&self.socket);
            }
        }
    }
}

/// `endpoint add e<i> --network lan --netns <e<i>'s namespace> EXTRA...` on `d`,
/// which must succeed; its output.
pub fn endpoint_add(d: &DaemonProc, t: &Topo, i: usize, extra: &[&str]) -> String {
    let name = format!("e{i}");
    let mut args = vec![
        "endpoint",
        "add",
        &name,
        "--network",
        "lan",
        "--netns",
        &t.eps[i - 1],
    ];
    args.extend_from_slice(extra);
    ok(&d.cli(&args))
}

/// `umacvlan ARGS --socket SOCKET`.
pub fn cli(socket: &Path, args: &[&str]) -> Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--socket", socket.to_str().unwrap()]);
    Command::new(BIN).args(&a).output().unwrap()
}

/// A command's stdout, asserting it succeeded (showing its output if not).
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Asserts a command failed with `want` in its error output.
pub fn refused(o: &Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "should have failed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(err.contains(want), "error should contain {want:?}: {err}");
}

/// `ip -d link show` in the host namespace.
pub fn host_links(t: &Topo) -> String {
    String::from_utf8_lossy(&t.lab.exec(&t.host, &["ip", "-d", "link", "show"]).stdout).to_string()
}

/// Interfaces named like the daemon's (`umv...`) in `ip link` output.
pub fn umv_links(links: &str) -> usize {
    links
        .lines()
        .filter(|l| l.split(": ").nth(1).is_some_and(|n| n.starts_with("umv")))
        .count()
}

/// The unicast MACs in the parent's address filter (`bridge fdb show dev par self`).
pub fn parent_uc_filter(t: &Topo) -> Vec<String> {
    let out = super::run(
        "bridge",
        &["-n", &t.host, "fdb", "show", "dev", "par", "self"],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| u8::from_str_radix(&m[..2], 16).is_ok_and(|b| b & 1 == 0))
        .map(str::to_string)
        .collect()
}

/// Nothing the daemon made is left: no `umv*` interface, XDP program or clsact qdisc
/// in the host namespace, no endpoint interface in the endpoint namespaces, no
/// endpoint MAC in the parent's unicast filter.
pub fn assert_nothing_left(t: &Topo) {
    let uc = parent_uc_filter(t);
    assert!(
        uc.is_empty(),
        "endpoint MACs left in the parent's filter: {uc:?}"
    );
    let links = host_links(t);
    assert_eq!(umv_links(&links), 0, "interfaces left behind:\n{links}");
    assert!(
        !links.contains("prog/xdp"),
        "an XDP program was left on the parent:\n{links}"
    );
    let qdiscs = String::from_utf8_lossy(
        &super::run("tc", &["-n", &t.host, "qdisc", "show", "dev", "par"]).stdout,
    )
    .to_string();
    assert!(
        !qdiscs.contains("clsact"),
        "a clsact qdisc was left:\n{qdiscs}"
    );
    for ns in &t.eps {
        let l =
            String::from_utf8_lossy(&t.lab.exec(ns, &["ip", "link", "show"]).stdout).to_string();
        assert!(
            !l.contains("eth0"),
            "an endpoint interface was left in {ns}:\n{l}"
        );
    }
}
