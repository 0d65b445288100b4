//! AF_XDP sockets: UMEM registration or sharing, the four rings, bind.

use core::mem::size_of;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::ring::{ConsRing, ProdRing};
use super::umem::Umem;
use super::{BindMode, Error, SocketTuning, Statistics, XskConfig, XskMode, XDP_MAX_TX_SKB_BUDGET};
use crate::sys::{
    self, sockaddr_xdp, xdp_desc, xdp_mmap_offsets, xdp_options, xdp_ring_offset, xdp_statistics,
    xdp_umem_reg, SysError, AF_XDP, SOL_XDP, XDP_COPY, XDP_MMAP_OFFSETS, XDP_OPTIONS,
    XDP_OPTIONS_ZEROCOPY, XDP_PGOFF_RX_RING, XDP_PGOFF_TX_RING, XDP_RX_RING, XDP_SHARED_UMEM,
    XDP_STATISTICS, XDP_TX_RING, XDP_UMEM_COMPLETION_RING, XDP_UMEM_FILL_RING,
    XDP_UMEM_PGOFF_COMPLETION_RING, XDP_UMEM_PGOFF_FILL_RING, XDP_UMEM_REG, XDP_USE_NEED_WAKEUP,
    XDP_ZEROCOPY,
};

/// A socket's file descriptor, shared (weakly) with its [`Umem`] so later sockets can
/// share the UMEM through it. Sets `closed` once the fd is really closed, which is
/// when the UMEM may take back the frames that were lent to the socket.
pub(crate) struct XskFd {
    fd: Option<OwnedFd>,
    closed: Arc<AtomicBool>,
}

impl XskFd {
    fn new(fd: OwnedFd) -> Arc<XskFd> {
        Arc::new(XskFd {
            fd: Some(fd),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Some(fd) => fd.as_fd(),
            // `fd` is only taken in `Drop`, after which nothing can borrow `self`.
            None => unreachable!("XskFd used during drop"),
        }
    }

    pub(crate) fn closed_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.closed)
    }

    /// An `XskFd` over some open file, for tests of the UMEM's socket registry.
    #[cfg(test)]
    pub(crate) fn for_test() -> Arc<XskFd> {
        XskFd::new(std::fs::File::open("/dev/null").unwrap().into())
    }
}

impl Drop for XskFd {
    fn drop(&mut self) {
        drop(self.fd.take());
        self.closed.store(true, Ordering::Release);
    }
}

/// An AF_XDP socket bound to one queue of one interface, with its own fill,
/// completion, rx and tx rings over a [`Umem`].
///
/// Create it with [`XskSocket::new`], put [`XskSocket::as_fd`] into the XDP program's
/// XSKMAP at the slot for its queue, and drive it through [`super::XskPort`]. Dropping
/// it unmaps the rings and closes the socket (which also removes it from any XSKMAP);
/// the frames it had are returned to the UMEM by [`Umem::reclaim_closed`].
pub struct XskSocket {
    // The rings come first so they are unmapped before the fd closes: a mapping keeps
    // the socket alive, and the UMEM reclaims frames only after the real close.
    pub(crate) fill: ProdRing<u64>,
    pub(crate) comp: ConsRing<u64>,
    pub(crate) rx: ConsRing<xdp_desc>,
    pub(crate) tx: ProdRing<xdp_desc>,
    fd: Arc<XskFd>,
    ifindex: u32,
    queue: u32,
    mode: XskMode,
    owns_umem: bool,
    pub(crate) umem_id: u64,
    pub(crate) slot: u16,
}

impl core::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.as_fd())
            .field("ifindex", &self.ifindex)
            .field("queue", &self.queue)
            .field("mode", &self.mode)
            .field("owns_umem", &self.owns_umem)
            .finish_non_exhaustive()
    }
}

/// Which interface and queue a socket is for, to put into errors.
#[derive(Clone, Copy)]
struct Target {
    ifindex: u32,
    queue: u32,
}

impl Target {
    fn ifname(self) -> String {
        sys::if_indextoname(self.ifindex).unwrap_or_else(|_| "?".into())
    }

    fn err(self, cause: SysError) -> Error {
        let hint = hint(cause.call, cause.errno());
        Error::Socket {
            ifname: self.ifname(),
            ifindex: self.ifindex,
            queue: self.queue,
            cause,
            hint,
        }
    }

    fn kernel(self, what: String) -> Error {
        Error::Kernel {
            ifname: self.ifname(),
            ifindex: self.ifindex,
            queue: self.queue,
            what,
        }
    }
}

/// What usually causes `errno` from `call`.
fn hint(call: &str, errno: Option<i32>) -> &'static str {
    let Some(e) = errno else { return "" };
    match call {
        "socket(AF_XDP)" if e == libc::EAFNOSUPPORT => {
            "; this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)"
        }
        "socket(AF_XDP)" if e == libc::EPERM || e == libc::EACCES => {
            "; AF_XDP sockets need CAP_NET_RAW (run as root)"
        }
        "setsockopt(XDP_UMEM_REG)"
            if e == libc::ENOBUFS || e == libc::ENOMEM || e == libc::EPERM =>
        {
            "; the UMEM could not be locked in memory: raise RLIMIT_MEMLOCK \
             (umacvlan::sys::raise_memlock_limit, `ulimit -l`) or grant CAP_IPC_LOCK"
        }
        "bind" if e == libc::EBUSY => "; another AF_XDP socket is bound to this queue",
        "bind" if e == libc::ENODEV => {
            "; no such interface in the network namespace the socket was created in"
        }
        "bind" if e == libc::EOPNOTSUPP => {
            "; the driver cannot do zero-copy (use BindMode::Auto or BindMode::Copy)"
        }
        "bind" if e == libc::EINVAL => {
            "; queue beyond the device's queues, or a second socket of this UMEM on the \
             same interface and queue"
        }
        _ => "",
    }
}

/// How to bind: register the UMEM with these flags, or share it through an open
/// socket.
#[derive(Clone, Copy)]
enum How<'a> {
    Register(u16),
    Share(BorrowedFd<'a>),
}

impl XskSocket {
    /// Creates a socket bound to queue `queue` of interface `ifindex` (in the calling
    /// thread's network namespace), with rings sized by `cfg`.
    ///
    /// If no open socket uses `umem` yet, this one registers it (`XDP_UMEM_REG`,
    /// headroom 0) and binds with `XDP_USE_NEED_WAKEUP` and zero-copy, falling back to
    /// copy mode if the driver refuses zero-copy (`EOPNOTSUPP` or `EINVAL`) and
    /// `cfg.bind_mode` is [`BindMode::Auto`]. Otherwise it binds with
    /// `XDP_SHARED_UMEM` through an open socket of `umem`, with its own fill and
    /// completion rings, and inherits that socket's mode and need-wakeup setting.
    ///
    /// # Errors
    /// [`Error::Config`] for bad sizes or a mode that contradicts the UMEM's;
    /// [`Error::Socket`] naming the failing call (with a hint for the usual causes:
    /// no root, `RLIMIT_MEMLOCK`, queue already taken); [`Error::Kernel`] if the
    /// kernel's ring layout is unusable.
    ///
    /// # Examples
    /// ```no_run
    /// // Needs root and an interface `veth0` in this thread's network namespace.
    /// use umacvlan::xsk::{Umem, XskConfig, XskSocket};
    /// let mut umem = Umem::new(4096, 2048)?;
    /// umacvlan::sys::raise_memlock_limit(umem.len_bytes())?;
    /// let sock = XskSocket::open(&mut umem, "veth0", 0, &XskConfig::default())?;
    /// println!("bound in {} mode", sock.mode());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(umem: &mut Umem, ifindex: u32, queue: u32, cfg: &XskConfig) -> Result<Self, Error> {
        cfg.validate()?;
        umem.reclaim_closed();
        let t = Target { ifindex, queue };
        let mut sock = match umem.sharing_fd() {
            Some(owner) => {
                let s = Self::setup(umem, t, cfg, How::Share(owner.fd()))?;
                let want = match cfg.bind_mode {
                    BindMode::Copy => Some(XskMode::Copy),
                    BindMode::ZeroCopy => Some(XskMode::ZeroCopy),
                    _ => None,
                };
                if want.is_some_and(|m| m != s.mode) {
                    return Err(Error::Config(format!(
                        "socket on ifindex {ifindex} queue {queue} shares a UMEM whose \
                         sockets are in {} mode, but {:?} was requested",
                        s.mode, cfg.bind_mode
                    )));
                }
                s
            }
            None => {
                let tries: &[u16] = match cfg.bind_mode {
                    BindMode::Copy => &[XDP_COPY],
                    BindMode::ZeroCopy => &[XDP_ZEROCOPY],
                    _ => &[XDP_ZEROCOPY, XDP_COPY],
                };
                let mut result = Err(Error::Config("no bind mode to try".into()));
                for (i, &mode) in tries.iter().enumerate() {
                    let wake = if cfg.need_wakeup {
                        XDP_USE_NEED_WAKEUP
                    } else {
                        0
                    };
                    result = Self::setup(umem, t, cfg, How::Register(mode | wake));
                    let retry = i + 1 < tries.len()
                        && matches!(&result, Err(Error::Socket { cause, .. })
                            if cause.call == "bind"
                                && matches!(cause.errno(), Some(libc::EOPNOTSUPP | libc::EINVAL)));
                    if !retry {
                        break;
                    }
                }
                result?
            }
        };
        sock.slot = umem.attach_socket(&sock.fd)?;
        Ok(sock)
    }

    /// [`XskSocket::new`] on the interface called `ifname`.
    ///
    /// # Errors
    /// [`Error::NoInterface`] if there is no such interface; otherwise as
    /// [`XskSocket::new`].
    pub fn open(umem: &mut Umem, ifname: &str, queue: u32, cfg: &XskConfig) -> Result<Self, Error> {
        let ifindex = sys::if_nametoindex(ifname).map_err(|cause| Error::NoInterface {
            ifname: ifname.into(),
            cause,
        })?;
        Self::new(umem, ifindex, queue, cfg)
    }

    /// One attempt: socket, UMEM registration or ring setup for sharing, rings, bind.
    fn setup(umem: &Umem, t: Target, cfg: &XskConfig, how: How<'_>) -> Result<Self, Error> {
        let fd = XskFd::new(sys::socket_xdp().map_err(|e| t.err(e))?);
        let s = fd.fd();
        if let How::Register(_) = how {
            let reg = xdp_umem_reg {
                addr: umem.base_addr(),
                len: umem.len_bytes(),
                chunk_size: umem.frame_size(),
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            sys::setsockopt(s, SOL_XDP, XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)")
                .map_err(|e| t.err(e))?;
        }
        // Every socket brings its own fill and completion ring: that is what lets a
        // shared UMEM serve other devices and queues.
        for (name, size, call) in [
            (
                XDP_UMEM_FILL_RING,
                cfg.fill_size,
                "setsockopt(XDP_UMEM_FILL_RING)",
            ),
            (
                XDP_UMEM_COMPLETION_RING,
                cfg.comp_size,
                "setsockopt(XDP_UMEM_COMPLETION_RING)",
            ),
            (XDP_RX_RING, cfg.rx_size, "setsockopt(XDP_RX_RING)"),
            (XDP_TX_RING, cfg.tx_size, "setsockopt(XDP_TX_RING)"),
        ] {
            sys::setsockopt(s, SOL_XDP, name, &size, call).map_err(|e| t.err(e))?;
        }
        let (off, len) = sys::getsockopt::<xdp_mmap_offsets>(
            s,
            SOL_XDP,
            XDP_MMAP_OFFSETS,
            "getsockopt(XDP_MMAP_OFFSETS)",
        )
        .map_err(|e| t.err(e))?;
        if len != size_of::<xdp_mmap_offsets>() {
            return Err(t.kernel(format!(
                "XDP_MMAP_OFFSETS is {len} bytes, not {}: the kernel predates ring flags \
                 (need Linux 5.10 or later)",
                size_of::<xdp_mmap_offsets>()
            )));
        }
        let map = |o: &xdp_ring_offset, size: u32, entry: usize, pgoff: u64, call| {
            let len = o.desc as usize + size as usize * entry;
            sys::mmap_ring(s, len, pgoff, call).map_err(|e| t.err(e))
        };
        let bad = |ring: &str, e: &str| t.kernel(format!("{ring} ring layout: {e}"));
        let fill = map(
            &off.fr,
            cfg.fill_size,
            8,
            XDP_UMEM_PGOFF_FILL_RING,
            "mmap(fill ring)",
        )?;
        let fill = ProdRing::from_mmap(fill, &off.fr, cfg.fill_size).map_err(|e| bad("fill", e))?;
        let comp = map(
            &off.cr,
            cfg.comp_size,
            8,
            XDP_UMEM_PGOFF_COMPLETION_RING,
            "mmap(completion ring)",
        )?;
        let comp =
            ConsRing::from_mmap(comp, &off.cr, cfg.comp_size).map_err(|e| bad("completion", e))?;
        let desc = size_of::<xdp_desc>();
        let rx = map(
            &off.rx,
            cfg.rx_size,
            desc,
            XDP_PGOFF_RX_RING as u64,
            "mmap(rx ring)",
        )?;
        let rx = ConsRing::from_mmap(rx, &off.rx, cfg.rx_size).map_err(|e| bad("rx", e))?;
        let tx = map(
            &off.tx,
            cfg.tx_size,
            desc,
            XDP_PGOFF_TX_RING as u64,
            "mmap(tx ring)",
        )?;
        let tx = ProdRing::from_mmap(tx, &off.tx, cfg.tx_size).map_err(|e| bad("tx", e))?;

        let (flags, shared_fd) = match how {
            How::Register(flags) => (flags, 0),
            How::Share(owner) => (XDP_SHARED_UMEM, owner_fd(owner)),
        };
        let addr = sockaddr_xdp {
            sxdp_family: AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: t.ifindex,
            sxdp_queue_id: t.queue,
            sxdp_shared_umem_fd: shared_fd,
        };
        sys::bind_xdp(s, &addr).map_err(|e| t.err(e))?;
        let (opts, _) =
            sys::getsockopt::<xdp_options>(s, SOL_XDP, XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")
                .map_err(|e| t.err(e))?;
        let mode = if opts.flags & XDP_OPTIONS_ZEROCOPY != 0 {
            XskMode::ZeroCopy
        } else {
            XskMode::Copy
        };
        Ok(XskSocket {
            fill,
            comp,
            rx,
            tx,
            fd,
            ifindex: t.ifindex,
            queue: t.queue,
            mode,
            owns_umem: matches!(how, How::Register(_)),
            umem_id: umem.id(),
            slot: 0,
        })
    }

    /// The socket, for the XDP program's XSKMAP (`bpf_map_update_elem(map, &slot,
    /// &fd)`). Do not duplicate it: the UMEM takes back this socket's frames when the
    /// socket is dropped, which assumes that closes it.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.fd()
    }

    /// Applies [`SocketTuning`]: the copy-mode transmit budget per `sendto` and
    /// preferred busy polling.
    ///
    /// # Errors
    /// [`Error::Socket`] naming the option the kernel refused (`XDP_MAX_TX_SKB_BUDGET`
    /// needs Linux 6.17; busy polling needs `CONFIG_NET_RX_BUSY_POLL`).
    pub fn tune(&self, t: &SocketTuning) -> Result<(), Error> {
        let target = Target {
            ifindex: self.ifindex,
            queue: self.queue,
        };
        let fd = self.as_fd();
        if let Some(budget) = t.tx_budget {
            sys::setsockopt(
                fd,
                SOL_XDP,
                XDP_MAX_TX_SKB_BUDGET,
                &budget,
                "setsockopt(XDP_MAX_TX_SKB_BUDGET)",
            )
            .map_err(|e| target.err(e))?;
        }
        if let Some(bp) = t.busy_poll {
            for (name, v, call) in [
                (
                    libc::SO_PREFER_BUSY_POLL,
                    1,
                    "setsockopt(SO_PREFER_BUSY_POLL)",
                ),
                (libc::SO_BUSY_POLL, bp.usecs, "setsockopt(SO_BUSY_POLL)"),
                (
                    libc::SO_BUSY_POLL_BUDGET,
                    bp.budget,
                    "setsockopt(SO_BUSY_POLL_BUDGET)",
                ),
            ] {
                sys::setsockopt(fd, libc::SOL_SOCKET, name, &v, call).map_err(|e| target.err(e))?;
            }
        }
        Ok(())
    }

    /// The interface index it is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queue it is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Copy or zero-copy, as the kernel reports it (`XDP_OPTIONS`).
    pub fn mode(&self) -> XskMode {
        self.mode
    }

    /// Whether this socket registered the UMEM (rather than sharing it).
    pub fn owns_umem(&self) -> bool {
        self.owns_umem
    }

    /// Ring sizes: (rx, tx, fill, completion).
    pub fn ring_sizes(&self) -> (u32, u32, u32, u32) {
        (
            self.rx.size(),
            self.tx.size(),
            self.fill.size(),
            self.comp.size(),
        )
    }

    /// How full its rings are now: frames waiting in the rx ring, lent in the fill
    /// ring, queued in the tx ring, completed and not yet taken back.
    pub fn ring_levels(&self) -> super::RingLevels {
        super::RingLevels {
            rx: self.rx.ready(),
            fill: self.fill.pending(),
            tx: self.tx.pending(),
            completion: self.comp.ready(),
        }
    }

    /// The kernel's counters for this socket (a system call; not for every burst).
    ///
    /// # Errors
    /// [`Error::Socket`] if `getsockopt(XDP_STATISTICS)` fails.
    pub fn statistics(&self) -> Result<Statistics, Error> {
        let (s, _) = sys::getsockopt::<xdp_statistics>(
            self.as_fd(),
            SOL_XDP,
            XDP_STATISTICS,
            "getsockopt(XDP_STATISTICS)",
        )
        .map_err(|e| self.target().err(e))?;
        Ok(s.into())
    }

    /// Waits up to `timeout_ms` (-1: forever) for received frames. Returns whether
    /// the rx ring has some; `false` on timeout or a signal.
    ///
    /// # Errors
    /// [`Error::Socket`] if `poll` fails.
    pub fn wait_readable(&self, timeout_ms: i32) -> Result<bool, Error> {
        match sys::poll(self.as_fd(), libc::POLLIN, timeout_ms) {
            Ok(rev) => Ok(rev & libc::POLLIN != 0),
            Err(e) if e.errno() == Some(libc::EINTR) => Ok(false),
            Err(e) => Err(self.target().err(e)),
        }
    }

    fn target(&self) -> Target {
        Target {
            ifindex: self.ifindex,
            queue: self.queue,
        }
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.fd()
    }
}

/// `sxdp_shared_umem_fd` for `fd`.
fn owner_fd(fd: BorrowedFd<'_>) -> u32 {
    use std::os::fd::AsRawFd;
    // An open fd is never negative.
    fd.as_raw_fd() as u32
}
