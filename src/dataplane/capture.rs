//! Captures: copies of a port's frames from both paths into one bounded channel per
//! capture. The switch's workers copy what they receive from and send to the port
//! (a [`Tap`] on each worker's [`Switch`](crate::switch::Switch)); the kernel fast
//! path copies what it forwards for the port into the `capture_rb` ring buffer,
//! which a thread of the capture reads. A capture that cannot keep up loses frames,
//! counted (the ring full: the kernel's `capture_lost` counter; the channel full: the
//! capture's own); ports that are not captured are not slowed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::bpf::{CaptureRec, CAPTURE_IN, CAPTURE_MAX, CAPTURE_OUT};
use crate::port::PortId;
use crate::switch::{Direction, Tap};

/// What to capture of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// The frames the port sends (the switch receives).
    pub inbound: bool,
    /// The frames the port is sent.
    pub outbound: bool,
    /// Bytes kept of each frame (at most [`CaptureConfig::MAX_SNAPLEN`]).
    pub snaplen: u32,
    /// Frames held for the reader before the capture loses them.
    pub capacity: usize,
}

impl CaptureConfig {
    /// The longest snap length: what a fast-path capture record holds.
    pub const MAX_SNAPLEN: u32 = CAPTURE_MAX;
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            inbound: true,
            outbound: true,
            snaplen: Self::MAX_SNAPLEN,
            capacity: 8192,
        }
    }
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// When, in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Which way it crossed the port.
    pub dir: Direction,
    /// Which path carried it: the kernel fast path (`true`) or the switch.
    pub fast: bool,
    /// Its length.
    pub len: u32,
    /// Its first `snaplen` bytes.
    pub data: Vec<u8>,
}

/// A running capture: its frames, and how many it lost.
#[derive(Debug)]
pub struct Capture {
    /// Its id, for [`super::Dataplane::capture_stop`].
    pub id: u64,
    /// The frames, in the order each path delivered them.
    pub frames: Receiver<Captured>,
    lost: Arc<AtomicU64>,
}

impl Capture {
    /// Frames lost because the reader did not keep up (the channel was full). The
    /// fast path's own losses (its ring full) are the `capture_lost` kernel counter.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// A capture as the taps see it.
#[derive(Clone, Debug)]
pub(super) struct Sub {
    pub id: u64,
    pub port: PortId,
    pub cfg: CaptureConfig,
    tx: Sender<Captured>,
    lost: Arc<AtomicU64>,
}

impl Sub {
    /// A new capture of `port` and its reading end.
    pub fn new(id: u64, port: PortId, cfg: CaptureConfig) -> (Sub, Capture) {
        let (tx, frames) = crossbeam_channel::bounded(cfg.capacity.max(1));
        let lost = Arc::new(AtomicU64::new(0));
        let sub = Sub {
            id,
            port,
            cfg,
            tx,
            lost: lost.clone(),
        };
        (sub, Capture { id, frames, lost })
    }

    #[inline]
    fn wants(&self, port: PortId, dir: Direction) -> bool {
        self.port == port
            && match dir {
                Direction::In => self.cfg.inbound,
                Direction::Out => self.cfg.outbound,
            }
    }

    fn deliver(&self, c: Captured) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(c) {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The kernel's direction flags for this capture.
    pub fn kernel_dirs(&self) -> u32 {
        (if self.cfg.inbound { CAPTURE_IN } else { 0 })
            | (if self.cfg.outbound { CAPTURE_OUT } else { 0 })
    }
}

/// The wall clock, in nanoseconds since the Unix epoch.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A worker's tap: the captures, copied from the dataplane's list.
pub(super) struct WorkerTap(pub Vec<Sub>);

impl Tap for WorkerTap {
    #[inline]
    fn wants(&self, port: PortId, dir: Direction) -> bool {
        self.0.iter().any(|s| s.wants(port, dir))
    }

    fn frame(&mut self, port: PortId, dir: Direction, data: &[u8]) {
        let ts_ns = now_ns();
        for s in self.0.iter().filter(|s| s.wants(port, dir)) {
            let n = data.len().min(s.cfg.snaplen as usize);
            s.deliver(Captured {
                ts_ns,
                dir,
                fast: false,
                len: data.len() as u32,
                data: data[..n].to_vec(),
            });
        }
    }
}

/// The thread reading the fast path's capture ring buffer into the captures.
pub(super) struct RingReader {
    subs: Arc<ArcSwap<Vec<Sub>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RingReader {
    /// Starts reading `ring` (the `capture_rb` map) on a thread of its own.
    ///
    /// # Errors
    /// The thread could not start.
    pub fn start(ring: libbpf_rs::MapHandle) -> std::io::Result<RingReader> {
        let subs: Arc<ArcSwap<Vec<Sub>>> = Arc::new(ArcSwap::from_pointee(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (subs.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("umacvlan-capture".into())
            .spawn(move || read_ring(ring, s, st))?;
        Ok(RingReader {
            subs,
            stop,
            thread: Some(thread),
        })
    }

    /// The captures the records go to.
    pub fn set(&self, subs: Vec<Sub>) {
        self.subs.store(Arc::new(subs));
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_ring(ring: libbpf_rs::MapHandle, subs: Arc<ArcSwap<Vec<Sub>>>, stop: Arc<AtomicBool>) {
    use rustix::time::{clock_gettime, ClockId};
    // The records carry CLOCK_MONOTONIC; the captures the wall clock.
    let offset = {
        let (m, wall) = (clock_gettime(ClockId::Monotonic), now_ns());
        wall.wrapping_sub(m.tv_sec as u64 * 1_000_000_000 + m.tv_nsec as u64)
    };
    let s = subs.clone();
    let mut b = libbpf_rs::RingBufferBuilder::new();
    let added = b.add(&ring, move |data: &[u8]| {
        let Some(r) = CaptureRec::parse(data) else {
            return 0;
        };
        let dir = if r.dir == CAPTURE_IN {
            Direction::In
        } else {
            Direction::Out
        };
        let port = PortId(r.port);
        for sub in s.load().iter().filter(|x| x.wants(port, dir)) {
            let n = r.data.len().min(sub.cfg.snaplen as usize);
            sub.deliver(Captured {
                ts_ns: r.ts.wrapping_add(offset),
                dir,
                fast: true,
                len: r.len,
                data: r.data[..n].to_vec(),
            });
        }
        0
    });
    let rb = match added.map(|_| ()).and_then(|()| b.build()) {
        Ok(rb) => rb,
        Err(e) => {
            tracing::error!("capture: the fast path's ring buffer cannot be read: {e}");
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = rb.poll(Duration::from_millis(100)) {
            tracing::warn!("capture: reading the fast path's ring buffer: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
