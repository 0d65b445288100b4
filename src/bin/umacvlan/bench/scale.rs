//! `umacvlan bench scale`: an RFC 2889-style benchmark of endpoint count, umacvlan
//! and the kernel's macvlan side by side.
//!
//! # Method
//! For each endpoint count N, round and system (umacvlan; kernel macvlan), in that
//! nesting, so that each round has every system once per N (A B A B …):
//! 1. **Time to add N endpoints.** A fresh [`ScaleLab`] with no endpoint; endpoints
//!    are added one at a time, bridge mode, spread over at most
//!    [`ScaleConfig::namespaces`] namespaces, and each add is timed
//!    ([`ScaleLab::add`] says what an add is for each system). Reported: the wall
//!    time of all N adds, the mean per add, and the *marginal* cost around the k-th
//!    add for each k of the counts (the median of adds k−9..=k), which shows how an
//!    add's cost grows with the endpoints already there.
//! 2. **Address capacity** (RFC 2889 §5.7, adapted: a macvlan is told its
//!    addresses, it does not learn them). A [`Sink`] (tc ingress, count and drop)
//!    on each receiver; the generator on the external host sends one frame to each
//!    of the N endpoint MACs, paced at [`ScaleConfig::capacity_rate`] so that no
//!    queue overflows. Reported: how many receivers got their frame, and frames
//!    counted beyond one per receiver (*misdelivered*: a flooded frame would be
//!    counted by every receiver).
//! 3. **Broadcast forwarding rate** (RFC 2889 §5.9, from the wire). The generator
//!    sends broadcast frames flat out for [`ScaleConfig::seconds`]; every receiver's
//!    count is read at 20 % and at 95 % of the trial, while the generator runs, so
//!    the rates are steady-state ones (no backlog drained after the end counts).
//!    Reported: the offered rate, frames/s delivered summed over the receivers and
//!    per receiver (mean and slowest).
//!
//! **Receivers.** Every endpoint has a sink, up to [`ScaleConfig::receivers`]
//! (default 1 000); with more endpoints an evenly spaced subset has one (the
//! first and the last endpoint among them), and the figures say `K of N`. Each sink
//! holds a few file descriptors; the run raises `RLIMIT_NOFILE` to its hard limit
//! and takes fewer receivers if they would not fit, saying so.
//!
//! [`Sink`]: umacvlan::bpf::Sink

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::lab::{scale_mac, ScaleLab, EXT_MAC};
use super::report::{median, Machine};
use super::{gen, Error, FrameSpec, Generator, Limit, System, SystemKind};
use umacvlan::bpf::{Sink, SinkCount, SinkHook};
use umacvlan::link::Netns;
use umacvlan::wire::MacAddr;

/// File descriptors one [`Sink`] holds (its BPF object's programs and maps, the tc
/// link, its namespace), with a margin.
pub const SINK_FDS: usize = 12;
/// Adds in the window of the marginal per-add cost: adds k−9..=k.
pub const AROUND: usize = 10;
/// UDP destination port of the address-capacity frames.
const CAPACITY_PORT: u16 = 20_001;
/// UDP destination port of the broadcast frames.
const BROADCAST_PORT: u16 = 20_002;

/// What `bench scale` measures.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleConfig {
    /// Endpoint counts N, in order; each is measured on a fresh network. The
    /// marginal per-add cost is reported around each of them (those ≤ N).
    pub counts: Vec<usize>,
    /// Systems, in the order of each round: umacvlan (any tuning of `bench run`
    /// but `napi` and `rps`) and macvlan. The paired ratios are against the first
    /// macvlan.
    pub systems: Vec<System>,
    /// Rounds.
    pub rounds: usize,
    /// Length of the broadcast trial.
    #[serde(serialize_with = "ser_secs")]
    pub seconds: Duration,
    /// Frame size of every frame sent, FCS included (64..=1518).
    pub size: usize,
    /// Endpoint namespaces, at most (endpoint `i` lives in namespace `i % this`).
    pub namespaces: usize,
    /// Receivers (sinks), at most.
    pub receivers: usize,
    /// Frames per second of the address-capacity trial.
    pub capacity_rate: f64,
    /// Core of the generator (the switch runs on its tuning's core).
    pub gen_core: usize,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig {
            counts: vec![10, 100, 1000],
            systems: ["umacvlan", "macvlan"]
                .iter()
                .map(|s| s.parse().expect("valid"))
                .collect(),
            rounds: 3,
            seconds: Duration::from_secs(2),
            size: gen::MIN_FRAME,
            namespaces: 10,
            receivers: 1000,
            capacity_rate: 10_000.0,
            gen_core: 0,
        }
    }
}

impl ScaleConfig {
    /// Checks the configuration against itself and this machine.
    ///
    /// # Errors
    /// [`Error::Config`], saying what is wrong.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.counts.is_empty() || self.systems.is_empty() || self.rounds == 0 {
            return bad("nothing to measure: give counts, systems and rounds ≥ 1".into());
        }
        if let Some(c) = self.counts.iter().find(|&&c| c == 0 || c > 65_536) {
            return bad(format!("endpoint count {c} is outside 1..=65536"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(c) = self.counts.iter().find(|c| !seen.insert(**c)) {
            return bad(format!("endpoint count {c} is listed twice"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(s) = self.systems.iter().find(|s| !seen.insert(s.label.as_str())) {
            return bad(format!("system {s} is listed twice"));
        }
        for s in &self.systems {
            if !matches!(s.kind, SystemKind::Umacvlan | SystemKind::Macvlan) {
                return bad(format!(
                    "bench scale measures umacvlan and macvlan, not {s}"
                ));
            }
            if s.tuning.napi_core.is_some() || s.tuning.rps.is_some() {
                return bad(format!("{s}: bench scale takes no napi or rps option"));
            }
        }
        if !(gen::MIN_FRAME..=gen::MAX_FRAME).contains(&self.size) {
            return bad(format!("frame size {} is outside 64..=1518", self.size));
        }
        if self.namespaces == 0 || self.receivers == 0 {
            return bad("--namespaces and --receivers must be at least 1".into());
        }
        if !(self.capacity_rate.is_finite() && self.capacity_rate > 0.0) {
            return bad("--capacity-rate must be a positive number of frames/s".into());
        }
        let cores = core_affinity::get_core_ids().map_or(1, |c| c.len());
        for s in &self.systems {
            if s.tuning.core >= cores || self.gen_core >= cores {
                return bad(format!(
                    "{s}: core {} or generator core {} does not exist ({cores} cores)",
                    s.tuning.core, self.gen_core
                ));
            }
        }
        Ok(())
    }

    /// The reference of paired ratios: the first macvlan.
    pub fn reference(&self) -> Option<&str> {
        self.systems
            .iter()
            .find(|s| s.kind == SystemKind::Macvlan)
            .map(|s| s.label.as_str())
    }

    /// The counts in ascending order: where the marginal per-add cost is reported.
    pub fn milestones(&self) -> Vec<usize> {
        let mut m = self.counts.clone();
        m.sort_unstable();
        m
    }
}

/// The address-capacity trial: one frame to each endpoint's MAC.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Capacity {
    /// Frames the generator sent (one per endpoint).
    pub sent: u64,
    /// Sending time, seconds.
    pub seconds: f64,
    /// Receivers that counted their frame.
    pub reached: usize,
    /// Receivers (endpoints with a sink).
    pub probed: usize,
    /// Frames counted beyond one per receiver (flooded or duplicated).
    pub misdelivered: u64,
    /// Other frames the sinks dropped meanwhile.
    pub stray: u64,
}

/// The broadcast trial.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Broadcast {
    /// Frames the generator sent over the whole trial.
    pub sent: u64,
    /// The generator's sending time, seconds.
    pub send_seconds: f64,
    /// Length of the counting window, seconds (while the generator ran).
    pub window_seconds: f64,
    /// Frames each receiver counted in the window, in the order of
    /// [`ScaleMeasurement::receivers`].
    pub delivered: Vec<u64>,
    /// Other frames the sinks dropped in the window.
    pub stray: u64,
    /// umacvlan: what was lost over the whole trial, by reason
    /// ([`ScaleLab::switch_drops`]): `kernel_rx_ring_full` a broadcast the mirror
    /// socket had no room for, `no_buffer` a flood copy with no free frame,
    /// `tx_full` a full endpoint transmit ring; `None` for macvlan.
    pub switch_drops: Option<BTreeMap<String, u64>>,
}

impl Broadcast {
    /// Offered frames per second.
    pub fn offered(&self) -> f64 {
        self.sent as f64 / self.send_seconds.max(1e-9)
    }

    /// Frames per second delivered, summed over the receivers.
    pub fn total_rate(&self) -> f64 {
        self.delivered.iter().sum::<u64>() as f64 / self.window_seconds.max(1e-9)
    }

    /// Mean frames per second per receiver.
    pub fn per_endpoint(&self) -> f64 {
        self.total_rate() / self.delivered.len().max(1) as f64
    }

    /// The slowest receiver's frames per second.
    pub fn slowest(&self) -> f64 {
        self.delivered.iter().copied().min().unwrap_or(0) as f64 / self.window_seconds.max(1e-9)
    }
}

/// One system at one endpoint count, once.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScaleMeasurement {
    /// The system's label.
    pub system: String,
    /// N, the endpoints asked for.
    pub endpoints: usize,
    /// Round, from 1.
    pub round: usize,
    /// Endpoints added (N unless an add failed).
    pub added: usize,
    /// Time of each add, microseconds, in order.
    pub add_us: Vec<f64>,
    /// Wall time of the adds made, seconds.
    pub add_seconds: f64,
    /// Endpoints with a receiver.
    pub receivers: Vec<usize>,
    /// Why there are fewer receivers than endpoints, if there are.
    pub receivers_note: Option<String>,
    /// The address-capacity trial.
    pub capacity: Option<Capacity>,
    /// The broadcast trial.
    pub broadcast: Option<Broadcast>,
    /// What failed, if something did; what was measured before stays.
    pub failed: Option<String>,
}

impl ScaleMeasurement {
    /// Every step was measured.
    pub fn complete(&self) -> bool {
        self.failed.is_none() && self.broadcast.is_some()
    }
}

/// `k` receivers out of `n` endpoints: all of them if `k ≥ n`, else `k` evenly
/// spaced ones from the first to the last.
pub fn sample(n: usize, k: usize) -> Vec<usize> {
    match k {
        _ if k >= n => (0..n).collect(),
        0 => Vec::new(),
        1 => vec![n - 1],
        _ => (0..k).map(|j| j * (n - 1) / (k - 1)).collect(),
    }
}

/// The marginal cost of an add around the `k`-th (from 1): the median of adds
/// `k−9..=k` (fewer below the 10th); `None` past the adds measured.
pub fn around(add_us: &[f64], k: usize) -> Option<f64> {
    if k == 0 || k > add_us.len() {
        return None;
    }
    median(&add_us[k.saturating_sub(AROUND)..k])
}

/// The sinks on the receivers, in endpoint order; attached and detached from inside
/// their namespaces, a namespace at a time.
struct Receivers {
    /// (endpoint, its namespace, its sink).
    sinks: Vec<(usize, String, Sink)>,
}

impl Receivers {
    fn attach(lab: &ScaleLab, picks: &[usize]) -> Result<Receivers, Error> {
        let mut by_ns: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for &i in picks {
            let (ns, ifname, _) = lab.endpoint(i);
            by_ns.entry(ns.to_string()).or_default().push((i, ifname));
        }
        let mut r = Receivers { sinks: Vec::new() };
        for (ns, eps) in by_ns {
            let sinks = Netns::open(&ns)?.run(move || {
                eps.into_iter()
                    .map(|(i, ifname)| {
                        let idx = umacvlan::sys::if_nametoindex(&ifname)
                            .map_err(|e| Error::Config(format!("{ifname}: {e}")))?;
                        Ok((i, Sink::attach(idx, SinkHook::TcIngress)?))
                    })
                    .collect::<Result<Vec<_>, Error>>()
            })??;
            r.sinks
                .extend(sinks.into_iter().map(|(i, s)| (i, ns.clone(), s)));
        }
        r.sinks.sort_by_key(|(i, _, _)| *i);
        Ok(r)
    }

    /// Every receiver, in the order of [`Receivers::counts`].
    fn endpoints(&self) -> Vec<usize> {
        self.sinks.iter().map(|(i, _, _)| *i).collect()
    }

    /// Count only the UDP destination port `port`.
    fn select(&self, port: u16) -> Result<(), Error> {
        for (_, _, s) in &self.sinks {
            s.count_only_udp_port(port)?;
        }
        Ok(())
    }

    /// Every receiver's count, and when (the middle of the reading).
    fn counts(&self) -> Result<(Vec<SinkCount>, Instant), Error> {
        let t0 = Instant::now();
        let c = self
            .sinks
            .iter()
            .map(|(_, _, s)| s.count().map_err(Error::from))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((c, t0 + t0.elapsed() / 2))
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        // Detached from inside their namespace: no thread per sink.
        let mut by_ns: BTreeMap<String, Vec<Sink>> = BTreeMap::new();
        for (_, ns, s) in self.sinks.drain(..) {
            by_ns.entry(ns).or_default().push(s);
        }
        for (ns, sinks) in by_ns {
            match Netns::open(&ns) {
                Ok(n) => {
                    let _ = n.run(move || drop(sinks));
                }
                Err(_) => drop(sinks),
            }
        }
    }
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Measures one system at `n` endpoints once. A failure is recorded in
/// [`ScaleMeasurement::failed`], with what was measured before it.
pub fn measure(cfg: &ScaleConfig, system: &System, n: usize, round: usize) -> ScaleMeasurement {
    let mut m = ScaleMeasurement {
        system: system.label.clone(),
        endpoints: n,
        round,
        ..ScaleMeasurement::default()
    };
    if let Err(e) = measure_into(cfg, system, n, &mut m) {
        m.failed = Some(e.to_string());
    }
    m
}

fn measure_into(
    cfg: &ScaleConfig,
    system: &System,
    n: usize,
    m: &mut ScaleMeasurement,
) -> Result<(), Error> {
    let lab = ScaleLab::build(system, cfg.namespaces.min(n))?;

    // 1. Time to add N endpoints.
    let t0 = Instant::now();
    for i in 0..n {
        let took = lab
            .add(i)
            .map_err(|e| Error::Config(format!("endpoint {} of {n}: {e}", i + 1)))?;
        m.add_us.push(took.as_secs_f64() * 1e6);
        m.added = i + 1;
        m.add_seconds = t0.elapsed().as_secs_f64();
    }

    // The receivers, as many as fit in the file descriptors left.
    let limit = umacvlan::sys::raise_nofile_limit().map_or(1024, |l| l as usize);
    let room = limit.saturating_sub(open_fds() + 256) / SINK_FDS;
    let want = cfg.receivers.min(n);
    let k = want.min(room);
    if k == 0 {
        return Err(Error::Config(format!(
            "no file descriptor left for a receiver (RLIMIT_NOFILE {limit})"
        )));
    }
    if k < n {
        let mut note = format!("{k} of {n} endpoints have a receiver (evenly spaced)");
        if k < want {
            let _ = write!(note, "; RLIMIT_NOFILE {limit} holds no more than {k}");
        }
        m.receivers_note = Some(note);
    }
    let sinks = Receivers::attach(&lab, &sample(n, k))?;
    m.receivers = sinks.endpoints();
    let mut spec = FrameSpec::new(EXT_MAC, MacAddr::BROADCAST);
    spec.size = cfg.size;
    let mut gen = Netns::open(&lab.ext)?.run(move || {
        let idx = umacvlan::sys::if_nametoindex("eth0")
            .map_err(|e| Error::Config(format!("eth0 in the lab: {e}")))?;
        Generator::open(idx, &spec)
    })??;

    // 2. Address capacity: one frame to each endpoint's MAC.
    gen.set_dport(CAPACITY_PORT)?;
    sinks.select(CAPACITY_PORT)?;
    let (c0, _) = sinks.counts()?;
    let dsts: Vec<MacAddr> = (0..n).map(scale_mac).collect();
    let paced = Duration::from_secs_f64(n as f64 / cfg.capacity_rate) + Duration::from_secs(2);
    let r = gen.run_each(&dsts, cfg.capacity_rate, paced)?;
    // Until every receiver has its frame, or the counts stop changing (at most 2 s).
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last: Option<u64> = None;
    let c1 = loop {
        std::thread::sleep(Duration::from_millis(50));
        let (c, _) = sinks.counts()?;
        let got: Vec<u64> = c
            .iter()
            .zip(&c0)
            .map(|(a, b)| a.frames - b.frames)
            .collect();
        let sum = got.iter().sum();
        if got.iter().all(|&g| g >= 1) || last == Some(sum) || Instant::now() > deadline {
            break c;
        }
        last = Some(sum);
    };
    let got: Vec<u64> = c1
        .iter()
        .zip(&c0)
        .map(|(a, b)| a.frames - b.frames)
        .collect();
    let reached = got.iter().filter(|&&g| g >= 1).count();
    m.capacity = Some(Capacity {
        sent: r.sent,
        seconds: r.elapsed.as_secs_f64(),
        reached,
        probed: got.len(),
        misdelivered: got.iter().sum::<u64>() - reached as u64,
        stray: c1.iter().zip(&c0).map(|(a, b)| a.other - b.other).sum(),
    });

    // 3. Broadcast, flat out; counted while the generator runs.
    gen.set_dport(BROADCAST_PORT)?;
    sinks.select(BROADCAST_PORT)?;
    let secs = cfg.seconds;
    let drops0 = lab.switch_drops()?;
    let (report, a, b) = std::thread::scope(|s| -> Result<_, Error> {
        let sender = s.spawn(|| {
            gen.run(Limit {
                count: None,
                duration: secs,
                rate: None,
            })
        });
        let start = Instant::now();
        let reading = |at: f64| {
            std::thread::sleep(
                (start + secs.mul_f64(at)).saturating_duration_since(Instant::now()),
            );
            sinks.counts()
        };
        let a = reading(0.2);
        let b = reading(0.95);
        let report = sender
            .join()
            .map_err(|_| Error::Config("the generator panicked".into()))?;
        Ok((report, a?, b?))
    })?;
    let ((ca, ta), (cb, tb)) = (a, b);
    // Once the backlog has drained.
    std::thread::sleep(Duration::from_millis(300));
    let switch_drops = lab.switch_drops()?.map(|after| {
        let before = drops0.unwrap_or_default();
        after
            .into_iter()
            .map(|(k, v)| {
                let d = v - before.get(&k).copied().unwrap_or(0);
                (k, d)
            })
            .filter(|(_, d)| *d > 0)
            .collect()
    });
    m.broadcast = Some(Broadcast {
        sent: report.sent,
        send_seconds: report.elapsed.as_secs_f64(),
        window_seconds: (tb - ta).as_secs_f64(),
        delivered: cb
            .iter()
            .zip(&ca)
            .map(|(b, a)| b.frames - a.frames)
            .collect(),
        stray: cb.iter().zip(&ca).map(|(b, a)| b.other - a.other).sum(),
        switch_drops,
    });
    drop(gen);
    drop(sinks);
    drop(lab);
    Ok(())
}

/// Runs the whole benchmark (count × round × system), each measurement reported to
/// `progress` as it completes, stopping early (after the measurement under way)
/// once `stop` is set.
///
/// # Errors
/// A bad configuration ([`ScaleConfig::check`]). A measurement that fails is
/// recorded with the reason.
pub fn run_until(
    cfg: &ScaleConfig,
    progress: &mut dyn FnMut(&ScaleMeasurement),
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Vec<ScaleMeasurement>, Error> {
    cfg.check()?;
    if let Err(e) = umacvlan::sys::raise_nofile_limit() {
        tracing::warn!("cannot raise RLIMIT_NOFILE: {e}");
    }
    let _pinned = Pinned::to(cfg.gen_core);
    let mut out = Vec::new();
    for &n in &cfg.counts {
        for round in 1..=cfg.rounds {
            for system in &cfg.systems {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(out);
                }
                let m = measure(cfg, system, n, round);
                progress(&m);
                out.push(m);
            }
        }
    }
    Ok(out)
}

/// The calling thread pinned to one core (the generator's, whose thread inherits
/// it) until dropped; then its CPU affinity is what it was.
struct Pinned(Option<rustix::thread::CpuSet>);

impl Pinned {
    fn to(core: usize) -> Pinned {
        let before = rustix::thread::sched_getaffinity(None).ok();
        core_affinity::set_for_current(core_affinity::CoreId { id: core });
        Pinned(before)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(set) = &self.0 {
            let _ = rustix::thread::sched_setaffinity(None, set);
        }
    }
}

/// The marginal per-add cost around the `nth` add (median over rounds).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AddAt {
    /// The add, from 1.
    pub nth: usize,
    /// Microseconds (median of adds nth−9..=nth, then of the rounds).
    pub us: f64,
}

/// One system's figures at one endpoint count, over the rounds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScaleRow {
    /// System label.
    pub system: String,
    /// N.
    pub endpoints: usize,
    /// Rounds in which every step was measured.
    pub rounds: usize,
    /// Fewest endpoints added in a round (N unless an add failed).
    pub added: usize,
    /// Wall time of the N adds, seconds (median of the rounds that added them all).
    pub add_seconds: Option<f64>,
    /// Mean time per add, microseconds (median of those rounds).
    pub add_mean_us: Option<f64>,
    /// The marginal per-add cost around each count ≤ N.
    pub add_at: Vec<AddAt>,
    /// Fewest receivers reached by the address-capacity trial in a round.
    pub reached: Option<usize>,
    /// Receivers probed (of the round with the fewest reached).
    pub probed: usize,
    /// Most frames misdelivered in a round.
    pub misdelivered: u64,
    /// Offered broadcast frames/s (median).
    pub offered: Option<f64>,
    /// Broadcast frames/s delivered, summed over the receivers (median).
    pub delivered: Option<f64>,
    /// Mean broadcast frames/s per receiver (median).
    pub per_endpoint: Option<f64>,
    /// The slowest receiver's frames/s, over every round.
    pub slowest: Option<f64>,
    /// Receivers of the broadcast trial (fewest in a round).
    pub receivers: usize,
    /// umacvlan: the losses in the broadcast trial by reason (median of the
    /// rounds); empty for macvlan.
    pub switch_drops: BTreeMap<String, f64>,
    /// Median over rounds of (delivered / the reference's delivered, same N and
    /// round).
    pub paired: Option<f64>,
    /// What failed, if a round failed.
    pub failed: Option<String>,
    /// Why there were fewer receivers than endpoints, if there were.
    pub receivers_note: Option<String>,
}

/// Rows for every (count, system), in configuration order.
pub fn summarize(cfg: &ScaleConfig, ms: &[ScaleMeasurement]) -> Vec<ScaleRow> {
    let reference = cfg.reference();
    let mut rows = Vec::new();
    for &n in &cfg.counts {
        for s in &cfg.systems {
            let mine: Vec<&ScaleMeasurement> = ms
                .iter()
                .filter(|m| m.endpoints == n && m.system == s.label)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let all_added: Vec<&&ScaleMeasurement> = mine
                .iter()
                .filter(|m| m.added == n && m.add_us.len() == n)
                .collect();
            let add_at = cfg
                .milestones()
                .into_iter()
                .filter(|&k| k <= n)
                .filter_map(|k| {
                    let v: Vec<f64> = all_added
                        .iter()
                        .filter_map(|m| around(&m.add_us, k))
                        .collect();
                    median(&v).map(|us| AddAt { nth: k, us })
                })
                .collect();
            let caps: Vec<&Capacity> = mine.iter().filter_map(|m| m.capacity.as_ref()).collect();
            let worst = caps.iter().min_by_key(|c| c.reached);
            let bcs: Vec<&Broadcast> = mine.iter().filter_map(|m| m.broadcast.as_ref()).collect();
            let of =
                |f: fn(&Broadcast) -> f64| median(&bcs.iter().map(|b| f(b)).collect::<Vec<_>>());
            let paired = reference.and_then(|r| {
                let rate = |sys: &str, round: usize| {
                    ms.iter()
                        .find(|m| m.endpoints == n && m.system == sys && m.round == round)
                        .and_then(|m| m.broadcast.as_ref())
                        .map(Broadcast::total_rate)
                };
                let v: Vec<f64> = mine
                    .iter()
                    .filter_map(|m| match (rate(&s.label, m.round), rate(r, m.round)) {
                        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                        _ => None,
                    })
                    .collect();
                median(&v)
            });
            rows.push(ScaleRow {
                system: s.label.clone(),
                endpoints: n,
                rounds: mine.iter().filter(|m| m.complete()).count(),
                added: mine.iter().map(|m| m.added).min().unwrap_or(0),
                add_seconds: median(&all_added.iter().map(|m| m.add_seconds).collect::<Vec<_>>()),
                add_mean_us: median(
                    &all_added
                        .iter()
                        .map(|m| m.add_us.iter().sum::<f64>() / n as f64)
                        .collect::<Vec<_>>(),
                ),
                add_at,
                reached: worst.map(|c| c.reached),
                probed: worst.map_or(0, |c| c.probed),
                misdelivered: caps.iter().map(|c| c.misdelivered).max().unwrap_or(0),
                offered: of(Broadcast::offered),
                delivered: of(Broadcast::total_rate),
                per_endpoint: of(Broadcast::per_endpoint),
                slowest: bcs.iter().map(|b| b.slowest()).reduce(f64::min),
                receivers: bcs.iter().map(|b| b.delivered.len()).min().unwrap_or(0),
                switch_drops: {
                    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                    for d in bcs.iter().filter_map(|b| b.switch_drops.as_ref()) {
                        for (k, v) in d {
                            by.entry(k.clone()).or_default().push(*v as f64);
                        }
                    }
                    // A reason missing from a round was zero there.
                    let n = bcs.iter().filter(|b| b.switch_drops.is_some()).count();
                    by.into_iter()
                        .filter_map(|(k, mut v)| {
                            v.resize(n, 0.0);
                            median(&v).map(|m| (k, m))
                        })
                        .collect()
                },
                paired,
                failed: mine.iter().find_map(|m| m.failed.clone()),
                receivers_note: mine.iter().find_map(|m| m.receivers_note.clone()),
            });
        }
    }
    rows
}

/// `k` as an English ordinal: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, …
pub fn ordinal(k: usize) -> String {
    let suffix = match (k % 10, k % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{k}{suffix}")
}

/// A duration in microseconds, as µs, ms or s.
pub fn fmt_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A rate in frames per second, scaled (frames/s, k, M).
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.3} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// The Markdown tables: the per-add cost at each count (from the largest N), then
/// per N: time to add, address capacity, broadcast rate.
pub fn table(cfg: &ScaleConfig, rows: &[ScaleRow]) -> String {
    let mut s = String::new();
    let refname = cfg.reference().unwrap_or("-");
    let ms = cfg.milestones();
    let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or("-".into(), f);
    let rounds = cfg.rounds;
    let _ = writeln!(
        s,
        "### Time per endpoint add, around the k-th add (median of adds k−9..=k, then of {rounds} round(s))\n"
    );
    let _ = write!(s, "| system | from N |");
    for k in &ms {
        let _ = write!(s, " {} |", ordinal(*k));
    }
    let _ = write!(s, "\n|---|---|");
    for _ in &ms {
        s.push_str("---|");
    }
    s.push('\n');
    for sys in &cfg.systems {
        // The largest N at which this system added every endpoint (in some round).
        let Some(r) = rows
            .iter()
            .filter(|r| r.system == sys.label && r.add_seconds.is_some())
            .max_by_key(|r| r.endpoints)
        else {
            let _ = writeln!(s, "| {} | - |{}", sys.label, " - |".repeat(ms.len()));
            continue;
        };
        let _ = write!(s, "| {} | {} |", sys.label, r.endpoints);
        for k in &ms {
            let c = r
                .add_at
                .iter()
                .find(|a| a.nth == *k)
                .map_or("-".into(), |a| fmt_us(a.us));
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "\n### Time to add N endpoints\n\n| system | N | added | all adds | mean per add |\n|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.system,
            r.endpoints,
            r.added,
            opt(r.add_seconds, |x| format!("{x:.2} s")),
            opt(r.add_mean_us, fmt_us),
        );
    }
    let _ = writeln!(
        s,
        "\n### Address capacity: one frame from the wire to each endpoint's MAC\n\n| system | N | receivers reached (worst round) | misdelivered |\n|---|---|---|---|"
    );
    for r in rows {
        let reached = r
            .reached
            .map_or("-".into(), |x| format!("{x} of {}", r.probed));
        let _ = writeln!(
            s,
            "| {} | {} | {reached} | {} |",
            r.system, r.endpoints, r.misdelivered
        );
    }
    let _ = writeln!(
        s,
        "\n### Broadcast from the wire, {} B frames, flat out for {} s (frames/s, median)\n\n| system | N | offered | delivered, all receivers | per endpoint | slowest endpoint | receivers | paired vs {refname} |\n|---|---|---|---|---|---|---|---|",
        cfg.size,
        cfg.seconds.as_secs_f64()
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} of {} | {} |",
            r.system,
            r.endpoints,
            opt(r.offered, fmt_rate),
            opt(r.delivered, fmt_rate),
            opt(r.per_endpoint, fmt_rate),
            opt(r.slowest, fmt_rate),
            r.receivers,
            r.endpoints,
            opt(r.paired, |p| format!("{p:.2}")),
        );
    }
    let drops: Vec<String> = rows
        .iter()
        .filter(|r| !r.switch_drops.is_empty())
        .map(|r| {
            let each: Vec<String> = r
                .switch_drops
                .iter()
                .map(|(k, v)| format!("{k} {}", fmt_rate(*v)))
                .collect();
            format!("* {} at N = {}: {}", r.system, r.endpoints, each.join(", "))
        })
        .collect();
    if !drops.is_empty() {
        let _ = writeln!(
            s,
            "\numacvlan's losses over the broadcast trial, frames, by reason (median of the rounds):\n\n{}",
            drops.join("\n")
        );
    }
    let notes: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let mut v = Vec::new();
            if let Some(f) = &r.failed {
                v.push(format!("failed: {f}"));
            }
            if let Some(n) = &r.receivers_note {
                v.push(n.clone());
            }
            (!v.is_empty())
                .then(|| format!("* {} at N = {}: {}", r.system, r.endpoints, v.join("; ")))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\n{}", notes.join("\n"));
    }
    s
}

/// One line about a measurement, for progress.
pub fn progress_line(m: &ScaleMeasurement) -> String {
    let mut s = format!(
        "N={:<5} round {}  {:20} added {:>5} in {:>7.2} s",
        m.endpoints, m.round, m.system, m.added, m.add_seconds
    );
    if let Some(c) = &m.capacity {
        let _ = write!(s, "  reached {}/{}", c.reached, c.probed);
    }
    if let Some(b) = &m.broadcast {
        let _ = write!(
            s,
            "  bcast offered {}/s delivered {}/s ({}/s per endpoint)",
            fmt_rate(b.offered()),
            fmt_rate(b.total_rate()),
            fmt_rate(b.per_endpoint())
        );
    }
    if let Some(f) = &m.failed {
        let _ = write!(s, "  failed: {f}");
    }
    s
}

/// The JSON document: configuration, machine, every measurement, the rows.
pub fn json(cfg: &ScaleConfig, ms: &[ScaleMeasurement], machine: &Machine) -> serde_json::Value {
    serde_json::json!({
        "benchmark": "rfc2889",
        "config": cfg,
        "machine": machine,
        "measurements": ms,
        "summary": summarize(cfg, ms),
    })
}
