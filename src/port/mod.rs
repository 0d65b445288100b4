//! Ports: identities, the burst I/O trait, frames and their pools, and the published
//! port table the datapath decides against.
//!
//! # Buffer ownership
//! A frame lives in a slot of a [`FramePool`] and is held through a move-only
//! [`Frame`]. [`Port::receive`] hands frames to the switch; [`Port::transmit`] takes
//! them back. A frame is in exactly one place at a time: a port's queue, the switch's
//! burst scratch, a per-egress stage, or the pool's free list.

mod frame;
mod kinds;

pub use frame::{Frame, FrameIdx, FramePool, MemPool, HEADROOM};
pub use kinds::{DropReason, Mode, UnknownMode};

use std::collections::VecDeque;

/// Identity of a port within one switch. Index into per-port arrays.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl core::fmt::Display for PortId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// Largest number of ports one switch instance holds (uplink and host included).
pub const MAX_PORTS: usize = 1024;
const WORDS: usize = MAX_PORTS / 64;

/// A fixed-capacity set of ports: the delivery set of a flooded frame.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PortSet([u64; WORDS]);

impl PortSet {
    /// The empty set.
    pub const fn new() -> Self {
        PortSet([0; WORDS])
    }

    /// Adds `p`.
    #[inline(always)]
    pub fn insert(&mut self, p: PortId) {
        let i = p.0 as usize;
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// Removes `p`.
    #[inline(always)]
    pub fn remove(&mut self, p: PortId) {
        let i = p.0 as usize;
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// Whether `p` is in the set.
    #[inline(always)]
    pub fn contains(&self, p: PortId) -> bool {
        let i = p.0 as usize;
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// No members.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// Adds every member of `o`.
    #[inline]
    pub fn union_with(&mut self, o: &PortSet) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a |= *b;
        }
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = PortId> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            core::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(PortId((wi * 64 + b) as u16))
            })
        })
    }
}

impl core::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter().map(|p| p.0)).finish()
    }
}

impl FromIterator<PortId> for PortSet {
    fn from_iter<I: IntoIterator<Item = PortId>>(it: I) -> Self {
        let mut s = PortSet::new();
        it.into_iter().for_each(|p| s.insert(p));
        s
    }
}

/// Burst-shaped frame I/O over the frames of pool `B`. Implemented by in-memory
/// ports, AF_XDP sockets and in-process endpoints.
///
/// No method may block, allocate or log; each is called at most once per burst. The
/// pool is passed in so a port can refill its receive ring from it and give back
/// what the kernel has finished sending.
pub trait Port<B: FramePool> {
    /// Appends up to `max` received frames to `out` (a [`Bundle`]: up to `max` from
    /// each member).
    fn receive(&mut self, pool: &mut B, out: &mut Vec<Frame>, max: usize);

    /// Takes as many frames as the port can queue from the front of `frames`, in
    /// order, and leaves the rest there (the caller frees them and counts the drops).
    fn transmit(&mut self, pool: &mut B, frames: &mut Vec<Frame>);

    /// Housekeeping once per loop: reclaim completed frames, refill receive rings,
    /// wake the kernel if it asked. The default does nothing.
    fn maintain(&mut self, pool: &mut B) {
        let _ = pool;
    }
}

/// An in-memory port: two bounded queues. Tests inject frames into its receive queue
/// and collect what the switch transmitted.
pub struct MemPort {
    rx: VecDeque<Frame>,
    tx: VecDeque<Frame>,
    tx_cap: usize,
}

impl MemPort {
    /// A port whose transmit queue holds at most `tx_cap` frames (a ring size).
    pub fn new(tx_cap: usize) -> Self {
        MemPort {
            rx: VecDeque::new(),
            tx: VecDeque::with_capacity(tx_cap),
            tx_cap,
        }
    }

    /// Queues `f` as if it arrived on the wire.
    pub fn inject(&mut self, f: Frame) {
        self.rx.push_back(f);
    }

    /// Frames waiting to be received.
    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }

    /// Frames transmitted and not yet taken.
    pub fn tx_len(&self) -> usize {
        self.tx.len()
    }

    /// Takes the next transmitted frame.
    pub fn pop_tx(&mut self) -> Option<Frame> {
        self.tx.pop_front()
    }

    /// Takes every frame still queued in either direction (for teardown).
    pub fn drain_all(&mut self) -> impl Iterator<Item = Frame> + '_ {
        self.rx.drain(..).chain(self.tx.drain(..))
    }
}

impl<B: FramePool> Port<B> for MemPort {
    #[inline]
    fn receive(&mut self, _pool: &mut B, out: &mut Vec<Frame>, max: usize) {
        let n = max.min(self.rx.len());
        out.extend(self.rx.drain(..n));
    }

    #[inline]
    fn transmit(&mut self, _pool: &mut B, frames: &mut Vec<Frame>) {
        let n = (self.tx_cap - self.tx.len()).min(frames.len());
        self.tx.extend(frames.drain(..n));
    }
}

/// Several ports acting as one: frames are received from every member, transmitted
/// through one. The uplink is such a bundle: one AF_XDP socket per parent queue plus
/// the socket that receives the host's broadcast copies, all "from the wire".
pub struct Bundle<P> {
    members: Vec<P>,
    tx: usize,
}

impl<P> Bundle<P> {
    /// A bundle transmitting through `members[tx]`.
    ///
    /// # Panics
    /// If `tx` is not an index of `members`.
    pub fn new(members: Vec<P>, tx: usize) -> Self {
        assert!(tx < members.len(), "transmit member {tx} out of range");
        Bundle { members, tx }
    }

    /// The members.
    pub fn members(&self) -> &[P] {
        &self.members
    }

    /// The members, mutably.
    pub fn members_mut(&mut self) -> &mut [P] {
        &mut self.members
    }

    /// Adds a member (receive only: the transmit member stays).
    pub fn push(&mut self, member: P) {
        self.members.push(member);
    }
}

impl<B: FramePool, P: Port<B>> Port<B> for Bundle<P> {
    /// Up to `max` frames from *each* member: every queue of the parent is served a
    /// whole burst per pass, as if it were a port of its own, rather than the
    /// members sharing one burst (where a busy queue took the others' turn).
    fn receive(&mut self, pool: &mut B, out: &mut Vec<Frame>, max: usize) {
        for m in &mut self.members {
            m.receive(pool, out, max);
        }
    }

    fn transmit(&mut self, pool: &mut B, frames: &mut Vec<Frame>) {
        self.members[self.tx].transmit(pool, frames);
    }

    fn maintain(&mut self, pool: &mut B) {
        for m in &mut self.members {
            m.maintain(pool);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_receives_a_burst_from_each_member_and_sends_through_one() {
        let mut pool = MemPool::new(8, 256);
        let mut b = Bundle::new(vec![MemPort::new(8), MemPort::new(8)], 1);
        // Three frames on the first member, one on the second.
        for (m, n) in b.members_mut().iter_mut().zip([3, 1]) {
            for _ in 0..n {
                let f = pool.alloc().unwrap();
                m.inject(f);
            }
        }
        let mut got = Vec::new();
        b.receive(&mut pool, &mut got, 2);
        assert_eq!(got.len(), 3, "up to max from each member: 2 + 1");
        assert_eq!(
            b.members()[0].rx_pending(),
            1,
            "the busy member kept its third"
        );
        b.receive(&mut pool, &mut got, 2);
        assert_eq!(got.len(), 4);
        b.transmit(&mut pool, &mut got);
        assert!(got.is_empty());
        assert!(b.members_mut()[0].pop_tx().is_none());
        let mut left: Vec<Frame> = Vec::new();
        while let Some(f) = b.members_mut()[1].pop_tx() {
            left.push(f);
        }
        assert_eq!(left.len(), 4);
        left.into_iter().for_each(|f| pool.free(f));
    }

    #[test]
    fn port_set_ops() {
        let mut s = PortSet::new();
        for p in [0u16, 3, 63, 64, 1023] {
            s.insert(PortId(p));
        }
        assert_eq!(s.len(), 5);
        assert!(s.contains(PortId(64)) && !s.contains(PortId(65)));
        s.remove(PortId(3));
        assert_eq!(
            s.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![0, 63, 64, 1023]
        );
        let t: PortSet = [PortId(5)].into_iter().collect();
        s.union_with(&t);
        assert!(s.contains(PortId(5)));
        assert!(PortSet::new().is_empty());
    }

    #[test]
    fn mem_port_bounded_tx() {
        let mut pool = MemPool::new(8, 256);
        let mut p = MemPort::new(2);
        let mut v: Vec<Frame> = (0..3).map(|_| pool.alloc().unwrap()).collect();
        p.transmit(&mut pool, &mut v);
        assert_eq!(v.len(), 1, "one frame did not fit");
        pool.free(v.pop().unwrap());
        let f = pool.alloc().unwrap();
        p.inject(f);
        let mut got = Vec::new();
        p.receive(&mut pool, &mut got, 8);
        assert_eq!(got.len(), 1);
        got.into_iter()
            .chain(p.drain_all().collect::<Vec<_>>())
            .for_each(|f| pool.free(f));
        assert_eq!(pool.in_use(), 0);
    }
}
