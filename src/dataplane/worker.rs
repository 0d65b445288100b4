//! A thread that drives a [`Switch`], optionally pinned to a core, taking port
//! attach/detach and stats requests over a channel between bursts.
//!
//! The loop: handle pending commands (one `try_recv`, no lock), [`Switch::poll`],
//! and when nothing arrived for `spin` consecutive passes, sleep `idle_sleep` (0 keeps
//! busy-polling). A dedicated core wants pure busy-polling; a shared 2-core test
//! machine wants the sleep, so the kernel's receive work can run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Sender};

use crate::port::{FramePool, Port, PortId};
use crate::switch::{AttachError, PortStats, Switch};

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
        WorkerConfig {
            core: None,
            spin: 256,
            idle_sleep: Duration::from_micros(50),
        }
    }
}

/// Work to run on the worker thread between two bursts.
type Command<P, B, const BURST: usize> = Box<dyn FnOnce(&mut Switch<P, B, BURST>) + Send>;

/// Handle to a running worker. Dropping it stops the worker.
pub struct Worker<P: Port<B>, B: FramePool, const BURST: usize> {
    cmd: Sender<Command<P, B, BURST>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Switch<P, B, BURST>>>,
    load: Arc<AtomicU64>,
    started: Instant,
}

/// How busy a worker has been since it started ([`Worker::load`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Time spent in passes that moved frames.
    pub busy: Duration,
    /// Time since the worker started.
    pub elapsed: Duration,
}

/// The worker did not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerGone {
    /// The thread has ended (it panicked, or was stopped).
    #[error("the switch worker thread has stopped")]
    Stopped,
    /// The thread is alive but did not answer in time: it is stuck in a burst, or
    /// the machine is overloaded. What was asked may still happen.
    #[error("the switch worker thread did not answer within {0:?}")]
    NoAnswer(Duration),
}

/// How long [`Worker::exec`] waits for an answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

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
        let (tx, rx) = unbounded::<Command<P, B, BURST>>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let load = Arc::new(AtomicU64::new(0));
        let busy_ns = load.clone();
        let thread = std::thread::Builder::new()
            .name("umacvlan-worker".into())
            .spawn(move || {
                if let Some(core) = cfg.core {
                    core_affinity::set_for_current(core_affinity::CoreId { id: core });
                }
                let mut idle = 0u32;
                let mut busy = 0u64;
                while !stop2.load(Ordering::Relaxed) {
                    while let Ok(c) = rx.try_recv() {
                        c(&mut sw);
                    }
                    let t0 = Instant::now();
                    if sw.poll() > 0 {
                        idle = 0;
                        // A pass that moved frames: busy (a clock read is ~20 ns).
                        busy += t0.elapsed().as_nanos() as u64;
                        busy_ns.store(busy, Ordering::Relaxed);
                    } else {
                        idle = idle.saturating_add(1);
                        if idle > cfg.spin && !cfg.idle_sleep.is_zero() {
                            std::thread::sleep(cfg.idle_sleep);
                        }
                    }
                }
                sw
            })?;
        Ok(Worker {
            cmd: tx,
            stop,
            thread: Some(thread),
            load,
            started: Instant::now(),
        })
    }

    /// How busy the worker has been: the time its passes that moved frames took,
    /// against the time since it started (`busy / elapsed` is its busy fraction).
    pub fn load(&self) -> Load {
        Load {
            busy: Duration::from_nanos(self.load.load(Ordering::Relaxed)),
            elapsed: self.started.elapsed(),
        }
    }

    /// Runs `f` on the worker thread between two bursts, with the switch in hand
    /// (to open a socket on its frame pool, attach a port, read counters), and
    /// returns its result.
    ///
    /// # Errors
    /// [`WorkerGone::Stopped`] if the thread is gone, [`WorkerGone::NoAnswer`] if it
    /// does not answer within 5 s.
    pub fn exec<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Switch<P, B, BURST>) -> R + Send + 'static,
    ) -> Result<R, WorkerGone> {
        let (tx, rx) = bounded(1);
        self.cmd
            .send(Box::new(move |sw| {
                let _ = tx.send(f(sw));
            }))
            .map_err(|_| WorkerGone::Stopped)?;
        rx.recv_timeout(ANSWER_WITHIN).map_err(|e| match e {
            // The thread dropped the command (and its reply sender) unanswered.
            crossbeam_channel::RecvTimeoutError::Disconnected => WorkerGone::Stopped,
            crossbeam_channel::RecvTimeoutError::Timeout => WorkerGone::NoAnswer(ANSWER_WITHIN),
        })
    }

    /// Attaches a port between bursts.
    ///
    /// # Errors
    /// [`WorkerGone`], or the attach error.
    pub fn attach(&self, id: PortId, port: P) -> Result<Result<(), AttachError>, WorkerGone> {
        self.exec(move |sw| sw.attach(id, port))
    }

    /// Detaches a port between bursts and returns it.
    ///
    /// # Errors
    /// [`WorkerGone`].
    pub fn detach(&self, id: PortId) -> Result<Option<P>, WorkerGone> {
        self.exec(move |sw| sw.detach(id))
    }

    /// The counters of every attached port.
    ///
    /// # Errors
    /// [`WorkerGone`].
    pub fn stats(&self) -> Result<Vec<(PortId, PortStats)>, WorkerGone> {
        self.exec(|sw| sw.all_stats().map(|(i, s)| (i, s.clone())).collect())
    }

    /// Stops the thread and returns the switch (ports, pool and counters).
    ///
    /// # Errors
    /// [`WorkerGone`] if the thread panicked.
    pub fn stop(mut self) -> Result<Switch<P, B, BURST>, WorkerGone> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| WorkerGone::Stopped)
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
        let parent = ParentConfig {
            name: "w0".into(),
            mac: "02:00:00:00:00:fe".parse().unwrap(),
            mtu: 1500,
        };
        let mut topo = Topology::new(parent, true).unwrap();
        let a = topo
            .add_endpoint(EndpointConfig::new("a", Mode::Bridge))
            .unwrap();
        let sw: Switch<MemPort, MemPool> = Switch::new(topo.reader(), MemPool::new(64, 2048));
        let w = Worker::spawn(sw, WorkerConfig::default()).unwrap();
        for id in [UPLINK, HOST, a] {
            w.attach(id, MemPort::new(8)).unwrap().unwrap();
        }
        assert_eq!(
            w.attach(a, MemPort::new(8)).unwrap(),
            Err(AttachError::Busy(a))
        );
        assert_eq!(w.stats().unwrap().len(), 3);
        let p = w.detach(a).unwrap().expect("attached");
        assert_eq!(p.rx_pending(), 0);
        let sw = w.stop().unwrap();
        assert!(sw.stats(UPLINK).is_some());
    }
}
