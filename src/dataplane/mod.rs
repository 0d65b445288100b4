//! A switch on real interfaces: the parent NIC, the XDP steering program, AF_XDP
//! sockets (one UMEM per worker, shared by that worker's sockets), veth endpoints in
//! their namespaces, and the worker threads.
//!
//! # How frames reach the switch
//! * **Parent, unicast**: the XDP program looks the destination up in its copy of the
//!   FDB; frames for an up endpoint (or every unicast, in passthru) are redirected to
//!   the socket of the queue they arrived on. Everything else — the parent's own MAC,
//!   unknown unicast — is passed to the host stack, so the host's own networking on
//!   the parent keeps working while the switch runs (spec W2, W3).
//! * **Parent, broadcast and multicast**: the host stack and the endpoints both need
//!   them, and XDP cannot clone. XDP passes them; a tc ingress program clones each one
//!   to a *mirror* veth pair whose far end is bound by a switch socket, so the switch
//!   receives a copy "from the wire" and floods it (W6–W8). For a reflected broadcast
//!   of a private or passthru endpoint (W9) the tc program then drops the original, so
//!   the host stack does not see it, as in the kernel.
//! * **Parent without XDP** ([`ParentHook::Tc`], the default on a veth parent with
//!   the fast path on): the tc program makes the XDP program's unicast decisions
//!   itself and moves the frames for the switch to the mirror veth.
//! * **Endpoints**: each endpoint is a veth pair; the far end lives in the endpoint's
//!   namespace, the near end carries XDP that hands every frame to its socket.
//! * **Transmit to the wire**: worker `w` transmits through its socket on parent
//!   queue `w`. Host-bound verdicts are not sent anywhere: the kernel already
//!   delivered those frames.
//!
//! # Queues
//! AF_XDP redirects a frame only into a socket bound to the queue it arrived on, so
//! every receive queue of the parent gets a socket: by default the dataplane reads
//! how many the parent uses ([`crate::link::queues`]: `ethtool -l`), binds them all,
//! and binds new ones when the count grows ([`Dataplane::sync_queues`]). Worker `w`
//! of `n` serves parent queues `q` with `q % n == w`. A frame for the switch on a
//! queue without a socket is passed to the host and counted
//! ([`crate::bpf::Counter::XdpUnboundQueue`]), never lost silently. The kernel
//! itself refuses to remove a queue that has an AF_XDP socket (`ethtool -L` fails).
//!
//! # Namespaces
//! A `Dataplane` works in the network namespace of the thread that starts it; the
//! worker thread inherits it. Call its methods, and drop it, from that thread (or
//! another thread in the same namespace): the kernel resolves interface indexes in
//! the caller's namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crate::app::{AppHandler, AppPort};
use crate::bpf::{
    DevVal, FastIn, FastVal, Steering, XdpMode, FAST_F_PEER, FAST_F_SLOW, FAST_F_WIRE,
    FDB_F_HOST_SUPPRESS, FDB_F_NOT_DST, MAX_XSKS, SRC_F_NODST,
};
use crate::fastpath::{Entry, FastTable, Reach};
use crate::link::{IpCidr, LinkInfo, Links, QueueSource, Queues, VethEndpoint};
use crate::mode::{Facts, Mode, Rule, Verdict};
use crate::port::{Bundle, Frame, Port, PortId};
use crate::switch::{PortStats, Switch};
use crate::topology::{ControlError, EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
use crate::view::{McFilter, PortTable, Role};
use crate::wire::MacAddr;
use crate::xsk::{SocketTuning, Umem, XskConfig, XskPort};

mod capture;
mod mcast;
pub use capture::{Capture, CaptureConfig, Captured};
pub use mcast::Leave;

/// What [`Dataplane::explain`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The switch's decision.
    pub verdict: Verdict,
    /// The rules it applied, in order.
    pub rules: Vec<Rule>,
    /// The port the kernel fast path would deliver it to itself, without the switch
    /// (`None`: the switch forwards it, or no one).
    pub fast: Option<PortId>,
}
mod worker;
pub use worker::{Load, Worker, WorkerConfig, WorkerGone};

/// A port of the dataplane: AF_XDP sockets, or an in-process endpoint.
#[non_exhaustive]
pub enum DpPort {
    /// One or more AF_XDP sockets (the uplink bundles the parent's queues and the mirror).
    Xsk(Bundle<XskPort>),
    /// An in-process endpoint.
    App(AppPort<Box<dyn AppHandler<Umem>>>),
}

impl Port<Umem> for DpPort {
    #[inline]
    fn receive(&mut self, pool: &mut Umem, out: &mut Vec<Frame>, max: usize) {
        match self {
            DpPort::Xsk(p) => p.receive(pool, out, max),
            DpPort::App(p) => p.receive(pool, out, max),
        }
    }

    #[inline]
    fn transmit(&mut self, pool: &mut Umem, frames: &mut Vec<Frame>) {
        match self {
            DpPort::Xsk(p) => p.transmit(pool, frames),
            DpPort::App(p) => p.transmit(pool, frames),
        }
    }

    #[inline]
    fn maintain(&mut self, pool: &mut Umem) {
        match self {
            DpPort::Xsk(p) => p.maintain(pool),
            DpPort::App(p) => p.maintain(pool),
        }
    }
}

type Sw = Switch<DpPort, Umem, 32>;

/// How to run a dataplane.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// The parent interface.
    pub parent: String,
    /// Parent receive queues to bind, one socket each. `None` (the default): every
    /// queue the parent uses ([`crate::link::queues`]), following a change
    /// ([`Dataplane::sync_queues`]). `Some(n)`: queues `0..n` only, never more; a
    /// frame for the switch on another queue is passed to the host and counted
    /// ([`crate::bpf::Counter::XdpUnboundQueue`]).
    pub queues: Option<u32>,
    /// Worker threads. `None` (the default): one per bound queue, but no more than
    /// the cores this process may run on nor the parent's transmit queues. Worker `w`
    /// of `n` serves parent queues `q` with `q % n == w`, transmits to the wire
    /// through parent queue `w` and serves queues `q % n == w` of every endpoint veth
    /// and of the mirror, each worker with its own UMEM, so no frame ever crosses
    /// between workers. Each costs a thread that polls its sockets (a core, under
    /// load) and `frames` frames of locked memory.
    pub workers: Option<u32>,
    /// Native or generic XDP on the parent. Native is the fast mode on a real NIC;
    /// on a veth parent generic was faster (BENCHMARKS.md).
    pub xdp_mode: XdpMode,
    /// XDP mode on the endpoints' host-side veths. Generic by default: on veth,
    /// native XDP must first move an skb without 256 bytes of headroom (the
    /// container's frames, typically) into a page, and generic measured as fast or
    /// faster (BENCHMARKS.md, "Tuning").
    pub endpoint_xdp_mode: XdpMode,
    /// UMEM frames of each worker, shared by that worker's sockets.
    pub frames: u32,
    /// Ring sizes and fill policy of every socket.
    pub xsk: XskConfig,
    /// The worker thread.
    pub worker: WorkerConfig,
    /// Kernel tuning of every socket (transmit budget, busy polling); none by default.
    pub tuning: SocketTuning,
    /// When a group an endpoint left stops being delivered to it: as the kernel (at
    /// the next recomputation of its filter; the default) or promptly.
    pub multicast_leave: Leave,
    /// Keep the endpoint veths an earlier run on this parent left (`kill -9`, or a
    /// stop that kept them) for [`EndpointNet::adopt`], instead of deleting them at
    /// [`Dataplane::start`]; [`Dataplane::remove_unclaimed`] deletes the ones nobody
    /// took. Off by default.
    pub adopt: bool,
    /// The kernel fast path, for networks that do not say otherwise
    /// ([`Dataplane::set_fastpath`]): an endpoint's veth carries a tc program instead
    /// of XDP, and unicast whose verdict is one egress the kernel reaches is
    /// forwarded by the kernel itself — into a sibling's namespace
    /// (`bpf_redirect_peer`), to the wire, or from the wire into the endpoint —
    /// while everything else still reaches the switch (through the collector veth).
    /// The entries are compiled from the port table by [`crate::mode::decide`]
    /// ([`crate::fastpath`]). On by default: it matches the kernel's verdicts as the
    /// AF_XDP path does (`tests/matrix.rs` runs both) and forwards unicast faster at
    /// a lower CPU cost per frame (BENCHMARKS.md, "The kernel fast path").
    pub fastpath: bool,
    /// Where the parent's frames are steered from: XDP, or the tc ingress program
    /// alone ([`ParentHook`]). [`ParentHook::Auto`] by default: tc on a veth parent
    /// when the fast path is on, XDP otherwise.
    pub parent_hook: ParentHook,
    /// Which CPUs do the kernel's receive work for the frames a fast-path endpoint
    /// sends (RPS on its switch-side veth). [`ReceiveCpus::Kernel`] (none) by default.
    pub receive_cpus: ReceiveCpus,
}

/// Which CPUs receive what a fast-path endpoint sends
/// ([`DataplaneConfig::receive_cpus`]).
///
/// A frame a container sends is received, for the kernel, on its switch-side veth:
/// that is where the fast path's tc program runs and redirects it, and where its
/// destination's receive work begins (the sink's stack, in the benchmark). Without
/// RPS all of it runs on the CPU that sent the frame, after the sender's own work.
/// With RPS the sending CPU only queues the frame, and a CPU of the mask, chosen by
/// the flow's hash, does the rest: a flow's frames stay in order, and different
/// flows spread.
///
/// It is a trade (BENCHMARKS.md, "Parent hook and receive placement"): unicast the
/// fast path forwards goes faster when the receiving CPU is not the sender's (1.3 to
/// 1.5× kernel macvlan endpoint → endpoint at 64 B, against 0.77× without), but what
/// goes to the switch (broadcast, multicast, unknown unicast) no longer slows its
/// sender down: the sender outruns the switch, and on the workers' own cores the
/// kernel's receive work starves them (broadcast fell from 0.2 M to 2 k frames/s).
/// So the default is the kernel's; give CPUs that neither the containers' senders
/// nor the workers use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReceiveCpus {
    /// No RPS (the default): the kernel's, the sending CPU does all of it.
    #[default]
    Kernel,
    /// Every CPU this process may run on: a flow whose hash picks its sender's CPU
    /// gains nothing.
    All,
    /// These CPUs.
    Cpus(Vec<usize>),
}

impl ReceiveCpus {
    /// The CPUs; empty: no RPS.
    pub fn cpus(&self) -> Vec<usize> {
        match self {
            ReceiveCpus::Kernel => Vec::new(),
            ReceiveCpus::All => core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.id)
                .collect(),
            ReceiveCpus::Cpus(c) => c.clone(),
        }
    }
}

/// `cpus` as an RPS mask in sysfs's format (hex, a comma every 32 CPUs); `0`: none.
pub fn rps_mask(cpus: &[usize]) -> String {
    let words = cpus.iter().max().map_or(1, |m| m / 32 + 1);
    let mut w = vec![0u32; words];
    for &c in cpus {
        w[c / 32] |= 1 << (c % 32);
    }
    let mut out: Vec<String> = w.iter().rev().map(|x| format!("{x:08x}")).collect();
    out[0] = format!("{:x}", w[words - 1]);
    out.join(",")
}

impl std::fmt::Display for ReceiveCpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReceiveCpus::Kernel => f.write_str("kernel"),
            ReceiveCpus::All => f.write_str("all"),
            ReceiveCpus::Cpus(c) => {
                let s: Vec<String> = c.iter().map(usize::to_string).collect();
                f.write_str(&s.join(","))
            }
        }
    }
}

impl std::str::FromStr for ReceiveCpus {
    type Err = String;

    /// `kernel`, `all`, or CPUs: numbers and ranges, `1`, `2,3`, `4-7`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "kernel" => return Ok(ReceiveCpus::Kernel),
            "all" => return Ok(ReceiveCpus::All),
            _ => {}
        }
        let bad = || {
            format!(
                "'{}' is not kernel, all or a CPU list like 1,2 or 2-3",
                s.escape_debug()
            )
        };
        let mut cpus = BTreeSet::new();
        for part in s.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b): (usize, usize) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a > b || b >= 4096 {
                return Err(bad());
            }
            cpus.extend(a..=b);
        }
        Ok(ReceiveCpus::Cpus(cpus.into_iter().collect()))
    }
}

/// Where the switch steers the parent's frames from ([`DataplaneConfig::parent_hook`]).
///
/// With **XDP** (the `steer` program, native or generic by
/// [`DataplaneConfig::xdp_mode`]) unicast for the switch goes from the parent's
/// receive queues straight into the switch's sockets, and unicast the fast path
/// delivers is passed on to the tc program, which redirects it into the endpoint.
/// On a real NIC native XDP runs before the kernel builds an skb, and costs little.
/// On a veth it is the dearest step of the fast path: native and generic XDP both
/// move every frame into a page of its own first (BENCHMARKS.md: wire → endpoint
/// 0.55× kernel macvlan with XDP on the parent, 0.89× without, at 64 B).
///
/// With **tc** the parent carries no XDP program: its tc ingress program steers
/// unicast as the XDP program would, redirecting the fast path's frames into their
/// endpoint and *moving* what the switch must see (frames for an endpoint the fast
/// path does not serve, every unicast in passthru, a `nodst` source's frames) to the
/// mirror veth, where they reach the switch as frames from the wire, as the
/// multicast copies do. The switch still transmits to the wire through its sockets
/// on the parent's queues. Each such frame pays a veth hop more than with XDP; the
/// fast path's pay nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ParentHook {
    /// tc if the parent is a veth and [`DataplaneConfig::fastpath`] is on, else XDP.
    #[default]
    Auto,
    /// The XDP program on the parent.
    Xdp,
    /// No XDP on the parent: its tc ingress program steers every frame.
    Tc,
}

impl ParentHook {
    /// Whether a parent with `driver` (its `ethtool -i` name, if known) is steered from
    /// tc, with the fast path on by default (`fastpath`) or not.
    pub fn steers_from_tc(self, fastpath: bool, driver: Option<&str>) -> bool {
        match self {
            ParentHook::Xdp => false,
            ParentHook::Tc => true,
            ParentHook::Auto => fastpath && driver == Some("veth"),
        }
    }

    /// `auto`, `xdp` or `tc`.
    pub const fn name(self) -> &'static str {
        match self {
            ParentHook::Auto => "auto",
            ParentHook::Xdp => "xdp",
            ParentHook::Tc => "tc",
        }
    }
}

impl std::fmt::Display for ParentHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ParentHook {
    type Err = String;

    /// `auto`, `xdp` or `tc`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(ParentHook::Auto),
            "xdp" => Ok(ParentHook::Xdp),
            "tc" => Ok(ParentHook::Tc),
            o => Err(format!(
                "'{}' is not a parent hook: use auto, xdp or tc",
                o.escape_debug()
            )),
        }
    }
}

impl DataplaneConfig {
    /// Defaults for `parent`: every queue it has, one worker per queue up to the
    /// cores, native XDP on the parent and generic on the endpoints' veths, 16384
    /// frames per worker, rings of 1024.
    pub fn new(parent: impl Into<String>) -> Self {
        let xsk = XskConfig {
            rx_size: 1024,
            tx_size: 1024,
            fill_size: 1024,
            comp_size: 1024,
            fill_level: 512,
            fill_batch: 64,
            ..XskConfig::default()
        };
        DataplaneConfig {
            parent: parent.into(),
            queues: None,
            workers: None,
            xdp_mode: XdpMode::Native,
            endpoint_xdp_mode: XdpMode::Generic,
            frames: 16384,
            xsk,
            worker: WorkerConfig::default(),
            tuning: SocketTuning::default(),
            multicast_leave: Leave::Kernel,
            adopt: false,
            fastpath: true,
            parent_hook: ParentHook::Auto,
            receive_cpus: ReceiveCpus::Kernel,
        }
    }
}

/// What an endpoint's interface inside its namespace looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointNet {
    /// Target namespace: a name under /run/netns or a path.
    pub netns: String,
    /// Interface name inside it.
    pub ifname: String,
    /// Addresses inside it.
    pub addrs: Vec<IpCidr>,
    /// Queues of the veth pair. `None`: one per worker. More than the workers is
    /// allowed (a container that wants to spread its own traffic); each is served by
    /// a socket of worker `q % workers`.
    pub queues: Option<u32>,
    /// The switch-side name of a veth pair an earlier run left on this parent (kept by
    /// [`DataplaneConfig::adopt`]) to take over as it is, instead of creating one:
    /// its peer keeps its namespace, name, MAC and addresses (`netns`, `ifname` and
    /// `addrs` are not used), so whatever holds it (a container) sees no change.
    pub adopt: Option<String>,
}

/// Why the dataplane refused or failed something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration rule (spec §5).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Interfaces or namespaces.
    #[error(transparent)]
    Link(#[from] crate::link::Error),
    /// The XDP/tc programs or their maps.
    #[error(transparent)]
    Bpf(#[from] crate::bpf::Error),
    /// AF_XDP sockets or UMEM.
    #[error(transparent)]
    Xsk(#[from] crate::xsk::Error),
    /// The worker thread.
    #[error(transparent)]
    Worker(#[from] WorkerGone),
    /// The parent has no MAC address (loopback, a tunnel): it cannot carry endpoints.
    #[error("{0} is not an Ethernet device: a parent needs a MAC address")]
    NotEthernet(String),
    /// A port could not be attached to a worker's switch.
    #[error(transparent)]
    Attach(#[from] crate::switch::AttachError),
    /// Duplicating a socket's fd for the XSKMAP failed.
    #[error("duplicating an AF_XDP socket's fd for the XSKMAP: {0}")]
    DupFd(std::io::Error),
    /// More queues asked of the parent than it has.
    #[error("{parent} has {has} receive queues ({counted_by}); {asked} cannot be bound")]
    TooManyQueues {
        /// The parent.
        parent: String,
        /// Queues asked ([`DataplaneConfig::queues`]).
        asked: u32,
        /// Receive queues the parent uses now.
        has: u32,
        /// Where that count was read.
        counted_by: QueueSource,
    },
    /// A worker count that the parent's queues cannot serve.
    #[error("workers ({asked}) must be between 1 and {max}: each worker receives on a parent queue of its own and transmits through it, and {parent} has {rx} bound receive and {tx} transmit queues")]
    Workers {
        /// The parent.
        parent: String,
        /// Workers asked ([`DataplaneConfig::workers`]).
        asked: u32,
        /// The most that fit.
        max: u32,
        /// Bound receive queues.
        rx: u32,
        /// Transmit queues.
        tx: u32,
    },
    /// An endpoint's queue count that the workers cannot serve.
    #[error("endpoint '{endpoint}': {asked} queues do not fit: every one of the {workers} workers needs a queue of the endpoint's veth (at least {workers}, at most {MAX_ENDPOINT_QUEUES})")]
    EndpointQueues {
        /// The endpoint.
        endpoint: String,
        /// Queues asked ([`EndpointNet::queues`]).
        asked: u32,
        /// Workers of the dataplane.
        workers: u32,
    },
    /// [`EndpointNet::adopt`] names no veth the dataplane can take over.
    #[error("endpoint '{endpoint}': cannot take over interface {ifname}: {why}")]
    Adopt {
        /// The endpoint.
        endpoint: String,
        /// The switch-side veth named.
        ifname: String,
        /// Why not.
        why: String,
    },
    /// A worker's UMEM has no room for another endpoint's sockets.
    #[error("endpoint '{endpoint}' does not fit: a worker's UMEM has {frames} frames, and its {sockets} sockets would keep {fill_level} each in their fill rings, leaving fewer than {} for traffic; give the workers more frames (`frames` in the daemon's [daemon] section, DataplaneConfig::frames)", umem_reserve(*frames))]
    UmemFull {
        /// The endpoint refused.
        endpoint: String,
        /// Frames of each worker's UMEM.
        frames: u32,
        /// Sockets a worker would have with it.
        sockets: u32,
        /// Frames each socket keeps in its fill ring.
        fill_level: u32,
    },
    /// The XSKMAP is full.
    #[error(
        "no room for {need} more AF_XDP sockets: the switch holds at most {MAX_XSKS} on one parent"
    )]
    NoSlots {
        /// Sockets needed.
        need: u32,
    },
    /// The parent grew beyond the queues reserved for it at start.
    #[error("{parent} now has {has} receive queues, more than the {reserved} the switch reserved at start: restart it to serve them (until then their frames go to the host, counted as xdp_unbound_queue)")]
    QueuesOutgrown {
        /// The parent.
        parent: String,
        /// Receive queues now.
        has: u32,
        /// Queues reserved.
        reserved: u32,
    },
    /// RLIMIT_MEMLOCK too low for the UMEM.
    #[error(transparent)]
    Memlock(#[from] crate::sys::MemlockError),
    /// Thread creation.
    #[error("cannot start the worker thread: {0}")]
    Spawn(std::io::Error),
}

type Result<T> = std::result::Result<T, Error>;

struct EndpointRt {
    id: PortId,
    /// The veth and its XSKMAP slots; `None` for an in-process endpoint.
    veth: Option<(u32, String, Slots)>,
    /// Its interface's multicast membership; `None` for an in-process endpoint.
    mc: Option<mcast::McWatch>,
    /// What the kernel fast path can do for it.
    reach: Reach,
    /// Its peer is in another namespace (`bpf_redirect_peer` delivers only there).
    elsewhere: bool,
}

/// The name [`Dataplane::stats`] gives the collector's own drops: frames handed to
/// the switch for a port that was gone by then. Not a valid endpoint name.
pub const COLLECTOR: &str = "(collector)";

/// Bytes the collector veth's MTU exceeds the parent's by: the shim, a tag the
/// endpoint put inline, and spare.
const COLLECTOR_ROOM: u32 = 32;
/// The largest MTU a veth with a (single-buffer) XDP program takes.
const COLLECTOR_MAX_MTU: u32 = 3500;

/// The most queues an endpoint veth may have.
pub const MAX_ENDPOINT_QUEUES: u32 = 64;

/// The most parent queues reserved in the XSKMAP at start (a real NIC may be
/// created with far more queues than it ever uses).
const MAX_PARENT_QUEUES: u32 = 256;

/// A block of XSKMAP slots: `base..base + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slots {
    base: u32,
    len: u32,
}

/// Hands out blocks of XSKMAP slots above a fixed low range.
#[derive(Debug)]
struct SlotAlloc {
    free: Vec<Slots>,
    next: u32,
}

impl SlotAlloc {
    fn new(first: u32) -> Self {
        SlotAlloc {
            free: Vec::new(),
            next: first,
        }
    }

    fn alloc(&mut self, len: u32) -> Result<Slots> {
        if let Some(i) = self.free.iter().position(|b| b.len >= len) {
            let b = self.free[i];
            if b.len == len {
                self.free.swap_remove(i);
            } else {
                self.free[i] = Slots {
                    base: b.base + len,
                    len: b.len - len,
                };
            }
            return Ok(Slots { base: b.base, len });
        }
        if self.next + len > MAX_XSKS {
            return Err(Error::NoSlots { need: len });
        }
        self.next += len;
        Ok(Slots {
            base: self.next - len,
            len,
        })
    }

    fn release(&mut self, b: Slots) {
        self.free.push(b);
    }
}

/// A running switch on one parent.
pub struct Dataplane {
    cfg: DataplaneConfig,
    links: Arc<Links>,
    steering: Steering,
    topo: Topology,
    workers: Vec<Worker<DpPort, Umem, 32>>,
    parent: LinkInfo,
    /// Parent receive queues with a socket: `0..bound`, XSKMAP slots `0..bound`.
    bound: u32,
    /// Parent receive queues seen at the last [`Dataplane::sync_queues`].
    seen: u32,
    /// XSKMAP slots `0..reserved` belong to parent queues.
    reserved: u32,
    /// A passthru endpoint is up: every unicast from the wire goes to the switch.
    passthru: bool,
    /// The parent carries no XDP program: its tc program steers ([`ParentHook::Tc`]).
    tc_steer: bool,
    /// The longest frame a UMEM frame holds.
    max_len: u32,
    mirror: (LinkInfo, LinkInfo),
    endpoints: BTreeMap<String, EndpointRt>,
    /// Endpoint veths of an earlier run kept for adoption ([`DataplaneConfig::adopt`]):
    /// switch-side name and ifindex.
    unclaimed: BTreeMap<String, u32>,
    /// What the `srcs` map holds ([`Dataplane::sync_sources`]).
    srcs: BTreeMap<(u16, MacAddr), u32>,
    /// What the `groups` map holds ([`Dataplane::sync_groups`]).
    groups: BTreeSet<(u16, Option<MacAddr>)>,
    slots: SlotAlloc,
    stopped: bool,
    /// The collector veth pair (`umv<parent>ca` → `cb`), made with the first fast
    /// endpoint: what a fast port hands the switch comes out of `cb` into a socket.
    collector: Option<(LinkInfo, LinkInfo)>,
    /// Networks (VLANs) whose fast path differs from [`DataplaneConfig::fastpath`].
    fast_vlans: BTreeMap<u16, bool>,
    /// What the `fast` and `fast_wire` maps hold, and the veth each ingress port's
    /// entries are keyed by.
    fast: FastTable,
    /// The classes in the `fast` map: their entries as written → kernel class id.
    fast_classes: BTreeMap<BTreeMap<MacAddr, FastVal>, u32>,
    /// The `fast_in` entries as written: sender → (its veth, the value).
    fast_in: BTreeMap<PortId, (u32, FastIn)>,
    /// The `fast_wire` entries as written.
    fast_wire: BTreeMap<(u16, MacAddr), FastVal>,
    /// The next kernel class id.
    next_class: u32,
    /// A write failed at the last sync: the next one writes every entry again.
    fast_dirty: bool,
    /// Stopping: the fast path is emptied once, and stays so.
    fast_off: bool,
    /// Endpoint MACs in the parent's unicast filter ([`Links::uc_add`]).
    uc: BTreeSet<MacAddr>,
    /// Running captures.
    captures: Vec<capture::Sub>,
    /// Reads the fast path's capture ring buffer while a capture runs.
    ring: Option<capture::RingReader>,
    next_capture: u64,
}

/// What [`Dataplane::sync_queues`] found: the parent's receive queues changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueChange {
    /// Receive queues at the previous check.
    pub before: u32,
    /// Receive queues now.
    pub now: u32,
    /// Queues with a socket now (`0..bound`).
    pub bound: u32,
}

/// A short-lived duplicate of a socket's fd (for the XSKMAP; closed right after).
fn dup_fd(p: &XskPort) -> Result<OwnedFd> {
    p.socket()
        .as_fd()
        .try_clone_to_owned()
        .map_err(Error::DupFd)
}

/// Opens sockets on the worker's UMEM, attaches them as port `id` (transmitting
/// through the first) and returns short-lived duplicates of their fds.
fn open_port(
    worker: &Worker<DpPort, Umem, 32>,
    id: PortId,
    socks: Vec<(u32, u32)>,
    xsk: XskConfig,
    tuning: SocketTuning,
) -> Result<Vec<OwnedFd>> {
    let r = worker.exec(move |sw: &mut Sw| -> Result<Vec<OwnedFd>> {
        let mut ports = Vec::new();
        for (ifindex, queue) in socks {
            let p = XskPort::open(sw.pool_mut(), ifindex, queue, &xsk)?;
            p.socket().tune(&tuning)?;
            ports.push(p);
        }
        let fds = ports.iter().map(dup_fd).collect::<Result<Vec<_>>>()?;
        sw.attach(id, DpPort::Xsk(Bundle::new(ports, 0)))?;
        Ok(fds)
    })?;
    r
}

impl Dataplane {
    /// Starts a switch on `cfg.parent` in the calling thread's namespace.
    ///
    /// What a switch killed on this parent left behind (`kill -9`, a crash) is
    /// removed first, one line on stderr each: its XDP and tc programs, which no
    /// process holds open any more ([`Steering::remove_leftovers`]), then, once the
    /// parent's XDP hook is ours, interfaces named like ours (`umv<ifindex>ma`/`mb`,
    /// `umv<ifindex>e<port>`; with [`DataplaneConfig::adopt`] the endpoint veths
    /// are kept for adoption).
    ///
    /// # Errors
    /// If the parent is missing or unsuitable, it already carries an XDP program the
    /// switch did not attach, or any kernel step fails; everything set up so far is
    /// undone.
    pub fn start(cfg: DataplaneConfig) -> Result<Dataplane> {
        let links = Arc::new(Links::open()?);
        let parent = links.require(&cfg.parent)?;
        if parent.loopback || parent.mac.is_zero() {
            return Err(Error::NotEthernet(cfg.parent.clone()));
        }
        let pq = crate::link::queues(&parent)?;
        let (q, n) = queue_plan(&cfg, &pq, available_cores())?;
        // Sockets are file descriptors: one per endpoint per worker.
        if let Err(e) = crate::sys::raise_nofile_limit() {
            tracing::warn!(parent = %cfg.parent, "cannot raise RLIMIT_NOFILE: {e}");
        }
        // Each worker's UMEM is pinned memory: unless CAP_IPC_LOCK exempts us, make
        // sure RLIMIT_MEMLOCK allows them all (4 KiB frames at most), or say what to do.
        if !has_cap_ipc_lock() {
            crate::sys::raise_memlock_limit(
                u64::from(cfg.frames) * 4096 * u64::from(n) + (16 << 20),
            )?;
        }
        // Growth is followed into slots reserved now (the parent's own maximum).
        let reserved = if cfg.queues.is_none() {
            q.max(pq.max_rx.min(MAX_PARENT_QUEUES))
        } else {
            q
        };
        let topo = Topology::new(
            ParentConfig {
                name: parent.name.clone(),
                mac: parent.mac,
                mtu: parent.mtu.min(u16::MAX as u32) as u16,
            },
            true,
        )?;
        let mut steering = Steering::load()?;
        // A switch killed on this parent (`kill -9`, a crash) left its programs
        // attached, held open by no process: remove them. A running switch's programs
        // are held open by it and stay, so the attach below refuses the parent.
        for what in steering.remove_leftovers(parent.index)? {
            tracing::warn!(parent = %cfg.parent, "removed a leftover of an earlier run: {what}");
        }
        let driver = crate::sys::ethtool_driver(&parent.name).ok();
        let tc_steer = cfg
            .parent_hook
            .steers_from_tc(cfg.fastpath, driver.as_deref());
        // First of all, claim the parent: this refuses a parent that carries someone
        // else's XDP program, or another switch's, before anything else is touched.
        // With XDP the claim is the attach (until the parent is in the `devs` map the
        // program passes every frame to the host); from tc, a check that no XDP
        // program is there and no other switch's tc program.
        if !tc_steer {
            steering.attach_xdp(parent.index, cfg.xdp_mode)?;
        }
        steering.check_parent_free(parent.index, tc_steer)?;
        // The mirror pair: tc clones multicast into `a`; it comes out of `b` into a socket.
        let (ma, mb) = (
            format!("umv{}ma", parent.index),
            format!("umv{}mb", parent.index),
        );
        // The parent is ours now, so interfaces named like ours on it are leftovers:
        // the mirror pair and endpoint veths (deleting one removes its peer in the
        // endpoint's namespace too).
        let mut unclaimed = BTreeMap::new();
        for l in links.list()? {
            if cfg.adopt && is_endpoint_veth(&l.name, parent.index) {
                unclaimed.insert(l.name.clone(), l.index);
                continue;
            }
            if l.name == ma
                || l.name == mb
                || l.name == format!("umv{}ca", parent.index)
                || l.name == format!("umv{}cb", parent.index)
                || is_endpoint_veth(&l.name, parent.index)
            {
                // Deleting one end of a pair removes the other: it may be gone already.
                if links.get(&l.name)?.is_some_and(|now| now.index == l.index) {
                    links.delete(l.index, &l.name)?;
                    tracing::warn!(parent = %cfg.parent, "removed a leftover of an earlier run: interface {}", l.name);
                }
            }
        }
        links.add_veth_mq(&ma, &mb, n)?;
        let mut dp_links = Some(links.clone());
        let cleanup_mirror = scopeguard(move || {
            if let Some(l) = dp_links.take() {
                if let Ok(Some(m)) = l.get(&format!("umv{}ma", parent.index)) {
                    let _ = l.delete(m.index, "mirror");
                }
            }
        });
        let mirror_a = links.require(&ma)?;
        let mirror_b = links.require(&mb)?;
        // A frame of the parent's MTU with two tags must pass the veth's length check
        // (a longer one is dropped uncounted); XDP on veth takes at most a page.
        let mirror_mtu = (parent.mtu + COLLECTOR_ROOM).min(COLLECTOR_MAX_MTU);
        links.set_mtu(mirror_a.index, &ma, mirror_mtu)?;
        links.set_mtu(mirror_b.index, &mb, mirror_mtu)?;
        links.set_up(mirror_a.index, &ma, true)?;
        links.set_up(mirror_b.index, &mb, true)?;

        // A received frame lands 256 bytes into its UMEM frame (XDP_PACKET_HEADROOM).
        let frame_size = if parent.mtu as usize + 22 + 256 > 2048 {
            4096
        } else {
            2048
        };
        let mut workers = Vec::new();
        for w in 0..n {
            let umem = Umem::new(cfg.frames, frame_size)?;
            let mut sw: Sw = Switch::new(topo.reader(), umem);
            sw.set_kernel_host(Some(HOST));
            let mut wc = cfg.worker.clone();
            wc.core = wc.core.map(|c| c + w as usize);
            workers.push(Worker::spawn(sw, wc).map_err(Error::Spawn)?);
        }
        for (w, worker) in workers.iter().enumerate() {
            let w = w as u32;
            // The uplink of worker w: its parent queues (the first also transmits to the
            // wire) and its queue of the mirror.
            let mut socks: Vec<(u32, u32)> = (w..q)
                .step_by(n as usize)
                .map(|qi| (parent.index, qi))
                .collect();
            socks.push((mirror_b.index, w));
            let fds = open_port(worker, UPLINK, socks.clone(), cfg.xsk.clone(), cfg.tuning)?;
            for ((dev, qi), fd) in socks.iter().zip(&fds) {
                let slot = if *dev == parent.index {
                    *qi
                } else {
                    reserved + qi
                };
                steering.set_xsk(slot, fd.as_fd())?;
            }
        }
        // A frame lands XDP_PACKET_HEADROOM into its UMEM frame: longer ones do not fit.
        let max_len = frame_size - 256;
        steering.set_device(
            mirror_b.index,
            DevVal::port(reserved, n).with_max_len(max_len),
        )?;
        steering.set_device(
            parent.index,
            DevVal::parent(0, q, mirror_a.index, false)
                .with_max_len(max_len)
                .with_tc_steer(tc_steer),
        )?;
        // Always native: generic XDP skips frames a BPF program redirected, and every
        // mirrored copy is one.
        steering.attach_xdp(mirror_b.index, XdpMode::Native)?;
        steering.attach_tc_ingress(parent.index)?;
        cleanup_mirror.defuse();
        tracing::info!(
            parent = %cfg.parent,
            rx_queues = pq.rx,
            tx_queues = pq.tx,
            counted_by = %pq.source,
            bound = %format!("0..{q}"),
            workers = n,
            parent_hook = if tc_steer { "tc" } else { "xdp" },
            xdp = ?cfg.xdp_mode,
            endpoint_xdp = ?cfg.endpoint_xdp_mode,
            "dataplane started: {q} receive queues bound"
        );
        Ok(Dataplane {
            slots: SlotAlloc::new(reserved + n),
            max_len,
            bound: q,
            seen: pq.rx,
            reserved,
            passthru: false,
            tc_steer,
            stopped: false,
            cfg,
            links,
            steering,
            topo,
            workers,
            parent,
            mirror: (mirror_a, mirror_b),
            endpoints: BTreeMap::new(),
            unclaimed,
            srcs: BTreeMap::new(),
            groups: BTreeSet::new(),
            collector: None,
            fast_vlans: BTreeMap::new(),
            fast: FastTable::default(),
            fast_classes: BTreeMap::new(),
            fast_in: BTreeMap::new(),
            fast_wire: BTreeMap::new(),
            next_class: 1,
            fast_dirty: false,
            fast_off: false,
            uc: BTreeSet::new(),
            captures: Vec::new(),
            ring: None,
            next_capture: 1,
        })
    }

    /// Parent receive queues with a socket (`0..queues()`).
    pub fn queues(&self) -> u32 {
        self.bound
    }

    /// Worker threads.
    pub fn workers(&self) -> u32 {
        self.workers.len() as u32
    }

    /// The parent's entry in the `devs` map, as it must be now.
    fn parent_dev(&self) -> DevVal {
        DevVal::parent(0, self.bound, self.mirror.0.index, self.passthru)
            .with_max_len(self.max_len)
            .with_sources(!self.srcs.is_empty())
            .with_tc_steer(self.tc_steer)
    }

    /// Where the parent's frames are steered from: [`ParentHook::Xdp`] or
    /// [`ParentHook::Tc`] ([`DataplaneConfig::parent_hook`] resolved).
    pub fn parent_hook(&self) -> ParentHook {
        if self.tc_steer {
            ParentHook::Tc
        } else {
            ParentHook::Xdp
        }
    }

    /// Follows a change of the parent's receive queue count: binds every new queue
    /// (on worker `q % workers`) and then lets the XDP program redirect from it.
    /// Call it periodically (the daemon does, every second) or on a link event.
    /// Does nothing with a fixed [`DataplaneConfig::queues`]. A shrink needs
    /// nothing: the kernel refuses to remove a queue bound by an AF_XDP socket.
    ///
    /// Returns `Some` when the count changed since the last call.
    ///
    /// # Errors
    /// [`Error::QueuesOutgrown`] (reported once per change) or a kernel step; the
    /// queues bound before stay bound, and a queue that failed is tried again at the
    /// next call.
    pub fn sync_queues(&mut self) -> Result<Option<QueueChange>> {
        if self.cfg.queues.is_some() {
            return Ok(None);
        }
        let pq = crate::link::queues(&self.parent)?;
        if pq.rx == self.seen {
            return Ok(None);
        }
        let before = self.seen;
        let want = pq.rx.min(self.reserved);
        let was = self.bound;
        let bound = (self.bound..want).try_for_each(|qi| self.bind_parent_queue(qi));
        if self.bound > was {
            // Some drivers (veth) run no XDP on queues added while a program is
            // attached, until it is installed again.
            self.steering.refresh_xdp(self.parent.index)?;
        }
        // A queue that failed to bind is tried again at the next call.
        bound?;
        self.seen = pq.rx;
        if pq.rx > self.reserved {
            // Reported once: the count is taken as seen.
            return Err(Error::QueuesOutgrown {
                parent: self.parent.name.clone(),
                has: pq.rx,
                reserved: self.reserved,
            });
        }
        Ok(Some(QueueChange {
            before,
            now: pq.rx,
            bound: self.bound,
        }))
    }

    /// Binds parent queue `qi` (the next one) on worker `qi % workers` and lets the
    /// XDP program redirect from it.
    fn bind_parent_queue(&mut self, qi: u32) -> Result<()> {
        let n = self.workers.len() as u32;
        let worker = &self.workers[(qi % n) as usize];
        let (ifindex, xsk, tuning) = (self.parent.index, self.cfg.xsk.clone(), self.cfg.tuning);
        let fd = worker.exec(move |sw: &mut Sw| -> Result<OwnedFd> {
            let p = XskPort::open(sw.pool_mut(), ifindex, qi, &xsk)?;
            p.socket().tune(&tuning)?;
            let fd = dup_fd(&p)?;
            match sw.port_mut(UPLINK) {
                Some(DpPort::Xsk(b)) => b.push(p),
                _ => unreachable!("the uplink is a bundle of sockets from start to stop"),
            }
            Ok(fd)
        })??;
        self.steering.set_xsk(qi, fd.as_fd())?;
        self.bound = qi + 1;
        self.steering
            .set_device(self.parent.index, self.parent_dev())?;
        Ok(())
    }

    /// Runs `f` on every worker, in order, and collects the results.
    fn on_workers<R: Send + 'static>(
        &self,
        f: impl Fn(u32, &mut Sw) -> R + Send + Sync + Clone + 'static,
    ) -> Result<Vec<R>> {
        let mut out = Vec::with_capacity(self.workers.len());
        for (w, worker) in self.workers.iter().enumerate() {
            let f = f.clone();
            out.push(worker.exec(move |sw: &mut Sw| f(w as u32, sw))?);
        }
        Ok(out)
    }

    /// The published port table.
    pub fn table(&self) -> Arc<PortTable> {
        self.topo.table()
    }

    /// Declares network VLAN `vlan` on this parent (0 = untagged), so its tagged
    /// frames are switched even before it has endpoints.
    ///
    /// # Errors
    /// [`ControlError::BadVlan`].
    pub fn add_network(&mut self, vlan: u16) -> Result<()> {
        Ok(self.topo.add_network(vlan)?)
    }

    /// Turns the kernel fast path of network `vlan` on or off (else it follows
    /// [`DataplaneConfig::fastpath`]). It applies to the endpoints added after the
    /// call: an endpoint's veth is made for one path or the other.
    pub fn set_fastpath(&mut self, vlan: u16, on: bool) {
        self.fast_vlans.insert(vlan, on);
    }

    /// Whether network `vlan` uses the kernel fast path.
    pub fn fastpath(&self, vlan: u16) -> bool {
        self.fast_vlans
            .get(&vlan)
            .copied()
            .unwrap_or(self.cfg.fastpath)
    }

    /// The kernel fast path's entries now.
    pub fn fast_table(&self) -> &FastTable {
        &self.fast
    }

    /// The control model.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Adds an endpoint: the rules of spec §5 first, then its veth pair, socket, XDP
    /// program and FDB entry. On failure nothing of it remains.
    ///
    /// # Errors
    /// A rule ([`Error::Control`]) or a kernel step.
    pub fn add_endpoint(&mut self, cfg: EndpointConfig, net: EndpointNet) -> Result<PortId> {
        let name = cfg.name.clone();
        // Refuse by the rules (spec §5) before creating anything. Then publish it down,
        // so no worker sends to it before its port exists, and bring it up once its
        // socket is attached.
        self.topo.check_endpoint(cfg.clone())?;
        let want_up = cfg.up;
        let id = self
            .topo
            .add_endpoint(EndpointConfig { up: false, ..cfg })?;
        // The kernel's counters of a port that had this id before start again.
        if let Err(e) = self.steering.reset_port_stats(id) {
            let _ = self.topo.remove_endpoint(&name);
            return Err(e.into());
        }
        match self
            .plumb(&name, id, net)
            .and_then(|()| self.bring_up(&name, want_up))
        {
            Ok(()) => Ok(id),
            Err(e) => {
                self.unplumb(&name);
                let _ = self.topo.remove_endpoint(&name);
                self.sync_mac_filter();
                Err(e)
            }
        }
    }

    fn plumb(&mut self, name: &str, id: PortId, net: EndpointNet) -> Result<()> {
        let ep = self.topo.endpoint(name).expect("just added").clone();
        let n = self.workers.len() as u32;
        let adopted = match &net.adopt {
            Some(ifname) => Some(self.adoptable(name, ifname)?),
            None => None,
        };
        let queues = adopted.map_or(net.queues.unwrap_or(n), |(_, q)| q);
        if queues < n || queues > MAX_ENDPOINT_QUEUES {
            return Err(Error::EndpointQueues {
                endpoint: name.into(),
                asked: queues,
                workers: n,
            });
        }
        let fast = self.fastpath(ep.cfg.vlan);
        self.check_umem_room(name, queues, fast)?;
        if fast {
            self.ensure_collector()?;
        }
        let slots = self.slots.alloc(queues)?;
        let mut watch = mcast::McWatch::new(net.netns.clone(), self.cfg.multicast_leave);
        let made = match (&net.adopt, adopted) {
            (Some(ifname), Some((ifindex, _))) => self
                .take_over(ifname, ifindex)
                .map(|()| (ifindex, ifname.clone())),
            _ => {
                let host_ifname = self.fresh_veth_name(id);
                VethEndpoint {
                    host_ifname: host_ifname.clone(),
                    netns: net.netns,
                    ifname: net.ifname,
                    mac: ep.mac(),
                    mtu: ep.mtu() as u32,
                    addrs: net.addrs,
                    queues,
                }
                .create(&self.links)
                .map(|i| (i, host_ifname))
                .map_err(Error::from)
            }
        };
        let (host_ifindex, host_ifname) = match made {
            Ok(m) => m,
            Err(e) => {
                self.slots.release(slots);
                return Err(e);
            }
        };
        if net.adopt.is_some() {
            self.unclaimed.remove(&host_ifname);
        }
        let rps_dev = host_ifname.clone();
        // Its groups from the start, before it is up.
        let mc = watch.read(host_ifindex, ep.mac());
        // bpf_redirect_peer delivers only into another namespace.
        let elsewhere = fast
            && self
                .links
                .get(&host_ifname)?
                .is_some_and(|l| l.link.is_some_and(|(_, other)| other));
        self.endpoints.insert(
            name.to_string(),
            EndpointRt {
                id,
                veth: Some((host_ifindex, host_ifname, slots)),
                mc: Some(watch),
                reach: Reach {
                    ingress: fast,
                    egress: elsewhere,
                },
                elsewhere,
            },
        );
        self.topo.set_mc(name, mc)?;
        if fast {
            let collector = self.collector.as_ref().expect("made above").0.index;
            self.steering
                .set_device(host_ifindex, DevVal::fast_port(id, ep.mac(), collector))?;
        } else {
            self.steering.set_device(
                host_ifindex,
                DevVal::port(slots.base, queues).with_max_len(self.max_len),
            )?;
        }
        // A fast port's sockets only transmit: the tc program hands its frames to the
        // switch through the collector, so they keep no frames in a fill ring.
        let mut xsk = self.cfg.xsk.clone();
        if fast {
            xsk.fill_level = 0;
        }
        // Worker w serves queues q % n == w of the endpoint's veth and transmits
        // through queue w.
        for (w, worker) in self.workers.iter().enumerate() {
            let w = w as u32;
            let socks: Vec<(u32, u32)> = (w..queues)
                .step_by(n as usize)
                .map(|qi| (host_ifindex, qi))
                .collect();
            let fds = open_port(worker, id, socks.clone(), xsk.clone(), self.cfg.tuning)?;
            if !fast {
                for ((_, qi), fd) in socks.iter().zip(&fds) {
                    self.steering.set_xsk(slots.base + qi, fd.as_fd())?;
                }
            }
        }
        if fast {
            self.steering.attach_tc_port(host_ifindex)?;
            // A placement knob, not a verdict: an endpoint that cannot have it still
            // forwards, on its senders' CPUs.
            let cpus = self.cfg.receive_cpus.cpus();
            if !cpus.is_empty() {
                if let Err(e) = crate::sys::set_rps(&[rps_dev], &rps_mask(&cpus)) {
                    tracing::warn!(
                        endpoint = name,
                        "cannot set the receive CPUs ({}): {e}",
                        self.cfg.receive_cpus
                    );
                }
            }
            Ok(())
        } else {
            self.steering
                .attach_xdp(host_ifindex, self.cfg.endpoint_xdp_mode)
                .map_err(Error::from)
        }
    }

    /// Makes the collector veth pair and its sockets (one per worker, on queue `w`
    /// of `cb`), once.
    fn ensure_collector(&mut self) -> Result<()> {
        if self.collector.is_some() {
            return Ok(());
        }
        let n = self.workers.len() as u32;
        let (ca, cb) = (
            format!("umv{}ca", self.parent.index),
            format!("umv{}cb", self.parent.index),
        );
        self.links.add_veth_mq(&ca, &cb, n)?;
        let mut made_slots = None;
        let made = (|| -> Result<(LinkInfo, LinkInfo)> {
            let a = self.links.require(&ca)?;
            let b = self.links.require(&cb)?;
            // A frame the size of the parent's MTU, tagged, behind the shim must pass
            // the veth's length check (a longer one is dropped uncounted); XDP on veth
            // takes at most a page.
            let mtu = (self.parent.mtu + COLLECTOR_ROOM).min(COLLECTOR_MAX_MTU);
            self.links.set_mtu(a.index, &ca, mtu)?;
            self.links.set_mtu(b.index, &cb, mtu)?;
            self.links.set_up(a.index, &ca, true)?;
            self.links.set_up(b.index, &cb, true)?;
            let slots = self.slots.alloc(n)?;
            made_slots = Some(slots);
            for (w, worker) in self.workers.iter().enumerate() {
                let (ifindex, xsk, tuning) = (b.index, self.cfg.xsk.clone(), self.cfg.tuning);
                let w = w as u32;
                let fd = worker.exec(move |sw: &mut Sw| -> Result<OwnedFd> {
                    let p = XskPort::open(sw.pool_mut(), ifindex, w, &xsk)?;
                    p.socket().tune(&tuning)?;
                    let fd = dup_fd(&p)?;
                    sw.set_collector(Some(DpPort::Xsk(Bundle::new(vec![p], 0))));
                    Ok(fd)
                })??;
                self.steering.set_xsk(slots.base + w, fd.as_fd())?;
            }
            self.steering.set_device(
                b.index,
                DevVal::port(slots.base, n).with_max_len(self.max_len),
            )?;
            // Native, as on the mirror: generic XDP skips frames a BPF program redirected.
            self.steering.attach_xdp(b.index, XdpMode::Native)?;
            Ok((a, b))
        })();
        match made {
            Ok(pair) => {
                self.collector = Some(pair);
                Ok(())
            }
            Err(e) => {
                // Nothing of it stays: sockets (and their frames), slots, map entries,
                // the pair.
                let _ = self.on_workers(|_, sw: &mut Sw| {
                    drop(sw.set_collector(None));
                    sw.pool_mut().reclaim_closed();
                });
                if let Some(slots) = made_slots {
                    for s in slots.base..slots.base + slots.len {
                        let _ = self.steering.clear_xsk(s);
                    }
                    self.slots.release(slots);
                }
                if let Ok(Some(b)) = self.links.get(&cb) {
                    let _ = self.steering.detach_xdp(b.index);
                    let _ = self.steering.remove_device(b.index);
                }
                if let Ok(Some(a)) = self.links.get(&ca) {
                    let _ = self.links.delete(a.index, &ca);
                }
                Err(e)
            }
        }
    }

    /// Compiles the fast path from the port table now and writes the difference
    /// into the kernel's maps, in an order that never lets a frame be forwarded by
    /// a half-written table: the entries of a class that is new (or whose entries
    /// changed) under a fresh class id first, then each sender switched to its class
    /// (one atomic update each), then senders that are gone removed, then classes
    /// nobody uses deleted. So no frame is forwarded to a port that is gone: its
    /// removal changes every class that named it.
    fn sync_fast(&mut self) -> Result<()> {
        if self.collector.is_none() {
            return Ok(());
        }
        let t = self.topo.table();
        let reach: BTreeMap<PortId, Reach> = self
            .endpoints
            .values()
            .map(|rt| (rt.id, rt.reach))
            .collect();
        let want = if self.fast_off {
            FastTable::default()
        } else {
            FastTable::compile(&t, |p| reach.get(&p).copied().unwrap_or_default())
        };
        if self.fast_off && self.fast_in.is_empty() && self.fast_wire.is_empty() {
            return Ok(());
        }
        let ifindex: BTreeMap<PortId, u32> = self
            .endpoints
            .values()
            .filter_map(|rt| rt.veth.as_ref().map(|v| (rt.id, v.0)))
            .collect();
        let parent = self.parent.index;
        let val = |e: &Entry| -> FastVal {
            match e.egress {
                None => FastVal {
                    flags: FAST_F_SLOW,
                    ..FastVal::default()
                },
                Some(q) if q == UPLINK => FastVal {
                    ifindex: parent,
                    port: q.0,
                    vlan: e.vlan,
                    mtu: e.mtu,
                    flags: FAST_F_WIRE,
                },
                Some(q) => FastVal {
                    ifindex: ifindex.get(&q).copied().unwrap_or(0),
                    port: q.0,
                    vlan: 0,
                    mtu: e.mtu,
                    flags: FAST_F_PEER,
                },
            }
        };
        let mut r: std::result::Result<(), crate::bpf::Error> = Ok(());
        // 1. Classes: an identical one keeps its id, a new one is written first.
        let mut classes: BTreeMap<BTreeMap<MacAddr, FastVal>, u32> = BTreeMap::new();
        let mut ids = Vec::with_capacity(want.classes.len());
        for row in &want.classes {
            let entries: BTreeMap<MacAddr, FastVal> =
                row.exact.iter().map(|(m, e)| (*m, val(e))).collect();
            let known = classes.get(&entries).or(self.fast_classes.get(&entries));
            let id = match known.filter(|_| !self.fast_dirty) {
                Some(&id) => id,
                None => {
                    let id = self.next_class;
                    self.next_class = self.next_class.checked_add(1).unwrap_or(1);
                    for (m, v) in &entries {
                        r = r.and(self.steering.fast_insert(id, *m, *v));
                    }
                    id
                }
            };
            ids.push(id);
            classes.insert(entries, id);
        }
        // 2. Every sender switched to its class.
        let mut senders = BTreeMap::new();
        for (&x, &c) in &want.ingress {
            let (Some(&ifx), Some(e)) = (ifindex.get(&x), t.endpoint(x)) else {
                continue;
            };
            let v = FastIn {
                class: ids[c],
                in_port: x.0,
                src: e.mac.octets(),
                dflt: val(&want.classes[c].default),
            };
            if self.fast_dirty || self.fast_in.get(&x) != Some(&(ifx, v)) {
                r = r.and(self.steering.fast_in_insert(ifx, v));
            }
            senders.insert(x, (ifx, v));
        }
        // 3. Senders that are gone (or on another veth now).
        for (x, (ifx, _)) in &self.fast_in {
            if senders.get(x).is_none_or(|(now, _)| now != ifx) {
                r = r.and(self.steering.fast_in_remove(*ifx));
            }
        }
        // 4. Classes nobody uses.
        for (entries, id) in &self.fast_classes {
            if classes.get(entries) != Some(id) {
                for m in entries.keys() {
                    r = r.and(self.steering.fast_remove(*id, *m));
                }
            }
        }
        // From the wire: removals and changes first, then the new ones.
        let wire: BTreeMap<(u16, MacAddr), FastVal> = want
            .wire
            .iter()
            .map(|(k, &(p, mtu))| {
                let v = FastVal {
                    ifindex: ifindex.get(&p).copied().unwrap_or(0),
                    port: p.0,
                    vlan: 0,
                    mtu,
                    flags: FAST_F_PEER,
                };
                (*k, v)
            })
            .collect();
        for k in self.fast_wire.keys() {
            if !wire.contains_key(k) {
                r = r.and(self.steering.fast_wire_remove(k.0, k.1));
            }
        }
        // A changed entry is updated in place (one atomic map update).
        for (k, v) in &wire {
            if self.fast_dirty || self.fast_wire.get(k) != Some(v) {
                r = r.and(self.steering.fast_wire_insert(k.0, k.1, *v));
            }
        }
        // What was attempted, failed writes included (so what is there is removed when
        // no longer wanted); after a failure the next sync writes everything again.
        self.fast_dirty = r.is_err();
        if self.fast_dirty {
            // Old classes stay listed until their entries are gone for sure.
            for (entries, id) in std::mem::take(&mut self.fast_classes) {
                classes.entry(entries).or_insert(id);
            }
        }
        self.fast_classes = classes;
        self.fast_in = senders;
        self.fast_wire = wire;
        self.fast = want;
        r.map_err(Error::from)
    }

    /// The ifindex and queue count of `ifname`, an endpoint veth kept for adoption.
    fn adoptable(&self, name: &str, ifname: &str) -> Result<(u32, u32)> {
        let refuse = |why: String| Error::Adopt {
            endpoint: name.into(),
            ifname: ifname.into(),
            why,
        };
        let Some(&ifindex) = self.unclaimed.get(ifname) else {
            return Err(refuse(
                "it is not an endpoint veth an earlier run left on this parent".into(),
            ));
        };
        match self.links.get(ifname)? {
            Some(l) if l.index == ifindex => Ok((ifindex, l.num_rx_queues)),
            _ => Err(refuse(
                "it is gone (its peer's namespace was removed?)".into(),
            )),
        }
    }

    /// Makes a kept veth ours again: the dead run's programs off, up.
    fn take_over(&mut self, ifname: &str, ifindex: u32) -> Result<()> {
        for what in self.steering.remove_leftovers(ifindex)? {
            tracing::info!(parent = %self.cfg.parent, "taking over {ifname}: removed {what}");
        }
        self.links.set_up(ifindex, ifname, true)?;
        Ok(())
    }

    /// A switch-side veth name for port `id` that no endpoint and no kept veth uses.
    fn fresh_veth_name(&self, id: PortId) -> String {
        let taken = |n: &String| {
            self.unclaimed.contains_key(n)
                || self
                    .endpoints
                    .values()
                    .any(|e| e.veth.as_ref().is_some_and(|v| &v.1 == n))
        };
        (id.0..=u16::MAX)
            .map(|k| endpoint_veth_name(self.parent.index, PortId(k)))
            .find(|n| !taken(n))
            .expect("a free name")
    }

    /// Deletes the kept veths of an earlier run that no endpoint took over
    /// ([`DataplaneConfig::adopt`]), returning their names. Deleting one removes
    /// its peer, wherever it is.
    pub fn remove_unclaimed(&mut self) -> Vec<String> {
        let mut gone = Vec::new();
        for (name, ifindex) in std::mem::take(&mut self.unclaimed) {
            if matches!(self.links.get(&name), Ok(Some(l)) if l.index == ifindex)
                && self.links.delete(ifindex, &name).is_ok()
            {
                gone.push(name);
            }
        }
        gone
    }

    /// Deletes the kept veth (if any) whose peer is `ifname` in this namespace, so
    /// that name can be made again: a port the caller makes here itself (a host
    /// port) is made again rather than taken over.
    ///
    /// # Errors
    /// A netlink step.
    pub fn release_kept_peer(&mut self, ifname: &str) -> Result<()> {
        let Some(l) = self.links.get(ifname)? else {
            return Ok(());
        };
        let Some((peer, false)) = l.link else {
            return Ok(());
        };
        let kept = self
            .unclaimed
            .iter()
            .find(|(_, &i)| i == peer)
            .map(|(n, &i)| (n.clone(), i));
        if let Some((name, i)) = kept {
            self.unclaimed.remove(&name);
            self.links.delete(i, &name)?;
        }
        Ok(())
    }

    /// The endpoints whose veth is gone: its peer's namespace was destroyed (the
    /// container's last process exited), which takes the pair with it, as it takes a
    /// kernel macvlan device. The caller removes them.
    ///
    /// # Errors
    /// [`Error::Link`] if the interfaces cannot be listed.
    pub fn vanished(&self) -> Result<Vec<String>> {
        let present: BTreeSet<(u32, String)> = self
            .links
            .list()?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        Ok(self
            .endpoints
            .iter()
            .filter(|(_, rt)| {
                rt.veth
                    .as_ref()
                    .is_some_and(|(i, n, _)| !present.contains(&(*i, n.clone())))
            })
            .map(|(name, _)| name.clone())
            .collect())
    }

    /// Re-reads the multicast membership of every endpoint's interface (its L2
    /// multicast list and PROMISC/ALLMULTI flags, inside its namespace) and publishes
    /// the filters that changed (spec §3.5). Returns the endpoints whose filter
    /// changed. Call it often (the daemon: every 200 ms): a join takes effect at the
    /// next call.
    ///
    /// # Errors
    /// A rule ([`Error::Control`]): none in practice.
    pub fn sync_multicast(&mut self) -> Result<Vec<String>> {
        // An endpoint whose peer was in this namespace when it was made (a runtime
        // moves it into the container later: Docker) becomes reachable by the kernel
        // fast path once it is elsewhere.
        for rt in self.endpoints.values_mut() {
            let Some((_, ifname, _)) = &rt.veth else {
                continue;
            };
            if rt.reach.ingress && !rt.elsewhere {
                if let Ok(Some(l)) = self.links.get(ifname) {
                    rt.elsewhere = l.link.is_some_and(|(_, other)| other);
                }
            }
        }
        let mut changed = Vec::new();
        for (name, rt) in &mut self.endpoints {
            let (Some(w), Some((ifindex, _, _))) = (&mut rt.mc, &rt.veth) else {
                continue;
            };
            let Some(ep) = self.topo.endpoint(name) else {
                continue;
            };
            let f = w.read(*ifindex, ep.mac());
            if f != ep.cfg.mc {
                changed.push((name.clone(), f));
            }
        }
        // The kernel delivers into a peer only while it is elsewhere and up (a
        // redirect into a peer that is down is dropped uncounted): the same read.
        let mut reach_changed = false;
        for rt in self.endpoints.values_mut() {
            let up = rt.mc.as_ref().and_then(mcast::McWatch::peer_up);
            let egress = rt.reach.ingress && rt.elsewhere && up != Some(false);
            if rt.reach.ingress && rt.reach.egress != egress {
                rt.reach.egress = egress;
                reach_changed = true;
            }
        }
        if reach_changed {
            self.sync_fast()?;
        }
        for (name, f) in &changed {
            self.topo.set_mc(name, f.clone())?;
        }
        if !changed.is_empty() {
            self.sync_groups()?;
        }
        Ok(changed.into_iter().map(|(n, _)| n).collect())
    }

    /// The namespace where endpoint `name`'s interface now is (a runtime moved it:
    /// Docker, into the container's sandbox), for [`Dataplane::sync_multicast`].
    pub fn set_endpoint_netns(&mut self, name: &str, netns: &str) {
        if let Some(w) = self.endpoints.get_mut(name).and_then(|rt| rt.mc.as_mut()) {
            w.set_netns(netns.to_string());
        }
    }

    /// The switch-side veth of endpoint `name` (`None` for an in-process endpoint).
    pub fn endpoint_veth(&self, name: &str) -> Option<&str> {
        self.endpoints
            .get(name)?
            .veth
            .as_ref()
            .map(|v| v.1.as_str())
    }

    /// Refuses endpoint `name` with `queues` veth queues if a worker's UMEM would
    /// not keep [`umem_reserve`] frames free for traffic (transmits in flight, flood
    /// copies) once the new sockets' fill rings are stocked: an endpoint that is
    /// accepted must forward.
    fn check_umem_room(&self, name: &str, queues: u32, fast: bool) -> Result<()> {
        let n = self.workers.len() as u32;
        // Sockets of worker w among `q` queues (w serves q % n == w).
        let per_worker = |q: u32, w: u32| q.saturating_sub(w).div_ceil(n);
        // A fast port's sockets keep nothing in a fill ring; the first one brings the
        // collector, one filling socket per worker.
        let adds = |w: u32| {
            match (fast, self.collector.is_some()) {
                (false, _) => per_worker(queues, w),
                (true, false) => 1,
                (true, true) => return None,
            }
            .into()
        };
        let sockets = self.on_workers(|_, sw: &mut Sw| sw.pool().sockets() as u32)?;
        let fill = self.cfg.xsk.fill_level;
        let frames = self.cfg.frames;
        for (w, now) in sockets.into_iter().enumerate() {
            let w = w as u32;
            let Some(adds) = adds(w) else {
                return Ok(());
            };
            let fast_here: u32 = self
                .endpoints
                .values()
                .filter(|rt| rt.reach.ingress)
                .filter_map(|rt| rt.veth.as_ref().map(|v| per_worker(v.2.len, w)))
                .sum();
            let after = now.saturating_sub(fast_here) + adds;
            if u64::from(after) * u64::from(fill) + u64::from(umem_reserve(frames))
                > u64::from(frames)
            {
                return Err(Error::UmemFull {
                    endpoint: name.into(),
                    frames,
                    sockets: after,
                    fill_level: fill,
                });
            }
        }
        Ok(())
    }

    /// Brings a plumbed endpoint up (or leaves it down) and mirrors it into the maps.
    fn bring_up(&mut self, name: &str, up: bool) -> Result<()> {
        self.topo.set_up(name, up)?;
        let c = self.topo.endpoint(name).expect("exists").cfg.clone();
        self.sync_fdb(&c)
    }

    /// Mirrors one endpoint's state into the XDP program's maps.
    fn sync_fdb(&mut self, c: &EndpointConfig) -> Result<()> {
        let ep = self.topo.endpoint(&c.name).expect("exists");
        // A source endpoint's own MAC is not a destination (W4: the host's), but a
        // multicast it sent, reflected, is its alone (W9).
        let suppress = match c.mode {
            Mode::Private | Mode::Passthru => FDB_F_HOST_SUPPRESS,
            Mode::Source => FDB_F_HOST_SUPPRESS | FDB_F_NOT_DST,
            _ => 0,
        };
        if c.mode == Mode::Passthru {
            self.passthru = c.up;
            self.steering
                .set_device(self.parent.index, self.parent_dev())?;
        }
        let (vlan, mac, id) = (c.vlan, ep.mac(), ep.id);
        if c.up {
            self.steering.fdb_insert(vlan, mac, id, suppress)?;
        } else {
            // Its fast-path entries first: tc's wire path does not consult the FDB.
            self.sync_fast()?;
            self.steering.fdb_remove(vlan, mac)?;
        }
        self.sync_sources()?;
        self.sync_fast()?;
        self.sync_mac_filter();
        Ok(())
    }

    /// Puts every endpoint's MAC in the parent's unicast filter and takes out the
    /// ones no endpoint has any more, as the kernel's macvlan does with its lower
    /// device: a NIC drops frames for a MAC it does not know before XDP sees them.
    /// A failure is logged, not fatal (the parent may be promiscuous anyway; `umacvlan
    /// doctor` says whether it needs the filter).
    fn sync_mac_filter(&mut self) {
        let own = self.topo.table().parent_mac();
        let want: BTreeSet<MacAddr> = if self.fast_off {
            BTreeSet::new()
        } else {
            self.topo
                .endpoints()
                .map(|e| e.mac())
                .filter(|m| *m != own)
                .collect()
        };
        let (index, name) = (self.parent.index, self.parent.name.clone());
        for m in self.uc.difference(&want).copied().collect::<Vec<_>>() {
            match self.links.uc_del(index, &name, m) {
                Ok(()) => {
                    self.uc.remove(&m);
                }
                Err(e) => tracing::warn!(parent = %name, "{m}: {e}"),
            }
        }
        for m in want.difference(&self.uc).copied().collect::<Vec<_>>() {
            match self.links.uc_add(index, &name, m) {
                Ok(()) => {
                    self.uc.insert(m);
                }
                Err(e) => tracing::warn!(parent = %name, "{m}: {e}"),
            }
        }
    }

    /// Mirrors the source lists of the UP source-mode endpoints into the `srcs` map
    /// (spec §3.1): a source MAC is `nodst` if any endpoint listing it is.
    fn sync_sources(&mut self) -> Result<()> {
        let mut want: BTreeMap<(u16, MacAddr), u32> = BTreeMap::new();
        for e in self.topo.endpoints() {
            if e.cfg.mode == Mode::Source && e.cfg.up {
                for m in &e.cfg.sources {
                    *want.entry((e.cfg.vlan, *m)).or_default() |=
                        if e.cfg.nodst { SRC_F_NODST } else { 0 };
                }
            }
        }
        // The parent's flag is cleared before the last entry goes and set after the
        // first one is in, so the programs never look up a half-made list.
        let (was, now) = (!self.srcs.is_empty(), !want.is_empty());
        if was && !now {
            let d = self.parent_dev().with_sources(false);
            self.steering.set_device(self.parent.index, d)?;
        }
        for (&(vlan, mac), _) in self.srcs.iter().filter(|(k, _)| !want.contains_key(k)) {
            self.steering.source_remove(vlan, mac)?;
        }
        for (&(vlan, mac), &f) in &want {
            if self.srcs.get(&(vlan, mac)) != Some(&f) {
                self.steering.source_insert(vlan, mac, f)?;
            }
        }
        self.srcs = want;
        if now && !was {
            self.steering
                .set_device(self.parent.index, self.parent_dev())?;
        }
        self.sync_groups()
    }

    /// Mirrors the groups the UP endpoints accept, per VLAN, into the `groups` map,
    /// so tc hands the switch only multicast some endpoint wants (`None`: every
    /// group, for an endpoint in ALLMULTI/PROMISC or one not observed).
    fn sync_groups(&mut self) -> Result<()> {
        let mut want: BTreeSet<(u16, Option<MacAddr>)> = BTreeSet::new();
        for e in self.topo.endpoints() {
            if !e.cfg.up || e.cfg.mode == Mode::Source {
                continue; // source endpoints get copies by source MAC, not by group
            }
            match &e.cfg.mc {
                McFilter::Groups(g) => want.extend(g.iter().map(|m| (e.cfg.vlan, Some(*m)))),
                _ => {
                    want.insert((e.cfg.vlan, None));
                }
            }
        }
        for &(vlan, g) in self.groups.difference(&want) {
            self.steering.group_remove(vlan, g)?;
        }
        for &(vlan, g) in want.difference(&self.groups) {
            self.steering.group_insert(vlan, g)?;
        }
        self.groups = want;
        Ok(())
    }

    /// Adds an in-process endpoint: frames the switch delivers to it are handed to
    /// a handler made by `handler` (one per worker) on the worker thread (see [`crate::app`]); what it returns is sent
    /// into the switch from the endpoint.
    ///
    /// # Errors
    /// A rule ([`Error::Control`]) or the worker.
    pub fn add_app_endpoint(
        &mut self,
        cfg: EndpointConfig,
        handler: impl Fn() -> Box<dyn AppHandler<Umem>>,
    ) -> Result<PortId> {
        let name = cfg.name.clone();
        self.topo.check_endpoint(cfg.clone())?;
        let want_up = cfg.up;
        let id = self
            .topo
            .add_endpoint(EndpointConfig { up: false, ..cfg })?;
        if let Err(e) = self.steering.reset_port_stats(id) {
            let _ = self.topo.remove_endpoint(&name);
            return Err(e.into());
        }
        let mut r = Ok(());
        for worker in &self.workers {
            let port = DpPort::App(AppPort::new(handler(), 256));
            r = r.and_then(|()| {
                worker
                    .attach(id, port)
                    .map_err(Error::from)
                    .and_then(|r| r.map_err(Error::from))
            });
        }
        let r = r.and_then(|()| {
            self.endpoints.insert(
                name.clone(),
                EndpointRt {
                    id,
                    veth: None,
                    mc: None,
                    reach: Reach::default(),
                    elsewhere: false,
                },
            );
            self.bring_up(&name, want_up)
        });
        match r {
            Ok(()) => Ok(id),
            Err(e) => {
                self.unplumb(&name);
                let _ = self.topo.remove_endpoint(&name);
                Err(e)
            }
        }
    }

    /// Undoes whatever of an endpoint's plumbing exists (best effort).
    fn unplumb(&mut self, name: &str) {
        self.unplumb_keeping(name, false);
    }

    /// Takes endpoint `name` out of the switch; `keep`: leaves its veth pair (and the
    /// peer wherever it is) in place, down on the switch side, for a later run to
    /// adopt.
    fn unplumb_keeping(&mut self, name: &str, keep: bool) {
        // Down first (a failed add may have brought it up), so every fast-path entry
        // from or to it goes before anything else of it, then its FDB entry, sources
        // and groups.
        let _ = self.topo.set_up(name, false);
        if let Some(ep) = self.topo.endpoint(name) {
            let (vlan, mac, mode) = (ep.cfg.vlan, ep.mac(), ep.cfg.mode);
            let _ = self.sync_fast();
            let _ = self.steering.fdb_remove(vlan, mac);
            let _ = self.sync_sources();
            let _ = self.sync_fast();
            if mode == Mode::Passthru {
                self.passthru = false;
                let _ = self
                    .steering
                    .set_device(self.parent.index, self.parent_dev());
            }
        }
        let Some(rt) = self.endpoints.remove(name) else {
            return;
        };
        if let Some((ifindex, _, slots)) = &rt.veth {
            for s in slots.base..slots.base + slots.len {
                let _ = self.steering.clear_xsk(s);
            }
            let _ = self.steering.detach_xdp(*ifindex);
            let _ = self.steering.detach_tc(*ifindex);
            let _ = self.steering.remove_device(*ifindex);
        }
        let id = rt.id;
        let _ = self.on_workers(move |_, sw: &mut Sw| {
            match sw.detach(id) {
                Some(DpPort::App(mut p)) => p.clear(sw.pool_mut()),
                other => drop(other),
            }
            sw.pool_mut().reclaim_closed();
        });
        if let Some((ifindex, ifname, slots)) = rt.veth {
            if keep {
                let _ = self.links.set_up(ifindex, &ifname, false);
            } else {
                let _ = self.links.delete(ifindex, &ifname);
            }
            self.slots.release(slots);
        }
    }

    /// Removes endpoint `name` and its interfaces.
    ///
    /// # Errors
    /// [`ControlError::NoSuchEndpoint`].
    pub fn remove_endpoint(&mut self, name: &str) -> Result<()> {
        if self.topo.endpoint(name).is_none() {
            return Err(ControlError::NoSuchEndpoint(name.into()).into());
        }
        // Its captures end (their readers see the channel close): the id may be reused.
        if let Some(id) = self.topo.endpoint(name).map(|e| e.id) {
            let ids: Vec<u64> = self
                .captures
                .iter()
                .filter(|c| c.port == id)
                .map(|c| c.id)
                .collect();
            for c in ids {
                let _ = self.capture_stop(c);
            }
        }
        // Down first, so no worker sends to its port while it is being taken apart.
        let _ = self.topo.set_up(name, false);
        self.unplumb(name);
        self.topo.remove_endpoint(name)?;
        self.sync_mac_filter();
        Ok(())
    }

    /// Starts capturing port `port`'s frames: those the switch receives from it and
    /// sends to it, and those the kernel fast path forwards for it, as `cfg` says.
    /// Several captures may run, of one port or of several.
    ///
    /// # Errors
    /// [`ControlError::NoSuchPort`] for a port not in the table; [`Error::Bpf`],
    /// [`Error::Spawn`], [`Error::Worker`].
    pub fn capture(&mut self, port: PortId, cfg: CaptureConfig) -> Result<Capture> {
        if self.topo.table().port(port).is_none() {
            return Err(ControlError::NoSuchPort(port).into());
        }
        let cfg = CaptureConfig {
            snaplen: cfg.snaplen.clamp(1, CaptureConfig::MAX_SNAPLEN),
            ..cfg
        };
        let id = self.next_capture;
        self.next_capture += 1;
        let (sub, cap) = capture::Sub::new(id, port, cfg);
        self.captures.push(sub);
        if let Err(e) = self.sync_captures() {
            self.captures.retain(|c| c.id != id);
            let _ = self.sync_captures();
            return Err(e);
        }
        Ok(cap)
    }

    /// Ends capture `id` (its reader sees the channel close). Unknown ids are ignored.
    ///
    /// # Errors
    /// [`Error::Bpf`], [`Error::Worker`].
    pub fn capture_stop(&mut self, id: u64) -> Result<()> {
        let Some(i) = self.captures.iter().position(|c| c.id == id) else {
            return Ok(());
        };
        let gone = self.captures.remove(i);
        if !self.captures.iter().any(|c| c.port == gone.port) {
            self.steering.set_capture(gone.port, 0, 0)?;
        }
        self.sync_captures()
    }

    /// Gives the workers, the fast path and the ring reader the captures as they are.
    fn sync_captures(&mut self) -> Result<()> {
        let subs = self.captures.clone();
        self.on_workers(move |_, sw: &mut Sw| {
            let tap: Option<Box<dyn crate::switch::Tap>> = if subs.is_empty() {
                None
            } else {
                Some(Box::new(capture::WorkerTap(subs.clone())))
            };
            sw.set_tap(tap);
        })?;
        // The kernel's flags: every capture of a port, together.
        let mut per: BTreeMap<PortId, (u32, u32)> = BTreeMap::new();
        for c in &self.captures {
            let e = per.entry(c.port).or_default();
            e.0 |= c.kernel_dirs();
            e.1 = e.1.max(c.cfg.snaplen);
        }
        for (p, (dirs, snaplen)) in per {
            self.steering.set_capture(p, dirs, snaplen)?;
        }
        if self.captures.is_empty() {
            self.ring = None;
        } else {
            if self.ring.is_none() {
                let ring = self.steering.capture_ring()?;
                self.ring = Some(capture::RingReader::start(ring).map_err(Error::Spawn)?);
            }
            if let Some(r) = &self.ring {
                r.set(self.captures.clone());
            }
        }
        Ok(())
    }

    /// What the switch decides for a frame with `f`'s header and `payload` bytes
    /// after it, received on `ingress`, and why: [`crate::mode::explain`] against the
    /// published table (the datapath's own decision), and whether the kernel fast path
    /// would forward it itself.
    pub fn explain(&self, ingress: PortId, f: &Facts, payload: usize) -> Explanation {
        let t = self.topo.table();
        let (verdict, rules) = crate::mode::explain(ingress, f, &t);
        let fast = match t.port(ingress).map(|p| &p.role) {
            Some(Role::Endpoint(e)) if self.fastpath(e.vlan) => {
                self.fast.from_endpoint(ingress, e.mac, f, false, payload)
            }
            Some(Role::Uplink) if self.fastpath(f.vlan) => self.fast.from_wire(
                f,
                false,
                payload,
                t.lookup(f.vlan, f.src)
                    .and_then(|p| t.endpoint(p))
                    .is_some_and(|e| e.up),
                t.has_sources(),
                t.passthru().is_some(),
            ),
            _ => None,
        };
        Explanation {
            verdict,
            rules,
            fast,
        }
    }

    /// Per-port counters, by port name.
    ///
    /// # Errors
    /// [`Error::Worker`].
    pub fn stats(&self) -> Result<Vec<(String, PortStats)>> {
        let t = self.topo.table();
        let mut sum: BTreeMap<PortId, PortStats> = BTreeMap::new();
        for w in &self.workers {
            for (id, s) in w.stats()? {
                sum.entry(id).or_default().merge(&s);
            }
        }
        let mut collector = PortStats::default();
        if self.collector.is_some() {
            // What the kernel forwarded itself counts as the port's traffic too.
            for (id, s) in sum.iter_mut() {
                let Ok(c) = self.steering.port_stats(*id) else {
                    continue;
                };
                s.rx_packets += c.rx_packets;
                s.rx_bytes += c.rx_bytes;
                s.tx_packets += c.tx_packets;
                s.tx_bytes += c.tx_bytes;
                s.fast.merge(&crate::switch::FastStats {
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    failed: c.failed,
                });
            }
            for c in self.on_workers(|_, sw: &mut Sw| sw.collector_stats().clone())? {
                collector.merge(&c);
            }
        }
        let mut out: Vec<(String, PortStats)> = sum
            .into_iter()
            .map(|(id, s)| {
                (
                    t.port(id)
                        .map_or_else(|| id.to_string(), |p| p.name.to_string()),
                    s,
                )
            })
            .collect();
        // Frames the collector got for no port (a port removed with frames in flight).
        if collector.total_drops() > 0 {
            out.push((COLLECTOR.to_string(), collector));
        }
        Ok(out)
    }

    /// The kernel's counters of every port's AF_XDP sockets (`XDP_STATISTICS`),
    /// summed over its sockets on every worker, by port name: frames lost before the
    /// switch saw them. In-process endpoints have none. The collector's sockets (with
    /// the fast path) are [`COLLECTOR`]'s: a frame the kernel lost there never showed
    /// whose it was.
    ///
    /// # Errors
    /// [`Error::Worker`].
    pub fn socket_stats(&self) -> Result<Vec<(String, crate::xsk::Statistics)>> {
        let per = self.on_socket_ports(|b| {
            let mut s = crate::xsk::Statistics::default();
            for m in b.members() {
                if let Ok(x) = m.statistics() {
                    s.add(&x);
                }
            }
            s
        })?;
        let mut sum: BTreeMap<Option<PortId>, crate::xsk::Statistics> = BTreeMap::new();
        for (id, s) in per {
            sum.entry(id).or_default().add(&s);
        }
        Ok(sum
            .into_iter()
            .map(|(id, s)| (self.port_name(id), s))
            .collect())
    }

    /// How busy each worker has been since it started, in worker order.
    pub fn worker_load(&self) -> Vec<Load> {
        self.workers.iter().map(|w| w.load()).collect()
    }

    /// How full each port's AF_XDP rings are now, summed over its sockets on every
    /// worker, with their sizes, by port name ([`COLLECTOR`] for the collector's).
    ///
    /// # Errors
    /// [`Error::Worker`].
    pub fn ring_levels(
        &self,
    ) -> Result<Vec<(String, crate::xsk::RingLevels, crate::xsk::RingLevels)>> {
        let per = self.on_socket_ports(|b| {
            let (mut now, mut size) = Default::default();
            for m in b.members() {
                let s = m.socket();
                crate::xsk::RingLevels::add(&mut now, &s.ring_levels());
                let (rx, tx, fill, completion) = s.ring_sizes();
                crate::xsk::RingLevels::add(
                    &mut size,
                    &crate::xsk::RingLevels {
                        rx,
                        fill,
                        tx,
                        completion,
                    },
                );
            }
            (now, size)
        })?;
        let mut sum: BTreeMap<Option<PortId>, (crate::xsk::RingLevels, crate::xsk::RingLevels)> =
            BTreeMap::new();
        for (id, (now, size)) in per {
            let e = sum.entry(id).or_default();
            e.0.add(&now);
            e.1.add(&size);
        }
        Ok(sum
            .into_iter()
            .map(|(id, (now, size))| (self.port_name(id), now, size))
            .collect())
    }

    /// A port's name for the counters: its table name, or [`COLLECTOR`] for `None`.
    fn port_name(&self, id: Option<PortId>) -> String {
        id.map_or_else(
            || COLLECTOR.to_string(),
            |id| {
                self.topo
                    .table()
                    .port(id)
                    .map_or_else(|| id.to_string(), |p| p.name.to_string())
            },
        )
    }

    /// UMEM frames lent to the open sockets (in their fill, rx, tx and completion
    /// rings or in the kernel between them), over every worker. When no frame is in
    /// flight, this is every frame the UMEMs lent ([`crate::xsk::Accounting::lent`]):
    /// a difference is frames lent to sockets that are gone.
    ///
    /// # Errors
    /// [`Error::Worker`].
    pub fn umem_lent_to_open_sockets(&self) -> Result<u64> {
        let per = self.on_socket_ports(|b| {
            b.members()
                .iter()
                .map(|m| {
                    let (rx, tx) = m.lent();
                    u64::from(rx) + u64::from(tx)
                })
                .sum::<u64>()
        })?;
        Ok(per.into_iter().map(|(_, n)| n).sum())
    }

    /// `f` of every AF_XDP port on every worker, with its id (`None`: the collector).
    fn on_socket_ports<R: Send + 'static>(
        &self,
        f: impl Fn(&Bundle<XskPort>) -> R + Send + Sync + Clone + 'static,
    ) -> Result<Vec<(Option<PortId>, R)>> {
        let per = self.on_workers(move |_, sw: &mut Sw| {
            let ids: Vec<PortId> = sw.all_stats().map(|(id, _)| id).collect();
            let mut out = Vec::new();
            for id in ids {
                if let Some(DpPort::Xsk(b)) = sw.port_mut(id) {
                    out.push((Some(id), f(b)));
                }
            }
            if let Some(DpPort::Xsk(b)) = sw.collector_mut() {
                out.push((None, f(b)));
            }
            out
        })?;
        Ok(per.into_iter().flatten().collect())
    }

    /// Where the UMEM's frames are: free, held by the switch, lent to the kernel.
    ///
    /// # Errors
    /// [`Error::Worker`].
    pub fn umem_accounting(&self) -> Result<crate::xsk::Accounting> {
        let all = self.on_workers(|_, sw: &mut Sw| sw.pool().accounting())?;
        Ok(all
            .into_iter()
            .fold(crate::xsk::Accounting::default(), |a, b| {
                crate::xsk::Accounting {
                    total: a.total + b.total,
                    free: a.free + b.free,
                    held: a.held + b.held,
                    lent: a.lent + b.lent,
                }
            }))
    }

    /// AF_XDP sockets registered on the workers' UMEMs: the open ones, plus closed
    /// ones whose frames have not been taken back yet.
    ///
    /// # Errors
    /// [`Error::Worker`].
    pub fn umem_sockets(&self) -> Result<usize> {
        Ok(self
            .on_workers(|_, sw: &mut Sw| sw.pool().sockets())?
            .into_iter()
            .sum())
    }

    /// The XDP/tc programs and maps.
    pub fn steering(&self) -> &Steering {
        &self.steering
    }

    fn teardown(&mut self, keep: &BTreeSet<String>) {
        // Captures end first: their readers see their channels close.
        self.captures.clear();
        let _ = self.sync_captures();
        // Every frame to the switch while the endpoints go, rather than a fresh
        // compile for each of them.
        self.fast_off = true;
        let _ = self.sync_fast();
        let names: Vec<String> = self.endpoints.keys().cloned().collect();
        for n in names {
            self.unplumb_keeping(&n, keep.contains(&n));
        }
        self.remove_unclaimed();
        // fast_off: the parent's unicast filter is emptied of the endpoints' MACs.
        self.sync_mac_filter();
        let _ = self.steering.detach_tc(self.parent.index);
        let _ = self.steering.detach_xdp(self.parent.index);
        let _ = self.steering.detach_xdp(self.mirror.1.index);
        if let Some((_, b)) = &self.collector {
            let _ = self.steering.detach_xdp(b.index);
        }
        for w in self.workers.drain(..) {
            let _ = w.stop();
        }
        self.stopped = true;
        let _ = self.links.delete(self.mirror.0.index, &self.mirror.0.name);
        if let Some((a, _)) = self.collector.take() {
            let _ = self.links.delete(a.index, &a.name);
        }
    }

    /// Stops the worker, detaches every program and removes every interface the
    /// dataplane created.
    pub fn stop(mut self) {
        self.teardown(&BTreeSet::new());
    }

    /// Like [`Dataplane::stop`], but the veth pairs of the endpoints in `keep` stay
    /// (switch side down, no program), for the next run to take over
    /// ([`EndpointNet::adopt`]): a container holding the peer keeps its interface.
    pub fn stop_keeping(mut self, keep: &BTreeSet<String>) {
        self.teardown(keep);
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if !self.stopped {
            self.teardown(&BTreeSet::new());
        }
    }
}

/// Frames of a UMEM of `frames` kept free for traffic, beyond the fill rings: an
/// eighth, at least 1024.
fn umem_reserve(frames: u32) -> u32 {
    (frames / 8).max(1024)
}

/// The cores this process may run on.
fn available_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The parent queues to bind and the workers to run, from the configuration, the
/// parent's queues and the cores available.
fn queue_plan(cfg: &DataplaneConfig, pq: &Queues, cores: u32) -> Result<(u32, u32)> {
    let q = cfg.queues.unwrap_or(pq.rx);
    if q == 0 || q > pq.rx {
        return Err(Error::TooManyQueues {
            parent: cfg.parent.clone(),
            asked: q,
            has: pq.rx,
            counted_by: pq.source,
        });
    }
    // Worker w receives on parent queue w and transmits through it.
    let max = q.min(pq.tx);
    let n = cfg.workers.unwrap_or_else(|| max.min(cores.max(1)));
    if n == 0 || n > max {
        return Err(Error::Workers {
            parent: cfg.parent.clone(),
            asked: n,
            max,
            rx: q,
            tx: pq.tx,
        });
    }
    Ok((q, n))
}

/// The host-side name of an endpoint's veth: `umv<parent ifindex>e<port id>` (or a
/// higher number where a kept veth has that one).
fn endpoint_veth_name(parent: u32, id: PortId) -> String {
    format!("umv{parent}e{}", id.0)
}

/// Whether `name` is exactly of the form [`endpoint_veth_name`] gives for `parent`.
fn is_endpoint_veth(name: &str, parent: u32) -> bool {
    name.strip_prefix(&format!("umv{parent}e"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is named like an interface a dataplane makes, on any parent: an
/// endpoint's host-side veth (`umv<N>e<M>`) or the mirror pair (`umv<N>ma`,
/// `umv<N>mb`). Such an interface is never a parent.
pub fn is_switch_interface(name: &str) -> bool {
    name.strip_prefix("umv").is_some_and(|r| {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0
            && r[..digits].parse::<u32>().is_ok_and(|parent| {
                is_endpoint_veth(name, parent)
                    || name == format!("umv{parent}ma")
                    || name == format!("umv{parent}mb")
                    || name == format!("umv{parent}ca")
                    || name == format!("umv{parent}cb")
            })
    })
}

/// Whether the calling thread holds CAP_IPC_LOCK, which exempts AF_XDP UMEM
/// registration from RLIMIT_MEMLOCK.
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Runs a closure on drop unless defused.
struct ScopeGuard<F: FnOnce()>(Option<F>);

fn scopeguard<F: FnOnce()>(f: F) -> ScopeGuard<F> {
    ScopeGuard(Some(f))
}

impl<F: FnOnce()> ScopeGuard<F> {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for ScopeGuard<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_cpus_parse_and_give_sysfs_masks() {
        let p = |s: &str| s.parse::<ReceiveCpus>();
        assert_eq!(p("kernel"), Ok(ReceiveCpus::Kernel));
        assert_eq!(p("all"), Ok(ReceiveCpus::All));
        assert_eq!(p("1"), Ok(ReceiveCpus::Cpus(vec![1])));
        assert_eq!(p("3,1-2"), Ok(ReceiveCpus::Cpus(vec![1, 2, 3])));
        for bad in ["", "x", "2-1", "1,,2", "-1", "4096"] {
            let e = p(bad).unwrap_err();
            assert!(
                e.contains("is not kernel, all or a CPU list"),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(ReceiveCpus::default(), ReceiveCpus::Kernel);
        assert_eq!(ReceiveCpus::Cpus(vec![2, 3]).cpus(), vec![2, 3]);
        assert!(ReceiveCpus::Kernel.cpus().is_empty());
        assert!(
            !ReceiveCpus::All.cpus().is_empty(),
            "this process runs somewhere"
        );
        assert_eq!(rps_mask(&[]), "0");
        assert_eq!(rps_mask(&[1]), "2");
        assert_eq!(rps_mask(&[0, 1, 4]), "13");
        assert_eq!(rps_mask(&[0, 33]), "2,00000001");
        assert_eq!(ReceiveCpus::Cpus(vec![2, 3]).to_string(), "2,3");
    }

    fn pq(rx: u32, tx: u32) -> Queues {
        Queues {
            rx,
            tx,
            max_rx: rx,
            source: QueueSource::Ethtool,
        }
    }

    #[test]
    fn every_queue_is_bound_and_workers_fit_queues_and_cores() {
        let auto = DataplaneConfig::new("p");
        assert_eq!(queue_plan(&auto, &pq(1, 1), 8).unwrap(), (1, 1));
        assert_eq!(queue_plan(&auto, &pq(4, 4), 8).unwrap(), (4, 4));
        assert_eq!(queue_plan(&auto, &pq(4, 4), 2).unwrap(), (4, 2));
        // A veth made with `numrxqueues 2` has one transmit queue: one worker.
        assert_eq!(queue_plan(&auto, &pq(2, 1), 2).unwrap(), (2, 1));
        let mut fixed = DataplaneConfig::new("p");
        fixed.queues = Some(2);
        fixed.workers = Some(2);
        assert_eq!(queue_plan(&fixed, &pq(4, 4), 1).unwrap(), (2, 2));
        fixed.queues = Some(5);
        let e = queue_plan(&fixed, &pq(4, 4), 1).unwrap_err().to_string();
        assert_eq!(
            e,
            "p has 4 receive queues (ethtool channels); 5 cannot be bound"
        );
        fixed.queues = None;
        fixed.workers = Some(3);
        let e = queue_plan(&fixed, &pq(4, 2), 4).unwrap_err().to_string();
        assert!(e.starts_with("workers (3) must be between 1 and 2:"), "{e}");
        fixed.workers = Some(0);
        assert!(queue_plan(&fixed, &pq(4, 4), 4).is_err());
    }

    #[test]
    fn slot_blocks_are_reused_and_bounded() {
        let mut a = SlotAlloc::new(10);
        let x = a.alloc(2).unwrap();
        let y = a.alloc(4).unwrap();
        assert_eq!(
            (x, y),
            (Slots { base: 10, len: 2 }, Slots { base: 12, len: 4 })
        );
        a.release(y);
        assert_eq!(a.alloc(1).unwrap(), Slots { base: 12, len: 1 });
        assert_eq!(a.alloc(3).unwrap(), Slots { base: 13, len: 3 });
        assert_eq!(a.alloc(1).unwrap(), Slots { base: 16, len: 1 });
        assert!(matches!(
            a.alloc(MAX_XSKS),
            Err(Error::NoSlots { need: MAX_XSKS })
        ));
    }

    #[test]
    fn only_our_exact_endpoint_veth_names_are_recognised() {
        assert_eq!(endpoint_veth_name(3, PortId(12)), "umv3e12");
        assert!(is_endpoint_veth("umv3e12", 3));
        assert!(is_endpoint_veth(&endpoint_veth_name(3, PortId(2)), 3));
        for other in [
            "umv3e", "umv31e2", "umv3e2x", "umv3ma", "umv3mb", "xumv3e2", "umv3e-1", "eth0",
        ] {
            assert!(!is_endpoint_veth(other, 3), "{other}");
        }
        assert!(!is_endpoint_veth("umv3e2", 31));
        for ours in [
            "umv3e12", "umv3ma", "umv3mb", "umv3ca", "umv3cb", "umv120e7",
        ] {
            assert!(is_switch_interface(ours), "{ours}");
        }
        for other in [
            "umv3", "umvma", "umv3mc", "umv3e", "umv3e1x", "eth0", "umve1",
        ] {
            assert!(!is_switch_interface(other), "{other}");
        }
    }
}
