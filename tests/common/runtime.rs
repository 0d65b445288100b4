//! What the container-runtime tests share: a busybox image made from the machine's
//! busybox-static (images cannot be pulled), a `CNI_PATH` directory with the plugin
//! under test, and the reaping of what a crashed run of a private runtime left
//! (its processes, mounts, cgroups and directories), so a rerun passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::daemon::BIN;

/// The stdout of `prog ARGS`, trimmed, which must have succeeded (its output shown if
/// not); echoed as a transcript line.
pub fn checked(prog: &str, args: &[&str], o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{prog} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
    println!("$ {prog} {}\n{text}", args.join(" "));
    text
}

/// Where Debian's containernetworking-plugins are.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// Writes a busybox root file system under `dir/rootfs` and its tar as
/// `dir/rootfs.tar`; returns the tar.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    // One link per applet. The copy is never executed here: a test running in
    // parallel may fork while it is still open for writing, and the exec would
    // fail with ETXTBSY ("Text file busy").
    let list = super::run("/bin/busybox", &["--list"]);
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    let tar = dir.join("rootfs.tar");
    super::run(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    tar
}

/// Kills every process whose command line names one of `roots` (a private runtime,
/// its shims and containers), unmounts what is mounted under them, removes the
/// cgroups named `cgroup` under every controller, and the directories.
pub fn reap(roots: &[PathBuf], cgroup: Option<&str>) {
    let roots: Vec<String> = roots
        .iter()
        .map(|r| r.to_string_lossy().into_owned())
        .collect();
    for _ in 0..50 {
        let mut alive = false;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if p != std::process::id() && roots.iter().any(|r| cmd.contains(r.as_str())) {
                alive = true;
                let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
            }
        }
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut mine: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| roots.iter().any(|r| m.starts_with(r.as_str())))
        .collect();
    mine.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mine {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
    if let Some(cg) = cgroup {
        for ctl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_cgroup(&ctl.path().join(cg));
        }
    }
    for r in &roots {
        let _ = std::fs::remove_dir_all(r);
    }
}

/// Removes a cgroup directory and its children, deepest first (their processes are
/// dead by then).
fn remove_cgroup(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            remove_cgroup(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The pids of runs named `<dir>/<tag><pid>` whose process is gone.
pub fn dead_runs(dir: &Path, tag: &str) -> Vec<u32> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(tag)?.parse::<u32>().ok()
        })
        .filter(|pid| *pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
        .collect()
}

/// A `CNI_PATH` directory holding `umacvlan` (a link to the binary under test) and
/// links to the reference plugins; removed on drop.
pub struct PluginDir(pub PathBuf);

impl PluginDir {
    /// `<tmp>/<tag>-<pid>-cni-bin`.
    pub fn new(tag: &str) -> PluginDir {
        let dir = std::env::temp_dir().join(format!("{tag}-{}-cni-bin", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(BIN, dir.join("umacvlan")).unwrap();
        for p in ["host-local", "static", "macvlan", "loopback"] {
            std::os::unix::fs::symlink(Path::new(REFERENCE_PLUGINS).join(p), dir.join(p)).unwrap();
        }
        PluginDir(dir)
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A conflist of one plugin, `umacvlan` on parent `par` of the reference topology,
/// with host-local handing out `start`..=`end` of 10.9.0.0/24 (its state in
/// `ipam_dir`) and a default route through 10.9.0.1.
pub fn conflist(name: &str, socket: &Path, ipam_dir: &Path, start: &str, end: &str) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": "umacvlan", "master": "par", "socket": socket,
            "ipam": {
                "type": "host-local", "subnet": "10.9.0.0/24", "rangeStart": start,
                "rangeEnd": end, "gateway": "10.9.0.1", "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": ipam_dir,
            },
        }],
    })
    .to_string()
}
