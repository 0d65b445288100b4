//! Move-only frame handles and the pools that own frame memory.

use core::mem::ManuallyDrop;

/// Index of a fixed-size frame slot in a pool (for AF_XDP: a UMEM chunk).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct FrameIdx(pub u32);

/// Bytes reserved in front of every frame so a VLAN tag can be pushed without moving
/// the payload (the kernel's `XDP_PACKET_HEADROOM` plays the same role).
pub const HEADROOM: usize = 64;

/// An owned frame: which slot, where the data starts in it and how long it is.
///
/// A `Frame` cannot be cloned or copied: whoever holds it owns the slot, and the only
/// ways to give it up are to hand it to a pool ([`FramePool::free`]) or to a port's
/// transmit queue. In debug builds dropping a `Frame` any other way panics, so a leak
/// shows up in tests as a failure at the exact place it happens.
#[must_use = "a Frame must be freed or transmitted"]
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    idx: FrameIdx,
    off: u16,
    len: u16,
}

impl Frame {
    /// Makes a handle for slot `idx`. Only a pool or a ring that got the slot back from
    /// the kernel may call this: two live handles for one slot break the accounting.
    pub fn from_raw(idx: FrameIdx, off: u16, len: u16) -> Frame {
        Frame { idx, off, len }
    }

    /// Gives up the handle and returns its parts (for writing a ring descriptor).
    pub fn into_raw(self) -> (FrameIdx, u16, u16) {
        let me = ManuallyDrop::new(self);
        (me.idx, me.off, me.len)
    }

    /// The slot.
    pub fn idx(&self) -> FrameIdx {
        self.idx
    }

    /// Offset of the first byte within the slot.
    pub fn offset(&self) -> usize {
        self.off as usize
    }

    /// Length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len as usize
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if cfg!(debug_assertions) && !std::thread::panicking() {
            panic!(
                "frame {:?} dropped without being freed or transmitted (leak)",
                self.idx
            );
        }
    }
}

/// Owner of frame memory: fixed-size slots handed out as [`Frame`]s.
///
/// The in-memory pool is [`MemPool`]; the AF_XDP UMEM is the other implementation.
pub trait FramePool {
    /// Size of one slot in bytes (headroom included).
    fn slot_size(&self) -> usize;
    /// A free slot, with [`HEADROOM`] bytes reserved in front and length 0.
    fn alloc(&mut self) -> Option<Frame>;
    /// Returns a slot to the pool.
    fn free(&mut self, f: Frame);
    /// The whole slot `idx`.
    fn slot(&self, idx: FrameIdx) -> &[u8];
    /// The whole slot `idx`, writable.
    fn slot_mut(&mut self, idx: FrameIdx) -> &mut [u8];
    /// Slots currently handed out.
    fn in_use(&self) -> usize;
    /// Copies bytes `range` of slot `from` to the same range of slot `to`.
    fn copy_slot(&mut self, from: FrameIdx, to: FrameIdx, range: core::ops::Range<usize>);

    /// The frame's bytes.
    #[inline(always)]
    fn data(&self, f: &Frame) -> &[u8] {
        &self.slot(f.idx)[f.offset()..f.offset() + f.len()]
    }

    /// The frame's bytes, writable.
    fn data_mut(&mut self, f: &mut Frame) -> &mut [u8] {
        let (o, l) = (f.offset(), f.len());
        &mut self.slot_mut(f.idx)[o..o + l]
    }

    /// A new frame holding `bytes`; `None` if the pool is empty or `bytes` does not fit.
    fn alloc_with(&mut self, bytes: &[u8]) -> Option<Frame> {
        if bytes.len() > self.slot_size() - HEADROOM {
            return None;
        }
        let mut f = self.alloc()?;
        let o = f.offset();
        self.slot_mut(f.idx)[o..o + bytes.len()].copy_from_slice(bytes);
        f.len = bytes.len() as u16;
        Some(f)
    }

    /// A copy of `f` in a fresh slot (the flood slow path); `None` if the pool is empty.
    fn duplicate(&mut self, f: &Frame) -> Option<Frame> {
        let mut c = self.alloc()?;
        c.off = f.off;
        c.len = f.len;
        self.copy_slot(f.idx, c.idx, f.offset()..f.offset() + f.len());
        Some(c)
    }

    /// Drops the first `n` bytes of `f` (an encapsulation in front of the frame):
    /// they become headroom. `false` (frame unchanged) if `f` is shorter.
    fn strip_front(&mut self, f: &mut Frame, n: usize) -> bool {
        if f.len() < n {
            return false;
        }
        f.off += n as u16;
        f.len -= n as u16;
        true
    }

    /// Inserts an 802.1Q tag with `tci` after the MAC addresses, using headroom.
    /// Returns `false` (frame unchanged) if there is no headroom or the frame is a runt.
    fn push_vlan(&mut self, f: &mut Frame, tci: u16) -> bool {
        self.push_tag(f, 0x8100, tci)
    }

    /// Inserts a tag with TPID `tpid` (0x8100, 0x88a8) and `tci` after the MAC
    /// addresses, using headroom; `false` (frame unchanged) as [`FramePool::push_vlan`].
    fn push_tag(&mut self, f: &mut Frame, tpid: u16, tci: u16) -> bool {
        if f.offset() < 4 || f.len() < 14 || f.len() + 4 > u16::MAX as usize {
            return false;
        }
        let o = f.offset();
        let s = self.slot_mut(f.idx);
        s.copy_within(o..o + 12, o - 4);
        s[o + 8..o + 10].copy_from_slice(&tpid.to_be_bytes());
        s[o + 10..o + 12].copy_from_slice(&tci.to_be_bytes());
        f.off -= 4;
        f.len += 4;
        true
    }

    /// Removes the outer VLAN tag. Returns `false` (frame unchanged) if there is none.
    fn pop_vlan(&mut self, f: &mut Frame) -> bool {
        let o = f.offset();
        if f.len() < 18 {
            return false;
        }
        let s = self.slot_mut(f.idx);
        let tpid = u16::from_be_bytes([s[o + 12], s[o + 13]]);
        if tpid != 0x8100 && tpid != 0x88a8 {
            return false;
        }
        s.copy_within(o..o + 12, o + 4);
        f.off += 4;
        f.len -= 4;
        true
    }
}

/// A heap-backed [`FramePool`] for tests, simulation, benchmarks and in-process ports.
///
/// Debug builds keep an ownership bit per slot and panic on a double free.
pub struct MemPool {
    mem: Vec<u8>,
    slot: usize,
    free: Vec<FrameIdx>,
    owned: Vec<bool>,
}

impl MemPool {
    /// A pool of `slots` slots of `slot_size` bytes each.
    ///
    /// # Panics
    /// If `slot_size` is not larger than [`HEADROOM`] + 14 or above 64 KiB.
    pub fn new(slots: u32, slot_size: usize) -> Self {
        assert!(
            slot_size > HEADROOM + 14 && slot_size <= 65536,
            "bad slot size {slot_size}"
        );
        MemPool {
            mem: vec![0; slots as usize * slot_size],
            slot: slot_size,
            free: (0..slots).rev().map(FrameIdx).collect(),
            owned: vec![false; slots as usize],
        }
    }

    /// Total number of slots.
    pub fn capacity(&self) -> usize {
        self.owned.len()
    }
}

impl FramePool for MemPool {
    fn slot_size(&self) -> usize {
        self.slot
    }

    #[inline]
    fn alloc(&mut self) -> Option<Frame> {
        let idx = self.free.pop()?;
        let o = &mut self.owned[idx.0 as usize];
        debug_assert!(!*o, "slot {idx:?} on the free list while handed out");
        *o = true;
        Some(Frame {
            idx,
            off: HEADROOM as u16,
            len: 0,
        })
    }

    #[inline]
    fn free(&mut self, f: Frame) {
        let (idx, _, _) = f.into_raw();
        let o = &mut self.owned[idx.0 as usize];
        assert!(*o, "double free of slot {idx:?}");
        *o = false;
        self.free.push(idx);
    }

    #[inline(always)]
    fn slot(&self, idx: FrameIdx) -> &[u8] {
        let s = idx.0 as usize * self.slot;
        &self.mem[s..s + self.slot]
    }

    #[inline(always)]
    fn slot_mut(&mut self, idx: FrameIdx) -> &mut [u8] {
        let s = idx.0 as usize * self.slot;
        &mut self.mem[s..s + self.slot]
    }

    fn in_use(&self) -> usize {
        self.owned.len() - self.free.len()
    }

    #[inline]
    fn copy_slot(&mut self, from: FrameIdx, to: FrameIdx, range: core::ops::Range<usize>) {
        assert!(range.end <= self.slot);
        let (a, b) = (from.0 as usize * self.slot, to.0 as usize * self.slot);
        self.mem
            .copy_within(a + range.start..a + range.end, b + range.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_accounting() {
        let mut p = MemPool::new(4, 256);
        let a = p.alloc_with(&[1; 60]).unwrap();
        let b = p.duplicate(&a).unwrap();
        assert_ne!(a.idx(), b.idx());
        assert_eq!(p.data(&a), p.data(&b));
        assert_eq!(p.in_use(), 2);
        p.free(a);
        p.free(b);
        assert_eq!(p.in_use(), 0);
        let all: Vec<_> = (0..4).map(|_| p.alloc().unwrap()).collect();
        assert!(p.alloc().is_none());
        all.into_iter().for_each(|f| p.free(f));
        assert!(p.alloc_with(&[0; 256]).is_none(), "too large for a slot");
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_is_caught() {
        let mut p = MemPool::new(2, 256);
        let a = p.alloc().unwrap();
        let (i, o, l) = a.into_raw();
        p.free(Frame::from_raw(i, o, l));
        p.free(Frame::from_raw(i, o, l));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "leak")]
    fn dropped_frame_is_a_leak() {
        let mut p = MemPool::new(2, 256);
        let _ = p.alloc();
    }

    #[test]
    fn vlan_push_pop_round_trip() {
        let mut p = MemPool::new(2, 256);
        let mut orig = [0u8; 60];
        orig[..12].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        orig[12..14].copy_from_slice(&[0x08, 0x00]);
        orig[14] = 0x45;
        let mut f = p.alloc_with(&orig).unwrap();
        assert!(!p.pop_vlan(&mut f));
        assert!(p.push_vlan(&mut f, 10));
        assert_eq!(f.len(), 64);
        let d = p.data(&f);
        assert_eq!(&d[..12], &orig[..12]);
        assert_eq!(&d[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(&d[16..], &orig[12..]);
        assert!(p.pop_vlan(&mut f));
        assert_eq!(p.data(&f), &orig[..]);
        p.free(f);
    }
}
