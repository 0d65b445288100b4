//! [`XskPort`]: the [`Port`] over one AF_XDP socket.

use super::socket::XskSocket;
use super::umem::Umem;
use super::{Error, Statistics, XskConfig, XskMode};
use crate::port::{Frame, Port};
use crate::sys;

/// Most `sendto` calls one transmit or maintain makes. A copy-mode `sendto` sends at
/// most 32 frames (the kernel's `TX_BATCH_SIZE`) and answers `EAGAIN` if more are
/// left; the rest goes on the next call.
const MAX_TX_WAKEUPS: u32 = 8;

/// Cold per-port counters of the wakeup and refill paths (the kernel's own counters
/// are [`XskPort::statistics`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PortCounters {
    /// `sendto` calls made to start transmission.
    pub tx_wakeups: u64,
    /// `recvfrom` calls made because the fill ring asked for a wakeup.
    pub rx_wakeups: u64,
    /// Wakeups that failed with something other than `EAGAIN`/`EBUSY` (e.g.
    /// `ENETDOWN`, `ENOBUFS`); the frames stay queued and are retried.
    pub wakeup_errors: u64,
    /// The `errno` of the last failed wakeup.
    pub last_wakeup_errno: i32,
    /// Refills skipped because the pool had fewer than `fill_batch` free frames.
    pub refill_skipped: u64,
    /// Transmit calls that stopped at a frame the kernel would reject (empty, or
    /// overrunning its chunk); that frame and the rest stay with the caller.
    pub tx_rejected: u64,
}

/// A [`Port`] over an [`XskSocket`]: frames from its rx ring, to its tx ring.
///
/// * [`receive`](Port::receive): one peek of up to `max` rx descriptors, each turned
///   into a [`Frame`] (`idx = addr / frame_size`, `off = addr % frame_size`), one
///   release.
/// * [`transmit`](Port::transmit): reserves as many tx slots as fit (and as the
///   completion ring can take back), writes the descriptors, commits once, then wakes
///   the kernel: always in copy mode (copy-mode transmission only happens inside
///   `sendto`), only if the ring asks for it in zero-copy mode.
/// * [`maintain`](Port::maintain): returns completed frames to the pool, retries a
///   stalled transmission, tops the fill ring up to `fill_level` in whole batches of
///   `fill_batch`, and wakes the fill ring if it asks.
///
/// # Panics
/// Every `Port` method panics if given a [`Umem`] other than the one the socket was
/// created on.
pub struct XskPort {
    sock: XskSocket,
    /// Frames lent for receiving: in the fill ring, in the kernel, or in the rx ring.
    rx_lent: u32,
    /// Frames lent for transmitting: in the tx ring, in the kernel, or in the
    /// completion ring.
    tx_lent: u32,
    fill_level: u32,
    fill_batch: u32,
    /// The most frames lent for transmitting: the completion ring's size.
    tx_cap: u32,
    /// Copy mode: wake the kernel after every commit.
    always_wake_tx: bool,
    counters: PortCounters,
}

impl core::fmt::Debug for XskPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XskPort")
            .field("sock", &self.sock)
            .field("rx_lent", &self.rx_lent)
            .field("tx_lent", &self.tx_lent)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl XskPort {
    /// A port over `sock`, refilling by `cfg.fill_level` and `cfg.fill_batch` (its ring
    /// sizes are those `sock` was created with).
    ///
    /// # Errors
    /// [`Error::Config`] unless `1 <= fill_batch <= fill_level <= fill ring size`.
    pub fn new(sock: XskSocket, cfg: &XskConfig) -> Result<Self, Error> {
        let fill_size = sock.fill.size();
        if (cfg.fill_level > 0 && (cfg.fill_batch == 0 || cfg.fill_batch > cfg.fill_level))
            || cfg.fill_level > fill_size
        {
            return Err(Error::Config(format!(
                "need 1 <= fill_batch ({}) <= fill_level ({}) <= fill ring size ({fill_size})",
                cfg.fill_batch, cfg.fill_level
            )));
        }
        Ok(XskPort {
            rx_lent: 0,
            tx_lent: 0,
            fill_level: cfg.fill_level,
            fill_batch: cfg.fill_batch,
            tx_cap: sock.comp.size(),
            always_wake_tx: sock.mode() == XskMode::Copy,
            counters: PortCounters::default(),
            sock,
        })
    }

    /// Creates the socket ([`XskSocket::new`]) and the port over it.
    ///
    /// # Errors
    /// As [`XskSocket::new`].
    pub fn open(umem: &mut Umem, ifindex: u32, queue: u32, cfg: &XskConfig) -> Result<Self, Error> {
        XskPort::new(XskSocket::new(umem, ifindex, queue, cfg)?, cfg)
    }

    /// The socket (for [`XskSocket::as_fd`], its mode, interface and queue).
    pub fn socket(&self) -> &XskSocket {
        &self.sock
    }

    /// Frames handed to the kernel for transmission and not yet completed.
    pub fn tx_in_flight(&self) -> u32 {
        self.tx_lent
    }

    /// The socket's fd, for the XSKMAP; see [`XskSocket::as_fd`].
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// This port's wakeup and refill counters.
    pub fn counters(&self) -> &PortCounters {
        &self.counters
    }

    /// The kernel's counters for the socket.
    ///
    /// # Errors
    /// As [`XskSocket::statistics`].
    pub fn statistics(&self) -> Result<Statistics, Error> {
        self.sock.statistics()
    }

    /// Frames lent to the kernel: (for receiving, for transmitting).
    pub fn lent(&self) -> (u32, u32) {
        (self.rx_lent, self.tx_lent)
    }

    /// Waits up to `timeout_ms` for received frames; see
    /// [`XskSocket::wait_readable`].
    ///
    /// # Errors
    /// As [`XskSocket::wait_readable`].
    pub fn wait_readable(&self, timeout_ms: i32) -> Result<bool, Error> {
        self.sock.wait_readable(timeout_ms)
    }

    #[inline(always)]
    fn check_pool(&self, pool: &Umem) {
        assert_eq!(
            pool.id(),
            self.sock.umem_id,
            "XskPort used with a different Umem than its socket was created on"
        );
    }

    /// Asks the kernel to transmit what is queued, if it needs asking.
    fn wake_tx(&mut self) {
        if !self.always_wake_tx && !self.sock.tx.needs_wakeup() {
            return;
        }
        let mut pending = self.sock.tx.pending();
        for _ in 0..MAX_TX_WAKEUPS {
            if pending == 0 {
                break;
            }
            self.counters.tx_wakeups += 1;
            let Err(e) = sys::sendto_wakeup(self.sock.as_fd()) else {
                break;
            };
            let errno = e.errno().unwrap_or(0);
            if errno == libc::EAGAIN {
                // Copy mode sent a batch and has more, or the device is busy: go on
                // only while it makes progress.
                let now = self.sock.tx.pending();
                if now < pending {
                    pending = now;
                    continue;
                }
            } else if errno != libc::EBUSY {
                self.counters.wakeup_errors += 1;
                self.counters.last_wakeup_errno = errno;
            }
            break;
        }
    }

    /// Takes back the frames the kernel has finished transmitting.
    #[inline]
    fn reap(&mut self, pool: &mut Umem) {
        let slot = self.sock.slot;
        let done = self.sock.comp.peek(self.tx_cap);
        for i in 0..done.len() {
            pool.complete(slot, done.get(i));
        }
        self.tx_lent -= done.release();
    }

    /// Tops the fill ring up to `fill_level` frames lent for receiving, in whole
    /// batches.
    fn refill(&mut self, pool: &mut Umem) {
        let batch = self.fill_batch;
        let slot = self.sock.slot;
        for _ in 0..self.fill_level / batch {
            if self.rx_lent + batch > self.fill_level {
                break;
            }
            if pool.free_count() < batch {
                self.counters.refill_skipped += 1;
                break;
            }
            let mut r = self.sock.fill.reserve(batch);
            if r.capacity() < batch {
                break;
            }
            while r.len() < batch {
                match pool.lend_free(slot) {
                    Some(addr) => r.push(addr),
                    None => break,
                }
            }
            self.rx_lent += r.commit();
        }
    }
}

impl Port<Umem> for XskPort {
    #[inline]
    fn receive(&mut self, pool: &mut Umem, out: &mut Vec<Frame>, max: usize) {
        self.check_pool(pool);
        let slot = self.sock.slot;
        let got = self.sock.rx.peek(max.min(u32::MAX as usize) as u32);
        for i in 0..got.len() {
            let d = got.get(i);
            out.push(pool.take_back(slot, d.addr, d.len));
        }
        self.rx_lent -= got.release();
    }

    #[inline]
    fn transmit(&mut self, pool: &mut Umem, frames: &mut Vec<Frame>) {
        self.check_pool(pool);
        // Short of room: take back what the kernel has finished first (VPP's
        // af_xdp output, OVS's afxdp_complete_tx), rather than dropping as TxFull
        // what the next poll's completions would have made room for.
        if ((self.tx_cap - self.tx_lent) as usize) < frames.len() {
            self.reap(pool);
        }
        let room = self.tx_cap - self.tx_lent;
        let want = frames.len().min(room as usize) as u32;
        if want == 0 {
            return;
        }
        let fs = pool.frame_size() as usize;
        let slot = self.sock.slot;
        let mut r = self.sock.tx.reserve(want);
        let cap = r.capacity() as usize;
        // The kernel skips invalid descriptors without completing them, which would
        // leak the frame: stop before one.
        let n = frames[..cap]
            .iter()
            .take_while(|f| f.len() != 0 && f.offset() + f.len() <= fs)
            .count();
        if n < cap {
            self.counters.tx_rejected += 1;
        }
        for f in frames.drain(..n) {
            r.push(pool.lend(slot, f));
        }
        let sent = r.commit();
        self.tx_lent += sent;
        if sent > 0 {
            self.wake_tx();
        }
    }

    fn maintain(&mut self, pool: &mut Umem) {
        self.check_pool(pool);
        self.reap(pool);
        if self.tx_lent > 0 {
            self.wake_tx();
        }
        self.refill(pool);
        if self.rx_lent > 0 && self.sock.fill.needs_wakeup() {
            self.counters.rx_wakeups += 1;
            if let Err(e) = sys::recvfrom_wakeup(self.sock.as_fd()) {
                self.counters.wakeup_errors += 1;
                self.counters.last_wakeup_errno = e.errno().unwrap_or(0);
            }
        }
        debug_assert!({
            let a = pool.accounting();
            a.free + a.held + a.lent == a.total
        });
    }
}

impl std::os::fd::AsFd for XskPort {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
