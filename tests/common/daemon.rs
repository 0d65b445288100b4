//! Running the real `umacvlan` daemon in a test namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_umacvlan");

/// A daemon process started with `ip netns exec NS umacvlan run`, killed on drop.
pub struct DaemonProc {
    /// The process (the daemon itself: `ip netns exec` execs it).
    pub child: Child,
    /// Its control socket.
    pub socket: PathBuf,
    config: PathBuf,
}

impl DaemonProc {
    /// Writes `config` to a temporary file and starts the daemon in namespace `ns`,
    /// waiting (bounded) until its control socket answers.
    pub fn start(ns: &str, tag: &str, config: &str) -> DaemonProc {
        let base = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let (cfg, socket) = (base.with_extension("toml"), base.with_extension("sock"));
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                BIN,
                "run",
                "--config",
                cfg.to_str().unwrap(),
                "--socket",
                socket.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut d = DaemonProc {
            child,
            socket,
            config: cfg,
        };
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the daemon did not come up"
            );
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("the daemon exited early: {st}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// Runs a client command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.socket, args)
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "daemon exit status {st}");
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// `umacvlan ARGS --socket SOCKET`.
pub fn cli(socket: &Path, args: &[&str]) -> Output {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--socket", socket.to_str().unwrap()]);
    Command::new(BIN).args(&a).output().unwrap()
}
