//! A scriptable fake of the kernel's side of the AF_XDP calls, for unit tests that run
//! without root (the idea of aya's `sys/fake.rs`).
//!
//! A test installs a [`FakeKernel`] on its own thread with [`install`]; until the
//! returned guard is dropped, the AF_XDP calls of [`crate::sys`] on that thread are
//! answered by it and recorded in [`FakeKernel::calls`]. Sockets are real file
//! descriptors (eventfds) so that `OwnedFd` works; ring mappings are real anonymous
//! mappings laid out with [`FakeKernel::offsets`], which a test can play the kernel
//! on. Anonymous UMEM mappings, `munmap` and interface name lookups stay real.

use core::ffi::c_int;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{
    mmap_anonymous, sockaddr_xdp, xdp_mmap_offsets, xdp_ring_offset, xdp_statistics, MemlockLimit,
    Mmap, SysError, RLIM_INFINITY, SOL_XDP, XDP_MMAP_OFFSETS, XDP_OPTIONS, XDP_OPTIONS_ZEROCOPY,
    XDP_SHARED_UMEM, XDP_STATISTICS, XDP_ZEROCOPY,
};

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Socket(RawFd),
    SetSockOpt {
        fd: RawFd,
        name: c_int,
        value: Vec<u8>,
    },
    GetSockOpt {
        fd: RawFd,
        name: c_int,
    },
    Bind(BindArgs),
    Mmap {
        fd: RawFd,
        offset: u64,
        len: usize,
    },
    SendTo(RawFd),
    RecvFrom(RawFd),
    Poll(RawFd),
    GetRlimit,
    SetRlimit(MemlockLimit),
}

/// The fields of a `bind` call's `sockaddr_xdp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BindArgs {
    pub fd: RawFd,
    pub flags: u16,
    pub ifindex: u32,
    pub queue: u32,
    pub shared_fd: u32,
}

/// A ring mapping handed out by the fake `mmap`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FakeRing {
    pub fd: RawFd,
    pub offset: u64,
    pub addr: usize,
    pub len: usize,
}

/// The fake kernel's state and script.
pub(crate) struct FakeKernel {
    /// What `getsockopt(XDP_MMAP_OFFSETS)` reports.
    pub offsets: xdp_mmap_offsets,
    /// The option length it reports (96 imitates a kernel older than 5.4).
    pub offsets_len: usize,
    /// Scripted `bind` results, front first (0 = success). When empty, `bind` succeeds
    /// unless it asks for zero-copy and `zerocopy_supported` is false (EOPNOTSUPP).
    pub bind_errnos: VecDeque<i32>,
    /// Whether zero-copy binds succeed by default.
    pub zerocopy_supported: bool,
    /// One-shot `setsockopt` failures: (option name, errno).
    pub setsockopt_errnos: Vec<(c_int, i32)>,
    /// Scripted `sendto` results, front first (0 = success); success when empty.
    pub sendto_errnos: VecDeque<i32>,
    /// What `poll` reports as `revents`.
    pub poll_revents: i16,
    /// What `getsockopt(XDP_STATISTICS)` reports.
    pub stats: xdp_statistics,
    /// The process's RLIMIT_MEMLOCK.
    pub memlock: MemlockLimit,
    /// Whether the process may raise the hard limit (CAP_SYS_RESOURCE).
    pub privileged: bool,
    /// Every call, in order.
    pub calls: Vec<Call>,
    /// Every ring mapping, in order.
    pub rings: Vec<FakeRing>,
    /// Bound sockets and whether each is in zero-copy mode.
    pub bound: HashMap<RawFd, bool>,
}

/// The layout the fake reports for every ring: producer, consumer and flags words on
/// separate cache lines, then the descriptors.
pub(crate) const FAKE_RING: xdp_ring_offset = xdp_ring_offset {
    producer: 0,
    consumer: 64,
    flags: 128,
    desc: 192,
};

impl Default for FakeKernel {
    fn default() -> Self {
        FakeKernel {
            offsets: xdp_mmap_offsets {
                rx: FAKE_RING,
                tx: FAKE_RING,
                fr: FAKE_RING,
                cr: FAKE_RING,
            },
            offsets_len: core::mem::size_of::<xdp_mmap_offsets>(),
            bind_errnos: VecDeque::new(),
            zerocopy_supported: false,
            setsockopt_errnos: Vec::new(),
            sendto_errnos: VecDeque::new(),
            poll_revents: 0,
            stats: super::zeroed(),
            memlock: MemlockLimit {
                soft: RLIM_INFINITY,
                hard: RLIM_INFINITY,
            },
            privileged: true,
            calls: Vec::new(),
            rings: Vec::new(),
            bound: HashMap::new(),
        }
    }
}

impl FakeKernel {
    /// The ring of socket `fd` mapped at `offset` (e.g. `XDP_PGOFF_TX_RING`).
    pub(crate) fn ring(&self, fd: RawFd, offset: u64) -> FakeRing {
        *self
            .rings
            .iter()
            .rev()
            .find(|r| r.fd == fd && r.offset == offset)
            .unwrap_or_else(|| panic!("no ring at {offset:#x} mapped for fd {fd}"))
    }

    /// The binds recorded so far.
    pub(crate) fn binds(&self) -> Vec<BindArgs> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Bind(b) => Some(*b),
                _ => None,
            })
            .collect()
    }

    /// `setsockopt` option names set on `fd` since it was last created, in order.
    pub(crate) fn sockopts(&self, fd: RawFd) -> Vec<c_int> {
        let from = self
            .calls
            .iter()
            .rposition(|c| *c == Call::Socket(fd))
            .unwrap_or(0);
        self.calls[from..]
            .iter()
            .filter_map(|c| match c {
                Call::SetSockOpt { fd: f, name, .. } if *f == fd => Some(*name),
                _ => None,
            })
            .collect()
    }

    /// Number of calls matching `f`.
    pub(crate) fn count(&self, f: impl Fn(&Call) -> bool) -> usize {
        self.calls.iter().filter(|c| f(c)).count()
    }
}

thread_local! {
    static FAKE: RefCell<Option<FakeKernel>> = const { RefCell::new(None) };
}

/// Uninstalls the thread's fake kernel when dropped.
pub(crate) struct Installed(PhantomData<*const ()>);

impl Drop for Installed {
    fn drop(&mut self) {
        FAKE.with(|f| f.borrow_mut().take());
    }
}

/// Installs `k` as this thread's kernel for AF_XDP calls.
pub(crate) fn install(k: FakeKernel) -> Installed {
    FAKE.with(|f| {
        let mut f = f.borrow_mut();
        assert!(f.is_none(), "a fake kernel is already installed");
        *f = Some(k);
    });
    Installed(PhantomData)
}

/// Runs `f` on the installed fake kernel.
///
/// # Panics
/// If none is installed on this thread.
pub(crate) fn with<R>(f: impl FnOnce(&mut FakeKernel) -> R) -> R {
    FAKE.with(|c| f(c.borrow_mut().as_mut().expect("no fake kernel installed")))
}

/// A copy of the recorded calls.
pub(crate) fn calls() -> Vec<Call> {
    with(|k| k.calls.clone())
}

fn hook<R>(f: impl FnOnce(&mut FakeKernel) -> R) -> Option<R> {
    FAKE.with(|c| c.borrow_mut().as_mut().map(f))
}

fn result(call: &'static str, errno: i32) -> Result<(), SysError> {
    if errno == 0 {
        Ok(())
    } else {
        Err(SysError::from_errno(call, errno))
    }
}

pub(super) fn socket_xdp() -> Option<Result<OwnedFd, SysError>> {
    hook(|k| {
        // SAFETY: `eventfd` takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(SysError::last("socket(AF_XDP)"));
        }
        k.calls.push(Call::Socket(fd));
        // The number may be a closed socket's: forget that one.
        k.bound.remove(&fd);
        // SAFETY: `fd` was just returned by `eventfd`, is open and owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

pub(super) fn setsockopt(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &[u8],
    call: &'static str,
) -> Option<Result<(), SysError>> {
    hook(|k| {
        let fd = fd.as_raw_fd();
        k.calls.push(Call::SetSockOpt {
            fd,
            name,
            value: value.to_vec(),
        });
        if let Some(i) = k.setsockopt_errnos.iter().position(|&(n, _)| n == name) {
            return result(call, k.setsockopt_errnos.remove(i).1);
        }
        if level != SOL_XDP || k.bound.contains_key(&fd) {
            return result(call, libc::EINVAL);
        }
        // Ring sizes must be powers of two, as the kernel insists.
        if value.len() == 4 {
            let n = u32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
            if !n.is_power_of_two() {
                return result(call, libc::EINVAL);
            }
        }
        Ok(())
    })
}

pub(super) fn getsockopt(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    out: &mut [u8],
    call: &'static str,
) -> Option<Result<usize, SysError>> {
    hook(|k| {
        let fd = fd.as_raw_fd();
        k.calls.push(Call::GetSockOpt { fd, name });
        if level != SOL_XDP {
            return Err(SysError::from_errno(call, libc::ENOPROTOOPT));
        }
        let src: Vec<u8> = match name {
            XDP_MMAP_OFFSETS => super::as_bytes(&k.offsets)[..k.offsets_len].to_vec(),
            XDP_STATISTICS => super::as_bytes(&k.stats).to_vec(),
            XDP_OPTIONS => {
                let zc = k.bound.get(&fd).copied().unwrap_or(false);
                let flags = if zc { XDP_OPTIONS_ZEROCOPY } else { 0 };
                flags.to_ne_bytes().to_vec()
            }
            _ => return Err(SysError::from_errno(call, libc::ENOPROTOOPT)),
        };
        let n = src.len().min(out.len());
        out[..n].copy_from_slice(&src[..n]);
        Ok(n)
    })
}

pub(super) fn bind_xdp(fd: BorrowedFd<'_>, a: &sockaddr_xdp) -> Option<Result<(), SysError>> {
    hook(|k| {
        let fd = fd.as_raw_fd();
        let args = BindArgs {
            fd,
            flags: a.sxdp_flags,
            ifindex: a.sxdp_ifindex,
            queue: a.sxdp_queue_id,
            shared_fd: a.sxdp_shared_umem_fd,
        };
        k.calls.push(Call::Bind(args));
        let shared = a.sxdp_flags & XDP_SHARED_UMEM != 0;
        let errno = match k.bind_errnos.pop_front() {
            Some(e) => e,
            None if shared && !k.bound.contains_key(&(a.sxdp_shared_umem_fd as RawFd)) => {
                libc::EBADF
            }
            None if shared && a.sxdp_flags != XDP_SHARED_UMEM => libc::EINVAL,
            None if a.sxdp_flags & XDP_ZEROCOPY != 0 && !k.zerocopy_supported => libc::EOPNOTSUPP,
            None => 0,
        };
        result("bind", errno)?;
        let zc = if shared {
            k.bound[&(a.sxdp_shared_umem_fd as RawFd)]
        } else {
            a.sxdp_flags & XDP_ZEROCOPY != 0
        };
        k.bound.insert(fd, zc);
        Ok(())
    })
}

pub(super) fn mmap_ring(
    fd: BorrowedFd<'_>,
    len: usize,
    offset: u64,
    call: &'static str,
) -> Option<Result<Mmap, SysError>> {
    hook(|k| {
        let fd = fd.as_raw_fd();
        k.calls.push(Call::Mmap { fd, offset, len });
        let m = mmap_anonymous(len).map_err(|e| SysError {
            call,
            error: e.error,
        })?;
        k.rings.push(FakeRing {
            fd,
            offset,
            addr: m.as_ptr().as_ptr() as usize,
            len,
        });
        Ok(m)
    })
}

pub(super) fn sendto_wakeup(fd: BorrowedFd<'_>) -> Option<Result<(), SysError>> {
    hook(|k| {
        k.calls.push(Call::SendTo(fd.as_raw_fd()));
        result("sendto", k.sendto_errnos.pop_front().unwrap_or(0))
    })
}

pub(super) fn recvfrom_wakeup(fd: BorrowedFd<'_>) -> Option<Result<(), SysError>> {
    hook(|k| {
        k.calls.push(Call::RecvFrom(fd.as_raw_fd()));
        Ok(())
    })
}

pub(super) fn poll(
    fd: BorrowedFd<'_>,
    events: i16,
    _timeout_ms: i32,
) -> Option<Result<i16, SysError>> {
    hook(|k| {
        k.calls.push(Call::Poll(fd.as_raw_fd()));
        Ok(k.poll_revents & events)
    })
}

pub(super) fn getrlimit_memlock() -> Option<Result<MemlockLimit, SysError>> {
    hook(|k| {
        k.calls.push(Call::GetRlimit);
        Ok(k.memlock)
    })
}

pub(super) fn setrlimit_memlock(l: MemlockLimit) -> Option<Result<(), SysError>> {
    hook(|k| {
        k.calls.push(Call::SetRlimit(l));
        let call = "setrlimit(RLIMIT_MEMLOCK)";
        if l.soft > l.hard {
            return result(call, libc::EINVAL);
        }
        if l.hard > k.memlock.hard && !k.privileged {
            return result(call, libc::EPERM);
        }
        k.memlock = l;
        Ok(())
    })
}
