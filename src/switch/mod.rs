//! The burst datapath: receive, classify, decide, stage per egress, transmit once.
//!
//! A [`Switch`] owns its ports, its frame pool and its scratch; one thread drives it
//! with [`Switch::poll`], so nothing in here takes a lock. Per burst it takes exactly
//! one snapshot of the [`PortTable`]; per frame it reads the Ethernet header in place,
//! calls [`decide`] and moves the frame handle to the stage of its egress port. Only a
//! flood copies bytes (one copy per extra recipient, from the pool). Each egress port
//! is then given its whole stage with one [`Port::transmit`] call.
//!
//! Per frame there is no allocation, lock, syscall, log line or `Result`.

mod stats;

pub use stats::{FastStats, PortStats};

use crate::mode::{decide, DropReason, Facts, Verdict};
use crate::port::{Frame, FramePool, Port, PortId, MAX_PORTS};
use crate::table::Reader;
use crate::view::{PortTable, Role};
use crate::wire::shim::{Shim, SHIM_LEN};
use crate::wire::EthernetFrame;

/// The default burst size.
pub const DEFAULT_BURST: usize = 32;

/// What the datapath needs to know about the port a burst came from.
#[derive(Clone, Copy)]
struct Ingress {
    id: PortId,
    /// The burst came from the uplink: tags are popped towards endpoints.
    from_wire: bool,
    /// The burst came from an endpoint of this VLAN: tag pushed towards the uplink.
    push_tag: u16,
}

/// A switch instance: one parent's ports, driven by one thread.
pub struct Switch<P: Port<B>, B: FramePool, const BURST: usize = DEFAULT_BURST> {
    table: Reader<PortTable>,
    pool: B,
    ports: Vec<Option<P>>,
    stats: Vec<PortStats>,
    rx: Vec<Frame>,
    stage: Vec<Vec<Frame>>,
    touched: Vec<PortId>,
    kernel_host: Option<PortId>,
    /// Frames of many ports, each behind a [`Shim`] naming its sender.
    collector: Option<P>,
    collector_stats: PortStats,
    /// Copies of captured ports' frames (`None`: nothing is captured).
    tap: Option<Box<dyn Tap>>,
    /// Which recipient of the next flood gets the frame itself (the others copies).
    rotor: usize,
}

/// Which way a frame crossed a port, for a [`Tap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The port sent it: the switch received it.
    In,
    /// The switch sent it to the port.
    Out,
}

/// Sees the frames of the ports it wants (a capture). Asked about every frame while
/// it is set, so [`Tap::wants`] must be cheap; [`Tap::frame`] copies what it keeps
/// and must not block. With no tap set, a frame costs one branch more.
pub trait Tap: Send {
    /// Whether the frames of `port` going `dir` are wanted.
    fn wants(&self, port: PortId, dir: Direction) -> bool;
    /// A wanted frame: its bytes as the port sent or gets them.
    fn frame(&mut self, port: PortId, dir: Direction, data: &[u8]);
}

/// Why a port could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The id is beyond [`MAX_PORTS`].
    #[error("port id {0} is beyond the limit of {MAX_PORTS} ports")]
    TooMany(u16),
    /// Something is attached there already.
    #[error("{0} already has an attached port")]
    Busy(PortId),
}

impl<P: Port<B>, B: FramePool, const BURST: usize> Switch<P, B, BURST> {
    /// A switch reading its port table from `table` and taking frames from `pool`.
    pub fn new(table: Reader<PortTable>, pool: B) -> Self {
        Switch {
            table,
            pool,
            ports: Vec::new(),
            stats: Vec::new(),
            rx: Vec::with_capacity(BURST),
            stage: Vec::new(),
            touched: Vec::with_capacity(MAX_PORTS),
            kernel_host: None,
            collector: None,
            collector_stats: PortStats::default(),
            tap: None,
            rotor: 0,
        }
    }

    /// Sets the tap that sees captured ports' frames (`None`: none); returns the one
    /// it replaces.
    pub fn set_tap(&mut self, tap: Option<Box<dyn Tap>>) -> Option<Box<dyn Tap>> {
        core::mem::replace(&mut self.tap, tap)
    }

    /// Attaches the I/O side of port `id`. Its role and addresses come from the port
    /// table; a port attached here but absent from the table drops what it receives.
    ///
    /// # Errors
    /// If the id is out of range or already attached.
    pub fn attach(&mut self, id: PortId, port: P) -> Result<(), AttachError> {
        let i = id.0 as usize;
        if i >= MAX_PORTS {
            return Err(AttachError::TooMany(id.0));
        }
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
            self.stats.resize_with(i + 1, PortStats::default);
            self.stage.resize_with(i + 1, || Vec::with_capacity(BURST));
        }
        if self.ports[i].is_some() {
            return Err(AttachError::Busy(id));
        }
        self.ports[i] = Some(port);
        self.stats[i] = PortStats::default();
        Ok(())
    }

    /// Declares `id` a port the kernel serves itself: on real interfaces the host stack
    /// already got, through `XDP_PASS`, every frame the decision sends to it. Frames
    /// for it are counted as transmitted and never copied or queued.
    pub fn set_kernel_host(&mut self, id: Option<PortId>) {
        if let Some(h) = id {
            let i = h.0 as usize;
            if self.ports.len() <= i {
                self.ports.resize_with(i + 1, || None);
                self.stats.resize_with(i + 1, PortStats::default);
                self.stage.resize_with(i + 1, || Vec::with_capacity(BURST));
            }
        }
        self.kernel_host = id;
    }

    /// Detaches port `id` and returns it (with whatever is still queued in it).
    pub fn detach(&mut self, id: PortId) -> Option<P> {
        self.ports.get_mut(id.0 as usize)?.take()
    }

    /// The attached port `id`.
    pub fn port_mut(&mut self, id: PortId) -> Option<&mut P> {
        self.ports.get_mut(id.0 as usize)?.as_mut()
    }

    /// The frame pool.
    pub fn pool(&self) -> &B {
        &self.pool
    }

    /// The frame pool, for injecting or reclaiming frames.
    pub fn pool_mut(&mut self) -> &mut B {
        &mut self.pool
    }

    /// Port `id`'s counters.
    pub fn stats(&self, id: PortId) -> Option<&PortStats> {
        self.stats.get(id.0 as usize)
    }

    /// Counters of every attached port.
    pub fn all_stats(&self) -> impl Iterator<Item = (PortId, &PortStats)> {
        self.ports
            .iter()
            .zip(&self.stats)
            .enumerate()
            .filter(|(i, (p, _))| p.is_some() || self.kernel_host == Some(PortId(*i as u16)))
            .map(|(i, (_, s))| (PortId(i as u16), s))
    }

    /// Sets the collector: a port whose frames come from many ports, each behind a
    /// [`Shim`] naming its sender (the kernel fast path hands the switch what it
    /// does not forward itself this way). Every frame is switched as if its sender
    /// had received it, and counted there; one whose shim is missing or names no
    /// attached port is dropped, counted in [`Switch::collector_stats`]. Returns the
    /// collector it replaces.
    pub fn set_collector(&mut self, port: Option<P>) -> Option<P> {
        core::mem::replace(&mut self.collector, port)
    }

    /// The collector, if one is set.
    pub fn collector_mut(&mut self) -> Option<&mut P> {
        self.collector.as_mut()
    }

    /// Drops of frames the collector received that belong to no port.
    pub fn collector_stats(&self) -> &PortStats {
        &self.collector_stats
    }

    /// One pass over every attached port (and the collector): up to `BURST` frames
    /// from each (from each member of a [`crate::port::Bundle`]), then each egress
    /// gets what the whole pass staged for it in one [`Port::transmit`]. Returns how
    /// many frames were received.
    pub fn poll(&mut self) -> usize {
        let mut n = 0;
        for p in self.ports.iter_mut().flatten() {
            p.maintain(&mut self.pool);
        }
        if let Some(c) = &mut self.collector {
            c.maintain(&mut self.pool);
        }
        for i in 0..self.ports.len() {
            n += self.receive_port(PortId(i as u16));
        }
        n += self.receive_collector();
        self.flush();
        n
    }

    /// Receives, forwards and transmits one burst from the collector. Returns how
    /// many frames were received.
    pub fn poll_collector(&mut self) -> usize {
        let n = self.receive_collector();
        self.flush();
        n
    }

    /// Receives, forwards and transmits one burst from port `id`. Returns how many
    /// frames were received.
    pub fn poll_port(&mut self, id: PortId) -> usize {
        let n = self.receive_port(id);
        self.flush();
        n
    }

    /// Receives one burst from the collector and stages it.
    fn receive_collector(&mut self) -> usize {
        let Some(c) = &mut self.collector else {
            return 0;
        };
        debug_assert!(self.rx.is_empty());
        c.receive(&mut self.pool, &mut self.rx, BURST);
        let n = self.rx.len();
        if n > 0 {
            self.forward_rx(None);
        }
        n
    }

    /// Receives one burst from port `id` and stages it.
    fn receive_port(&mut self, id: PortId) -> usize {
        let Some(Some(port)) = self.ports.get_mut(id.0 as usize) else {
            return 0;
        };
        debug_assert!(self.rx.is_empty());
        port.receive(&mut self.pool, &mut self.rx, BURST);
        let n = self.rx.len();
        if n > 0 {
            self.forward_rx(Some(id));
        }
        n
    }

    /// What the datapath needs to know about sender `id`.
    #[inline]
    fn ingress(t: &PortTable, id: PortId) -> Ingress {
        Ingress {
            id,
            from_wire: t.port(id).is_some_and(|i| i.role == Role::Uplink),
            push_tag: t.endpoint(id).map_or(0, |e| e.vlan),
        }
    }

    /// A collector frame without its shim, and its sender; `None` (counted) if it
    /// belongs to no attached port.
    #[inline]
    fn unshim(&mut self, mut f: Frame) -> Option<(PortId, Frame)> {
        let Some(sh) = Shim::parse(self.pool.data(&f)) else {
            self.collector_stats.drop(DropReason::Runt);
            self.pool.free(f);
            return None;
        };
        let id = PortId(sh.port);
        if !matches!(self.ports.get(sh.port as usize), Some(Some(_))) {
            self.collector_stats.drop(DropReason::UnknownPort);
            self.pool.free(f);
            return None;
        }
        let ok = self.pool.strip_front(&mut f, SHIM_LEN)
            && sh
                .tag
                .is_none_or(|(tpid, tci)| self.pool.push_tag(&mut f, tpid, tci));
        if !ok {
            self.stats[id.0 as usize].drop(DropReason::NoBuffer);
            self.pool.free(f);
            return None;
        }
        Some((id, f))
    }

    /// Switches the frames in `self.rx`, all from `from`, or each from the port its
    /// shim names (`None`: the collector's), onto their egresses' stages.
    fn forward_rx(&mut self, from: Option<PortId>) {
        let n = self.rx.len();
        let snap = self.table.snapshot();
        let t: &PortTable = &snap;
        let fixed = from.map(|id| Self::ingress(t, id));
        let mut rx = core::mem::take(&mut self.rx);
        let mut rx_bytes = 0u64;
        // Collector bursts come in runs from one sender: look it up once per run.
        let mut last: Option<Ingress> = None;
        for frame in rx.drain(..) {
            let (ing, frame) = match fixed {
                Some(ing) => {
                    rx_bytes += frame.len() as u64;
                    (ing, frame)
                }
                None => {
                    let Some((id, f)) = self.unshim(frame) else {
                        continue;
                    };
                    let s = &mut self.stats[id.0 as usize];
                    s.rx_packets += 1;
                    s.rx_bytes += f.len() as u64;
                    let ing = match last {
                        Some(l) if l.id == id => l,
                        _ => Self::ingress(t, id),
                    };
                    last = Some(ing);
                    (ing, f)
                }
            };
            let id = ing.id;
            if let Some(tap) = &mut self.tap {
                if tap.wants(id, Direction::In) {
                    tap.frame(id, Direction::In, self.pool.data(&frame));
                }
            }
            let (facts, payload) = match EthernetFrame::new_checked(self.pool.data(&frame)) {
                Ok(h) => (
                    Facts {
                        dst: h.dst(),
                        src: h.src(),
                        vlan: h.vlan().unwrap_or(0),
                        ethertype: h.ethertype(),
                    },
                    frame.len() - h.payload_offset(),
                ),
                Err(e) => {
                    self.drop_frame(id, frame, DropReason::from(e));
                    continue;
                }
            };
            match decide(id, &facts, t) {
                Verdict::Forward(q) if Some(q) == self.kernel_host => {
                    self.count_kernel_delivery(q, frame.len());
                    self.pool.free(frame);
                }
                Verdict::Forward(q) => self.stage_frame(t, ing, q, frame, payload),
                Verdict::Multi(mut set) => {
                    if let Some(h) = self.kernel_host.filter(|&h| set.contains(h)) {
                        set.remove(h);
                        self.count_kernel_delivery(h, frame.len());
                        if set.is_empty() {
                            self.pool.free(frame);
                            continue;
                        }
                    }
                    // One recipient gets the frame itself, the others copies. Which one
                    // turns with every flood: when the pool runs dry the copies fail,
                    // and no port should be the one that always gets its frame.
                    let keep = self.rotor % set.len();
                    self.rotor = self.rotor.wrapping_add(1);
                    let mut original_to = None;
                    for (i, q) in set.iter().enumerate() {
                        if i == keep {
                            original_to = Some(q);
                            continue;
                        }
                        match self.pool.duplicate(&frame) {
                            Some(c) => self.stage_frame(t, ing, q, c, payload),
                            None => self.stats[id.0 as usize].drop(DropReason::NoBuffer),
                        }
                    }
                    match original_to {
                        Some(q) => self.stage_frame(t, ing, q, frame, payload),
                        None => self.pool.free(frame),
                    }
                }
                Verdict::Drop(r) => self.drop_frame(id, frame, r),
            }
        }
        self.rx = rx;
        if let Some(ing) = fixed {
            let s = &mut self.stats[ing.id.0 as usize];
            s.rx_packets += n as u64;
            s.rx_bytes += rx_bytes;
        }
    }

    /// Counts a frame the kernel delivered itself (see [`Switch::set_kernel_host`]).
    #[inline]
    fn count_kernel_delivery(&mut self, q: PortId, len: usize) {
        let s = &mut self.stats[q.0 as usize];
        s.tx_packets += 1;
        s.tx_bytes += len as u64;
    }

    fn drop_frame(&mut self, at: PortId, f: Frame, r: DropReason) {
        self.stats[at.0 as usize].drop(r);
        self.pool.free(f);
    }

    /// Moves `f` to egress `q`'s stage, after the VLAN tag fix-up and the MTU check
    /// (`payload` is the frame's length after its Ethernet header and tags).
    #[inline]
    fn stage_frame(
        &mut self,
        t: &PortTable,
        ing: Ingress,
        q: PortId,
        mut f: Frame,
        payload: usize,
    ) {
        let qi = q.0 as usize;
        let Some(info) = t.port(q) else {
            return self.drop_frame(ing.id, f, DropReason::UnknownPort);
        };
        if qi >= self.ports.len() || self.ports[qi].is_none() {
            return self.drop_frame(ing.id, f, DropReason::UnknownPort);
        }
        if payload > info.mtu as usize {
            return self.drop_frame(q, f, DropReason::MtuExceeded);
        }
        let to_endpoint = matches!(info.role, Role::Endpoint(_));
        if to_endpoint && ing.from_wire {
            // Endpoints speak untagged: pop the network's tag of a frame from the wire.
            self.pool.pop_vlan(&mut f);
        } else if info.role == Role::Uplink
            && ing.push_tag != 0
            && !self.pool.push_vlan(&mut f, ing.push_tag)
        {
            // Frames from an endpoint of a VLAN network get its tag on the wire.
            return self.drop_frame(q, f, DropReason::NoBuffer);
        }
        if let Some(tap) = &mut self.tap {
            if tap.wants(q, Direction::Out) {
                tap.frame(q, Direction::Out, self.pool.data(&f));
            }
        }
        let st = &mut self.stage[qi];
        if st.is_empty() {
            self.touched.push(q);
        }
        st.push(f);
    }

    /// Hands each egress port its stage in one call; frees and counts what did not fit.
    fn flush(&mut self) {
        for q in self.touched.drain(..) {
            let qi = q.0 as usize;
            let stage = &mut self.stage[qi];
            let staged = stage.len();
            let bytes: u64 = stage.iter().map(|f| f.len() as u64).sum();
            let port = self.ports[qi]
                .as_mut()
                .expect("staged only for attached ports");
            port.transmit(&mut self.pool, stage);
            let s = &mut self.stats[qi];
            let left = stage.len();
            let left_bytes: u64 = stage.iter().map(|f| f.len() as u64).sum();
            s.tx_packets += (staged - left) as u64;
            s.tx_bytes += bytes - left_bytes;
            if left > 0 {
                s.drops[DropReason::TxFull.index()] += left as u64;
                for f in stage.drain(..) {
                    self.pool.free(f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::{MemPool, MemPort, Mode};
    use crate::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};

    /// A switch on memory ports with two bridge endpoints, `a` (MAC …:01) and `b`
    /// (…:02), and every port attached; the topology is returned to live as long.
    fn two_endpoints() -> (
        Topology,
        Switch<MemPort, MemPool>,
        PortId,
        PortId,
        crate::wire::MacAddr,
        crate::wire::MacAddr,
    ) {
        let parent = ParentConfig {
            name: "eth1".into(),
            mac: "02:00:00:00:00:fe".parse().unwrap(),
            mtu: 1500,
        };
        let mut topo = Topology::new(parent, true).unwrap();
        let ma: crate::wire::MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let mb: crate::wire::MacAddr = "02:00:00:00:00:02".parse().unwrap();
        let a = topo
            .add_endpoint(EndpointConfig::new("a", Mode::Bridge).with_mac(ma))
            .unwrap();
        let b = topo
            .add_endpoint(EndpointConfig::new("b", Mode::Bridge).with_mac(mb))
            .unwrap();
        let mut sw: Switch<MemPort, MemPool> = Switch::new(topo.reader(), MemPool::new(16, 256));
        for id in [UPLINK, HOST, a, b] {
            sw.attach(id, MemPort::new(8)).unwrap();
        }
        (topo, sw, a, b, ma, mb)
    }

    #[test]
    fn a_header_that_does_not_parse_is_counted_by_what_is_wrong() {
        let parent = ParentConfig {
            name: "eth1".into(),
            mac: "02:00:00:00:00:fe".parse().unwrap(),
            mtu: 1500,
        };
        let mut topo = Topology::new(parent, true).unwrap();
        topo.add_endpoint(EndpointConfig::new("a", Mode::Bridge))
            .unwrap();
        let mut sw: Switch<MemPort, MemPool> = Switch::new(topo.reader(), MemPool::new(16, 256));
        for id in [UPLINK, HOST, PortId(2)] {
            sw.attach(id, MemPort::new(8)).unwrap();
        }
        let mut tagged = vec![0xffu8; 12];
        tagged.extend([0x81, 0x00]); // a tag announced, none there
        let mut triple = vec![0xffu8; 12];
        for _ in 0..3 {
            triple.extend([0x81, 0x00, 0x00, 0x64]);
        }
        triple.extend([0x08, 0x00]);
        triple.resize(60, 0);
        for bytes in [&[0u8; 10][..], &tagged, &triple] {
            let f = sw.pool_mut().alloc_with(bytes).unwrap();
            sw.port_mut(UPLINK).unwrap().inject(f);
        }
        assert_eq!(sw.poll(), 3);
        let st = sw.stats(UPLINK).unwrap();
        for r in [
            DropReason::Runt,
            DropReason::TruncatedTag,
            DropReason::TooManyTags,
        ] {
            assert_eq!(st.dropped(r), 1, "{}", r.as_str());
        }
        assert_eq!(st.total_drops(), 3);
        assert_eq!(sw.pool().in_use(), 0);
    }

    #[test]
    fn collector_frames_are_switched_as_their_senders_and_strays_are_counted() {
        use crate::wire::shim::Shim;
        use crate::wire::{emit_header, EtherType};
        let (_topo, mut sw, a, b, ma, mb) = two_endpoints();
        assert!(sw.set_collector(Some(MemPort::new(8))).is_none());
        let mut frame = [0u8; 60];
        emit_header(&mut frame, mb, ma, None, EtherType::IPV4);
        let shimmed = |sh: Shim| [&sh.to_bytes()[..], &frame[..]].concat();
        let sends = [
            shimmed(Shim {
                port: a.0,
                tag: None,
            }),
            shimmed(Shim {
                port: a.0,
                tag: Some((0x8100, 5)),
            }),
            shimmed(Shim {
                port: 900,
                tag: None,
            }),
            frame.to_vec(),
        ];
        for bytes in &sends {
            let f = sw.pool_mut().alloc_with(bytes).unwrap();
            sw.collector_mut().unwrap().inject(f);
        }
        assert_eq!(sw.poll(), 4);
        let got = sw.port_mut(b).unwrap().pop_tx().expect("a -> b");
        assert_eq!(sw.pool().data(&got), &frame[..]);
        sw.pool_mut().free(got);
        let st = sw.stats(a).unwrap();
        assert_eq!((st.rx_packets, st.rx_bytes), (2, 60 + 64));
        // The tag the kernel held out is back in the frame (the kernel's macvlan
        // switches a tagged frame from an endpoint by its MAC alone, T2).
        let tagged = sw.port_mut(b).unwrap().pop_tx().expect("tagged a -> b");
        assert_eq!(&sw.pool().data(&tagged)[12..16], &[0x81, 0x00, 0x00, 0x05]);
        sw.pool_mut().free(tagged);
        let c = sw.collector_stats();
        assert_eq!(c.dropped(DropReason::UnknownPort), 1);
        assert_eq!(c.dropped(DropReason::Runt), 1);
        assert_eq!(sw.pool().in_use(), 0);
    }

    /// A tap sees the frames of the port it wants, both ways, as the port sent or
    /// gets them; nothing of the others.
    #[test]
    fn a_tap_sees_its_ports_frames_both_ways_and_no_others() {
        use crate::wire::{emit_header, EtherType, MacAddr};
        use std::sync::{Arc, Mutex};
        type Seen = Arc<Mutex<Vec<(PortId, Direction, Vec<u8>)>>>;
        struct Rec(PortId, Seen);
        impl Tap for Rec {
            fn wants(&self, port: PortId, _: Direction) -> bool {
                port == self.0
            }
            fn frame(&mut self, port: PortId, dir: Direction, data: &[u8]) {
                self.1.lock().unwrap().push((port, dir, data.to_vec()));
            }
        }
        let (_topo, mut sw, a, b, ma, mb) = two_endpoints();
        let seen = Arc::new(Mutex::new(Vec::new()));
        assert!(sw.set_tap(Some(Box::new(Rec(a, seen.clone())))).is_none());
        let frame = |dst, src| {
            let mut f = [0u8; 60];
            emit_header(&mut f, dst, src, None, EtherType::IPV4);
            f.to_vec()
        };
        let ext: MacAddr = "02:00:00:00:00:e0".parse().unwrap();
        let (a_to_b, b_to_a, wire_to_b) = (frame(mb, ma), frame(ma, mb), frame(mb, ext));
        for (port, bytes) in [(a, &a_to_b), (b, &b_to_a), (UPLINK, &wire_to_b)] {
            let f = sw.pool_mut().alloc_with(bytes).unwrap();
            sw.port_mut(port).unwrap().inject(f);
        }
        assert_eq!(sw.poll(), 3);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(a, Direction::In, a_to_b), (a, Direction::Out, b_to_a)]
        );
        assert!(sw.set_tap(None).is_some());
        for p in [a, b] {
            while let Some(f) = sw.port_mut(p).unwrap().pop_tx() {
                sw.pool_mut().free(f);
            }
        }
        assert_eq!(sw.pool().in_use(), 0);
    }

    /// When copies cannot be made (the pool is dry), the recipient that gets the
    /// frame itself turns with every flood: each gets its share.
    #[test]
    fn a_flood_the_pool_cannot_copy_reaches_each_port_in_turn() {
        use crate::wire::{emit_header, EtherType, MacAddr};
        let (_topo, _, a, b, _, _) = two_endpoints();
        // The same ports, on a pool of one frame: every copy fails.
        let mut sw: Switch<MemPort, MemPool> = Switch::new(_topo.reader(), MemPool::new(1, 256));
        for id in [UPLINK, HOST, a, b] {
            sw.attach(id, MemPort::new(8)).unwrap();
        }
        let ext: MacAddr = "02:00:00:00:00:e0".parse().unwrap();
        let mut frame = [0u8; 60];
        emit_header(&mut frame, MacAddr::BROADCAST, ext, None, EtherType::IPV4);
        let mut got = std::collections::BTreeMap::new();
        for _ in 0..6 {
            let f = sw.pool_mut().alloc_with(&frame).unwrap();
            sw.port_mut(UPLINK).unwrap().inject(f);
            assert_eq!(sw.poll(), 1);
            for p in [HOST, a, b] {
                while let Some(f) = sw.port_mut(p).unwrap().pop_tx() {
                    *got.entry(p).or_insert(0) += 1;
                    sw.pool_mut().free(f);
                }
            }
        }
        // W6: the host and both endpoints; one of the three each time.
        assert_eq!(got, [(HOST, 2), (a, 2), (b, 2)].into_iter().collect());
        assert_eq!(sw.stats(UPLINK).unwrap().dropped(DropReason::NoBuffer), 12);
        assert_eq!(sw.pool().in_use(), 0);
    }

    /// A pass hands each egress what every ingress staged for it in one transmit
    /// (one `sendto` per egress per pass on an AF_XDP port); a single-burst poll
    /// transmits its own.
    #[test]
    fn each_egress_transmits_once_per_pass() {
        use crate::wire::{emit_header, EtherType, MacAddr};
        struct Counted(MemPort, usize);
        impl Port<MemPool> for Counted {
            fn receive(&mut self, pool: &mut MemPool, out: &mut Vec<Frame>, max: usize) {
                self.0.receive(pool, out, max)
            }
            fn transmit(&mut self, pool: &mut MemPool, frames: &mut Vec<Frame>) {
                self.1 += 1;
                self.0.transmit(pool, frames)
            }
        }
        let (topo, _, a, b, ma, mb) = two_endpoints();
        let mut sw: Switch<Counted, MemPool> = Switch::new(topo.reader(), MemPool::new(16, 256));
        for id in [UPLINK, HOST, a, b] {
            sw.attach(id, Counted(MemPort::new(8), 0)).unwrap();
        }
        let ext: MacAddr = "02:00:00:00:00:e0".parse().unwrap();
        let send = |sw: &mut Switch<Counted, MemPool>, from, src| {
            let mut f = [0u8; 60];
            emit_header(&mut f, ext, src, None, EtherType::IPV4); // T3: to the wire
            let f = sw.pool_mut().alloc_with(&f).unwrap();
            sw.port_mut(from).unwrap().0.inject(f);
        };
        send(&mut sw, a, ma);
        send(&mut sw, b, mb);
        assert_eq!(sw.poll(), 2);
        let up = sw.port_mut(UPLINK).unwrap();
        assert_eq!((up.1, up.0.tx_len()), (1, 2), "one transmit of both frames");
        send(&mut sw, a, ma);
        send(&mut sw, b, mb);
        assert_eq!(sw.poll_port(a) + sw.poll_port(b), 2);
        let up = sw.port_mut(UPLINK).unwrap();
        assert_eq!(
            (up.1, up.0.tx_len()),
            (3, 4),
            "a transmit per single-burst poll"
        );
        while let Some(f) = sw.port_mut(UPLINK).unwrap().0.pop_tx() {
            sw.pool_mut().free(f);
        }
        assert_eq!(sw.stats(UPLINK).unwrap().tx_packets, 4);
        assert_eq!(sw.pool().in_use(), 0);
    }
}
