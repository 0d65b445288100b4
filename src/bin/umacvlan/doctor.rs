//! `umacvlan doctor [PARENT]...`: the preflight a user runs before `umacvlan run`, and
//! that `run` itself runs at start (its findings logged, see [`log_at_start`]).
//!
//! Every check is two halves. The facts are gathered first ([`HostFacts::gather`],
//! [`ParentFacts::gather`]): `/proc` and `/sys`, netlink through the crate's
//! [`Links`], libbpf's XDP query (programs and the device's XDP features), two
//! read-only ethtool ioctls (`ETHTOOL_GDRVINFO`, `ETHTOOL_GFLAGS`), and an AF_XDP
//! socket that is created and closed again without being bound. Then pure functions
//! (`judge_*`) turn the facts into [`Finding`]s: ok, warning or error, each with the
//! command that fixes it where there is one.
//!
//! The doctor is read-only: it attaches, loads, binds and sets nothing, on no
//! interface. It runs in the calling thread's network namespace, as the daemon does.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;
use umacvlan::bpf::{is_held_open, TC_PORT_PROG, TC_PROG, XDP_PROG, XDP_TWIN_PROG};
use umacvlan::dataplane::{is_switch_interface, DataplaneConfig, ParentHook};
use umacvlan::link::{LinkInfo, Links, Queues};
use umacvlan::sys::{MemlockLimit, RLIM_INFINITY};
use umacvlan::wire::{HEADER_LEN, TAG_LEN};
use umacvlan::xsk::XDP_PACKET_HEADROOM;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// The switch runs, but something works worse than it could, or not at all for
    /// some traffic.
    Warning,
    /// The switch cannot run on this host or parent, or loses traffic it must carry.
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "ERROR",
        }
    }
}

/// One result of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check's name, e.g. `mtu` or `xdp_program`.
    pub check: &'static str,
    /// The parent it is about; `None` for the host.
    pub parent: Option<String>,
    /// Ok, warning or error.
    pub level: Level,
    /// What was found, and what it means for the switch.
    pub detail: String,
    /// The command (or change) that fixes it.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            parent: None,
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warning(check: &'static str, detail: impl Into<String>, fix: Option<String>) -> Finding {
        Finding {
            level: Level::Warning,
            fix,
            ..Finding::ok(check, detail)
        }
    }

    fn error(check: &'static str, detail: impl Into<String>, fix: Option<String>) -> Finding {
        Finding {
            level: Level::Error,
            fix,
            ..Finding::ok(check, detail)
        }
    }
}

/// Every finding of one run of the doctor: the host's first, then each parent's.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The findings, in the order of the checks.
    pub findings: Vec<Finding>,
}

impl Report {
    /// How many findings are errors.
    pub fn errors(&self) -> usize {
        self.count(Level::Error)
    }

    /// How many findings are warnings.
    pub fn warnings(&self) -> usize {
        self.count(Level::Warning)
    }

    fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }
}

/// What the daemon would run with, for the checks that depend on it.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Worker threads per parent (`--workers`); `None`: the daemon's default.
    pub workers: Option<u32>,
    /// UMEM frames per worker (`frames` under `[daemon]`).
    pub frames: u32,
    /// Where the parent is steered from (`parent_hook` under `[daemon]`).
    pub parent_hook: ParentHook,
    /// The kernel fast path by default (`fastpath` under `[daemon]`).
    pub fastpath: bool,
}

impl Options {
    /// Whether a parent with `driver` is steered from tc, not XDP (as
    /// [`DataplaneConfig::parent_hook`] resolves it).
    fn tc_steered(&self, driver: Option<&str>) -> bool {
        self.parent_hook.steers_from_tc(self.fastpath, driver)
    }
}

impl Default for Options {
    /// The daemon's defaults ([`DataplaneConfig::new`]).
    fn default() -> Options {
        let d = DataplaneConfig::new("");
        Options {
            workers: d.workers,
            frames: d.frames,
            parent_hook: d.parent_hook,
            fastpath: d.fastpath,
        }
    }
}

// ---------------------------------------------------------------------------------
// Kernel and library facts the judges use.

/// A kernel version: major, minor, patch.
pub type KernelVersion = (u32, u32, u32);

/// The oldest kernel umacvlan runs on (`XDP_SHARED_UMEM` across devices, the
/// fallback action of `bpf_redirect_map`, `bpf_redirect_peer`; see `src/xsk` and
/// `src/bpf`).
const MIN_KERNEL: KernelVersion = (5, 10, 0);
/// `XDP_USE_NEED_WAKEUP` appeared in Linux 5.4.
const NEED_WAKEUP_KERNEL: KernelVersion = (5, 4, 0);
/// Since Linux 6.3 the kernel reports each device's XDP features (netdev netlink).
const XDP_FEATURES_KERNEL: KernelVersion = (6, 3, 0);

/// `enum netdev_xdp_act` (`include/uapi/linux/netdev.h`).
const NETDEV_XDP_ACT_BASIC: u64 = 1 << 0;
const NETDEV_XDP_ACT_REDIRECT: u64 = 1 << 1;
const NETDEV_XDP_ACT_XSK_ZEROCOPY: u64 = 1 << 3;

/// Capability bits (`include/uapi/linux/capability.h`).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The UMEM frame sizes: the two [`umacvlan::xsk::Umem::new`] accepts (a unit test
/// holds them to it). The dataplane takes the smaller one that holds a frame of the
/// parent's MTU behind the XDP headroom.
const UMEM_FRAME_SIZES: [u32; 2] = [2048, 4096];
/// What a frame has beyond the MTU when the dataplane sizes UMEM frames: the Ethernet
/// header and two VLAN tags.
const FRAME_OVERHEAD: u32 = (HEADER_LEN + 2 * TAG_LEN) as u32;
/// The slack `Dataplane::start` adds to the UMEMs when it raises `RLIMIT_MEMLOCK`.
const MEMLOCK_SLACK: u64 = 16 << 20;
/// `sizeof(struct skb_shared_info)` on 64-bit kernels (`SKB_DATA_ALIGN`ed): what a
/// veth keeps at the end of the page of a native-XDP frame.
const SKB_SHARED_INFO: u32 = 320;

/// The largest UMEM frame.
fn largest_frame() -> u32 {
    UMEM_FRAME_SIZES[UMEM_FRAME_SIZES.len() - 1]
}

/// The UMEM frame size the dataplane picks for a parent of MTU `mtu`, or `None` if
/// no UMEM frame holds its longest frames.
pub fn umem_frame_size(mtu: u32) -> Option<u32> {
    let need = mtu + FRAME_OVERHEAD + XDP_PACKET_HEADROOM as u32;
    UMEM_FRAME_SIZES.into_iter().find(|&s| need <= s)
}

/// The largest parent MTU whose frames fit a UMEM frame (3818).
pub fn max_umem_mtu() -> u32 {
    largest_frame() - XDP_PACKET_HEADROOM as u32 - FRAME_OVERHEAD
}

/// The largest peer MTU for which a veth accepts a native XDP program that does not
/// do multi-buffer (umacvlan's does not): a frame must fit one page behind the XDP
/// headroom and before `skb_shared_info` (3506 with 4 KiB pages). Above it the kernel
/// refuses the attach ("Peer MTU is too large to set XDP").
pub fn veth_xdp_max_mtu(page_size: u32) -> u32 {
    page_size - XDP_PACKET_HEADROOM as u32 - SKB_SHARED_INFO - HEADER_LEN as u32
}

/// The version at the start of a kernel release (`6.18.44-fc-v1147`,
/// `5.10.0-28-amd64`, `6.1-rc3`); `None` unless it starts with `MAJOR.MINOR`.
pub fn parse_kernel_version(release: &str) -> Option<KernelVersion> {
    let head = release
        .trim()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut it = head.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

fn show_version(v: KernelVersion) -> String {
    format!("{}.{}", v.0, v.1)
}

/// What umacvlan knows of a driver's XDP support, for kernels that do not report a
/// device's XDP features themselves (before Linux 6.3), and what no kernel reports
/// (a MAC filter, a cloud network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Driver {
    /// Native (driver) XDP with `XDP_REDIRECT`: what the daemon attaches to a parent.
    pub native: bool,
    /// AF_XDP zero-copy.
    pub zero_copy: bool,
    /// A virtual device: no MAC filter in front of XDP, and zero-copy does not exist.
    pub virtual_dev: bool,
    /// A cloud provider's virtual NIC: the provider's network delivers frames only to
    /// the MAC address it assigned.
    pub cloud: bool,
}

const NIC: Driver = Driver {
    native: true,
    zero_copy: false,
    virtual_dev: false,
    cloud: false,
};
const NIC_ZC: Driver = Driver {
    zero_copy: true,
    ..NIC
};
const NIC_NONE: Driver = Driver {
    native: false,
    ..NIC
};
const CLOUD: Driver = Driver { cloud: true, ..NIC };
const VIRT: Driver = Driver {
    virtual_dev: true,
    ..NIC
};
const VIRT_NONE: Driver = Driver {
    native: false,
    ..VIRT
};

/// Drivers by the name `ethtool -i` shows.
const DRIVERS: &[(&str, Driver)] = &[
    ("ixgbe", NIC_ZC),
    ("i40e", NIC_ZC),
    ("ice", NIC_ZC),
    ("igc", NIC_ZC),
    ("mlx5_core", NIC_ZC),
    ("nfp", NIC_ZC),
    ("ixgbevf", NIC),
    ("igb", NIC),
    ("mlx4_en", NIC),
    ("mlx4_core", NIC),
    ("bnxt_en", NIC),
    ("qede", NIC),
    ("sfc", NIC),
    ("mvneta", NIC),
    ("mvpp2", NIC),
    ("virtio_net", NIC),
    ("ena", CLOUD),
    ("gve", CLOUD),
    ("hv_netvsc", CLOUD),
    ("e1000", NIC_NONE),
    ("e1000e", NIC_NONE),
    ("r8169", NIC_NONE),
    ("veth", VIRT),
    ("tun", VIRT),
    ("bridge", VIRT_NONE),
    ("dummy", VIRT_NONE),
    ("macvlan", VIRT_NONE),
    ("ipvlan", VIRT_NONE),
    ("802.1Q VLAN Support", VIRT_NONE),
];

/// What umacvlan's table says of `driver`; `None` if it is not in it.
pub fn driver_support(driver: &str) -> Option<Driver> {
    DRIVERS.iter().find(|(n, _)| *n == driver).map(|(_, d)| *d)
}

/// Drivers with native XDP, for the fixes.
const NATIVE_EXAMPLES: &str = "ixgbe, i40e, ice, igc, mlx5_core, bnxt_en, ena, virtio_net";
/// Drivers with AF_XDP zero-copy, for the fixes.
const ZC_EXAMPLES: &str = "ixgbe, i40e, ice, igc, mlx5_core";

// ---------------------------------------------------------------------------------
// Facts.

/// What the host says, gathered once.
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    /// `/proc/sys/kernel/osrelease`.
    pub osrelease: Option<String>,
    /// Creating an AF_XDP socket: `Ok`, or the errno.
    pub af_xdp: Option<Result<(), i32>>,
    /// The effective capabilities (`CapEff:` of `/proc/thread-self/status`).
    pub cap_eff: Option<u64>,
    /// `RLIMIT_MEMLOCK` (`Max locked memory` of `/proc/self/limits`).
    pub memlock: Option<MemlockLimit>,
}

impl HostFacts {
    /// Reads the host's facts. Touches nothing: the AF_XDP socket is closed unbound.
    pub fn gather() -> HostFacts {
        HostFacts {
            osrelease: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
            af_xdp: Some(probe_af_xdp()),
            cap_eff: read("/proc/thread-self/status").and_then(|s| parse_cap_eff(&s)),
            memlock: read("/proc/self/limits").and_then(|s| parse_memlock(&s)),
        }
    }
}

/// Where a program is attached on a parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hook {
    /// The XDP hook, in `native`, `generic` or `offload` mode.
    Xdp(&'static str),
    /// A BPF filter on the clsact ingress hook.
    TcIngress {
        /// Its priority (`pref`).
        pref: u16,
        /// Its handle.
        handle: u32,
    },
}

/// A BPF program attached to a parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Kernel program id.
    pub id: u32,
    /// Where.
    pub hook: Hook,
    /// Its name, and whether it is named and typed like one of umacvlan's programs;
    /// `None` if it could not be read (without `CAP_SYS_ADMIN`).
    pub identity: Option<(String, bool)>,
    /// Whether a process holds it open (a running switch holds its programs, a killed
    /// one does not); only looked at for umacvlan's programs.
    pub held_open: bool,
}

/// A veth parent's peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its name; `None` if it is in another network namespace.
    pub name: Option<String>,
    /// Its MTU, if it is here.
    pub mtu: Option<u32>,
    /// Whether its transmit VLAN offload (`txvlan`) is on, if it could be read.
    pub txvlan: Option<bool>,
}

/// What one parent interface looks like.
#[derive(Clone, Debug)]
pub struct ParentFacts {
    /// Its name.
    pub name: String,
    /// The link; `Ok(None)` if there is no such interface here.
    pub link: Result<Option<LinkInfo>, String>,
    /// The driver, as `ethtool -i` names it.
    pub driver: Option<String>,
    /// Whether sysfs shows a bus device behind it (a NIC, not a virtual device); `None`
    /// if sysfs does not show this namespace's interface.
    pub has_device: Option<bool>,
    /// Whether it is promiscuous now (for whatever reason: `IFF_PROMISC` in sysfs).
    pub promisc: bool,
    /// Its queues ([`umacvlan::link::queues`]).
    pub queues: Option<Queues>,
    /// The XDP programs on it and its XDP features (the kernel's `xdp-features`, 0
    /// before Linux 6.3).
    pub xdp: Result<(Vec<Attached>, u64), String>,
    /// The BPF filters on its tc ingress hook.
    pub tc: Result<Vec<Attached>, String>,
    /// Whether receive VLAN offload (`rxvlan`) is on.
    pub rxvlan: Result<bool, String>,
    /// A veth's peer.
    pub peer: Option<Peer>,
    /// The address families whose default route goes out of it.
    pub default_route: Vec<&'static str>,
}

impl ParentFacts {
    /// Reads what the checks need about interface `name`, in this thread's network
    /// namespace. Touches nothing.
    pub fn gather(name: &str) -> ParentFacts {
        let links = Links::open().map_err(|e| e.to_string());
        let link = links
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|l| l.get(name).map_err(|e| e.to_string()));
        let mut f = ParentFacts {
            name: name.to_string(),
            link: link.clone(),
            driver: None,
            has_device: None,
            promisc: false,
            queues: None,
            xdp: Err("not looked at".into()),
            tc: Err("not looked at".into()),
            rxvlan: Err("not looked at".into()),
            peer: None,
            default_route: Vec::new(),
        };
        let (Ok(links), Ok(Some(li))) = (links, link) else {
            return f;
        };
        f.driver = ethtool_driver(name).ok().or_else(|| sysfs_driver(name));
        let sys = Path::new("/sys/class/net").join(name);
        // A thread that entered another namespace still sees the sysfs of the one it
        // was mounted for: use it only if it shows this very interface.
        let ours =
            read(sys.join("ifindex")).and_then(|s| s.trim().parse::<u32>().ok()) == Some(li.index);
        if ours {
            f.has_device = Some(sys.join("device").exists());
            f.promisc = read(sys.join("flags"))
                .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
                .map_or(li.promisc, |flags| flags & libc::IFF_PROMISC as u32 != 0);
        } else {
            f.promisc = li.promisc;
        }
        f.queues = umacvlan::link::queues(&li).ok();
        f.xdp = query_xdp(li.index);
        f.tc = links
            .bpf_ingress_filters(li.index)
            .map(|fs| {
                fs.iter()
                    .filter_map(|t| {
                        t.prog_id.map(|id| {
                            inspect(
                                id,
                                Hook::TcIngress {
                                    pref: t.priority(),
                                    handle: t.handle(),
                                },
                            )
                        })
                    })
                    .collect()
            })
            .map_err(|e| e.to_string());
        f.rxvlan = ethtool_flags(name)
            .map(|v| v & ETH_FLAG_RXVLAN != 0)
            .map_err(|e| e.to_string());
        if f.driver.as_deref() == Some("veth") {
            f.peer = Some(match li.link {
                Some((idx, false)) => match links.get_index(idx) {
                    Ok(Some(p)) => Peer {
                        txvlan: ethtool_flags(&p.name)
                            .ok()
                            .map(|v| v & ETH_FLAG_TXVLAN != 0),
                        mtu: Some(p.mtu),
                        name: Some(p.name),
                    },
                    _ => Peer::default(),
                },
                _ => Peer::default(),
            });
        }
        let net = |f: &str| {
            read(format!("/proc/thread-self/net/{f}")).or_else(|| read(format!("/proc/net/{f}")))
        };
        if net("route").is_some_and(|t| default_route_v4(&t, name)) {
            f.default_route.push("IPv4");
        }
        if net("ipv6_route").is_some_and(|t| default_route_v6(&t, name)) {
            f.default_route.push("IPv6");
        }
        f.link = Ok(Some(li));
        f
    }
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The `CapEff:` mask of a `/proc/*/status` text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The `Max locked memory` limits of a `/proc/*/limits` text.
pub fn parse_memlock(limits: &str) -> Option<MemlockLimit> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max locked memory"))?;
    let mut it = rest.split_whitespace();
    let val = |s: &str| {
        if s == "unlimited" {
            Some(RLIM_INFINITY)
        } else {
            s.parse().ok()
        }
    };
    Some(MemlockLimit {
        soft: val(it.next()?)?,
        hard: val(it.next()?)?,
    })
}

/// `RTF_UP` and `RTF_REJECT` (`include/uapi/linux/route.h`).
const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// Whether `/proc/net/route` (`text`) has a usable IPv4 default route out of `ifname`.
pub fn default_route_v4(text: &str, ifname: &str) -> bool {
    text.lines().skip(1).any(|l| {
        let c: Vec<&str> = l.split_whitespace().collect();
        c.len() >= 8
            && c[0] == ifname
            && c[1] == "00000000"
            && c[7] == "00000000"
            && u32::from_str_radix(c[3], 16).is_ok_and(|f| f & RTF_UP != 0 && f & RTF_REJECT == 0)
    })
}

/// Whether `/proc/net/ipv6_route` (`text`) has a usable IPv6 default route out of
/// `ifname`.
pub fn default_route_v6(text: &str, ifname: &str) -> bool {
    text.lines().any(|l| {
        let c: Vec<&str> = l.split_whitespace().collect();
        c.len() >= 10
            && c[9] == ifname
            && c[0].bytes().all(|b| b == b'0')
            && c[1] == "00"
            && u32::from_str_radix(c[8], 16).is_ok_and(|f| f & RTF_UP != 0 && f & RTF_REJECT == 0)
    })
}

/// Creates an AF_XDP socket and closes it again, unbound (it touches no interface):
/// whether this kernel has AF_XDP and this process may use it; the errno if not.
fn probe_af_xdp() -> Result<(), i32> {
    umacvlan::sys::af_xdp_available().map_err(|e| e.errno().unwrap_or(0))
}

/// `ETH_FLAG_*` bits of `ETHTOOL_GFLAGS` (`include/uapi/linux/ethtool.h`).
const ETH_FLAG_TXVLAN: u32 = 1 << 7;
const ETH_FLAG_RXVLAN: u32 = 1 << 8;

/// The driver of `ifname`, as `ethtool -i` shows it.
fn ethtool_driver(ifname: &str) -> std::io::Result<String> {
    umacvlan::sys::ethtool_driver(ifname).map_err(std::io::Error::other)
}

/// The driver of a bus device behind `ifname` (`/sys/class/net/IF/device/driver`).
fn sysfs_driver(ifname: &str) -> Option<String> {
    std::fs::read_link(
        Path::new("/sys/class/net")
            .join(ifname)
            .join("device/driver"),
    )
    .ok()
    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// `ETHTOOL_GFLAGS` of `ifname`.
fn ethtool_flags(ifname: &str) -> std::io::Result<u32> {
    umacvlan::sys::ethtool_flags(ifname).map_err(std::io::Error::other)
}

/// The XDP programs on `ifindex` (each mode) and its XDP features, through libbpf's
/// netlink query.
fn query_xdp(ifindex: u32) -> Result<(Vec<Attached>, u64), String> {
    // libbpf-rs builds its XDP handle around a program's fd, which a query does not
    // use: any open fd serves (here /dev/null, read-only).
    let placeholder = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    let idx = i32::try_from(ifindex).map_err(|e| e.to_string())?;
    let q = libbpf_rs::Xdp::new(placeholder.as_fd())
        .query(idx, libbpf_rs::XdpFlags::NONE)
        .map_err(|e| e.to_string())?;
    let progs = [
        (q.drv_prog_id, "native"),
        (q.skb_prog_id, "generic"),
        (q.hw_prog_id, "offload"),
    ]
    .into_iter()
    .filter(|&(id, _)| id != 0)
    .map(|(id, mode)| inspect(id, Hook::Xdp(mode)))
    .collect();
    Ok((progs, q.feature_flags))
}

/// Who program `id` is: its name and type (an fd on it, closed again before the
/// holders are looked for, as the leftover removal does) and, if it is named like one
/// of ours, whether a process holds it open.
fn inspect(id: u32, hook: Hook) -> Attached {
    let identity = libbpf_rs::ProgramHandle::from_prog_id(id).ok().map(|h| {
        let name = h.name().to_string_lossy().into_owned();
        let ours = match hook {
            Hook::Xdp(_) => {
                h.prog_type() == libbpf_rs::ProgramType::Xdp
                    && (name == XDP_PROG || name == XDP_TWIN_PROG)
            }
            Hook::TcIngress { .. } => {
                h.prog_type() == libbpf_rs::ProgramType::SchedCls
                    && (name == TC_PROG || name == TC_PORT_PROG)
            }
        };
        (name, ours)
    });
    let held_open = identity.as_ref().is_some_and(|(_, ours)| *ours) && is_held_open(id);
    Attached {
        id,
        hook,
        identity,
        held_open,
    }
}

// ---------------------------------------------------------------------------------
// Judges: pure functions of the facts.

/// The kernel's version, and `need_wakeup` (which comes with it).
pub fn judge_kernel(release: Option<&str>) -> Vec<Finding> {
    let Some(release) = release else {
        return vec![Finding::warning(
            "kernel",
            "cannot read /proc/sys/kernel/osrelease: the kernel version is unknown",
            None,
        )];
    };
    let Some(v) = parse_kernel_version(release) else {
        return vec![Finding::warning(
            "kernel",
            format!("kernel release '{release}' does not start with a version number"),
            None,
        )];
    };
    let upgrade = Some(format!(
        "run Linux {} or later (umacvlan is developed on 6.18)",
        show_version(MIN_KERNEL)
    ));
    let kernel = if v < MIN_KERNEL {
        Finding::error(
            "kernel",
            format!(
                "Linux {release}: umacvlan needs {} or later (XDP_SHARED_UMEM across devices, bpf_redirect_map fallbacks, bpf_redirect_peer)",
                show_version(MIN_KERNEL)
            ),
            upgrade.clone(),
        )
    } else {
        Finding::ok(
            "kernel",
            format!(
                "Linux {release} (umacvlan needs {} or later)",
                show_version(MIN_KERNEL)
            ),
        )
    };
    let wake = if v < NEED_WAKEUP_KERNEL {
        Finding::error(
            "need_wakeup",
            format!(
                "Linux {release} has no XDP_USE_NEED_WAKEUP ({} or later): the sockets cannot bind",
                show_version(NEED_WAKEUP_KERNEL)
            ),
            upgrade,
        )
    } else {
        Finding::ok(
            "need_wakeup",
            "XDP_USE_NEED_WAKEUP is there: the switch makes a wakeup call only when the kernel asks for one",
        )
    };
    vec![kernel, wake]
}

/// The AF_XDP socket family (`probe`: creating a socket, or its errno).
pub fn judge_af_xdp(probe: Option<Result<(), i32>>) -> Finding {
    match probe {
        None => Finding::warning("af_xdp", "not probed", None),
        Some(Ok(())) => Finding::ok(
            "af_xdp",
            "an AF_XDP socket can be created (CONFIG_XDP_SOCKETS)",
        ),
        Some(Err(e)) if e == libc::EAFNOSUPPORT => Finding::error(
            "af_xdp",
            "this kernel has no AF_XDP sockets (socket(AF_XDP): address family not supported)",
            Some("run a kernel built with CONFIG_XDP_SOCKETS=y (Debian's and most distributions' are)".into()),
        ),
        Some(Err(e)) if e == libc::EPERM || e == libc::EACCES => Finding::error(
            "af_xdp",
            "not allowed to create an AF_XDP socket (needs CAP_NET_RAW)",
            Some("run umacvlan as root".into()),
        ),
        Some(Err(e)) => Finding::error(
            "af_xdp",
            format!(
                "socket(AF_XDP) failed: {}",
                std::io::Error::from_raw_os_error(e)
            ),
            None,
        ),
    }
}

/// `1 worker`, `2 workers`.
fn count(n: impl Into<u64>, what: &str) -> String {
    let n = n.into();
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// The capabilities the daemon needs: `CAP_NET_ADMIN` (netlink, XDP and tc),
/// `CAP_NET_RAW` (AF_XDP), `CAP_SYS_ADMIN` or `CAP_BPF` with `CAP_PERFMON` (loading
/// the programs).
pub fn judge_privileges(cap_eff: Option<u64>) -> Finding {
    let Some(c) = cap_eff else {
        return Finding::warning(
            "privileges",
            "cannot read CapEff in /proc/thread-self/status",
            None,
        );
    };
    let mut missing = Vec::new();
    if !has_cap(c, CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has_cap(c, CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    let may_load = has_cap(c, CAP_SYS_ADMIN) || (has_cap(c, CAP_BPF) && has_cap(c, CAP_PERFMON));
    if !may_load {
        missing.push("CAP_SYS_ADMIN (or CAP_BPF and CAP_PERFMON)");
    }
    if missing.is_empty() {
        Finding::ok(
            "privileges",
            "may load BPF programs, attach XDP and tc programs and open AF_XDP sockets",
        )
    } else {
        Finding::error(
            "privileges",
            format!(
                "missing {}: the daemon cannot load its programs or open its sockets",
                missing.join(", ")
            ),
            Some("run umacvlan as root".into()),
        )
    }
}

fn mib(b: u64) -> String {
    if b == RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} MiB", b.div_ceil(1 << 20))
    }
}

/// `RLIMIT_MEMLOCK` against `need` bytes of UMEM (all parents' workers), as
/// `Dataplane::start` sees it: `CAP_IPC_LOCK` exempts the UMEMs, else it raises the
/// soft limit (to the hard one, or to no limit with `CAP_SYS_RESOURCE`).
pub fn judge_memlock(cap_eff: Option<u64>, limit: Option<MemlockLimit>, need: u64) -> Finding {
    let caps = cap_eff.unwrap_or(0);
    if has_cap(caps, CAP_IPC_LOCK) {
        return Finding::ok(
            "memlock",
            format!(
                "CAP_IPC_LOCK: the UMEMs ({} estimated) are not charged to RLIMIT_MEMLOCK",
                mib(need)
            ),
        );
    }
    let Some(l) = limit else {
        return Finding::warning(
            "memlock",
            "cannot read RLIMIT_MEMLOCK from /proc/self/limits",
            None,
        );
    };
    let covers = |v: u64| v == RLIM_INFINITY || v >= need;
    let detail = format!(
        "RLIMIT_MEMLOCK {} (hard {}), the UMEMs need about {}",
        mib(l.soft),
        mib(l.hard),
        mib(need)
    );
    if covers(l.soft) {
        Finding::ok("memlock", detail)
    } else if covers(l.hard) || has_cap(caps, CAP_SYS_RESOURCE) {
        Finding::ok(
            "memlock",
            format!("{detail}: the daemon raises the soft limit"),
        )
    } else {
        Finding::error(
            "memlock",
            format!("{detail}, and without CAP_IPC_LOCK or CAP_SYS_RESOURCE it cannot be raised: the dataplane does not start"),
            Some("run as root, or raise the limit before starting: `ulimit -l unlimited` (systemd: LimitMEMLOCK=infinity, docker: --ulimit memlock=-1)".into()),
        )
    }
}

/// The workers a parent gets: `--workers`, else one per receive queue up to the
/// transmit queues and the cores (as the dataplane plans them).
pub fn workers_for(opts: &Options, q: Option<&Queues>, cores: u32) -> u32 {
    let max = q.map_or(1, |q| q.rx.min(q.tx));
    opts.workers.unwrap_or_else(|| max.min(cores.max(1))).max(1)
}

/// The bytes of UMEM a parent's workers lock, as `Dataplane::start` asks for them.
pub fn memlock_need(opts: &Options, workers: u32) -> u64 {
    u64::from(opts.frames) * u64::from(largest_frame()) * u64::from(workers) + MEMLOCK_SLACK
}

/// That the parent exists and can be one; its queues against `--workers`.
pub fn judge_link(f: &ParentFacts, opts: &Options, cores: u32) -> Vec<Finding> {
    let name = &f.name;
    let li = match &f.link {
        Err(e) => {
            return vec![Finding::error(
                "link",
                format!("cannot look {name} up: {e}"),
                None,
            )]
        }
        Ok(None) => {
            return vec![Finding::error(
                "link",
                format!("there is no interface {name} in this network namespace: a network on it cannot be created"),
                Some("`ip link` lists the interfaces: create it or name another parent".into()),
            )]
        }
        Ok(Some(li)) => li,
    };
    if li.loopback || li.mac.is_zero() {
        return vec![Finding::error(
            "link",
            format!("{name} is not an Ethernet interface (no MAC address): it cannot be a parent"),
            Some("name an Ethernet interface as the parent".into()),
        )];
    }
    if is_switch_interface(name) {
        return vec![Finding::error(
            "link",
            format!("{name} is one of the interfaces umacvlan makes (an endpoint's veth or the mirror pair), never a parent"),
            Some("name the NIC (or veth) the switch should sit on".into()),
        )];
    }
    let driver = f.driver.as_deref().unwrap_or("unknown driver");
    let mut out = vec![if li.up {
        Finding::ok(
            "link",
            format!("{name}: {driver}, MAC {}, MTU {}, up", li.mac, li.mtu),
        )
    } else {
        Finding::warning(
            "link",
            format!("{name} ({driver}) is down: nothing arrives until it is up (the daemon does not bring it up)"),
            Some(format!("ip link set dev {name} up")),
        )
    }];
    if let Some(q) = &f.queues {
        let max = q.rx.min(q.tx);
        out.push(match opts.workers {
            Some(w) if w > max => Finding::error(
                "queues",
                format!("{w} workers asked, but {name} has {} receive and {} transmit queues (by {}): at most {max}", q.rx, q.tx, q.source),
                Some(format!("--workers {max} (or more queues: ethtool -L {name} combined N)")),
            ),
            _ => Finding::ok(
                "queues",
                format!(
                    "{} (by {}), each bound by a socket; {}",
                    count(q.rx, "receive queue"),
                    q.source,
                    count(workers_for(opts, Some(q), cores), "worker")
                ),
            ),
        });
    }
    out
}

/// Native XDP and zero-copy: from the kernel's `xdp-features` of the device when it
/// reports them (`features`: Linux 6.3 and later), else from umacvlan's driver table.
pub fn judge_xdp_support(name: &str, driver: Option<&str>, features: Option<u64>) -> Vec<Finding> {
    let known = driver.and_then(driver_support);
    let dname = driver.unwrap_or("(unknown)");
    let (native, zero_copy, source) = match features {
        Some(x) => (
            Some(x & NETDEV_XDP_ACT_BASIC != 0 && x & NETDEV_XDP_ACT_REDIRECT != 0),
            Some(x & NETDEV_XDP_ACT_XSK_ZEROCOPY != 0),
            "the kernel's xdp-features of the device",
        ),
        None => (
            known.map(|d| d.native),
            known.map(|d| d.zero_copy),
            "umacvlan's driver table",
        ),
    };
    let virtual_dev = known.is_some_and(|d| d.virtual_dev);
    let native = match native {
        Some(true) => Finding::ok(
            "xdp_native",
            format!("driver {dname}: native XDP with redirect (by {source})"),
        ),
        Some(false) => Finding::error(
            "xdp_native",
            format!("driver {dname} has no native XDP (by {source}): the daemon attaches its program to the parent in native mode, so starting on {name} fails"),
            Some(format!("use a NIC whose driver has native XDP ({NATIVE_EXAMPLES}, or a veth)")),
        ),
        None => Finding::warning(
            "xdp_native",
            format!("driver {dname} is not in umacvlan's table and this kernel (before {}) does not report a device's XDP features: if it has no native XDP, starting on {name} fails (the daemon attaches in native mode; generic XDP is slower and not used for a parent)", show_version(XDP_FEATURES_KERNEL)),
            Some(format!("use a NIC whose driver has native XDP ({NATIVE_EXAMPLES}), or Linux {} or later to know", show_version(XDP_FEATURES_KERNEL))),
        ),
    };
    let zc = match zero_copy {
        Some(true) => Finding::ok(
            "zero_copy",
            format!("AF_XDP zero-copy (by {source}): the parent's sockets bind in zero-copy mode"),
        ),
        Some(false) if virtual_dev => Finding::ok(
            "zero_copy",
            format!("copy mode: {dname} is a virtual device, zero-copy does not exist for it"),
        ),
        Some(false) => Finding::warning(
            "zero_copy",
            format!("copy mode: driver {dname} has no AF_XDP zero-copy (by {source}); the switch works, the kernel copies every frame into the UMEM"),
            Some(format!("for zero-copy, a NIC whose driver has it ({ZC_EXAMPLES})")),
        ),
        None => Finding::warning(
            "zero_copy",
            format!("unknown whether driver {dname} has AF_XDP zero-copy (the sockets try it, then fall back to copy mode)"),
            None,
        ),
    };
    vec![native, zc]
}

/// The parent's MTU against the UMEM frame size (and, on a veth, against what native
/// XDP accepts for the peer's MTU).
pub fn judge_mtu(name: &str, mtu: u32, veth_peer: Option<&Peer>, page_size: u32) -> Finding {
    let umem_max = max_umem_mtu();
    let mut problems = Vec::new();
    if umem_frame_size(mtu).is_none() {
        problems.push(format!(
            "a frame of up to {} bytes (with two VLAN tags) does not fit the largest UMEM frame ({} bytes, {} of them XDP headroom): the switch drops every frame above {} bytes (counted as xdp_too_big)",
            mtu + FRAME_OVERHEAD,
            largest_frame(),
            XDP_PACKET_HEADROOM,
            largest_frame() - XDP_PACKET_HEADROOM as u32
        ));
    }
    let mut limit = umem_max;
    let mut fix = String::new();
    if let Some(peer) = veth_peer {
        let veth_max = veth_xdp_max_mtu(page_size);
        limit = limit.min(veth_max);
        let peer_mtu = peer.mtu.unwrap_or(mtu);
        if peer_mtu > veth_max {
            problems.push(format!(
                "native XDP on a veth refuses a peer MTU above {veth_max} (the peer{}'s is {peer_mtu}; the kernel: \"Peer MTU is too large to set XDP\"), so starting on {name} fails",
                peer.name.as_deref().map(|p| format!(" {p}")).unwrap_or_default()
            ));
        }
        fix = match &peer.name {
            Some(p) => format!(" && ip link set dev {p} mtu {limit}"),
            None => " (and the same on its peer, in the peer's namespace)".into(),
        };
    }
    let fix = format!("ip link set dev {name} mtu {limit}{fix}");
    if !problems.is_empty() {
        return Finding::error(
            "mtu",
            format!("MTU {mtu}: {}", problems.join("; ")),
            Some(fix),
        );
    }
    let size = umem_frame_size(mtu).unwrap_or(largest_frame());
    let page_limit = veth_xdp_max_mtu(page_size);
    if veth_peer.is_none() && mtu > page_limit {
        return Finding::warning(
            "mtu",
            format!("MTU {mtu}: frames fit {size}-byte UMEM frames, but many drivers refuse native XDP without multi-buffer above about one page per frame (MTU {page_limit} here): if starting on {name} fails, lower it"),
            Some(format!("ip link set dev {name} mtu {page_limit}")),
        );
    }
    let doubled = if size > UMEM_FRAME_SIZES[0] {
        " (twice the memory of 2048-byte frames)"
    } else {
        ""
    };
    Finding::ok(
        "mtu",
        format!(
            "MTU {mtu}: frames of up to {} bytes fit {size}-byte UMEM frames{doubled}",
            mtu + FRAME_OVERHEAD
        ),
    )
}

fn xdp_off(name: &str, mode: &str) -> String {
    let flag = match mode {
        "generic" => "xdpgeneric",
        "offload" => "xdpoffload",
        _ => "xdpdrv",
    };
    format!("ip link set dev {name} {flag} off")
}

/// Programs already on the parent: a leftover of a killed umacvlan (the next `run`
/// removes it) is a warning; another running switch's, or someone else's XDP program,
/// is an error (the daemon never replaces it and refuses the parent); someone else's
/// tc filter is a warning (it stays, behind umacvlan's).
pub fn judge_programs(
    name: &str,
    xdp: &Result<Vec<Attached>, String>,
    tc: &Result<Vec<Attached>, String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    match xdp {
        Err(e) => out.push(Finding::warning(
            "xdp_program",
            format!("cannot query the XDP programs on {name}: {e}"),
            None,
        )),
        Ok(progs) if progs.is_empty() => out.push(Finding::ok(
            "xdp_program",
            format!("no XDP program on {name}"),
        )),
        Ok(progs) => {
            for p in progs {
                let Hook::Xdp(mode) = p.hook else { continue };
                let off = xdp_off(name, mode);
                out.push(match &p.identity {
                    None => Finding::error(
                        "xdp_program",
                        format!("an XDP program (id {}, {mode} mode) is on {name}, whose cannot be told (reading it needs CAP_SYS_ADMIN): the daemon refuses a parent with a program it did not attach", p.id),
                        Some(format!("as root, run the doctor again; if the program is not needed: {off}")),
                    ),
                    Some((prog, true)) if !p.held_open => Finding::warning(
                        "xdp_program",
                        format!("XDP program {prog} (id {}, {mode} mode) on {name} is a leftover of a umacvlan that was killed (no process holds it): `umacvlan run` removes it at start", p.id),
                        Some(format!("nothing (`umacvlan run` removes it); by hand: {off}")),
                    ),
                    Some((prog, true)) => Finding::error(
                        "xdp_program",
                        format!("another umacvlan switch runs on {name} (its XDP program {prog}, id {}, {mode} mode, is held open by a running process): the daemon refuses the parent", p.id),
                        Some(format!("stop the other umacvlan (or remove its network on {name}) first")),
                    ),
                    Some((prog, false)) => Finding::error(
                        "xdp_program",
                        format!("someone else's XDP program {prog} (id {}, {mode} mode) is on {name}: the daemon never replaces it and refuses the parent", p.id),
                        Some(format!("if nothing needs it: {off}")),
                    ),
                });
            }
        }
    }
    match tc {
        Err(e) => out.push(Finding::warning(
            "tc_filter",
            format!("cannot list the tc ingress filters of {name}: {e}"),
            None,
        )),
        Ok(filters) if filters.is_empty() => out.push(Finding::ok(
            "tc_filter",
            format!("no BPF filter on the tc ingress hook of {name}"),
        )),
        Ok(filters) => {
            for p in filters {
                let Hook::TcIngress { pref, handle } = p.hook else {
                    continue;
                };
                let del =
                    format!("tc filter del dev {name} ingress pref {pref} handle {handle:#x} bpf");
                out.push(match &p.identity {
                    Some((prog, true)) if !p.held_open => Finding::warning(
                        "tc_filter",
                        format!("tc ingress filter {prog} (id {}, pref {pref}) on {name} is a leftover of a umacvlan that was killed: `umacvlan run` removes it at start", p.id),
                        Some(format!("nothing (`umacvlan run` removes it); by hand: {del}")),
                    ),
                    Some((prog, true)) => Finding::error(
                        "tc_filter",
                        format!("another umacvlan switch's tc filter {prog} (id {}, pref {pref}) is on {name}, held open by a running process", p.id),
                        Some(format!("stop the other umacvlan (or remove its network on {name}) first")),
                    ),
                    other => Finding::warning(
                        "tc_filter",
                        format!("someone else's tc ingress filter {} (id {}, pref {pref}) is on {name}: it stays, behind umacvlan's, and no longer sees the frames the switch takes (unicast for its endpoints)", other.as_ref().map_or("(unreadable)", |(n, _)| n.as_str()), p.id),
                        Some(format!("if nothing needs it: {del}")),
                    ),
                });
            }
        }
    }
    out
}

/// Receive VLAN offload: a tag the NIC strips into the descriptor (or, on a veth, a
/// tag the peer's VLAN device keeps out of band) is invisible to XDP, so the frame
/// looks untagged to the switch.
pub fn judge_vlan(name: &str, rxvlan: &Result<bool, String>, veth_peer: Option<&Peer>) -> Finding {
    let why = "so XDP sees those frames untagged: networks with a VLAN (--vlan) do not get them, and they are switched as untagged frames";
    if let Some(peer) = veth_peer {
        return match (&peer.name, peer.txvlan) {
            (Some(p), Some(true)) => Finding::warning(
                "vlan_offload",
                format!("tx-vlan-offload is on on {name}'s peer {p}: a VLAN device or VLAN-filtering bridge on {p} hands its tags to the veth out of band, {why}"),
                Some(format!("ethtool -K {p} txvlan off")),
            ),
            (Some(p), Some(false)) => Finding::ok(
                "vlan_offload",
                format!("tx-vlan-offload is off on the peer {p}: tags are in the frames XDP sees"),
            ),
            _ => Finding::ok(
                "vlan_offload",
                format!("{name}'s peer is in another network namespace: if a VLAN device or a VLAN-filtering bridge sends through it, turn its tx-vlan-offload off there (ethtool -K PEER txvlan off), or the tags are invisible to XDP"),
            ),
        };
    }
    match rxvlan {
        Ok(true) => Finding::warning(
            "vlan_offload",
            format!("receive VLAN offload is on on {name}: the NIC strips 802.1Q tags into the descriptor before XDP runs, {why}"),
            Some(format!("ethtool -K {name} rxvlan off")),
        ),
        Ok(false) => Finding::ok(
            "vlan_offload",
            format!("receive VLAN offload is off on {name}: XDP sees the tags"),
        ),
        Err(e) => Finding::warning(
            "vlan_offload",
            format!("cannot read the offloads of {name} ({e}): if rx-vlan-offload is on, XDP does not see VLAN tags"),
            Some(format!("ethtool -K {name} rxvlan off")),
        ),
    }
}

/// Whether frames for the endpoints' MACs reach XDP at all: a NIC's MAC filter drops
/// frames for addresses it was not given before XDP runs. The daemon adds each
/// endpoint's MAC to the parent's unicast filter, as a kernel macvlan does (and the
/// kernel turns the NIC promiscuous when its filter is full); a cloud provider's
/// network delivers only the MAC it assigned, whatever the NIC does.
pub fn judge_mac_filter(
    name: &str,
    driver: Option<&str>,
    has_device: Option<bool>,
    promisc: bool,
) -> Finding {
    let known = driver.and_then(driver_support);
    let dname = driver.unwrap_or("(unknown)");
    if known.is_some_and(|d| d.cloud) {
        return Finding::warning(
            "mac_filter",
            format!("{name} ({dname}) is a cloud provider's NIC: the provider's network delivers frames only to the MAC it assigned, so endpoints with their own MACs are not reachable from the wire (as with kernel macvlan there)"),
            Some("use a network that accepts more MACs per port (a dedicated NIC, a VLAN the provider allows), or a host port for traffic to the host".into()),
        );
    }
    let virtual_dev = known.map_or(has_device == Some(false), |d| d.virtual_dev);
    if virtual_dev {
        return Finding::ok(
            "mac_filter",
            format!("{name} ({dname}) is a virtual device: no MAC filter, every frame reaches XDP"),
        );
    }
    if promisc {
        return Finding::ok(
            "mac_filter",
            format!("{name} is promiscuous: frames for the endpoints' MACs reach XDP"),
        );
    }
    Finding::ok(
        "mac_filter",
        format!("{name} ({dname}) filters by MAC: umacvlan adds each endpoint's MAC to its unicast filter (`bridge fdb show dev {name} self` lists them), as a kernel macvlan does; when the filter is full the kernel makes the NIC promiscuous"),
    )
}

/// Whether the host's own traffic leaves through the parent.
pub fn judge_default_route(name: &str, families: &[&str]) -> Finding {
    if families.is_empty() {
        return Finding::ok(
            "default_route",
            format!("{name} carries no default route of this namespace"),
        );
    }
    Finding::warning(
        "default_route",
        format!("the {} default route of this namespace goes out of {name}: the host's own traffic shares the parent with the switch, and a mistake on it cuts the host off", families.join(" and ")),
        Some("use a dedicated NIC as the parent; the host reaches its endpoints through a host port (--host-port, README \"The host can reach its own endpoints\")".into()),
    )
}

/// Every check of one parent.
pub fn judge_parent(
    f: &ParentFacts,
    kernel: Option<KernelVersion>,
    opts: &Options,
    cores: u32,
    page_size: u32,
) -> Vec<Finding> {
    let mut out = judge_link(f, opts, cores);
    let Ok(Some(li)) = &f.link else {
        return out;
    };
    if out
        .iter()
        .any(|x| x.check == "link" && x.level == Level::Error)
    {
        return out;
    }
    let features = match (&f.xdp, kernel) {
        (Ok((_, x)), Some(v)) if v >= XDP_FEATURES_KERNEL => Some(*x),
        _ => None,
    };
    out.extend(judge_xdp_support(&f.name, f.driver.as_deref(), features));
    out.push(judge_mtu(&f.name, li.mtu, f.peer.as_ref(), page_size));
    let xdp = f.xdp.as_ref().map(|(p, _)| p.clone()).map_err(Clone::clone);
    out.extend(judge_programs(&f.name, &xdp, &f.tc));
    out.push(if opts.tc_steered(f.driver.as_deref()) {
        Finding::ok(
            "vlan_offload",
            format!("{} is steered from tc, which sees the tags a NIC or a veth peer keeps out of the frame", f.name),
        )
    } else {
        judge_vlan(&f.name, &f.rxvlan, f.peer.as_ref())
    });
    out.push(judge_mac_filter(
        &f.name,
        f.driver.as_deref(),
        f.has_device,
        f.promisc,
    ));
    out.push(judge_default_route(&f.name, &f.default_route));
    out
}

// ---------------------------------------------------------------------------------
// The command, and the daemon's start.

/// Runs every check: the host's, then each of `parents`'.
pub fn check(parents: &[String], opts: &Options) -> Report {
    let host = HostFacts::gather();
    let kernel = host.osrelease.as_deref().and_then(parse_kernel_version);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let page_size = rustix::param::page_size() as u32;
    let mut findings = judge_kernel(host.osrelease.as_deref());
    findings.push(judge_af_xdp(host.af_xdp));
    findings.push(judge_privileges(host.cap_eff));
    let mut need = 0;
    let mut per_parent = Vec::new();
    for p in parents {
        let facts = ParentFacts::gather(p);
        need += memlock_need(opts, workers_for(opts, facts.queues.as_ref(), cores));
        for mut f in judge_parent(&facts, kernel, opts, cores, page_size) {
            f.parent = Some(p.clone());
            per_parent.push(f);
        }
    }
    if parents.is_empty() {
        // One parent with one worker: the least a network needs.
        need = memlock_need(opts, 1);
    }
    findings.push(judge_memlock(host.cap_eff, host.memlock, need));
    findings.extend(per_parent);
    Report { findings }
}

/// `umacvlan doctor [PARENT]... [--json]`: prints the findings (a table, or JSON);
/// fails (exit status 1) if any is an error.
///
/// # Errors
/// If a finding is an error.
pub fn main(parents: &[String], json: bool) -> Result<()> {
    let report = check(parents, &Options::default());
    // A closed stdout (`umacvlan doctor | head -1`) ends the output, not the process.
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&report)?);
    } else {
        let _ = out.write_all(table(&report).as_bytes());
    }
    let _ = out.flush();
    match report.errors() {
        0 => Ok(()),
        n => bail!(
            "doctor: {} found: fix {} before `umacvlan run`",
            count(n as u64, "error"),
            if n == 1 { "it" } else { "them" }
        ),
    }
}

/// The findings as a table, grouped by host and parent, a fix under its finding.
pub fn table(r: &Report) -> String {
    let mut s = String::from("umacvlan doctor (read-only: nothing was changed)\n");
    let mut group: Option<Option<&str>> = None;
    for f in &r.findings {
        if group != Some(f.parent.as_deref()) {
            group = Some(f.parent.as_deref());
            match f.parent.as_deref() {
                None => s.push_str("\nhost\n"),
                Some(p) => s.push_str(&format!("\nparent {p}\n")),
            }
        }
        s.push_str(&format!(
            "  {:<8} {:<14} {}\n",
            f.level.label(),
            f.check,
            f.detail
        ));
        if let Some(fix) = &f.fix {
            s.push_str(&format!("  {:<8} {:<14} fix: {fix}\n", "", ""));
        }
    }
    s.push_str(&format!(
        "\n{}, {}\n",
        count(r.errors() as u64, "error"),
        count(r.warnings() as u64, "warning")
    ));
    s
}

/// At the start of `umacvlan run`: the doctor on `parents` (the configured networks'
/// and the state's), its warnings logged as warnings and its errors as errors. It
/// never stops the start: where the daemon cannot work (no such parent, someone
/// else's XDP program) the network's own creation fails, naming the cause, and a
/// network of the state on a missing parent is kept pending as before.
pub fn log_at_start<'a>(
    parents: impl IntoIterator<Item = &'a str>,
    workers: Option<u32>,
    frames: Option<u32>,
    parent_hook: ParentHook,
    fastpath: bool,
) {
    let mut ps: Vec<String> = Vec::new();
    for p in parents {
        if !ps.iter().any(|q| q == p) {
            ps.push(p.to_string());
        }
    }
    let opts = Options {
        workers,
        frames: frames.unwrap_or(Options::default().frames),
        parent_hook,
        fastpath,
    };
    let report = check(&ps, &opts);
    for f in &report.findings {
        let parent = f.parent.as_deref().unwrap_or("-");
        let fix = f
            .fix
            .as_deref()
            .map(|x| format!("; fix: {x}"))
            .unwrap_or_default();
        match f.level {
            Level::Ok => tracing::debug!(check = f.check, parent, "preflight: {}", f.detail),
            Level::Warning => {
                tracing::warn!(check = f.check, parent, "preflight: {}{fix}", f.detail)
            }
            Level::Error => {
                tracing::error!(check = f.check, parent, "preflight: {}{fix}", f.detail)
            }
        }
    }
    tracing::info!(
        parents = ps.len(),
        errors = report.errors(),
        warnings = report.warnings(),
        "preflight done (`umacvlan doctor PARENT` shows every check)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, mtu: u32) -> LinkInfo {
        LinkInfo {
            index: 7,
            name: name.into(),
            mac: "02:00:00:00:00:07".parse().unwrap(),
            mtu,
            up: true,
            loopback: false,
            promisc: false,
            allmulti: false,
            num_rx_queues: 1,
            num_tx_queues: 1,
            link: None,
        }
    }

    #[test]
    fn kernel_versions_are_parsed() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1147"), Some((6, 18, 44)));
        assert_eq!(parse_kernel_version("5.10.0-28-amd64\n"), Some((5, 10, 0)));
        assert_eq!(parse_kernel_version("6.1-rc3"), Some((6, 1, 0)));
        assert_eq!(parse_kernel_version("4.19.0"), Some((4, 19, 0)));
        assert_eq!(parse_kernel_version("6"), None);
        assert_eq!(parse_kernel_version("linux"), None);
        assert_eq!(parse_kernel_version(""), None);
    }

    #[test]
    fn old_kernels_are_errors() {
        let f = judge_kernel(Some("6.18.44-fc-v1147"));
        assert!(f.iter().all(|f| f.level == Level::Ok), "{f:?}");
        let f = judge_kernel(Some("5.4.0-150-generic"));
        assert_eq!(f[0].level, Level::Error);
        assert!(f[0].fix.as_deref().unwrap().contains("5.10"));
        assert_eq!(f[1].level, Level::Ok, "5.4 has need_wakeup");
        let f = judge_kernel(Some("4.19.0"));
        assert!(f.iter().all(|f| f.level == Level::Error));
        assert_eq!(judge_kernel(None)[0].level, Level::Warning);
        assert_eq!(judge_kernel(Some("weird"))[0].level, Level::Warning);
    }

    #[test]
    fn the_frame_sizes_are_the_umems() {
        for s in UMEM_FRAME_SIZES {
            assert!(umacvlan::xsk::Umem::new(1, s).is_ok(), "{s}");
        }
        for s in [1024, 3072, 8192] {
            assert!(umacvlan::xsk::Umem::new(1, s).is_err(), "{s}");
        }
    }

    #[test]
    fn mtu_against_the_umem_frame() {
        assert_eq!(umem_frame_size(1500), Some(2048));
        assert_eq!(umem_frame_size(1770), Some(2048));
        assert_eq!(umem_frame_size(1771), Some(4096));
        assert_eq!(max_umem_mtu(), 3818);
        assert_eq!(umem_frame_size(3818), Some(4096));
        assert_eq!(umem_frame_size(3819), None);
        assert_eq!(veth_xdp_max_mtu(4096), 3506);

        let ok = judge_mtu("eth1", 1500, None, 4096);
        assert_eq!(ok.level, Level::Ok, "{ok:?}");
        assert!(ok.detail.contains("2048-byte"), "{ok:?}");
        assert_eq!(judge_mtu("eth1", 3000, None, 4096).level, Level::Ok);
        let w = judge_mtu("eth1", 3700, None, 4096);
        assert_eq!(w.level, Level::Warning, "{w:?}");
        let e = judge_mtu("eth1", 9000, None, 4096);
        assert_eq!(e.level, Level::Error);
        assert!(e.detail.contains("3840"), "{e:?}");
        assert_eq!(e.fix.as_deref(), Some("ip link set dev eth1 mtu 3818"));

        // A veth: its peer's MTU against native XDP, and the fix names both ends.
        let peer = Peer {
            name: Some("lab0-wire".into()),
            mtu: Some(9000),
            txvlan: None,
        };
        let e = judge_mtu("lab0", 9000, Some(&peer), 4096);
        assert_eq!(e.level, Level::Error);
        assert!(e.detail.contains("Peer MTU is too large"), "{e:?}");
        assert_eq!(
            e.fix.as_deref(),
            Some("ip link set dev lab0 mtu 3506 && ip link set dev lab0-wire mtu 3506")
        );
        let peer = Peer {
            mtu: Some(3600),
            ..peer
        };
        let e = judge_mtu("lab0", 3600, Some(&peer), 4096);
        assert_eq!(e.level, Level::Error, "fits the UMEM, not veth's XDP");
        let peer = Peer {
            mtu: Some(1500),
            ..peer
        };
        assert_eq!(judge_mtu("lab0", 1500, Some(&peer), 4096).level, Level::Ok);
        let far = Peer::default();
        let e = judge_mtu("lab0", 9000, Some(&far), 4096);
        assert!(e.fix.unwrap().contains("peer's namespace"));
    }

    #[test]
    fn driver_knowledge() {
        let d = driver_support("i40e").unwrap();
        assert!(d.native && d.zero_copy && !d.virtual_dev);
        let d = driver_support("ena").unwrap();
        assert!(d.native && !d.zero_copy && d.cloud);
        let d = driver_support("veth").unwrap();
        assert!(d.native && !d.zero_copy && d.virtual_dev);
        assert!(driver_support("virtio_net").unwrap().native);
        assert!(!driver_support("e1000").unwrap().native);
        assert_eq!(driver_support("no_such_driver"), None);

        // Before 6.3: the table.
        let f = judge_xdp_support("eth1", Some("ixgbe"), None);
        assert_eq!((f[0].level, f[1].level), (Level::Ok, Level::Ok));
        let f = judge_xdp_support("eth1", Some("bnxt_en"), None);
        assert_eq!((f[0].level, f[1].level), (Level::Ok, Level::Warning));
        let f = judge_xdp_support("lab0", Some("veth"), None);
        assert_eq!((f[0].level, f[1].level), (Level::Ok, Level::Ok));
        let f = judge_xdp_support("eth1", Some("e1000e"), None);
        assert_eq!(f[0].level, Level::Error);
        let f = judge_xdp_support("eth1", Some("mystery"), None);
        assert_eq!(f[0].level, Level::Warning);
        assert!(f[0].detail.contains("generic XDP"), "{f:?}");
        // From 6.3: the kernel's word wins over the table.
        let f = judge_xdp_support("eth1", Some("mystery"), Some(0b1011));
        assert_eq!((f[0].level, f[1].level), (Level::Ok, Level::Ok));
        let f = judge_xdp_support("eth1", Some("ixgbe"), Some(0));
        assert_eq!(f[0].level, Level::Error);
        let f = judge_xdp_support("lab0", Some("veth"), Some(0b100011));
        assert_eq!((f[0].level, f[1].level), (Level::Ok, Level::Ok));
    }

    #[test]
    fn capabilities_and_memlock() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let root = parse_cap_eff(status).unwrap();
        assert_eq!(root, 0x1ff_ffff_ffff);
        assert_eq!(judge_privileges(Some(root)).level, Level::Ok);
        assert_eq!(judge_privileges(Some(0)).level, Level::Error);
        let bpf = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_BPF) | (1 << CAP_PERFMON);
        assert_eq!(judge_privileges(Some(bpf)).level, Level::Ok);

        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max locked memory         8388608              8388608              bytes\n";
        let l = parse_memlock(limits).unwrap();
        assert_eq!((l.soft, l.hard), (8 << 20, 8 << 20));
        let unl = parse_memlock(
            "Max locked memory         unlimited            unlimited            bytes\n",
        )
        .unwrap();
        assert_eq!(unl.soft, RLIM_INFINITY);

        let opts = Options {
            workers: None,
            frames: 16384,
            ..Options::default()
        };
        let need = memlock_need(&opts, 2);
        assert_eq!(need, 16384 * 4096 * 2 + (16 << 20));
        assert_eq!(judge_memlock(Some(root), Some(l), need).level, Level::Ok);
        assert_eq!(judge_memlock(Some(0), Some(l), need).level, Level::Error);
        assert!(judge_memlock(Some(0), Some(l), need)
            .fix
            .unwrap()
            .contains("ulimit -l"));
        assert_eq!(judge_memlock(Some(0), Some(unl), need).level, Level::Ok);
        let raisable = MemlockLimit {
            soft: 8 << 20,
            hard: RLIM_INFINITY,
        };
        assert_eq!(
            judge_memlock(Some(0), Some(raisable), need).level,
            Level::Ok
        );
        assert_eq!(
            judge_memlock(Some(1 << CAP_SYS_RESOURCE), Some(l), need).level,
            Level::Ok
        );
    }

    #[test]
    fn default_routes_are_found() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  lab0\t0020A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert!(default_route_v4(v4, "eth0"));
        assert!(!default_route_v4(v4, "lab0"));
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
                  fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     lab0\n";
        assert!(default_route_v6(v6, "eth0"));
        assert!(
            !default_route_v6(v6, "lo"),
            "an unreachable default is none"
        );
        assert!(!default_route_v6(v6, "lab0"));
        assert_eq!(judge_default_route("lab0", &[]).level, Level::Ok);
        let w = judge_default_route("eth0", &["IPv4", "IPv6"]);
        assert_eq!(w.level, Level::Warning);
        assert!(w.fix.unwrap().contains("--host-port"));
    }

    fn attached(hook: Hook, identity: Option<(&str, bool)>, held_open: bool) -> Attached {
        Attached {
            id: 42,
            hook,
            identity: identity.map(|(n, o)| (n.to_string(), o)),
            held_open,
        }
    }

    #[test]
    fn programs_on_the_parent() {
        let none = judge_programs("eth1", &Ok(vec![]), &Ok(vec![]));
        assert!(none.iter().all(|f| f.level == Level::Ok), "{none:?}");
        let xdp = |id, held| Ok(vec![attached(Hook::Xdp("native"), id, held)]);
        let leftover = judge_programs("eth1", &xdp(Some(("steer", true)), false), &Ok(vec![]));
        assert_eq!(leftover[0].level, Level::Warning);
        assert!(leftover[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("ip link set dev eth1 xdpdrv off"));
        let running = judge_programs("eth1", &xdp(Some(("steer", true)), true), &Ok(vec![]));
        assert_eq!(running[0].level, Level::Error);
        let foreign = judge_programs("eth1", &xdp(Some(("xdp_fw", false)), false), &Ok(vec![]));
        assert_eq!(foreign[0].level, Level::Error);
        assert!(foreign[0].detail.contains("xdp_fw"));
        let generic = Ok(vec![attached(
            Hook::Xdp("generic"),
            Some(("x", false)),
            false,
        )]);
        let f = judge_programs("eth1", &generic, &Ok(vec![]));
        assert!(f[0].fix.as_deref().unwrap().contains("xdpgeneric off"));
        let unknown = judge_programs("eth1", &xdp(None, false), &Ok(vec![]));
        assert_eq!(unknown[0].level, Level::Error);

        let tc = |id, held| {
            Ok(vec![attached(
                Hook::TcIngress {
                    pref: 49152,
                    handle: 1,
                },
                id,
                held,
            )])
        };
        let f = judge_programs("eth1", &Ok(vec![]), &tc(Some(("mirror", true)), false));
        assert_eq!(f[1].level, Level::Warning);
        assert!(f[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("tc filter del dev eth1 ingress pref 49152 handle 0x1 bpf"));
        let f = judge_programs("eth1", &Ok(vec![]), &tc(Some(("police", false)), false));
        assert_eq!(f[1].level, Level::Warning);
        let f = judge_programs("eth1", &Ok(vec![]), &tc(Some(("mirror", true)), true));
        assert_eq!(f[1].level, Level::Error);
    }

    #[test]
    fn vlan_offload_and_mac_filter() {
        assert_eq!(judge_vlan("eth1", &Ok(true), None).level, Level::Warning);
        assert_eq!(
            judge_vlan("eth1", &Ok(true), None).fix.as_deref(),
            Some("ethtool -K eth1 rxvlan off")
        );
        assert_eq!(judge_vlan("eth1", &Ok(false), None).level, Level::Ok);
        let peer = Peer {
            name: Some("lab0-wire".into()),
            mtu: Some(1500),
            txvlan: Some(true),
        };
        let f = judge_vlan("lab0", &Ok(true), Some(&peer));
        assert_eq!(f.fix.as_deref(), Some("ethtool -K lab0-wire txvlan off"));

        assert_eq!(
            judge_mac_filter("lab0", Some("veth"), Some(false), false).level,
            Level::Ok
        );
        let w = judge_mac_filter("eth1", Some("ixgbe"), Some(true), false);
        assert_eq!(w.level, Level::Ok, "the daemon fills the unicast filter");
        assert!(w.detail.contains("unicast filter"), "{}", w.detail);
        assert_eq!(
            judge_mac_filter("eth1", Some("ixgbe"), Some(true), true).level,
            Level::Ok
        );
        assert_eq!(
            judge_mac_filter("eth0", Some("ena"), Some(true), true).level,
            Level::Warning
        );
        assert_eq!(
            judge_mac_filter("x0", Some("mystery"), Some(false), false).level,
            Level::Ok
        );
    }

    #[test]
    fn links_that_cannot_be_parents() {
        let opts = Options {
            workers: None,
            frames: 16384,
            ..Options::default()
        };
        let facts = |link| ParentFacts {
            name: "lab0".into(),
            link,
            driver: Some("veth".into()),
            has_device: Some(false),
            promisc: false,
            queues: None,
            xdp: Ok((vec![], 0)),
            tc: Ok(vec![]),
            rxvlan: Ok(false),
            peer: None,
            default_route: vec![],
        };
        let missing = judge_parent(&facts(Ok(None)), Some((6, 18, 0)), &opts, 2, 4096);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].level, Level::Error);
        let mut down = link("lab0", 1500);
        down.up = false;
        let f = judge_parent(&facts(Ok(Some(down))), Some((6, 18, 0)), &opts, 2, 4096);
        assert_eq!(f[0].level, Level::Warning);
        assert_eq!(f[0].fix.as_deref(), Some("ip link set dev lab0 up"));
        let mut f = facts(Ok(Some(link("umv3ma", 1500))));
        f.name = "umv3ma".into();
        assert_eq!(judge_link(&f, &opts, 2)[0].level, Level::Error);
        let q = Queues {
            rx: 2,
            tx: 2,
            max_rx: 2,
            source: umacvlan::link::QueueSource::Netlink,
        };
        let mut f = facts(Ok(Some(link("lab0", 1500))));
        f.queues = Some(q);
        let too_many = Options {
            workers: Some(4),
            ..opts
        };
        let out = judge_link(&f, &too_many, 2);
        assert_eq!(out[1].level, Level::Error, "{out:?}");
        assert_eq!(workers_for(&opts, Some(&q), 1), 1);
        assert_eq!(workers_for(&opts, Some(&q), 8), 2);

        // A veth parent steered from tc sees offloaded tags; from XDP it does not.
        let mut f = facts(Ok(Some(link("lab0", 1500))));
        f.rxvlan = Ok(true);
        f.peer = Some(Peer {
            name: Some("lab0p".into()),
            mtu: Some(1500),
            txvlan: Some(true),
        });
        let vlan = |o: &Options| {
            judge_parent(&f, Some((6, 18, 0)), o, 2, 4096)
                .into_iter()
                .find(|x| x.check == "vlan_offload")
                .map(|x| x.level)
        };
        assert_eq!(
            vlan(&opts),
            Some(Level::Ok),
            "auto: tc on a veth with the fast path"
        );
        let xdp = Options {
            parent_hook: ParentHook::Xdp,
            ..opts
        };
        assert_eq!(vlan(&xdp), Some(Level::Warning));
        let slow = Options {
            fastpath: false,
            ..opts
        };
        assert_eq!(
            vlan(&slow),
            Some(Level::Warning),
            "auto without the fast path: XDP"
        );
    }

    #[test]
    fn report_counts_and_table() {
        let mut e = Finding::error(
            "mtu",
            "too big",
            Some("ip link set dev lab0 mtu 3506".into()),
        );
        e.parent = Some("lab0".into());
        let r = Report {
            findings: vec![Finding::ok("kernel", "Linux 6.18"), e],
        };
        assert_eq!((r.errors(), r.warnings()), (1, 0));
        let t = table(&r);
        assert!(
            t.contains("\nhost\n") && t.contains("\nparent lab0\n"),
            "{t}"
        );
        assert!(t.contains("fix: ip link set dev lab0 mtu 3506"), "{t}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["findings"][1]["level"], "error");
        assert_eq!(j["findings"][1]["parent"], "lab0");
        assert_eq!(j["findings"][0]["fix"], serde_json::Value::Null);
    }
}
