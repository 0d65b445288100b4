//! The one chokepoint between umacvlan's AF_XDP layer and libc.
//!
//! Every system call [`crate::xsk`] makes goes through a function here, and every one
//! of them turns the C convention (-1 and `errno`) into a [`SysError`] that names the
//! call and keeps the OS error. Nothing else in the crate calls these functions' libc
//! counterparts.
//!
//! Only the calls that cannot break memory safety whatever their arguments are public
//! ([`if_nametoindex`], [`if_indextoname`], [`ethtool_channels`], [`raise_memlock_limit`]); the socket calls
//! are crate-private because a wrong `XDP_UMEM_REG` or ring mapping lets the kernel
//! write into memory Rust thinks it owns.
//!
//! Under `cfg(test)` the AF_XDP calls first consult a scriptable fake kernel (the
//! `fake` module) when a test installed one on its thread, so the socket setup,
//! the zero-copy fallback and the whole datapath are unit tested without root.
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_int, c_void};
use core::mem::size_of;
use core::ptr::{self, NonNull};
use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

mod if_xdp;
pub use if_xdp::*;

#[cfg(test)]
pub(crate) mod fake;

/// A failed system call: which call, and the OS error (`errno`) it returned.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {error}")]
pub struct SysError {
    /// The call that failed, e.g. `bind` or `setsockopt(XDP_UMEM_REG)`.
    pub call: &'static str,
    /// What the kernel answered.
    pub error: io::Error,
}

impl SysError {
    /// `call` failed with the current thread's `errno`.
    pub fn last(call: &'static str) -> Self {
        SysError {
            call,
            error: io::Error::last_os_error(),
        }
    }

    /// `call` failed with `errno`.
    pub fn from_errno(call: &'static str, errno: i32) -> Self {
        SysError {
            call,
            error: io::Error::from_raw_os_error(errno),
        }
    }

    /// The raw `errno`, if the error came from the OS.
    pub fn errno(&self) -> Option<i32> {
        self.error.raw_os_error()
    }
}

/// Evaluates `$e`, a libc call that returns -1 and sets `errno` on failure, and turns
/// -1 into `Err(SysError)` naming `$call`. The `unsafe` block (with its `SAFETY`
/// comment) stays at the call site.
macro_rules! syscall {
    ($call:expr, $e:expr) => {{
        let ret = $e;
        if ret == -1 {
            Err(SysError::last($call))
        } else {
            Ok(ret)
        }
    }};
}

/// Lets the thread's fake kernel answer instead of the real one (tests only).
#[cfg(test)]
macro_rules! fake_hook {
    ($hook:ident($($arg:expr),* $(,)?)) => {
        fake_hook!($hook($($arg),*) => |r| r)
    };
    ($hook:ident($($arg:expr),* $(,)?) => $map:expr) => {
        if let Some(r) = fake::$hook($($arg),*) {
            #[allow(clippy::redundant_closure_call)]
            return ($map)(r);
        }
    };
}
#[cfg(not(test))]
macro_rules! fake_hook {
    ($($t:tt)*) => {};
}

/// Plain old data that the kernel reads or writes as bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]` (or primitive) types without padding bytes, for
/// which every bit pattern, including all zeroes, is a valid value.
pub(crate) unsafe trait Pod: Copy + 'static {}

// SAFETY: primitive integers have no padding and every bit pattern is valid.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}

/// The all-zero value of `T`.
pub(crate) fn zeroed<T: Pod>() -> T {
    // SAFETY: `Pod` guarantees that all zeroes is a valid `T`.
    unsafe { core::mem::zeroed() }
}

/// The bytes of `v`.
#[cfg(test)]
pub(crate) fn as_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `v` is a valid reference to `size_of::<T>()` initialised bytes (`Pod`
    // has no padding), borrowed for the returned lifetime.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The bytes of `v`, writable.
#[cfg(test)]
pub(crate) fn as_bytes_mut<T: Pod>(v: &mut T) -> &mut [u8] {
    // SAFETY: as `as_bytes`, and any byte values written leave a valid `T` (`Pod`).
    unsafe { core::slice::from_raw_parts_mut((v as *mut T).cast::<u8>(), size_of::<T>()) }
}

/// An `AF_XDP` socket (`SOCK_RAW`, close-on-exec).
pub(crate) fn socket_xdp() -> Result<OwnedFd, SysError> {
    fake_hook!(socket_xdp());
    // SAFETY: `socket` takes no pointers.
    let fd = syscall!("socket(AF_XDP)", unsafe {
        libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `fd` was just returned by `socket`, is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, val)`; `call` names the option in errors.
pub(crate) fn setsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    val: &T,
    call: &'static str,
) -> Result<(), SysError> {
    fake_hook!(setsockopt(fd, level, name, as_bytes(val), call));
    // SAFETY: `val` points to `size_of::<T>()` readable bytes for the whole call.
    syscall!(call, unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast::<c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `getsockopt(fd, level, name)` into a zeroed `T`; also returns the length the
/// kernel wrote (it may be shorter than `T` on older kernels).
pub(crate) fn getsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    call: &'static str,
) -> Result<(T, usize), SysError> {
    let mut v: T = zeroed();
    fake_hook!(getsockopt(fd, level, name, as_bytes_mut(&mut v), call) => |r: Result<usize, SysError>| r.map(|n| (v, n)));
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is `len` writable bytes and `len` a writable socklen_t, both live
    // for the call; any bytes the kernel writes leave a valid `T` (`Pod`).
    syscall!(call, unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut T).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok((v, len as usize))
}

/// `bind(fd, addr)` for an AF_XDP socket.
pub(crate) fn bind_xdp(fd: BorrowedFd<'_>, addr: &sockaddr_xdp) -> Result<(), SysError> {
    fake_hook!(bind_xdp(fd, addr));
    // SAFETY: `addr` is a valid sockaddr_xdp of the length passed, live for the call.
    syscall!("bind", unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const sockaddr_xdp).cast::<libc::sockaddr>(),
            size_of::<sockaddr_xdp>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// An owned memory mapping, unmapped on drop.
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mmap` exclusively owns its mapping and holds no thread-bound state;
// accessing the memory needs `unsafe` code that follows its owner's protocol.
unsafe impl Send for Mmap {}
// SAFETY: `&Mmap` only exposes the address and length.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Start of the mapping (page aligned).
    pub(crate) fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl fmt::Debug for Mmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mmap({:p}, {} B)", self.ptr, self.len)
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr+len` is a mapping this value created and owns; nothing
        // borrows it past the owner's lifetime. An error cannot be acted on here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn mmap(
    call: &'static str,
    len: usize,
    flags: c_int,
    fd: c_int,
    offset: u64,
) -> Result<Mmap, SysError> {
    if len == 0 {
        return Err(SysError::from_errno(call, libc::EINVAL));
    }
    let off =
        libc::off_t::try_from(offset).map_err(|_| SysError::from_errno(call, libc::EINVAL))?;
    // SAFETY: a fresh mapping chosen by the kernel (no address hint) cannot alias any
    // existing Rust object.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            off,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(SysError::last(call));
    }
    match NonNull::new(p.cast::<u8>()) {
        Some(ptr) => Ok(Mmap { ptr, len }),
        // mmap never returns NULL without MAP_FIXED; treat it as a failure anyway.
        None => Err(SysError::from_errno(call, libc::ENOMEM)),
    }
}

/// A private, zero-filled, pre-faulted anonymous mapping of `len` bytes (a UMEM).
pub(crate) fn mmap_anonymous(len: usize) -> Result<Mmap, SysError> {
    mmap(
        "mmap(UMEM)",
        len,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
        -1,
        0,
    )
}

/// Maps `len` bytes of an AF_XDP ring of socket `fd` at page offset `offset`
/// (`XDP_PGOFF_RX_RING`, ...), shared with the kernel.
pub(crate) fn mmap_ring(
    fd: BorrowedFd<'_>,
    len: usize,
    offset: u64,
    call: &'static str,
) -> Result<Mmap, SysError> {
    fake_hook!(mmap_ring(fd, len, offset, call));
    mmap(
        call,
        len,
        libc::MAP_SHARED | libc::MAP_POPULATE,
        fd.as_raw_fd(),
        offset,
    )
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT)`: asks the kernel to process the TX ring (copy
/// mode transmits inside this call; zero-copy mode wakes the driver).
pub(crate) fn sendto_wakeup(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    fake_hook!(sendto_wakeup(fd));
    // SAFETY: a zero-length send with null buffer and address, which the kernel
    // never dereferences.
    syscall!("sendto", unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            ptr::null(),
            0,
        )
    })?;
    Ok(())
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`: wakes a zero-copy driver that ran out of
/// fill ring entries.
pub(crate) fn recvfrom_wakeup(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    fake_hook!(recvfrom_wakeup(fd));
    // SAFETY: a zero-length receive with null buffer and address, which the kernel
    // never dereferences.
    syscall!("recvfrom", unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    })?;
    Ok(())
}

/// `poll` on one fd for `events`, up to `timeout_ms` (-1: forever). Returns `revents`
/// (0 on timeout). `EINTR` is returned as an error for the caller to retry.
pub(crate) fn poll(fd: BorrowedFd<'_>, events: i16, timeout_ms: i32) -> Result<i16, SysError> {
    fake_hook!(poll(fd, events, timeout_ms));
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: `p` is one valid, writable pollfd for the duration of the call.
    syscall!("poll", unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(p.revents)
}

/// The index of network interface `name` in the calling thread's network namespace.
///
/// # Errors
/// `ENODEV` if there is no such interface (or `EINVAL` if `name` contains a NUL).
pub fn if_nametoindex(name: &str) -> Result<u32, SysError> {
    let c = CString::new(name).map_err(|_| SysError::from_errno("if_nametoindex", libc::EINVAL))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(SysError::last("if_nametoindex"));
    }
    Ok(idx)
}

/// The name of network interface `index` in the calling thread's network namespace.
///
/// # Errors
/// `ENXIO` if there is no such interface.
pub fn if_indextoname(index: u32) -> Result<String, SysError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes `if_indextoname` may write.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(SysError::last("if_indextoname"));
    }
    // SAFETY: on success `buf` holds a NUL-terminated name (at most IF_NAMESIZE bytes).
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// `struct ethtool_channels` (`ETHTOOL_GCHANNELS`): a device's queue channels, the
/// current counts and the driver's maxima. A *combined* channel has one receive and
/// one transmit queue; `rx`/`tx` channels have only one of them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EthtoolChannels {
    cmd: u32,
    /// Most receive-only channels the device can have.
    pub max_rx: u32,
    /// Most transmit-only channels.
    pub max_tx: u32,
    /// Most other (link interrupt, ...) channels.
    pub max_other: u32,
    /// Most combined channels.
    pub max_combined: u32,
    /// Receive-only channels now.
    pub rx_count: u32,
    /// Transmit-only channels now.
    pub tx_count: u32,
    /// Other channels now.
    pub other_count: u32,
    /// Combined channels now.
    pub combined_count: u32,
}

const _: () = assert!(size_of::<EthtoolChannels>() == 36);

impl EthtoolChannels {
    /// Receive queues in use: one per combined and per receive-only channel.
    pub fn rx_queues(&self) -> u32 {
        self.combined_count + self.rx_count
    }

    /// Transmit queues in use: one per combined and per transmit-only channel.
    pub fn tx_queues(&self) -> u32 {
        self.combined_count + self.tx_count
    }
}

/// The channels of interface `ifname` in the calling thread's network namespace
/// (`ioctl(SIOCETHTOOL, ETHTOOL_GCHANNELS)`, what `ethtool -l` shows), or `None` if
/// its driver does not report channels (`EOPNOTSUPP`).
///
/// # Errors
/// The socket or the ioctl failed for another reason (`ENODEV`: no such interface).
pub fn ethtool_channels(ifname: &str) -> Result<Option<EthtoolChannels>, SysError> {
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut buf = [0u32; 64];
    buf[0] = ETHTOOL_GCHANNELS;
    match ethtool_get(ifname, &mut buf) {
        Ok(()) => {
            let w = |i: usize| buf[i];
            Ok(Some(EthtoolChannels {
                cmd: ETHTOOL_GCHANNELS,
                max_rx: w(1),
                max_tx: w(2),
                max_other: w(3),
                max_combined: w(4),
                rx_count: w(5),
                tx_count: w(6),
                other_count: w(7),
                combined_count: w(8),
            }))
        }
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The driver of `ifname`, as `ethtool -i` shows it (`ETHTOOL_GDRVINFO`).
///
/// # Errors
/// The socket or the ioctl failed (`ENODEV`: no such interface); `ENOENT` if the
/// driver reports no name.
pub fn ethtool_driver(ifname: &str) -> Result<String, SysError> {
    const ETHTOOL_GDRVINFO: u32 = 0x03;
    let mut buf = [0u32; 64];
    buf[0] = ETHTOOL_GDRVINFO;
    ethtool_get(ifname, &mut buf)?;
    // struct ethtool_drvinfo { __u32 cmd; char driver[32]; ... }
    let bytes: Vec<u8> = buf[1..9].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    if end == 0 {
        return Err(SysError::from_errno("ioctl(SIOCETHTOOL)", libc::ENOENT));
    }
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// `ETHTOOL_GFLAGS` of `ifname` (`ETH_FLAG_*`: bit 7 tx VLAN offload, bit 8 rx).
///
/// # Errors
/// The socket or the ioctl failed (`ENODEV`: no such interface).
pub fn ethtool_flags(ifname: &str) -> Result<u32, SysError> {
    const ETHTOOL_GFLAGS: u32 = 0x25;
    let mut buf = [0u32; 64];
    buf[0] = ETHTOOL_GFLAGS;
    ethtool_get(ifname, &mut buf)?;
    Ok(buf[1])
}

/// Runs the read-only ethtool command in `buf[0]` on `ifname`: the kernel writes its
/// answer (at most 256 bytes: `ethtool_drvinfo` is 196, the others less) into `buf`.
fn ethtool_get(ifname: &str, buf: &mut [u32; 64]) -> Result<(), SysError> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IF_NAMESIZE || name.contains(&0) {
        return Err(SysError::from_errno("ioctl(SIOCETHTOOL)", libc::EINVAL));
    }
    // SAFETY: `socket` takes no pointers.
    let fd = syscall!("socket(AF_INET)", unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `fd` was just returned by `socket`, is open and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain old data (a name and a union of integers and pointers)
    // for which all zeroes is valid.
    let mut ifr: libc::ifreq = unsafe { core::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: `ifr` names the interface (NUL-terminated: it was zeroed and the name is
    // shorter than IF_NAMESIZE) and points at `buf`, writable, 256 bytes and alive for
    // the call; for the read-only commands used here the kernel reads the command word
    // and writes at most 196 bytes (`ethtool_drvinfo`) into it, changing nothing else.
    syscall!("ioctl(SIOCETHTOOL)", unsafe {
        libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut ifr)
    })?;
    Ok(())
}

/// Creates an AF_XDP socket and closes it again, unbound (it touches no interface):
/// whether this kernel has AF_XDP and this process may use it.
///
/// # Errors
/// The `socket` call's (`EAFNOSUPPORT`: no AF_XDP; `EPERM`: not allowed).
pub fn af_xdp_available() -> Result<(), SysError> {
    // SAFETY: `socket` takes no pointers.
    let fd = syscall!("socket(AF_XDP)", unsafe {
        libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `fd` was just returned by `socket`, is open and owned by nobody else;
    // dropping the `OwnedFd` closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// `RLIM_INFINITY`: no limit.
pub const RLIM_INFINITY: u64 = libc::RLIM_INFINITY;

/// The `RLIMIT_MEMLOCK` limits, in bytes ([`RLIM_INFINITY`] for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemlockLimit {
    /// The soft limit: what the kernel enforces.
    pub soft: u64,
    /// The hard limit: how far an unprivileged process may raise `soft`.
    pub hard: u64,
}

/// `RLIMIT_MEMLOCK` is below what a UMEM needs and could not be raised.
#[derive(Debug, thiserror::Error)]
#[error(
    "RLIMIT_MEMLOCK is {} (hard limit {}) but {need} bytes must be locked for the UMEM{}; \
     run as root, give the process CAP_IPC_LOCK (the kernel then ignores the limit) or \
     CAP_SYS_RESOURCE (to raise it), or raise the limit before starting: `ulimit -l unlimited`, \
     systemd `LimitMEMLOCK=infinity`, docker `--ulimit memlock=-1`",
    show_limit(limit.soft),
    show_limit(limit.hard),
    cause.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
)]
pub struct MemlockError {
    /// The limits after trying to raise them.
    pub limit: MemlockLimit,
    /// Bytes needed.
    pub need: u64,
    /// The failing `getrlimit`/`setrlimit`, if one failed.
    pub cause: Option<SysError>,
}

fn show_limit(v: u64) -> String {
    if v == RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{v} bytes")
    }
}

fn getrlimit_memlock() -> Result<MemlockLimit, SysError> {
    fake_hook!(getrlimit_memlock());
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    syscall!("getrlimit(RLIMIT_MEMLOCK)", unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r)
    })?;
    Ok(MemlockLimit {
        soft: r.rlim_cur,
        hard: r.rlim_max,
    })
}

fn setrlimit_memlock(l: MemlockLimit) -> Result<(), SysError> {
    fake_hook!(setrlimit_memlock(l));
    let r = libc::rlimit {
        rlim_cur: l.soft,
        rlim_max: l.hard,
    };
    // SAFETY: `r` is a valid rlimit for the duration of the call.
    syscall!("setrlimit(RLIMIT_MEMLOCK)", unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &r)
    })?;
    Ok(())
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit: every endpoint
/// costs an AF_XDP socket per worker, and a service manager's default soft limit
/// (1024) would refuse them long before the switch's own limits. Returns the soft
/// limit now in force.
///
/// # Errors
/// A failing `getrlimit`/`setrlimit`.
pub fn raise_nofile_limit() -> Result<u64, SysError> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    syscall!("getrlimit(RLIMIT_NOFILE)", unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r)
    })?;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: `r` is a valid rlimit for the duration of the call.
        syscall!("setrlimit(RLIMIT_NOFILE)", unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &r)
        })?;
    }
    Ok(r.rlim_cur)
}

/// Raises this process's `RLIMIT_MEMLOCK` so a UMEM of `need` bytes can be registered
/// (pass [`crate::xsk::Umem::len_bytes`] summed over the UMEMs; 0 means "as high as
/// allowed"). Tries no limit at all first (needs `CAP_SYS_RESOURCE`), then the hard
/// limit. Returns the limits now in force.
///
/// The kernel charges UMEM pages to `RLIMIT_MEMLOCK` only for processes without
/// `CAP_IPC_LOCK`; such a process may ignore this error.
///
/// # Errors
/// [`MemlockError`] if the soft limit stays below `need`, or a call failed; its message
/// says what to do.
pub fn raise_memlock_limit(need: u64) -> Result<MemlockLimit, MemlockError> {
    let err = |limit, cause| MemlockError { limit, need, cause };
    let cur = getrlimit_memlock().map_err(|e| err(MemlockLimit { soft: 0, hard: 0 }, Some(e)))?;
    let enough = |l: MemlockLimit| l.soft == RLIM_INFINITY || (need != 0 && l.soft >= need);
    if enough(cur) {
        return Ok(cur);
    }
    let unlimited = MemlockLimit {
        soft: RLIM_INFINITY,
        hard: RLIM_INFINITY,
    };
    let first = match setrlimit_memlock(unlimited) {
        Ok(()) => return Ok(unlimited),
        Err(e) => e,
    };
    let mut now = cur;
    let mut cause = Some(first);
    if cur.hard > cur.soft {
        let raised = MemlockLimit {
            soft: cur.hard,
            hard: cur.hard,
        };
        match setrlimit_memlock(raised) {
            Ok(()) => {
                now = raised;
                cause = None;
            }
            Err(e) => cause = Some(e),
        }
    }
    // With no stated need, reaching the hard limit is as far as this process can go.
    let enough = if need == 0 {
        now.soft == now.hard
    } else {
        now.soft >= need
    };
    if enough {
        Ok(now)
    } else {
        Err(err(now, cause))
    }
}

/// Moves the calling thread into a new, empty network namespace (`unshare(CLONE_NEWNET)`).
/// Only the network namespace changes; the thread's files, memory and other
/// namespaces are untouched. Call it on a dedicated thread.
///
/// # Errors
/// `unshare` failed (EPERM without CAP_SYS_ADMIN).
pub fn unshare_netns() -> Result<(), SysError> {
    // SAFETY: CLONE_NEWNET only gives this thread a new network namespace; it does not
    // unshare the file table or memory, so no invariant of this process changes.
    syscall!("unshare(CLONE_NEWNET)", unsafe {
        libc::unshare(libc::CLONE_NEWNET)
    })?;
    Ok(())
}

/// Sets the RPS CPU mask (`/sys/class/net/IFNAME/queues/rx-N/rps_cpus`, `mask` in
/// hex, `0` = off) of every receive queue of each interface in `ifnames`, in the
/// calling thread's network namespace. Returns how many queues took it.
///
/// sysfs shows the network namespace of whoever mounted it, which need not be the
/// caller's, so the files are written by a short-lived thread in a mount namespace
/// of its own (`unshare(CLONE_NEWNS)`, every mount made private, then a fresh sysfs
/// on `/sys`): nothing of it is visible outside that thread, and it ends with it.
///
/// # Errors
/// `unshare`, `mount` or a sysfs write failed (an interface that is not there has no
/// queue directory: `ENOENT`).
pub fn set_rps(ifnames: &[String], mask: &str) -> Result<usize, SysError> {
    let ifnames = ifnames.to_vec();
    let mask = format!("{mask}\n");
    std::thread::scope(|s| {
        s.spawn(move || -> Result<usize, SysError> {
            // SAFETY: CLONE_NEWNS (with the CLONE_FS it implies) gives only this
            // thread a copy of the mount namespace and of its root/cwd; the other
            // threads, the file table and memory are untouched.
            syscall!("unshare(CLONE_NEWNS)", unsafe {
                libc::unshare(libc::CLONE_NEWNS)
            })?;
            let root = c"/";
            let sys = c"/sys";
            let sysfs = c"sysfs";
            // SAFETY: the strings are NUL-terminated and live across the call; a
            // propagation change reads nothing else.
            syscall!("mount(/, MS_REC|MS_PRIVATE)", unsafe {
                libc::mount(
                    ptr::null(),
                    root.as_ptr(),
                    ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    ptr::null(),
                )
            })?;
            // SAFETY: as above; sysfs takes no data.
            syscall!("mount(sysfs, /sys)", unsafe {
                libc::mount(sysfs.as_ptr(), sys.as_ptr(), sysfs.as_ptr(), 0, ptr::null())
            })?;
            let mut n = 0;
            for ifname in &ifnames {
                let dir = format!("/sys/class/net/{ifname}/queues");
                let entries = std::fs::read_dir(&dir).map_err(|error| SysError {
                    call: "read_dir(/sys/class/net/IFNAME/queues)",
                    error,
                })?;
                for e in entries.flatten() {
                    if !e.file_name().to_string_lossy().starts_with("rx-") {
                        continue;
                    }
                    std::fs::write(e.path().join("rps_cpus"), &mask).map_err(|error| SysError {
                        call: "write(rps_cpus)",
                        error,
                    })?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(SysError {
                call: "set_rps",
                error: io::Error::other("the sysfs thread panicked"),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_error_names_the_call_and_keeps_errno() {
        let e = SysError::from_errno("bind", libc::EOPNOTSUPP);
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
        let s = e.to_string();
        assert!(s.starts_with("bind: "), "{s}");
        assert!(s.contains("not supported"), "{s}");
    }

    #[test]
    fn syscall_macro_maps_minus_one() {
        fn fails() -> Result<i32, SysError> {
            // SAFETY: closing fd -1 touches no memory; it fails with EBADF.
            syscall!("close", unsafe { libc::close(-1) })
        }
        let e = fails().unwrap_err();
        assert_eq!((e.call, e.errno()), ("close", Some(libc::EBADF)));
    }

    #[test]
    fn loopback_has_an_index_in_every_namespace() {
        let i = if_nametoindex("lo").expect("lo exists");
        assert_eq!(if_indextoname(i).unwrap(), "lo");
        assert_eq!(
            if_nametoindex("no-such-if0").unwrap_err().errno(),
            Some(libc::ENODEV)
        );
        assert_eq!(
            if_nametoindex("a\0b").unwrap_err().errno(),
            Some(libc::EINVAL)
        );
    }

    #[test]
    fn anonymous_mapping_is_zeroed_and_writable() {
        let m = mmap_anonymous(8192).unwrap();
        assert_eq!(m.len(), 8192);
        assert_eq!(m.as_ptr().as_ptr() as usize % 4096, 0);
        // SAFETY: the mapping is 8192 bytes, readable and writable, owned by `m`.
        let s = unsafe { core::slice::from_raw_parts_mut(m.as_ptr().as_ptr(), m.len()) };
        assert!(s.iter().all(|&b| b == 0));
        s[8191] = 7;
        assert_eq!(mmap_anonymous(0).unwrap_err().errno(), Some(libc::EINVAL));
    }

    fn with_limits(soft: u64, hard: u64, privileged: bool) -> fake::Installed {
        fake::install(fake::FakeKernel {
            memlock: MemlockLimit { soft, hard },
            privileged,
            ..fake::FakeKernel::default()
        })
    }

    #[test]
    fn memlock_already_unlimited_is_left_alone() {
        let _k = with_limits(RLIM_INFINITY, RLIM_INFINITY, false);
        assert_eq!(raise_memlock_limit(1 << 30).unwrap().soft, RLIM_INFINITY);
        assert!(fake::calls()
            .iter()
            .all(|c| !matches!(c, fake::Call::SetRlimit(_))));
    }

    #[test]
    fn memlock_privileged_goes_unlimited() {
        let _k = with_limits(8 << 20, 8 << 20, true);
        let l = raise_memlock_limit(64 << 20).unwrap();
        assert_eq!(l.soft, RLIM_INFINITY);
    }

    #[test]
    fn memlock_unprivileged_raises_soft_to_hard() {
        let _k = with_limits(8 << 20, 128 << 20, false);
        let l = raise_memlock_limit(64 << 20).unwrap();
        assert_eq!((l.soft, l.hard), (128 << 20, 128 << 20));
        assert_eq!(fake::with(|k| k.memlock.soft), 128 << 20);
    }

    #[test]
    fn memlock_too_low_explains_what_to_do() {
        let _k = with_limits(8 << 20, 8 << 20, false);
        let e = raise_memlock_limit(64 << 20).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("CAP_IPC_LOCK") && s.contains("ulimit -l"), "{s}");
        assert!(s.contains("8388608 bytes"), "{s}");
        assert_eq!(e.limit.soft, 8 << 20);
        // Enough already: nothing to do, no error.
        assert_eq!(raise_memlock_limit(4 << 20).unwrap().soft, 8 << 20);
        // No stated need: at the hard limit is as high as it goes.
        assert_eq!(raise_memlock_limit(0).unwrap().soft, 8 << 20);
    }
}
