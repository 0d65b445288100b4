//! The UMEM: one mapping of equal-size frames, shared with the kernel, and the
//! [`FramePool`] that tracks who owns each frame.

use core::ops::Range;
use core::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::socket::XskFd;
use super::Error;
use crate::port::{Frame, FrameIdx, FramePool, HEADROOM};
use crate::sys::{self, xdp_desc, Mmap};

/// Frame state: on the free list.
const FREE: u16 = 0;
/// Frame state: held through a [`Frame`] handle.
const HELD: u16 = 1;
/// Frame state `LENT + s`: lent to socket slot `s` (its fill or tx ring, the kernel,
/// or its rx or completion ring).
const LENT: u16 = 2;
/// Most sockets one UMEM serves at a time.
const MAX_SOCKETS: usize = (u16::MAX - LENT) as usize + 1;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A socket registered with a UMEM.
struct SocketEntry {
    /// Lets a new socket share the UMEM through this one while it is open.
    fd: Weak<XskFd>,
    /// Set once the socket's fd is closed: its lent frames may be reclaimed.
    closed: Arc<AtomicBool>,
}

/// Where the frames of a [`Umem`] are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accounting {
    /// All frames.
    pub total: u32,
    /// On the free list.
    pub free: u32,
    /// Held through [`Frame`] handles.
    pub held: u32,
    /// Lent to sockets: in a fill or tx ring, in the kernel, or returned on an rx or
    /// completion ring and not yet taken back.
    pub lent: u32,
}

/// An AF_XDP UMEM: `frame_count` frames of `frame_size` bytes in one anonymous
/// mapping, registered with the kernel by the first [`super::XskSocket`] created on it
/// and shared by the others. It is the [`FramePool`] of the worker that owns it.
///
/// Frame `idx` starts at UMEM address `idx × frame_size`; a frame's data at
/// `idx × frame_size + offset`. [`FramePool::alloc`] hands out frames with
/// [`HEADROOM`] bytes before the data; received frames start at
/// [`super::XDP_PACKET_HEADROOM`].
///
/// Every frame has a state (free, held, or lent to socket *s*): a slot can only be
/// accessed while it is not lent, so the kernel never writes memory a slice points
/// to; freeing a frame twice, or one the kernel has, panics.
pub struct Umem {
    mem: Mmap,
    frame_size: u32,
    shift: u32,
    frames: u32,
    free: Vec<u32>,
    state: Vec<u16>,
    held: u32,
    lent: u32,
    id: u64,
    sockets: Vec<Option<SocketEntry>>,
}

impl core::fmt::Debug for Umem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Umem")
            .field("frames", &self.frames)
            .field("frame_size", &self.frame_size)
            .field("accounting", &self.accounting())
            .finish_non_exhaustive()
    }
}

impl Umem {
    /// Maps `frame_count` zeroed frames of `frame_size` bytes (2048 or 4096).
    ///
    /// The memory is registered with the kernel (and pinned, counting against
    /// `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`, see [`sys::raise_memlock_limit`]) when
    /// the first socket is created on it.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad size, [`Error::Umem`] if the mapping fails.
    pub fn new(frame_count: u32, frame_size: u32) -> Result<Umem, Error> {
        if frame_size != 2048 && frame_size != 4096 {
            return Err(Error::Config(format!(
                "UMEM frame size {frame_size} is not 2048 or 4096"
            )));
        }
        if frame_count == 0 {
            return Err(Error::Config("UMEM with 0 frames".into()));
        }
        let len = (frame_count as usize)
            .checked_mul(frame_size as usize)
            .filter(|&l| l <= isize::MAX as usize)
            .ok_or_else(|| Error::Config(format!("UMEM of {frame_count} frames is too large")))?;
        let mem = sys::mmap_anonymous(len).map_err(|cause| Error::Umem {
            frames: frame_count,
            frame_size,
            cause,
        })?;
        Ok(Umem {
            mem,
            frame_size,
            shift: frame_size.trailing_zeros(),
            frames: frame_count,
            free: (0..frame_count).rev().collect(),
            state: vec![FREE; frame_count as usize],
            held: 0,
            lent: 0,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            sockets: Vec::new(),
        })
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// Number of frames.
    pub fn frame_count(&self) -> u32 {
        self.frames
    }

    /// Size of the mapping: what registering it locks (for
    /// [`sys::raise_memlock_limit`]).
    pub fn len_bytes(&self) -> u64 {
        self.mem.len() as u64
    }

    /// The UMEM address of frame `idx`'s first byte (`idx × frame_size`).
    pub fn addr(&self, idx: FrameIdx) -> u64 {
        u64::from(idx.0) << self.shift
    }

    /// Where the frames are, from counters (O(1)).
    pub fn accounting(&self) -> Accounting {
        Accounting {
            total: self.frames,
            free: self.free.len() as u32,
            held: self.held,
            lent: self.lent,
        }
    }

    /// Recounts every frame's state and checks it against the counters, the free
    /// list, and `free + held + lent == total`. O(frames); for tests and debugging.
    ///
    /// # Panics
    /// If anything disagrees: a frame was leaked, duplicated or lost.
    pub fn check_accounting(&self) -> Accounting {
        let a = self.accounting();
        let mut n = [0u32; 3];
        for &s in &self.state {
            n[s.min(LENT) as usize] += 1;
        }
        assert_eq!(
            a.free + a.held + a.lent,
            a.total,
            "UMEM frames do not add up: {a:?}"
        );
        assert_eq!(
            (n[FREE as usize], n[HELD as usize], n[LENT as usize]),
            (a.free, a.held, a.lent),
            "UMEM frame states disagree with the counters {a:?}"
        );
        let mut seen = vec![false; self.frames as usize];
        for &i in &self.free {
            assert_eq!(
                self.state[i as usize], FREE,
                "frame {i} on the free list is not free"
            );
            assert!(!seen[i as usize], "frame {i} twice on the free list");
            seen[i as usize] = true;
        }
        a
    }

    /// Returns to the free list every frame lent to a socket whose file descriptor
    /// has been closed (an [`super::XskSocket`] or [`super::XskPort`] that was
    /// dropped). Returns how many frames came back. Socket creation calls it too.
    ///
    /// This relies on the kernel releasing the socket when its last fd closes, so
    /// never keep a duplicate of [`super::XskSocket::as_fd`] (an XSKMAP entry is not
    /// a duplicate). A copy-mode transmission on a device that sends from the UMEM
    /// pages without copying (`IFF_TX_SKB_NO_LINEAR`, e.g. virtio-net) may still be
    /// read by the device for a moment after the close.
    pub fn reclaim_closed(&mut self) -> u32 {
        let closed: Vec<bool> = self
            .sockets
            .iter()
            .map(|e| e.as_ref().is_some_and(|e| e.closed.load(Ordering::Acquire)))
            .collect();
        if !closed.contains(&true) {
            return 0;
        }
        let mut n = 0;
        for (i, s) in self.state.iter_mut().enumerate() {
            if *s >= LENT && closed[(*s - LENT) as usize] {
                *s = FREE;
                self.free.push(i as u32);
                n += 1;
            }
        }
        self.lent -= n;
        for (e, c) in self.sockets.iter_mut().zip(closed) {
            if c {
                *e = None;
            }
        }
        n
    }

    /// Sockets registered and not yet reclaimed.
    pub fn sockets(&self) -> usize {
        self.sockets.iter().filter(|e| e.is_some()).count()
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn base_addr(&self) -> u64 {
        self.mem.as_ptr().as_ptr() as u64
    }

    /// An open socket of this UMEM to share it through, if any.
    pub(crate) fn sharing_fd(&self) -> Option<Arc<XskFd>> {
        self.sockets
            .iter()
            .flatten()
            .filter(|e| !e.closed.load(Ordering::Acquire))
            .find_map(|e| e.fd.upgrade())
    }

    /// Registers a bound socket; returns its slot.
    pub(crate) fn attach_socket(&mut self, fd: &Arc<XskFd>) -> Result<u16, Error> {
        let e = SocketEntry {
            fd: Arc::downgrade(fd),
            closed: fd.closed_flag(),
        };
        let slot = match self.sockets.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.sockets.len() < MAX_SOCKETS => {
                self.sockets.push(None);
                self.sockets.len() - 1
            }
            None => {
                return Err(Error::Config(format!(
                    "more than {MAX_SOCKETS} sockets on one UMEM"
                )))
            }
        };
        self.sockets[slot] = Some(e);
        Ok(slot as u16)
    }

    /// Free frames.
    #[inline(always)]
    pub(crate) fn free_count(&self) -> u32 {
        self.free.len() as u32
    }

    /// Takes a free frame and lends it to socket `slot` (for its fill ring); returns
    /// its chunk address.
    #[inline]
    pub(crate) fn lend_free(&mut self, slot: u16) -> Option<u64> {
        let i = self.free.pop()?;
        let s = &mut self.state[i as usize];
        // A frame may enter a fill ring only from the free list: this keeps the
        // kernel from ever writing a frame that is also somewhere else.
        assert_eq!(*s, FREE, "frame {i} on the free list is not free");
        *s = LENT + slot;
        self.lent += 1;
        Some(u64::from(i) << self.shift)
    }

    /// Lends a held frame to socket `slot` (for its tx ring); returns its descriptor.
    #[inline]
    pub(crate) fn lend(&mut self, slot: u16, f: Frame) -> xdp_desc {
        let (idx, off, len) = f.into_raw();
        let s = &mut self.state[idx.0 as usize];
        assert_eq!(*s, HELD, "transmitting frame {idx:?} that is not held");
        *s = LENT + slot;
        self.held -= 1;
        self.lent += 1;
        xdp_desc {
            addr: (u64::from(idx.0) << self.shift) | u64::from(off),
            len: u32::from(len),
            options: 0,
        }
    }

    /// Takes back a frame socket `slot` received into (from its rx ring).
    #[inline]
    pub(crate) fn take_back(&mut self, slot: u16, addr: u64, len: u32) -> Frame {
        let i = (addr >> self.shift) as usize;
        let off = (addr & u64::from(self.frame_size - 1)) as u32;
        let s = &mut self.state[i];
        debug_assert_eq!(
            *s,
            LENT + slot,
            "rx frame {i} was not lent to socket {slot}"
        );
        debug_assert!(
            off + len <= self.frame_size,
            "rx frame {i} overruns its chunk"
        );
        *s = HELD;
        self.lent -= 1;
        self.held += 1;
        Frame::from_raw(FrameIdx(i as u32), off as u16, len as u16)
    }

    /// Frees a frame socket `slot` finished transmitting (from its completion ring).
    #[inline]
    pub(crate) fn complete(&mut self, slot: u16, addr: u64) {
        let i = (addr >> self.shift) as u32;
        let s = &mut self.state[i as usize];
        debug_assert_eq!(
            *s,
            LENT + slot,
            "completed frame {i} was not lent to socket {slot}"
        );
        *s = FREE;
        self.lent -= 1;
        self.free.push(i);
    }

    /// Start of slot `i` after checking that nobody but us may access it.
    #[inline(always)]
    fn slot_ptr(&self, idx: FrameIdx) -> *mut u8 {
        let i = idx.0 as usize;
        assert!(
            self.state[i] < LENT,
            "UMEM frame {idx:?} is lent to the kernel and cannot be accessed"
        );
        // SAFETY: `i < frames` (the state lookup above is bounds-checked), so the
        // offset is within the mapping.
        unsafe { self.mem.as_ptr().as_ptr().add(i << self.shift) }
    }

    /// The kernel's view: writes `bytes` at UMEM address `addr` of a lent frame.
    #[cfg(test)]
    pub(crate) fn kernel_write(&mut self, addr: u64, bytes: &[u8]) {
        let i = (addr >> self.shift) as usize;
        assert!(self.state[i] >= LENT, "the kernel only writes lent frames");
        let off = (addr & u64::from(self.frame_size - 1)) as usize;
        assert!(off + bytes.len() <= self.frame_size as usize);
        // SAFETY: in bounds (checked above); a lent frame has no Rust references.
        unsafe {
            ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.mem.as_ptr().as_ptr().add(addr as usize),
                bytes.len(),
            )
        };
    }

    /// The kernel's view: reads `len` bytes at UMEM address `addr` of a lent frame.
    #[cfg(test)]
    pub(crate) fn kernel_read(&self, addr: u64, len: usize) -> Vec<u8> {
        let i = (addr >> self.shift) as usize;
        assert!(self.state[i] >= LENT, "the kernel only reads lent frames");
        let off = (addr & u64::from(self.frame_size - 1)) as usize;
        assert!(off + len <= self.frame_size as usize);
        let mut v = vec![0; len];
        // SAFETY: in bounds (checked above); a lent frame has no Rust references.
        unsafe {
            ptr::copy_nonoverlapping(
                self.mem.as_ptr().as_ptr().add(addr as usize),
                v.as_mut_ptr(),
                len,
            )
        };
        v
    }
}

impl FramePool for Umem {
    fn slot_size(&self) -> usize {
        self.frame_size as usize
    }

    #[inline]
    fn alloc(&mut self) -> Option<Frame> {
        let i = self.free.pop()?;
        let s = &mut self.state[i as usize];
        debug_assert_eq!(*s, FREE, "frame {i} on the free list is not free");
        *s = HELD;
        self.held += 1;
        Some(Frame::from_raw(FrameIdx(i), HEADROOM as u16, 0))
    }

    #[inline]
    fn free(&mut self, f: Frame) {
        let (idx, _, _) = f.into_raw();
        let s = &mut self.state[idx.0 as usize];
        match *s {
            HELD => {}
            FREE => panic!("double free of slot {idx:?}"),
            _ => panic!("freeing slot {idx:?} while it is lent to the kernel"),
        }
        *s = FREE;
        self.held -= 1;
        self.free.push(idx.0);
    }

    #[inline(always)]
    fn slot(&self, idx: FrameIdx) -> &[u8] {
        let p = self.slot_ptr(idx);
        // SAFETY: `p` starts `frame_size` bytes inside the mapping, which lives as long
        // as `self`. The frame is not lent, so the kernel does not write it, and it
        // cannot be lent while this shared borrow of `self` lives (lending needs
        // `&mut self`).
        unsafe { core::slice::from_raw_parts(p, self.frame_size as usize) }
    }

    #[inline(always)]
    fn slot_mut(&mut self, idx: FrameIdx) -> &mut [u8] {
        let p = self.slot_ptr(idx);
        // SAFETY: as `slot`, and the exclusive borrow of `self` rules out any other
        // slice into the UMEM for the returned lifetime.
        unsafe { core::slice::from_raw_parts_mut(p, self.frame_size as usize) }
    }

    fn in_use(&self) -> usize {
        (self.frames - self.free.len() as u32) as usize
    }

    #[inline]
    fn copy_slot(&mut self, from: FrameIdx, to: FrameIdx, range: Range<usize>) {
        assert!(
            range.start <= range.end && range.end <= self.frame_size as usize,
            "copy range {range:?} outside a {}-byte frame",
            self.frame_size
        );
        let (src, dst) = (self.slot_ptr(from), self.slot_ptr(to));
        // SAFETY: both slots are in the mapping, not lent (checked by `slot_ptr`), and
        // `range` lies within a slot; `ptr::copy` allows `from == to`.
        unsafe {
            ptr::copy(
                src.add(range.start),
                dst.add(range.start),
                range.end - range.start,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_geometry() {
        assert!(matches!(Umem::new(16, 1024), Err(Error::Config(_))));
        assert!(matches!(Umem::new(16, 3000), Err(Error::Config(_))));
        assert!(matches!(Umem::new(16, 8192), Err(Error::Config(_))));
        assert!(matches!(Umem::new(0, 2048), Err(Error::Config(_))));
        let u = Umem::new(16, 4096).unwrap();
        assert_eq!(
            (u.frame_count(), u.frame_size(), u.len_bytes()),
            (16, 4096, 65536)
        );
        assert_eq!(u.addr(FrameIdx(3)), 3 * 4096);
        assert_eq!(u.base_addr() % 4096, 0, "page aligned for XDP_UMEM_REG");
    }

    #[test]
    fn frame_pool_accounting() {
        let mut u = Umem::new(8, 2048).unwrap();
        let a = u.alloc_with(&[0xab; 60]).unwrap();
        assert_eq!(a.offset(), HEADROOM);
        let b = u.duplicate(&a).unwrap();
        assert_eq!(u.data(&b), &[0xab; 60][..]);
        assert_eq!(u.in_use(), 2);
        assert_eq!(
            u.check_accounting(),
            Accounting {
                total: 8,
                free: 6,
                held: 2,
                lent: 0
            }
        );
        u.free(a);
        u.free(b);
        assert_eq!(u.in_use(), 0);
        let all: Vec<_> = (0..8).map(|_| u.alloc().unwrap()).collect();
        assert!(u.alloc().is_none());
        let mut seen: Vec<u32> = all.iter().map(|f| f.idx().0).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
        all.into_iter().for_each(|f| u.free(f));
        assert!(u.alloc_with(&[0; 2048]).is_none(), "too large for a slot");
        u.check_accounting();
    }

    #[test]
    fn slots_are_disjoint_and_vlan_ops_work() {
        let mut u = Umem::new(4, 2048).unwrap();
        let mut frames: Vec<_> = (0..4u8).map(|i| u.alloc_with(&[i; 100]).unwrap()).collect();
        for (i, f) in frames.iter().enumerate() {
            assert!(u.data(f).iter().all(|&b| b == i as u8));
        }
        let mut eth = [0u8; 60];
        eth[12] = 0x08;
        let f = &mut frames[0];
        u.data_mut(f).copy_from_slice(&[0; 100]);
        u.data_mut(f)[..60].copy_from_slice(&eth);
        assert!(u.push_vlan(f, 7));
        assert!(u.pop_vlan(f));
        frames.into_iter().for_each(|f| u.free(f));
        u.check_accounting();
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_is_caught() {
        let mut u = Umem::new(2, 2048).unwrap();
        let (i, o, l) = u.alloc().unwrap().into_raw();
        u.free(Frame::from_raw(i, o, l));
        u.free(Frame::from_raw(i, o, l));
    }

    #[test]
    fn lent_frames_are_off_limits_until_returned() {
        let mut u = Umem::new(4, 2048).unwrap();
        let addr = u.lend_free(0).unwrap();
        assert_eq!(addr % 2048, 0);
        let idx = FrameIdx((addr / 2048) as u32);
        assert_eq!(u.check_accounting().lent, 1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| u.slot(idx).len()));
        assert!(r.is_err(), "a lent slot cannot be read");
        // The kernel writes a packet 256 bytes in and hands it back.
        u.kernel_write(addr + 256, &[9; 64]);
        let f = u.take_back(0, addr + 256, 64);
        assert_eq!((f.idx(), f.offset(), f.len()), (idx, 256, 64));
        assert_eq!(u.data(&f), &[9; 64][..]);
        // Transmit it, then complete it.
        let d = u.lend(0, f);
        assert_eq!((d.addr, d.len, d.options), (addr + 256, 64, 0));
        assert_eq!(u.kernel_read(d.addr, 64), vec![9; 64]);
        u.complete(0, d.addr);
        assert_eq!(
            u.check_accounting(),
            Accounting {
                total: 4,
                free: 4,
                held: 0,
                lent: 0
            }
        );
    }

    #[test]
    #[should_panic(expected = "lent to the kernel")]
    fn freeing_a_lent_frame_panics() {
        let mut u = Umem::new(2, 2048).unwrap();
        let addr = u.lend_free(0).unwrap();
        let idx = FrameIdx((addr / 2048) as u32);
        u.free(Frame::from_raw(idx, 0, 0));
    }

    #[test]
    fn reclaims_frames_of_closed_sockets_only() {
        let mut u = Umem::new(8, 2048).unwrap();
        let a = XskFd::for_test();
        let b = XskFd::for_test();
        let sa = u.attach_socket(&a).unwrap();
        let sb = u.attach_socket(&b).unwrap();
        assert_eq!((sa, sb), (0, 1));
        for _ in 0..3 {
            u.lend_free(sa).unwrap();
        }
        let f = u.alloc().unwrap();
        let d = u.lend(sb, f);
        assert_eq!(u.reclaim_closed(), 0);
        assert!(u.sharing_fd().is_some());
        drop(a);
        assert_eq!(u.reclaim_closed(), 3);
        assert_eq!(u.sockets(), 1);
        assert_eq!(u.check_accounting().lent, 1);
        assert_eq!(
            u.attach_socket(&XskFd::for_test()).unwrap(),
            0,
            "slot reused"
        );
        u.complete(sb, d.addr);
        drop(b);
        u.reclaim_closed();
        assert_eq!(u.check_accounting().free, 8);
    }
}
