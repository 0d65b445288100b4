//! AF_XDP: the UMEM frame pool, the four rings, sockets and the [`Port`] over them.
//!
//! Minimum kernel: Linux 5.10 (`XDP_USE_NEED_WAKEUP`, and `XDP_SHARED_UMEM` across
//! devices and queues with per-socket fill and completion rings). Kernel
//! documentation: <https://docs.kernel.org/networking/af_xdp.html>.
//!
//! # Pieces
//! * [`Umem`]: one mmap'd region of `frame_count × frame_size` bytes (2048 or 4096),
//!   the [`FramePool`] of one worker. Frame `idx` lives at UMEM address
//!   `idx × frame_size`; a frame's data at `addr = idx × frame_size + off`.
//! * [`XskSocket`]: an AF_XDP socket bound to one (interface, queue) with its own
//!   fill, completion, rx and tx rings. The first socket of a UMEM registers it
//!   (`XDP_UMEM_REG`); every further socket shares it (`XDP_SHARED_UMEM`), which works
//!   across devices and queues because each socket brings its own fill and completion
//!   ring. Binding tries zero-copy and falls back to copy mode; [`XskSocket::mode`]
//!   says which it got. [`XskSocket::as_fd`] is what goes into the XSKMAP.
//! * [`XskPort`]: the [`Port`] implementation: burst receive, burst transmit with
//!   one commit and at most a few wakeups, and [`Port::maintain`] which reclaims
//!   completions and refills the fill ring in whole batches.
//!
//! # Frame ownership
//! Every UMEM frame is in exactly one place at any time:
//! ```text
//!              alloc                   transmit: reserve, write, commit
//!   free list ───────▶ Frame handle ─────────────────────────▶ tx ring ──▶ kernel
//!    ▲   ▲     free      │         ▲                                         │
//!    │   └───────────────┘         │ receive: peek, release                  │
//!    │                             │                                         │
//!    ├──▶ fill ring ──▶ kernel ──▶ rx ring                                   │
//!    │    (maintain: refill in batches)                                      │
//!    └────────── maintain: reclaim ◀── completion ring ◀── kernel ◀──────────┘
//! ```
//! i.e. the pool's free list, a socket's fill ring or the kernel's hands (which hand
//! it back on that socket's rx ring), a [`Frame`] handle, a tx ring or the kernel's
//! hands (which hand it back on that socket's completion ring). The [`Umem`] keeps a
//! state per frame (free, held by a handle, or lent to socket *s*) and counters, so
//! that
//!
//! `free + held + lent == frame_count` at all times,
//!
//! which [`Umem::accounting`] reports in O(1) and [`Umem::check_accounting`] verifies
//! against the per-frame states (tests call it; debug builds also assert the counter
//! sum in every [`Port::maintain`]). The per-frame state also makes the pool safe: a
//! slot can only be read or written while no kernel ring holds it ([`FramePool::slot`]
//! panics otherwise), a double free panics, and frames lent to a socket that has
//! been dropped are reclaimed by [`Umem::reclaim_closed`].
//!
//! # Datapath costs
//! Per packet: no allocation, lock, log line, `Result` or system call. Per burst: one
//! peek/release or reserve/commit per ring, and a `sendto` only when the kernel needs
//! one: always in copy mode (the kernel transmits copy-mode frames *inside* `sendto`,
//! at most 32 per call), only when the tx ring's need-wakeup flag is set in zero-copy
//! mode. The fill ring is woken with `recvfrom` only when its flag is set.
//!
//! # Metadata
//! A received frame's data starts `XDP_PACKET_HEADROOM` (256) bytes into its chunk,
//! so its [`Frame::offset`] is 256 unless the XDP program moved the packet start.
//! Metadata an XDP program adds with `bpf_xdp_adjust_meta(ctx, -n)` is copied with the
//! packet and sits in the `n` bytes right before it: bytes `offset-n..offset` of
//! [`FramePool::slot`].
//!
//! [`Port`]: crate::port::Port
//! [`Port::maintain`]: crate::port::Port::maintain
//! [`FramePool`]: crate::port::FramePool
//! [`FramePool::slot`]: crate::port::FramePool::slot
//! [`Frame`]: crate::port::Frame
//! [`Frame::offset`]: crate::port::Frame::offset
#![deny(unsafe_op_in_unsafe_fn)]

mod port;
mod ring;
mod socket;
mod umem;

#[cfg(test)]
mod tests;

pub use port::{PortCounters, XskPort};
pub use socket::XskSocket;

/// `setsockopt(SOL_XDP, XDP_MAX_TX_SKB_BUDGET)` (Linux 6.17): frames one copy-mode
/// `sendto` may transmit (the kernel's default is 32).
pub(crate) const XDP_MAX_TX_SKB_BUDGET: i32 = 9;

/// Optional per-socket kernel tuning, applied by [`XskSocket::tune`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketTuning {
    /// Copy-mode transmit budget per `sendto` (`XDP_MAX_TX_SKB_BUDGET`); `None`
    /// keeps the kernel's 32.
    pub tx_budget: Option<u32>,
    /// Preferred busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
    /// `SO_BUSY_POLL_BUDGET`); `None` leaves it off.
    pub busy_poll: Option<BusyPoll>,
}

/// Busy-poll settings of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_BUSY_POLL`: microseconds to busy-poll in a blocking call.
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: frames per busy-poll round.
    pub budget: u32,
}

pub use umem::{Accounting, Umem};

pub use crate::sys::XDP_PACKET_HEADROOM;
use crate::sys::{xdp_statistics, SysError};

/// Which mode to bind in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindMode {
    /// Zero-copy if the driver supports it, else copy mode.
    #[default]
    Auto,
    /// Copy mode only.
    Copy,
    /// Zero-copy only: fail if the driver cannot.
    ZeroCopy,
}

/// The mode a socket got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum XskMode {
    /// The kernel copies frames between its buffers and the UMEM (`XDP_COPY`);
    /// transmission happens inside `sendto`. Every driver, including veth.
    Copy,
    /// The driver DMAs straight into and out of the UMEM (`XDP_ZEROCOPY`).
    ZeroCopy,
}

impl core::fmt::Display for XskMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            XskMode::Copy => "copy",
            XskMode::ZeroCopy => "zero-copy",
        })
    }
}

/// Ring sizes, bind mode and fill policy of one socket.
///
/// Sizing: a UMEM shared by `P` ports needs at least `Σ (fill_level + tx in flight
/// (≤ comp_size)) + frames held by the switch (a burst per port, plus flood copies)`
/// frames; a port that finds fewer than `fill_batch` free frames skips its refill and
/// the kernel counts `rx_fill_ring_empty_descs` drops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Receive ring entries (power of two).
    pub rx_size: u32,
    /// Transmit ring entries (power of two).
    pub tx_size: u32,
    /// Fill ring entries (power of two).
    pub fill_size: u32,
    /// Completion ring entries (power of two). Also the most frames a port keeps in
    /// flight for transmission.
    pub comp_size: u32,
    /// Zero-copy, copy, or zero-copy with copy fallback. A socket sharing another's
    /// UMEM inherits that socket's mode (a kernel rule); an explicit request that
    /// differs from it is an error.
    pub bind_mode: BindMode,
    /// Frames the port keeps lent to the kernel for receiving (fill ring, in the
    /// kernel, and not yet received from the rx ring). At most `fill_size`; `0`: the
    /// socket only transmits.
    pub fill_level: u32,
    /// Refill granularity: the fill ring is topped up only in whole batches of this
    /// many frames.
    pub fill_batch: u32,
    /// Bind with `XDP_USE_NEED_WAKEUP` (the default): the kernel says when it needs
    /// a system call to go on, and the port makes one only then. Without it the
    /// driver polls by itself (and copy-mode transmission still needs `sendto`).
    pub need_wakeup: bool,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            comp_size: 2048,
            bind_mode: BindMode::Auto,
            fill_level: 1024,
            fill_batch: 64,
            need_wakeup: true,
        }
    }
}

impl XskConfig {
    /// Checks sizes: powers of two for rings, `1 <= fill_batch <= fill_level <=
    /// fill_size`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad value.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, v) in [
            ("rx_size", self.rx_size),
            ("tx_size", self.tx_size),
            ("fill_size", self.fill_size),
            ("comp_size", self.comp_size),
        ] {
            if !v.is_power_of_two() {
                return Err(Error::Config(format!("{name} = {v} is not a power of two")));
            }
        }
        // fill_level 0: a socket that only transmits (nothing is received without
        // frames lent to the kernel).
        if (self.fill_level > 0 && (self.fill_batch == 0 || self.fill_batch > self.fill_level))
            || self.fill_level > self.fill_size
        {
            return Err(Error::Config(format!(
                "need 1 <= fill_batch ({}) <= fill_level ({}) <= fill_size ({}), or fill_level 0 (transmit only)",
                self.fill_batch, self.fill_level, self.fill_size
            )));
        }
        Ok(())
    }
}

/// Entries in a socket's four rings at one moment ([`XskSocket::ring_levels`]), or
/// sums of several sockets'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingLevels {
    /// Received frames the switch has not taken yet.
    pub rx: u32,
    /// Frames lent to the kernel for receiving, not yet used.
    pub fill: u32,
    /// Frames queued for transmission, not yet taken by the kernel.
    pub tx: u32,
    /// Transmitted frames not yet taken back.
    pub completion: u32,
}

impl RingLevels {
    /// Adds `o`'s entries to these.
    pub fn add(&mut self, o: &RingLevels) {
        self.rx += o.rx;
        self.fill += o.fill;
        self.tx += o.tx;
        self.completion += o.completion;
    }

    /// By ring name (`rx`, `fill`, `tx`, `completion`).
    pub fn by_name(&self) -> [(&'static str, u32); 4] {
        [
            ("rx", self.rx),
            ("fill", self.fill),
            ("tx", self.tx),
            ("completion", self.completion),
        ]
    }
}

/// A socket's kernel counters (`getsockopt(XDP_STATISTICS)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistics {
    /// Received frames dropped for other reasons than a full ring (e.g. too long for
    /// a chunk).
    pub rx_dropped: u64,
    /// Invalid fill ring descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid tx ring descriptors (skipped, never completed).
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Frames dropped because the fill ring was empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the tx ring empty when asked to transmit.
    pub tx_ring_empty_descs: u64,
}

impl Statistics {
    /// Adds `o`'s counts to these.
    pub fn add(&mut self, o: &Statistics) {
        self.rx_dropped += o.rx_dropped;
        self.rx_invalid_descs += o.rx_invalid_descs;
        self.tx_invalid_descs += o.tx_invalid_descs;
        self.rx_ring_full += o.rx_ring_full;
        self.rx_fill_ring_empty_descs += o.rx_fill_ring_empty_descs;
        self.tx_ring_empty_descs += o.tx_ring_empty_descs;
    }

    /// Frames the kernel lost on their way to the socket, by reason: the rx ring was
    /// full; no frame in the fill ring; dropped otherwise (too big for a UMEM frame,
    /// ...). The fill-ring shortage is one of the kernel's `rx_dropped` causes, so the
    /// three are disjoint.
    pub fn rx_losses(&self) -> [(&'static str, u64); 3] {
        let empty = self.rx_fill_ring_empty_descs.min(self.rx_dropped);
        [
            ("kernel_rx_ring_full", self.rx_ring_full),
            ("kernel_fill_ring_empty", empty),
            ("kernel_rx_dropped", self.rx_dropped - empty),
        ]
    }
}

impl From<xdp_statistics> for Statistics {
    fn from(s: xdp_statistics) -> Self {
        Statistics {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        }
    }
}

/// What went wrong setting up or querying AF_XDP. Every socket error carries the
/// interface name and index, the queue, and the failing call with its `errno`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    /// The UMEM could not be mapped.
    #[error("cannot map a UMEM of {frames} frames x {frame_size} bytes: {cause}")]
    Umem {
        /// Frames requested.
        frames: u32,
        /// Frame size requested.
        frame_size: u32,
        /// The failing call.
        cause: SysError,
    },
    /// No interface of that name in the calling thread's network namespace.
    #[error("network interface {ifname:?}: {cause}")]
    NoInterface {
        /// The name looked up.
        ifname: String,
        /// The failing call.
        cause: SysError,
    },
    /// A system call on the socket failed.
    #[error("AF_XDP socket on {ifname} (ifindex {ifindex}) queue {queue}: {cause}{hint}")]
    Socket {
        /// Interface name (`?` if it could not be resolved).
        ifname: String,
        /// Interface index.
        ifindex: u32,
        /// Queue id.
        queue: u32,
        /// The failing call and its error.
        cause: SysError,
        /// What to check, if the error has a usual cause (starts with `; `).
        hint: &'static str,
    },
    /// The kernel answered something this code cannot use.
    #[error("AF_XDP socket on {ifname} (ifindex {ifindex}) queue {queue}: {what}")]
    Kernel {
        /// Interface name (`?` if it could not be resolved).
        ifname: String,
        /// Interface index.
        ifindex: u32,
        /// Queue id.
        queue: u32,
        /// What was wrong.
        what: String,
    },
}

impl Error {
    /// The failing call's `errno`, if a system call failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Umem { cause, .. }
            | Error::NoInterface { cause, .. }
            | Error::Socket { cause, .. } => cause.errno(),
            _ => None,
        }
    }
}
