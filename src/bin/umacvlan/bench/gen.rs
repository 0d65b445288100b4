//! The traffic generator: a transmit-only AF_XDP socket sending one UDP/IPv4 frame
//! template as fast as the socket path allows, or at a set rate, for a count or a
//! duration (this kernel has no pktgen).
//!
//! Every UMEM frame is written once with the template; afterwards a frame only
//! goes round the free list → tx ring → completion ring → free list, so the
//! generator's own per-frame cost is a descriptor, not a copy.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::Error;
use umacvlan::port::{Frame, FramePool, Port};
use umacvlan::wire::{emit_header, ipv4, EtherType, MacAddr};
use umacvlan::xsk::{BindMode, Umem, XskConfig, XskPort, XskSocket};

/// Smallest frame size: 64 bytes with the FCS (RFC 2544), 60 handed to the kernel.
pub const MIN_FRAME: usize = 64;
/// Largest frame size: 1518 bytes with the FCS, a full 1500-byte payload.
pub const MAX_FRAME: usize = 1518;
/// The 4-byte frame check sequence the NIC appends; sizes here include it.
pub const FCS: usize = 4;

/// What the generator sends: one UDP/IPv4 flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Frame size including the FCS (RFC 2544 convention), 64..=1518.
    pub size: usize,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Source IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
}

impl FrameSpec {
    /// 64-byte frames from `src_mac` to `dst_mac`, 10.30.0.1:1024 → 10.30.0.2:9.
    pub fn new(src_mac: MacAddr, dst_mac: MacAddr) -> FrameSpec {
        FrameSpec {
            size: MIN_FRAME,
            dst_mac,
            src_mac,
            src_ip: Ipv4Addr::new(10, 30, 0, 1),
            dst_ip: Ipv4Addr::new(10, 30, 0, 2),
            sport: 1024,
            dport: 9,
        }
    }

    /// The frame's bytes without the FCS (`size - 4`): Ethernet, a 20-byte IPv4
    /// header and UDP with valid checksums, payload zero.
    ///
    /// # Errors
    /// [`Error::Config`] if `size` is outside 64..=1518.
    pub fn bytes(&self) -> Result<Vec<u8>, Error> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&self.size) {
            return Err(Error::Config(format!(
                "frame size {} is outside {MIN_FRAME}..={MAX_FRAME} (bytes, FCS included)",
                self.size
            )));
        }
        let mut f = vec![0u8; self.size - FCS];
        let h = emit_header(&mut f, self.dst_mac, self.src_mac, None, EtherType::IPV4);
        let ip_len = (f.len() - h) as u16;
        ipv4::emit_header(
            &mut f[h..],
            self.src_ip,
            self.dst_ip,
            ipv4::PROTO_UDP,
            ip_len,
        );
        let udp = h + ipv4::HEADER_LEN;
        ipv4::emit_udp(
            &mut f[udp..],
            self.src_ip,
            self.dst_ip,
            self.sport,
            self.dport,
        );
        Ok(f)
    }
}

/// When a [`Generator::run`] stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// Stop after this many frames (`None`: no count limit).
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Duration,
    /// Frames per second (`None`: as fast as the socket takes them).
    pub rate: Option<f64>,
}

/// What a [`Generator::run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GenReport {
    /// Frames the kernel took for transmission (completed).
    pub sent: u64,
    /// Time from the first frame to the last completion.
    pub elapsed: Duration,
    /// Frames still with the kernel when the run gave up waiting (200 ms): neither
    /// counted as sent nor known to be lost.
    pub unfinished: u64,
}

impl GenReport {
    /// Frames per second sent.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A transmit-only AF_XDP socket with a UMEM full of one frame.
pub struct Generator {
    umem: Umem,
    port: XskPort,
    spec: FrameSpec,
    len: u16,
    batch: Vec<Frame>,
    /// Frames per transmit call.
    pub burst: usize,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("port", &self.port)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// Opens the generator on queue 0 of `ifindex` (in the calling thread's
    /// namespace), always in copy mode (the kernel builds an skb per frame, as for a
    /// container's own traffic), and writes `spec`'s frame into every UMEM frame.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad spec, [`Error::Xsk`] if the socket cannot be made.
    pub fn open(ifindex: u32, spec: &FrameSpec) -> Result<Generator, Error> {
        let bytes = spec.bytes()?;
        let mut umem = Umem::new(4096, 2048)?;
        let cfg = XskConfig {
            fill_size: 64,
            rx_size: 64,
            fill_level: 16,
            fill_batch: 16,
            bind_mode: BindMode::Copy,
            ..XskConfig::default()
        };
        // A socket just closed on this queue releases it from a kernel work item a
        // moment later (EBUSY until then): retry for up to a second.
        let mut tries = 0;
        let sock = loop {
            match XskSocket::new(&mut umem, ifindex, 0, &cfg) {
                Err(e) if e.errno() == Some(libc::EBUSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r?,
            }
        };
        let port = XskPort::new(sock, &cfg)?;
        let mut g = Generator {
            umem,
            port,
            spec: spec.clone(),
            len: bytes.len() as u16,
            batch: Vec::with_capacity(64),
            burst: 64,
        };
        g.stamp(&bytes);
        Ok(g)
    }

    /// Writes `bytes` into every free UMEM frame.
    fn stamp(&mut self, bytes: &[u8]) {
        let mut all = Vec::new();
        while let Some(f) = self.umem.alloc_with(bytes) {
            all.push(f);
        }
        all.into_iter().for_each(|f| self.umem.free(f));
    }

    /// Changes the UDP destination port of every frame (so that a sink filtering on
    /// it tells this flow's frames from earlier ones still in flight).
    ///
    /// # Errors
    /// [`Error::Config`] if frames are still with the kernel (they would keep the
    /// old port).
    pub fn set_dport(&mut self, dport: u16) -> Result<(), Error> {
        self.port.maintain(&mut self.umem);
        if self.port.tx_in_flight() > 0 {
            return Err(Error::Config(format!(
                "{} frames are still being transmitted; cannot re-stamp",
                self.port.tx_in_flight()
            )));
        }
        self.spec.dport = dport;
        let bytes = self.spec.bytes()?;
        self.stamp(&bytes);
        Ok(())
    }

    /// Sends one frame to each of `dsts` in turn (the template with its destination
    /// MAC replaced), at `rate` frames per second, giving up after `limit`; then
    /// writes the template back into every frame.
    ///
    /// # Errors
    /// [`Error::Config`] if frames are still with the kernel at the end (they keep
    /// their destinations, so the template cannot be written back).
    pub fn run_each(
        &mut self,
        dsts: &[MacAddr],
        rate: f64,
        limit: Duration,
    ) -> Result<GenReport, Error> {
        let r = self.run_to(
            Limit {
                count: Some(dsts.len() as u64),
                duration: limit,
                rate: Some(rate),
            },
            dsts,
        );
        self.set_dport(self.spec.dport)?;
        Ok(r)
    }

    /// Sends until `limit` is reached, then waits (at most 200 ms) for every frame
    /// to complete. Runs on the calling thread; pin it first for stable figures.
    pub fn run(&mut self, limit: Limit) -> GenReport {
        self.run_to(limit, &[])
    }

    /// [`Generator::run`]; with `dsts` not empty, the `k`-th frame sent goes to
    /// `dsts[k % dsts.len()]`.
    fn run_to(&mut self, limit: Limit, dsts: &[MacAddr]) -> GenReport {
        let start = Instant::now();
        let end = start + limit.duration;
        let count = limit.count.unwrap_or(u64::MAX);
        let mut queued = 0u64;
        let mut now = start;
        while now < end && queued < count {
            self.port.maintain(&mut self.umem);
            let mut want = (self.burst as u64).min(count - queued);
            if let Some(rate) = limit.rate {
                let due = (rate * (now - start).as_secs_f64()) as u64 + 1;
                want = want.min(due.saturating_sub(queued));
            }
            while (self.batch.len() as u64) < want {
                match self.umem.alloc() {
                    Some(f) => {
                        let (idx, off, _) = f.into_raw();
                        let mut f = Frame::from_raw(idx, off, self.len);
                        if !dsts.is_empty() {
                            let k = (queued as usize + self.batch.len()) % dsts.len();
                            self.umem.data_mut(&mut f)[..6].copy_from_slice(&dsts[k].octets());
                        }
                        self.batch.push(f);
                    }
                    None => break,
                }
            }
            let before = self.batch.len();
            self.port.transmit(&mut self.umem, &mut self.batch);
            queued += (before - self.batch.len()) as u64;
            now = Instant::now();
        }
        for f in self.batch.drain(..) {
            self.umem.free(f);
        }
        let drain_end = Instant::now() + Duration::from_millis(200);
        while self.port.tx_in_flight() > 0 && Instant::now() < drain_end {
            self.port.maintain(&mut self.umem);
        }
        let unfinished = u64::from(self.port.tx_in_flight());
        GenReport {
            sent: queued - unfinished,
            elapsed: start.elapsed(),
            unfinished,
        }
    }
}
