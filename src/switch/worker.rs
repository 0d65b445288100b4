//! A thread that drives a [`Switch`], optionally pinned to a core, taking port
//! attach/detach and stats requests over a channel between bursts.
//!
//! The loop: handle pending commands (one `try_recv`, no lock), [`Switch::poll`],
//! and when nothing arrived for `spin` consecutive passes, sleep `idle_sleep` (0 keeps
//! busy-polling). A dedicated core wants pure busy-polling; a shared 2-core test
//! machine wants the sleep, so the kernel's receive work can run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use super::{AttachError, PortStats, Switch};
use crate::port::{FramePool, Port, PortId};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Pin to this core id (see `core_affinity::get_core_ids`).
    pub core: Option<usize>,
    /// Empty passes before sleeping.
    pub spin: u32,
    /// Sleep when idle; zero busy-polls forever.
    pub idle_sleep: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig { core: None, spin: 256, idle_sleep: Duration::from_micros(50) }
    }
}

enum Command<P> {
    Attach(PortId, P, Sender<Result<(), AttachError>>),
    Detach(PortId, Sender<Option<P>>),
    Stats(Sender<Vec<(PortId, PortStats)>>),
}

/// Handle to a running worker. Dropping it stops the worker.
pub struct Worker<P: Port<B>, B: FramePool, const BURST: usize> {
    cmd: Sender<Command<P>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Switch<P, B, BURST>>>,
}

/// The worker thread is gone (it panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the switch worker thread has stopped")]
pub struct WorkerGone;

impl<P, B, const BURST: usize> Worker<P, B, BURST>
where
    P: Port<B> + Send + 'static,
    B: FramePool + Send + 'static,
{
    /// Starts a thread driving `sw`.
    ///
    /// # Errors
    /// If the thread cannot be spawned.
    pub fn spawn(mut sw: Switch<P, B, BURST>, cfg: WorkerConfig) -> std::io::Result<Self> {
        let (tx, rx): (Sender<Command<P>>, Receiver<Command<P>>) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new().name("umacvlan-worker".into()).spawn(move || {
            if let Some(core) = cfg.core {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
            }
            let mut idle = 0u32;
            while !stop2.load(Ordering::Relaxed) {
                while let Ok(c) = rx.try_recv() {
                    match c {
                        Command::Attach(id, p, r) => {
                            let _ = r.send(sw.attach(id, p));
                        }
                        Command::Detach(id, r) => {
                            let _ = r.send(sw.detach(id));
                        }
                        Command::Stats(r) => {
                            let _ = r.send(sw.all_stats().map(|(i, s)| (i, s.clone())).collect());
                        }
                    }
                }
                if sw.poll() > 0 {
                    idle = 0;
                } else {
                    idle = idle.saturating_add(1);
                    if idle > cfg.spin && !cfg.idle_sleep.is_zero() {
                        std::thread::sleep(cfg.idle_sleep);
                    }
                }
            }
            sw
        })?;
        Ok(Worker { cmd: tx, stop, thread: Some(thread) })
    }

    fn ask<R>(&self, make: impl FnOnce(Sender<R>) -> Command<P>) -> Result<R, WorkerGone> {
        let (tx, rx) = bounded(1);
        self.cmd.send(make(tx)).map_err(|_| WorkerGone)?;
        rx.recv_timeout(Duration::from_secs(5)).map_err(|_| WorkerGone)
    }

    /// Attaches a port between bursts.
    ///
    /// # Errors
    /// [`WorkerGone`], or the attach error.
    pub fn attach(&self, id: PortId, port: P) -> Result<Result<(), AttachError>, WorkerGone> {
        self.ask(|r| Command::Attach(id, port, r))
    }

    /// Detaches a port between bursts and returns it.
    ///
    /// # Errors
    /// [`WorkerGone`].
    pub fn detach(&self, id: PortId) -> Result<Option<P>, WorkerGone> {
        self.ask(|r| Command::Detach(id, r))
    }

    /// The counters of every attached port.
    ///
    /// # Errors
    /// [`WorkerGone`].
    pub fn stats(&self) -> Result<Vec<(PortId, PortStats)>, WorkerGone> {
        self.ask(Command::Stats)
    }

    /// Stops the thread and returns the switch (ports, pool and counters).
    ///
    /// # Errors
    /// [`WorkerGone`] if the thread panicked.
    pub fn stop(mut self) -> Result<Switch<P, B, BURST>, WorkerGone> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().expect("joined once").join().map_err(|_| WorkerGone)
    }
}

impl<P: Port<B>, B: FramePool, const BURST: usize> Drop for Worker<P, B, BURST> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;
    use crate::port::{MemPool, MemPort};
    use crate::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};

    #[test]
    fn worker_attaches_forwards_and_returns_the_switch() {
        let parent = ParentConfig { name: "w0".into(), mac: "02:00:00:00:00:fe".parse().unwrap(), mtu: 1500 };
        let mut topo = Topology::new(parent, true).unwrap();
        let a = topo.add_endpoint(EndpointConfig::new("a", Mode::Bridge)).unwrap();
        let sw: Switch<MemPort, MemPool> = Switch::new(topo.reader(), MemPool::new(64, 2048));
        let w = Worker::spawn(sw, WorkerConfig::default()).unwrap();
        for id in [UPLINK, HOST, a] {
            w.attach(id, MemPort::new(8)).unwrap().unwrap();
        }
        assert_eq!(w.attach(a, MemPort::new(8)).unwrap(), Err(AttachError::Busy(a)));
        assert_eq!(w.stats().unwrap().len(), 3);
        let p = w.detach(a).unwrap().expect("attached");
        assert_eq!(p.rx_pending(), 0);
        let sw = w.stop().unwrap();
        assert!(sw.stats(UPLINK).is_some());
    }
}
