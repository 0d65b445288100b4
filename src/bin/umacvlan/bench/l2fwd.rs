//! The raw AF_XDP forwarder: the physical limit of the socket path the switch uses.
//!
//! Two sockets sharing one UMEM — one on the ingress interface, fed by the steering
//! program in its "every frame to the socket" role, one on the egress interface —
//! and a loop that moves every received descriptor to the egress tx ring. No
//! table, no parsing, no counters: everything umacvlan adds on top is missing here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Error;
use umacvlan::bpf::{DevVal, Steering, XdpMode};
use umacvlan::link::Netns;
use umacvlan::port::{FramePool, Port};
use umacvlan::xsk::{SocketTuning, Umem, XskConfig, XskPort};

/// How the forwarder runs.
#[derive(Clone, Debug)]
pub struct L2fwdConfig {
    /// Namespace holding both interfaces.
    pub netns: String,
    /// Ingress interface.
    pub from: String,
    /// Egress interface.
    pub to: String,
    /// XDP mode on the ingress interface.
    pub xdp_mode: XdpMode,
    /// Core to pin the loop to.
    pub core: Option<usize>,
    /// Descriptors moved per pass (as the switch's burst).
    pub burst: usize,
    /// Socket rings.
    pub xsk: XskConfig,
    /// Socket tuning.
    pub tuning: SocketTuning,
}

/// What the forwarder did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2fwdStats {
    /// Frames received on the ingress socket.
    pub received: u64,
    /// Frames handed to the egress socket.
    pub forwarded: u64,
    /// Frames dropped because the egress ring was full.
    pub dropped: u64,
}

/// A running forwarder; stops on [`L2fwd::stop`] or drop.
#[derive(Debug)]
pub struct L2fwd {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<L2fwdStats>>,
}

impl L2fwd {
    /// Starts the forwarder thread; returns once both sockets are bound.
    ///
    /// # Errors
    /// If the namespace, an interface, the program or a socket cannot be set up.
    pub fn start(cfg: L2fwdConfig) -> Result<L2fwd, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), Error>>();
        let thread = std::thread::Builder::new()
            .name("l2fwd".into())
            .spawn(move || {
                let setup = || -> Result<_, Error> {
                    Netns::open(&cfg.netns)?.enter()?;
                    if let Some(c) = cfg.core {
                        core_affinity::set_for_current(core_affinity::CoreId { id: c });
                    }
                    let from = umacvlan::sys::if_nametoindex(&cfg.from)
                        .map_err(|e| Error::Config(format!("{}: {e}", cfg.from)))?;
                    let to = umacvlan::sys::if_nametoindex(&cfg.to)
                        .map_err(|e| Error::Config(format!("{}: {e}", cfg.to)))?;
                    let mut steering = Steering::load()?;
                    steering.set_device(from, DevVal::port(0, 1))?;
                    let mut umem = Umem::new(8192, 2048)?;
                    let rx = XskPort::open(&mut umem, from, 0, &cfg.xsk)?;
                    let tx = XskPort::open(&mut umem, to, 0, &cfg.xsk)?;
                    rx.socket().tune(&cfg.tuning)?;
                    tx.socket().tune(&cfg.tuning)?;
                    steering.set_xsk(0, rx.as_fd())?;
                    steering.attach_xdp(from, cfg.xdp_mode)?;
                    Ok((steering, umem, rx, tx))
                };
                let (steering, mut umem, mut rx, mut tx) = match setup() {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return L2fwdStats::default();
                    }
                };
                let mut stats = L2fwdStats::default();
                let mut buf = Vec::with_capacity(cfg.burst);
                while !stop2.load(Ordering::Relaxed) {
                    rx.maintain(&mut umem);
                    tx.maintain(&mut umem);
                    rx.receive(&mut umem, &mut buf, cfg.burst);
                    if buf.is_empty() {
                        continue;
                    }
                    let n = buf.len() as u64;
                    stats.received += n;
                    tx.transmit(&mut umem, &mut buf);
                    stats.forwarded += n - buf.len() as u64;
                    stats.dropped += buf.len() as u64;
                    buf.drain(..).for_each(|f| umem.free(f));
                }
                drop(steering);
                stats
            })
            .map_err(|e| Error::Config(format!("cannot start the l2fwd thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(L2fwd {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::Config("the l2fwd thread died during setup".into()))
            }
        }
    }
}

impl Drop for L2fwd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
