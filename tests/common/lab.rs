//! The root-test lab: a set of network namespaces with a unique per-run prefix,
//! removed on drop and on the next run's start, plus the root check and command
//! helpers. One file for the integration tests (`tests/common`) and the binary's
//! bench root tests (`src/bin/umacvlan/bench/root_tests.rs`, through `#[path]`). The
//! including module must have the library's `Netns` in scope (`umacvlan::link::Netns`).
#![allow(dead_code)]

use std::process::{Command, Output};

use super::Netns;

/// Whether root tests can run. Not root: skip with a message, except under `CI=true`
/// where a root test that cannot run must fail.
pub fn require_root(test: &str) -> bool {
    require_root_and(test, &[])
}

/// [`require_root`], and each of `tools` must also be there (`TOOL -V` starts);
/// a missing one skips (or, under `CI=true`, fails) the test the same way.
pub fn require_root_and(test: &str, tools: &[&str]) -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        "needs root".to_string()
    } else if let Some(t) = tools
        .iter()
        .find(|t| Command::new(t).arg("-V").output().is_err())
    {
        format!("needs the `{t}` command")
    } else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true forbids skipping it");
    }
    eprintln!("{test}: skipped ({why})");
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

/// Runs `f` on a new thread that entered namespace `ns` (a name under `/run/netns`
/// or a path), and returns its result; a panic in `f` is re-raised here. The calling
/// thread's namespace is untouched. Unlike `Netns::run`, `f` may borrow.
pub fn in_ns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> R {
    let ns = Netns::open(ns).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter().expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
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
        let full = self.quiet_ns(name);
        self.exec(
            &full,
            &["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"],
        );
        full
    }

    /// Creates namespace `name` with `lo` up and IPv6 off (quiet links: the kernel
    /// sends nothing of its own), other sysctls left alone. Returns its full name.
    pub fn quiet_ns(&mut self, name: &str) -> String {
        let full = self.name(name);
        run("ip", &["netns", "add", &full]);
        self.made.push(full.clone());
        self.exec(&full, &["ip", "link", "set", "lo", "up"]);
        for s in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
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

    /// `ip -n ns ARGS`; panics on failure.
    pub fn ip(&self, ns: &str, args: &[&str]) -> Output {
        let mut a = vec!["-n", ns];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// A veth pair `a`–`b` in namespace `ns`, both ends up.
    pub fn veth(&self, ns: &str, a: &str, b: &str) {
        self.ip(ns, &["link", "add", a, "type", "veth", "peer", "name", b]);
        self.ip(ns, &["link", "set", a, "up"]);
        self.ip(ns, &["link", "set", b, "up"]);
    }

    /// The ifindex of `dev` in namespace `ns`.
    pub fn ifindex(&self, ns: &str, dev: &str) -> u32 {
        let out = self.ip(ns, &["-o", "link", "show", "dev", dev]);
        let s = String::from_utf8_lossy(&out.stdout);
        s.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("ifindex of {dev}: {s}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// No namespace and no OVS directory of a `umacvlan bench` run by process `pid` is
/// left (the bench names them `umvb-<pid>-*` and `umvb-ovs-<pid>-*`).
pub fn assert_no_bench_leftovers(pid: u32) {
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

/// Waits (at most 10 s, polling every 50 ms) until `done` holds; fails with `what` and
/// what was seen last.
pub fn wait_for(what: &str, mut done: impl FnMut() -> Result<(), String>) {
    let t0 = std::time::Instant::now();
    loop {
        match done() {
            Ok(()) => return,
            Err(seen) if t0.elapsed() > std::time::Duration::from_secs(10) => {
                panic!("{what}: still {seen} after 10 s")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}
