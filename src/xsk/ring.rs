//! Single-producer/single-consumer rings shared with the kernel (fill, completion, rx,
//! tx), over any memory laid out as the kernel's `struct xdp_ring`.
//!
//! A ring is a power-of-two array of entries and two free-running `u32` indices: the
//! producer writes entries, then publishes them with a Release store of `producer`;
//! the consumer reads `producer` with an Acquire load, reads the entries, then gives
//! the slots back with a Release store of `consumer`. Each side keeps cached copies of
//! both indices and reads the other side's index only when the cache says the ring is
//! full (producer) or empty (consumer), so a batch costs one shared-cache-line load
//! and one store. Index arithmetic wraps at 2³²; the slot is `index & (size - 1)`.
//!
//! The same code plays either side: [`ProdRing`] is what we use for fill and tx (the
//! kernel consumes), [`ConsRing`] for rx and completion; unit tests put one of each
//! over a plain buffer.

use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use crate::sys::{xdp_ring_offset, Mmap, XDP_RING_NEED_WAKEUP};

/// Pointers into one ring's memory, validated against the mapping's length.
pub(crate) struct RingPtrs<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    desc: NonNull<T>,
    mask: u32,
    _t: PhantomData<T>,
}

impl<T: Copy> RingPtrs<T> {
    /// Locates a ring of `size` entries of `T` in `len` bytes at `base`, using the
    /// kernel's offsets `off`.
    ///
    /// # Errors
    /// If `size` is not a power of two or an offset is misaligned or out of bounds.
    ///
    /// # Safety
    /// `base..base + len` must be readable and writable for as long as the result, or
    /// a ring built from it, exists; while it does, only the ring's other side (the
    /// kernel, or a test's peer ring) may access that memory, following the protocol.
    pub(crate) unsafe fn new(
        base: NonNull<u8>,
        len: usize,
        off: &xdp_ring_offset,
        size: u32,
    ) -> Result<Self, &'static str> {
        if !size.is_power_of_two() {
            return Err("ring size is not a power of two");
        }
        if base.as_ptr() as usize % align_of::<u64>() != 0 {
            return Err("ring memory is misaligned");
        }
        let word = |o: u64| -> Result<usize, &'static str> {
            let o = usize::try_from(o).map_err(|_| "ring offset out of range")?;
            match o.checked_add(4) {
                Some(end) if end <= len && o % 4 == 0 => Ok(o),
                _ => Err("ring index offset misaligned or beyond the mapping"),
            }
        };
        let (p, c, f) = (word(off.producer)?, word(off.consumer)?, word(off.flags)?);
        let d = usize::try_from(off.desc).map_err(|_| "ring offset out of range")?;
        let end = (size as usize)
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(d));
        match end {
            Some(end) if end <= len && d % align_of::<T>() == 0 => {}
            _ => return Err("ring descriptors misaligned or beyond the mapping"),
        }
        let at = |o: usize| {
            // SAFETY: every offset was checked to lie within `base..base + len`, one
            // allocation, so the pointer stays in bounds and is non-null.
            unsafe { NonNull::new_unchecked(base.as_ptr().add(o)) }
        };
        Ok(RingPtrs {
            producer: at(p).cast(),
            consumer: at(c).cast(),
            flags: at(f).cast(),
            desc: at(d).cast(),
            mask: size - 1,
            _t: PhantomData,
        })
    }

    #[inline(always)]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: in bounds, 4-aligned and live for `self`'s lifetime (`new`'s
        // contract); the kernel only ever accesses it atomically.
        unsafe { self.producer.as_ref() }
    }

    #[inline(always)]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as `producer`.
        unsafe { self.consumer.as_ref() }
    }

    #[inline(always)]
    pub(crate) fn flags(&self) -> &AtomicU32 {
        // SAFETY: as `producer`.
        unsafe { self.flags.as_ref() }
    }

    #[inline(always)]
    fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Pointer to the entry for free-running index `i`.
    #[inline(always)]
    fn entry(&self, i: u32) -> *mut T {
        // SAFETY: `i & mask < size` and `size` entries fit in the mapping (`new`).
        unsafe { self.desc.as_ptr().add((i & self.mask) as usize) }
    }
}

/// Our producer side of a ring (fill, tx).
pub(crate) struct ProdRing<T> {
    ptrs: RingPtrs<T>,
    /// Our next index to publish.
    cached_prod: u32,
    /// The consumer's index plus the ring size, as last read: `cached_cons -
    /// cached_prod` slots are known free.
    cached_cons: u32,
    _map: Option<Mmap>,
}

// SAFETY: the ring's memory is only touched through `&mut self` on our side and by the
// kernel on the other; nothing in it is tied to a thread.
unsafe impl<T: Send> Send for ProdRing<T> {}

impl<T: Copy> ProdRing<T> {
    /// A producer over a ring mapping it takes ownership of.
    pub(crate) fn from_mmap(
        map: Mmap,
        off: &xdp_ring_offset,
        size: u32,
    ) -> Result<Self, &'static str> {
        // SAFETY: the mapping is moved into the ring and so lives exactly as long as
        // it; the kernel is the only other party.
        let ptrs = unsafe { RingPtrs::new(map.as_ptr(), map.len(), off, size)? };
        Ok(Self::with(ptrs, Some(map)))
    }

    /// A producer over memory someone else owns.
    ///
    /// # Safety
    /// As [`RingPtrs::new`]: the memory outlives the ring, and only one producer
    /// exists for it.
    #[cfg(test)]
    pub(crate) unsafe fn from_raw(ptrs: RingPtrs<T>) -> Self {
        Self::with(ptrs, None)
    }

    fn with(ptrs: RingPtrs<T>, map: Option<Mmap>) -> Self {
        let cached_prod = ptrs.producer().load(Ordering::Relaxed);
        let cached_cons = ptrs
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(ptrs.size());
        ProdRing {
            ptrs,
            cached_prod,
            cached_cons,
            _map: map,
        }
    }

    /// Number of entries.
    pub(crate) fn size(&self) -> u32 {
        self.ptrs.size()
    }

    /// Free slots; re-reads the consumer index only if fewer than `want` are known.
    #[inline]
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_cons = self
            .ptrs
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.size());
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    /// Reserves up to `n` slots (fewer if the ring is fuller). Nothing is visible to
    /// the consumer until [`Reserved::commit`].
    #[inline]
    pub(crate) fn reserve(&mut self, n: u32) -> Reserved<'_, T> {
        let cap = n.min(self.free(n));
        Reserved {
            ring: self,
            cap,
            len: 0,
        }
    }

    /// Entries published but not yet consumed by the other side.
    #[inline]
    pub(crate) fn pending(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.ptrs.consumer().load(Ordering::Acquire))
    }

    /// Whether the kernel asked to be woken up (`XDP_RING_NEED_WAKEUP`) to process
    /// this ring. Call after [`Reserved::commit`]: the full fence orders our producer
    /// store before the flag load, pairing with the kernel setting the flag before it
    /// re-checks the ring.
    ///
    /// libbpf reads the flag without a fence. Kept: it costs about 1 ns more than an
    /// acquire load (criterion `wakeup_check`: 1.9 against 0.8 ns, so 1 µs a pass at a
    /// thousand sockets), and a stale flag would leave a wakeup to the next pass.
    #[inline]
    pub(crate) fn needs_wakeup(&self) -> bool {
        fence(Ordering::SeqCst);
        self.ptrs.flags().load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }
}

/// Slots reserved in a [`ProdRing`], filled in order with [`push`](Self::push) and
/// published with [`commit`](Self::commit). Dropping it publishes nothing.
#[must_use = "reserved entries are only published by commit()"]
pub(crate) struct Reserved<'r, T: Copy> {
    ring: &'r mut ProdRing<T>,
    cap: u32,
    len: u32,
}

impl<T: Copy> Reserved<'_, T> {
    /// Slots reserved.
    #[inline(always)]
    pub(crate) fn capacity(&self) -> u32 {
        self.cap
    }

    /// Entries written so far.
    #[inline(always)]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Writes the next entry.
    ///
    /// # Panics
    /// If all reserved slots are written.
    #[inline(always)]
    pub(crate) fn push(&mut self, v: T) {
        assert!(self.len < self.cap, "ring reservation overflow");
        let slot = self
            .ring
            .ptrs
            .entry(self.ring.cached_prod.wrapping_add(self.len));
        // SAFETY: the slot is one of the `cap` free slots we reserved: the consumer
        // released it (Acquire load in `free`) and will not read it before we publish
        // it, so nobody else accesses it now. It is in bounds and aligned (`RingPtrs`).
        unsafe { slot.write(v) };
        self.len += 1;
    }

    /// Publishes the written entries to the consumer; returns how many.
    #[inline]
    pub(crate) fn commit(self) -> u32 {
        let n = self.len;
        if n > 0 {
            let r = self.ring;
            r.cached_prod = r.cached_prod.wrapping_add(n);
            r.ptrs.producer().store(r.cached_prod, Ordering::Release);
        }
        n
    }
}

/// Our consumer side of a ring (rx, completion).
pub(crate) struct ConsRing<T> {
    ptrs: RingPtrs<T>,
    /// Our next index to read.
    cached_cons: u32,
    /// The producer's index as last read.
    cached_prod: u32,
    _map: Option<Mmap>,
}

// SAFETY: as for `ProdRing`.
unsafe impl<T: Send> Send for ConsRing<T> {}

impl<T: Copy> ConsRing<T> {
    /// A consumer over a ring mapping it takes ownership of.
    pub(crate) fn from_mmap(
        map: Mmap,
        off: &xdp_ring_offset,
        size: u32,
    ) -> Result<Self, &'static str> {
        // SAFETY: the mapping is moved into the ring and so lives exactly as long as
        // it; the kernel is the only other party.
        let ptrs = unsafe { RingPtrs::new(map.as_ptr(), map.len(), off, size)? };
        Ok(Self::with(ptrs, Some(map)))
    }

    /// A consumer over memory someone else owns.
    ///
    /// # Safety
    /// As [`RingPtrs::new`]: the memory outlives the ring, and only one consumer
    /// exists for it.
    #[cfg(test)]
    pub(crate) unsafe fn from_raw(ptrs: RingPtrs<T>) -> Self {
        Self::with(ptrs, None)
    }

    fn with(ptrs: RingPtrs<T>, map: Option<Mmap>) -> Self {
        let cached_cons = ptrs.consumer().load(Ordering::Relaxed);
        let cached_prod = ptrs.producer().load(Ordering::Acquire);
        ConsRing {
            ptrs,
            cached_cons,
            cached_prod,
            _map: map,
        }
    }

    /// Number of entries.
    pub(crate) fn size(&self) -> u32 {
        self.ptrs.size()
    }

    /// Entries ready; re-reads the producer index only if fewer than `want` are known.
    #[inline]
    pub(crate) fn available(&mut self, want: u32) -> u32 {
        let avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail >= want {
            return avail;
        }
        self.cached_prod = self.ptrs.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Entries the other side published and we have not released yet (a fresh read
    /// of its producer index; for monitoring).
    pub(crate) fn ready(&self) -> u32 {
        self.ptrs
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cached_cons)
    }

    /// Up to `n` ready entries. They stay in the ring until [`Peeked::release`].
    #[inline]
    pub(crate) fn peek(&mut self, n: u32) -> Peeked<'_, T> {
        let len = n.min(self.available(n));
        Peeked { ring: self, len }
    }

    #[cfg(test)]
    pub(crate) fn ptrs(&self) -> &RingPtrs<T> {
        &self.ptrs
    }
}

/// Entries peeked from a [`ConsRing`]; read them with [`get`](Self::get), then give
/// the slots back with [`release`](Self::release). Dropping it releases nothing.
#[must_use = "peeked entries stay in the ring until release()"]
pub(crate) struct Peeked<'r, T: Copy> {
    ring: &'r mut ConsRing<T>,
    len: u32,
}

impl<T: Copy> Peeked<'_, T> {
    /// Entries peeked.
    #[inline(always)]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Entry `i` (0-based within this batch).
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline(always)]
    pub(crate) fn get(&self, i: u32) -> T {
        assert!(i < self.len, "ring peek index out of range");
        let slot = self.ring.ptrs.entry(self.ring.cached_cons.wrapping_add(i));
        // SAFETY: the producer published this slot (Acquire load in `available`) and
        // will not overwrite it until we release it; in bounds and aligned.
        unsafe { slot.read() }
    }

    /// Gives all peeked slots back to the producer; returns how many.
    #[inline]
    pub(crate) fn release(self) -> u32 {
        let n = self.len;
        if n > 0 {
            let r = self.ring;
            r.cached_cons = r.cached_cons.wrapping_add(n);
            r.ptrs.consumer().store(r.cached_cons, Ordering::Release);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{mmap_anonymous, xdp_desc};

    const OFF: xdp_ring_offset = xdp_ring_offset {
        producer: 0,
        consumer: 64,
        flags: 128,
        desc: 192,
    };

    /// A producer and a consumer over one anonymous page, indices starting at `start`.
    fn pair<T: Copy>(size: u32, start: u32) -> (ProdRing<T>, ConsRing<T>, Mmap) {
        let m = mmap_anonymous(4096).unwrap();
        let base = m.as_ptr();
        // SAFETY: the page is ours and `m` outlives both rings in every test.
        let (p, c) = unsafe {
            let words = base.as_ptr().cast::<u32>();
            words.write(start); // producer
            words.add(16).write(start); // consumer at byte 64
            (
                RingPtrs::new(base, 4096, &OFF, size).unwrap(),
                RingPtrs::new(base, 4096, &OFF, size).unwrap(),
            )
        };
        // SAFETY: one producer and one consumer over memory `m` keeps alive.
        unsafe { (ProdRing::from_raw(p), ConsRing::from_raw(c), m) }
    }

    #[test]
    fn rejects_bad_layouts() {
        let m = mmap_anonymous(4096).unwrap();
        let b = m.as_ptr();
        // SAFETY: construction only validates; the rings are dropped at once.
        unsafe {
            assert!(
                RingPtrs::<u64>::new(b, 4096, &OFF, 6).is_err(),
                "not a power of two"
            );
            assert!(
                RingPtrs::<u64>::new(b, 4096, &OFF, 512).is_err(),
                "descs past the end"
            );
            assert!(RingPtrs::<u64>::new(b, 4096, &OFF, 8).is_ok());
            let odd = xdp_ring_offset {
                consumer: 66,
                ..OFF
            };
            assert!(
                RingPtrs::<u64>::new(b, 4096, &odd, 8).is_err(),
                "misaligned index"
            );
            let far = xdp_ring_offset { flags: 4094, ..OFF };
            assert!(
                RingPtrs::<u64>::new(b, 4096, &far, 8).is_err(),
                "index past the end"
            );
            let d = xdp_ring_offset { desc: 196, ..OFF };
            assert!(
                RingPtrs::<xdp_desc>::new(b, 4096, &d, 8).is_err(),
                "misaligned descs"
            );
        }
    }

    #[test]
    fn fifo_across_index_wraparound() {
        for start in [0, u32::MAX - 5] {
            let (mut p, mut c, _m) = pair::<u64>(8, start);
            let mut next_in = 0u64;
            let mut next_out = 0u64;
            for round in 0..20u32 {
                let want = 1 + round % 7;
                let mut r = p.reserve(want);
                for _ in 0..r.capacity() {
                    r.push(next_in);
                    next_in += 1;
                }
                r.commit();
                let got = c.peek(1 + round % 5);
                for i in 0..got.len() {
                    assert_eq!(got.get(i), next_out);
                    next_out += 1;
                }
                got.release();
            }
            let rest = c.peek(100);
            for i in 0..rest.len() {
                assert_eq!(rest.get(i), next_out);
                next_out += 1;
            }
            rest.release();
            assert_eq!(next_in, next_out);
            assert!(next_in > 40, "the test went round the ring several times");
        }
    }

    #[test]
    fn reserve_is_bounded_by_free_space() {
        let (mut p, mut c, _m) = pair::<u64>(8, 0);
        let mut r = p.reserve(5);
        assert_eq!(r.capacity(), 5);
        (0..5).for_each(|i| r.push(i));
        assert_eq!(r.commit(), 5);
        assert_eq!(p.pending(), 5);
        let r = p.reserve(5);
        assert_eq!(r.capacity(), 3, "only 3 of 8 slots are free");
        drop(r); // nothing published
        assert_eq!(c.available(0), 0, "nothing cached yet");
        assert_eq!(c.available(1), 5, "re-read the producer");
        let got = c.peek(2);
        assert_eq!((got.get(0), got.get(1)), (0, 1));
        assert_eq!(got.release(), 2);
        // The producer's cache says 3 free; asking for 5 re-reads the consumer.
        assert_eq!(p.free(5), 5);
        assert_eq!(p.pending(), 3);
    }

    #[test]
    fn uncommitted_and_unreleased_entries_stay_put() {
        let (mut p, mut c, _m) = pair::<u64>(4, 0);
        let mut r = p.reserve(2);
        r.push(7);
        assert_eq!(r.len(), 1);
        drop(r);
        assert_eq!(c.peek(4).len(), 0, "dropped reservation is invisible");
        let mut r = p.reserve(2);
        r.push(9);
        r.commit();
        let got = c.peek(4);
        assert_eq!((got.len(), got.get(0)), (1, 9));
        drop(got);
        let again = c.peek(4);
        assert_eq!(again.get(0), 9, "not released: still there");
        again.release();
        assert_eq!(c.peek(4).len(), 0);
    }

    #[test]
    #[should_panic(expected = "reservation overflow")]
    fn push_beyond_reservation_panics() {
        let (mut p, _c, _m) = pair::<u64>(4, 0);
        let mut r = p.reserve(1);
        r.push(1);
        r.push(2);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn get_beyond_peek_panics() {
        let (_p, mut c, _m) = pair::<u64>(4, 0);
        let got = c.peek(4);
        let _ = got.get(0);
    }

    #[test]
    fn descriptors_round_trip_and_flags_are_read() {
        let (mut p, mut c, _m) = pair::<xdp_desc>(4, 0);
        let mut r = p.reserve(1);
        r.push(xdp_desc {
            addr: 0x1234,
            len: 60,
            options: 0,
        });
        r.commit();
        let got = c.peek(1);
        let d = got.get(0);
        assert_eq!((d.addr, d.len, d.options), (0x1234, 60, 0));
        got.release();
        assert!(!p.needs_wakeup());
        c.ptrs()
            .flags()
            .store(XDP_RING_NEED_WAKEUP, Ordering::Relaxed);
        assert!(p.needs_wakeup());
        assert_eq!(p.size(), 4);
        assert_eq!(c.size(), 4);
    }
}
