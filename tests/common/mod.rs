//! Shared helpers for the root-only tests: a network-namespace lab with a unique
//! per-run prefix, removed on drop and on the next run's start.
#![allow(dead_code)]

pub mod topo;

use std::process::{Command, Output};

/// Whether root tests can run. Not root: skip with a message, except under `CI=true`
/// where a root test that cannot run must fail.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs root, and CI=true forbids skipping it");
    }
    eprintln!("{test}: skipped (needs root)");
    false
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command and returns whether it succeeded.
pub fn try_run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A set of network namespaces named `<tag><pid>-<seq>-<name>`, deleted on drop. Creating
/// a lab first deletes namespaces of the same tag left by runs whose process is gone.
pub struct Lab {
    prefix: String,
    made: Vec<String>,
}

impl Lab {
    /// A new lab; `tag` is a short test-family name such as `umvt`.
    pub fn new(tag: &str) -> Lab {
        let pid = std::process::id();
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                let Some(rest) = name.strip_prefix(tag) else {
                    continue;
                };
                let owner: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
                if let Some(owner) = owner {
                    if owner != pid && !std::path::Path::new(&format!("/proc/{owner}")).exists() {
                        let _ = Command::new("ip").args(["netns", "del", name]).status();
                    }
                }
            }
        }
        // Several labs of one tag may live at once (tests run in parallel).
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Lab {
            prefix: format!("{tag}{pid}-{n}-"),
            made: Vec::new(),
        }
    }

    /// Full name of namespace `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Creates namespace `name` with `lo` up, IPv6 off (quiet links) and broadcast
    /// echo replies on. Returns its full name.
    pub fn ns(&mut self, name: &str) -> String {
        let full = self.name(name);
        run("ip", &["netns", "add", &full]);
        self.made.push(full.clone());
        self.exec(&full, &["ip", "link", "set", "lo", "up"]);
        for s in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            "net.ipv4.icmp_echo_ignore_broadcasts=0",
        ] {
            self.exec(&full, &["sysctl", "-qw", s]);
        }
        full
    }

    /// Runs `args` inside namespace `ns`; panics on failure.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", ns];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Runs `args` inside namespace `ns`; returns whether it succeeded.
    pub fn try_exec(&self, ns: &str, args: &[&str]) -> bool {
        let mut a = vec!["netns", "exec", ns];
        a.extend_from_slice(args);
        try_run("ip", &a)
    }

    /// `ip -n ns ARGS`.
    pub fn ip(&self, ns: &str, args: &[&str]) {
        let mut a = vec!["-n", ns];
        a.extend_from_slice(args);
        run("ip", &a);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}
