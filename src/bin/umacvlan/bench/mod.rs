//! Throughput benchmarks: a generator and a sink, the systems they measure, and a
//! driver that interleaves them round by round (`umacvlan bench`).
//!
//! # Method
//! For each scenario, frame size and round, every system is measured in turn on a
//! freshly built network ([`lab`]): A B C D A B C D … so that slow drift of the
//! shared machine hits all systems alike, and each system's figure can be divided
//! by the same round's kernel-macvlan figure (the *paired ratio*).
//!
//! One measurement:
//! 1. build the namespaces, start the system, attach the [`Sink`] (BPF, tc ingress,
//!    count and drop) to the receiving interface, open the [`Generator`] (AF_XDP,
//!    copy mode, pinned to the generator core);
//! 2. warm up: a few frames each way, so learning bridges know both MACs;
//! 3. **maximum delivered rate**: send flat out for `seconds`, count at the sink;
//!    CPU time of the whole machine (`/proc/stat`) per delivered frame;
//! 4. **zero-loss rate** (RFC 2544 style): binary search on the offered rate
//!    between 0 and the flat-out sending rate, `zero_loss_steps` trials of
//!    `zero_loss_seconds`; a trial passes if every frame sent arrived.
//!
//! `umacvlan bench scale` ([`scale`]) measures endpoint count instead, RFC 2889
//! style: time to add N endpoints, address capacity and broadcast forwarding rate
//! against N, umacvlan and kernel macvlan side by side.
//!
//! [`Sink`]: umacvlan::bpf::Sink

pub mod cli;
pub mod gen;
pub mod l2fwd;
pub mod lab;
pub mod ovs;
pub mod report;
#[cfg(test)]
mod root_tests;
pub mod scale;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use gen::{FrameSpec, Generator, Limit};

use umacvlan::bpf::{Sink, SinkHook, XdpMode};
use umacvlan::dataplane::{ParentHook, ReceiveCpus};
use umacvlan::link::Netns;
use umacvlan::xsk::{BusyPoll, SocketTuning};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bad option.
    #[error("{0}")]
    Config(String),
    /// A competitor is not installed.
    #[error("{0}")]
    Unavailable(String),
    /// An external tool failed.
    #[error("{tool} failed: {output}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// What it printed.
        output: String,
    },
    /// Interfaces or namespaces.
    #[error(transparent)]
    Link(#[from] umacvlan::link::Error),
    /// BPF programs.
    #[error(transparent)]
    Bpf(#[from] umacvlan::bpf::Error),
    /// AF_XDP sockets.
    #[error(transparent)]
    Xsk(#[from] umacvlan::xsk::Error),
    /// The umacvlan dataplane.
    #[error(transparent)]
    Dataplane(#[from] umacvlan::dataplane::Error),
    /// Namespace set.
    #[error(transparent)]
    Demo(#[from] crate::demo::Error),
    /// Writing results.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where traffic enters and leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub enum Scenario {
    /// Endpoint c1 → endpoint c2, bridge mode (local switching).
    #[serde(rename = "ep-ep")]
    EpToEp,
    /// The external host → endpoint c2, through the parent.
    #[serde(rename = "wire-ep")]
    WireToEp,
    /// Endpoint c1 → the external host, through the parent.
    #[serde(rename = "ep-wire")]
    EpToWire,
    /// Endpoint c1 broadcasts; counted at endpoint c2 (the copy to the wire goes
    /// too). Not in the default run: `--scenarios ep-bcast`.
    #[serde(rename = "ep-bcast")]
    EpBroadcast,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 3] = [Scenario::EpToEp, Scenario::WireToEp, Scenario::EpToWire];
    /// Scenarios run only when asked for.
    pub const EXTRA: [Scenario; 1] = [Scenario::EpBroadcast];

    /// Short name: `ep-ep`, `wire-ep`, `ep-wire`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::EpToEp => "ep-ep",
            Scenario::WireToEp => "wire-ep",
            Scenario::EpToWire => "ep-wire",
            Scenario::EpBroadcast => "ep-bcast",
        }
    }

    /// Human title.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::EpToEp => "endpoint → endpoint",
            Scenario::WireToEp => "wire → endpoint",
            Scenario::EpToWire => "endpoint → wire",
            Scenario::EpBroadcast => "endpoint broadcast → endpoint",
        }
    }
}

impl FromStr for Scenario {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Scenario::ALL
            .into_iter()
            .chain(Scenario::EXTRA)
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown scenario {s:?}: use ep-ep, wire-ep, ep-wire or ep-bcast"
                ))
            })
    }
}

/// The kind of system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SystemKind {
    /// This project.
    Umacvlan,
    /// The kernel's macvlan, bridge mode (the reference of every paired ratio).
    Macvlan,
    /// A Linux bridge with veth pairs, as Docker builds it (`bridge-nf-call-iptables=1`).
    Bridge,
    /// Open vSwitch, userspace datapath, `afxdp` ports.
    Ovs,
    /// The raw AF_XDP forwarder ([`l2fwd`]).
    L2fwd,
    /// The bare kernel forwarding of the fast path, no switch: veth pairs and a tc
    /// program that redirects every frame (`bpf_redirect_peer` into the
    /// destination endpoint, `bpf_redirect` to the parent). The limit the fast path
    /// is measured against.
    Redirect,
}

/// Knobs of the AF_XDP systems (umacvlan, l2fwd; OVS takes the XDP mode and core).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tuning {
    /// XDP mode on every interface the switch receives from (`None`: the system's
    /// default — umacvlan: native on the parent, generic on the endpoints' veths;
    /// l2fwd: generic, the faster mode on veth; OVS: native).
    #[serde(serialize_with = "ser_xdp")]
    pub xdp_mode: Option<XdpMode>,
    /// The switch's core (the generator runs on [`BenchConfig::gen_core`]).
    pub core: usize,
    /// Sleep when idle (zero: busy-poll). `None`: busy-poll on the AF_XDP path, and
    /// the dataplane's default (a short sleep when idle) with the fast path, where
    /// the worker only sees what the kernel does not forward.
    #[serde(serialize_with = "ser_opt_dur")]
    pub idle_sleep: Option<Duration>,
    /// All four ring sizes (`None`: the dataplane's defaults, 1024).
    pub ring: Option<u32>,
    /// Copy-mode transmit budget and busy polling.
    #[serde(serialize_with = "ser_tuning")]
    pub socket: SocketTuning,
    /// Bind with `XDP_USE_NEED_WAKEUP` (`nowakeup` turns it off).
    pub need_wakeup: bool,
    /// Threaded NAPI on the switch's host-side interfaces, the kthreads pinned to
    /// this core: moves the kernel's receive work (XDP and the copy into the UMEM)
    /// off the sender's core.
    pub napi_core: Option<usize>,
    /// umacvlan: the kernel fast path on (`fast`) or off (`slow`: every frame through
    /// AF_XDP); `None`: the dataplane's default
    /// ([`umacvlan::dataplane::DataplaneConfig::fastpath`], on).
    pub fastpath: Option<bool>,
    /// RPS: the receive work of every interface of the lab goes to these CPUs (a
    /// mask).
    pub rps: Option<u32>,
    /// umacvlan: where the parent's frames are steered from (`parent=xdp|tc|auto`);
    /// `None`: the dataplane's default.
    #[serde(serialize_with = "ser_parent_hook")]
    pub parent_hook: Option<ParentHook>,
    /// umacvlan: the receive CPUs of its endpoints' veths (`recv=kernel|all|CPUS`,
    /// CPUS as `1` or `0-1`); `None`: the dataplane's default, unless `rps` is set.
    #[serde(serialize_with = "ser_recv")]
    pub receive_cpus: Option<ReceiveCpus>,
}

fn ser_recv<S: serde::Serializer>(r: &Option<ReceiveCpus>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(&r.to_string()),
        None => s.serialize_str("default"),
    }
}

fn ser_parent_hook<S: serde::Serializer>(h: &Option<ParentHook>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.map_or("default", |h| h.name()))
}

fn ser_xdp<S: serde::Serializer>(m: &Option<XdpMode>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.map_or("default", |m| m.name()))
}
fn ser_opt_dur<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_micros() as u64),
        None => s.serialize_str("default"),
    }
}
fn ser_tuning<S: serde::Serializer>(t: &SocketTuning, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut st = s.serialize_struct("SocketTuning", 2)?;
    st.serialize_field("tx_budget", &t.tx_budget)?;
    st.serialize_field("busy_poll_usecs", &t.busy_poll.map(|b| b.usecs))?;
    st.end()
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            xdp_mode: None,
            core: 1,
            idle_sleep: None,
            ring: None,
            socket: SocketTuning::default(),
            napi_core: None,
            need_wakeup: true,
            fastpath: None,
            rps: None,
            parent_hook: None,
            receive_cpus: None,
        }
    }
}

/// One system under test, with its label in reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct System {
    /// What it is.
    pub kind: SystemKind,
    /// How it was asked for, e.g. `umacvlan:generic,budget=256`.
    pub label: String,
    /// Its knobs.
    pub tuning: Tuning,
}

impl FromStr for System {
    type Err = Error;
    /// `NAME[:OPT,OPT...]`; NAME is umacvlan, macvlan, bridge, ovs or l2fwd; OPTs
    /// (for umacvlan, l2fwd and, where they apply, ovs): `generic`, `native`,
    /// `core=N`, `sleep=USECS`, `ring=N`, `budget=N`, `busypoll=USECS`, `napi=CORE`,
    /// `nowakeup`; umacvlan also `fast` / `slow` (the kernel fast path on / off, on by
    /// default), `parent=xdp|tc|auto` (where the parent is steered from) and
    /// `recv=kernel|all|CPUS` (its endpoints' receive CPUs); umacvlan, macvlan and redirect `rps=MASK` (the receive work of every
    /// interface of the lab on those CPUs).
    fn from_str(s: &str) -> Result<Self, Error> {
        let (name, opts) = s.split_once(':').unwrap_or((s, ""));
        let kind = match name {
            "umacvlan" => SystemKind::Umacvlan,
            "macvlan" => SystemKind::Macvlan,
            "bridge" => SystemKind::Bridge,
            "ovs" => SystemKind::Ovs,
            "l2fwd" => SystemKind::L2fwd,
            "redirect" => SystemKind::Redirect,
            _ => {
                return Err(Error::Config(format!(
                    "unknown system {name:?}: use umacvlan, macvlan, bridge, ovs, l2fwd or redirect"
                )))
            }
        };
        let mut t = Tuning::default();
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            if kind == SystemKind::Bridge
                || (matches!(kind, SystemKind::Macvlan | SystemKind::Redirect)
                    && !o.starts_with("rps="))
            {
                return Err(Error::Config(format!(
                    "{name} takes no options (got {o:?})"
                )));
            }
            let (k, v) = o.split_once('=').unwrap_or((o, ""));
            let num = || {
                v.parse::<u32>().map_err(|_| {
                    Error::Config(format!("option {k} of {name} needs a number, got {v:?}"))
                })
            };
            if matches!(k, "generic" | "native" | "nowakeup" | "fast" | "slow") && !v.is_empty() {
                return Err(Error::Config(format!(
                    "option {k} of {name} takes no value"
                )));
            }
            match k {
                "generic" => t.xdp_mode = Some(XdpMode::Generic),
                "native" => t.xdp_mode = Some(XdpMode::Native),
                "nowakeup" if kind != SystemKind::Ovs => t.need_wakeup = false,
                "fast" if kind == SystemKind::Umacvlan => t.fastpath = Some(true),
                "slow" if kind == SystemKind::Umacvlan => t.fastpath = Some(false),
                "rps"
                    if matches!(
                        kind,
                        SystemKind::Umacvlan | SystemKind::Macvlan | SystemKind::Redirect
                    ) =>
                {
                    let m = u32::from_str_radix(v, 16).ok().filter(|&m| m != 0);
                    t.rps = Some(m.ok_or_else(|| {
                        Error::Config(format!("rps={v}: a CPU mask in hex, e.g. rps=2"))
                    })?);
                }
                "recv" if kind == SystemKind::Umacvlan => {
                    t.receive_cpus = Some(v.parse().map_err(Error::Config)?)
                }
                "parent" if kind == SystemKind::Umacvlan => {
                    t.parent_hook = Some(v.parse().map_err(Error::Config)?)
                }
                "core" => t.core = num()? as usize,
                "sleep" if kind == SystemKind::Umacvlan => {
                    t.idle_sleep = Some(Duration::from_micros(u64::from(num()?)))
                }
                "ring" if kind != SystemKind::Ovs => {
                    let r = num()?;
                    if !r.is_power_of_two() || !(128..=16384).contains(&r) {
                        return Err(Error::Config(format!(
                            "ring={r}: a power of two from 128 to 16384"
                        )));
                    }
                    t.ring = Some(r);
                }
                "budget" if kind != SystemKind::Ovs => t.socket.tx_budget = Some(num()?),
                "napi" if kind != SystemKind::Ovs => t.napi_core = Some(num()? as usize),
                "busypoll" if kind != SystemKind::Ovs => {
                    t.socket.busy_poll = Some(BusyPoll {
                        usecs: num()?,
                        budget: 64,
                    })
                }
                _ => return Err(Error::Config(format!("unknown option {o:?} for {name}"))),
            }
        }
        Ok(System {
            kind,
            label: s.to_string(),
            tuning: t,
        })
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// What to measure.
#[derive(Clone, Debug, Serialize)]
pub struct BenchConfig {
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Frame sizes (FCS included), in order.
    pub sizes: Vec<usize>,
    /// Systems, in the order of each round. The reference of paired ratios is the
    /// first `macvlan`.
    pub systems: Vec<System>,
    /// Rounds.
    pub rounds: usize,
    /// Length of the flat-out measurement.
    #[serde(serialize_with = "ser_secs")]
    pub seconds: Duration,
    /// Zero-loss search trials (0: no search).
    pub zero_loss_steps: u32,
    /// Length of one zero-loss trial.
    #[serde(serialize_with = "ser_secs")]
    pub zero_loss_seconds: Duration,
    /// Core of the generator.
    pub gen_core: usize,
    /// Where the sink hooks in.
    #[serde(serialize_with = "ser_hook")]
    pub sink: SinkHook,
}

fn ser_hook<S: serde::Serializer>(h: &SinkHook, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match h {
        SinkHook::Xdp(XdpMode::Generic) => "xdp-generic",
        SinkHook::Xdp(_) => "xdp",
        _ => "tc",
    })
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            scenarios: Scenario::ALL.to_vec(),
            sizes: vec![64, 128, 256, 512, 1024, 1518],
            systems: ["umacvlan", "macvlan", "bridge", "ovs", "l2fwd"]
                .iter()
                .map(|s| s.parse().expect("valid"))
                .collect(),
            rounds: 3,
            seconds: Duration::from_secs(2),
            zero_loss_steps: 6,
            zero_loss_seconds: Duration::from_millis(500),
            gen_core: 0,
            sink: SinkHook::TcIngress,
        }
    }
}

/// One trial: frames sent and delivered, and CPU time used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Trial {
    /// Offered rate (`None`: flat out).
    pub offered: Option<f64>,
    /// Frames the generator sent.
    pub sent: u64,
    /// Frames the sink counted.
    pub delivered: u64,
    /// Sending time in seconds.
    pub seconds: f64,
    /// Busy CPU time of the whole machine while sending, nanoseconds (`None` if
    /// `/proc/stat` could not be read).
    pub cpu_ns: Option<u64>,
    /// Frames the sink dropped without counting (not this trial's flow).
    pub stray: u64,
    /// Frames still with the kernel when the generator stopped waiting: such a
    /// trial cannot be called lossless.
    pub unfinished: u64,
}

impl Trial {
    /// Delivered frames per second.
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }

    /// Sent frames per second.
    pub fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.seconds.max(1e-9)
    }

    /// Machine CPU nanoseconds per delivered frame.
    pub fn cpu_per_frame(&self) -> Option<f64> {
        let ns = self.cpu_ns?;
        (self.delivered > 0).then(|| ns as f64 / self.delivered as f64)
    }

    /// Every frame sent arrived (each trial has its own flow, so nothing from an
    /// earlier trial can make up for a loss).
    pub fn lossless(&self) -> bool {
        self.sent > 0 && self.unfinished == 0 && self.delivered >= self.sent
    }
}

/// One measurement of one system.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// Scenario.
    pub scenario: Scenario,
    /// Frame size, FCS included.
    pub size: usize,
    /// The system's label.
    pub system: String,
    /// Round, from 1.
    pub round: usize,
    /// The flat-out trial.
    pub max: Trial,
    /// Highest rate of a lossless zero-loss trial (delivered frames/s), if searched.
    pub zero_loss: Option<f64>,
    /// The zero-loss trials.
    pub zero_loss_trials: Vec<Trial>,
    /// Why it was not measured (e.g. OVS missing); the trials are then empty.
    pub skipped: Option<String>,
}

/// Busy CPU time of all CPUs since boot, in nanoseconds (`/proc/stat`: user, nice,
/// system, irq and softirq; idle, iowait and the hypervisor's steal left out).
fn cpu_busy_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| v.get(i)).sum();
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Some(busy * (1_000_000_000 / hz))
}

/// Runs one trial on an open generator and sink: the generator's frames get UDP
/// destination port `port` and the sink counts only those.
fn trial(
    gen: &mut Generator,
    sink: &Sink,
    port: u16,
    rate: Option<f64>,
    secs: Duration,
) -> Result<Trial, Error> {
    gen.set_dport(port)?;
    sink.count_only_udp_port(port)?;
    let c0 = sink.count()?;
    let cpu0 = cpu_busy_ns();
    let r = gen.run(Limit {
        count: None,
        duration: secs,
        rate,
    });
    let cpu1 = cpu_busy_ns();
    // Let queues drain: until two readings 10 ms apart agree (at most 500 ms).
    let mut last = sink.count()?;
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let c = sink.count()?;
        if c == last || Instant::now() > deadline {
            last = c;
            break;
        }
        last = c;
    }
    Ok(Trial {
        offered: rate,
        sent: r.sent,
        delivered: last.frames - c0.frames,
        seconds: r.elapsed.as_secs_f64().min(secs.as_secs_f64() + 0.2),
        cpu_ns: cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a)),
        stray: last.other - c0.other,
        unfinished: r.unfinished,
    })
}

/// Binary search for the highest lossless offered rate in (0, `hi`]. `run` does
/// one trial at an offered rate. Returns the best lossless trial's delivered rate
/// (0 if none passed) and every trial.
pub fn zero_loss_search(
    hi: f64,
    steps: u32,
    mut run: impl FnMut(f64) -> Result<Trial, Error>,
) -> Result<(f64, Vec<Trial>), Error> {
    let (mut lo, mut hi) = (0.0f64, hi);
    let mut best = 0.0f64;
    let mut trials = Vec::new();
    for _ in 0..steps {
        let mid = if trials.is_empty() {
            hi
        } else {
            (lo + hi) / 2.0
        };
        let t = run(mid)?;
        if t.lossless() {
            best = best.max(t.rate());
            lo = mid;
        } else {
            hi = mid;
        }
        trials.push(t);
        if trials.len() == 1 && t.lossless() {
            break; // lossless at the top: nothing above to find
        }
    }
    Ok((best, trials))
}

/// Measures one system once. A failure in the middle (a competitor that would not
/// start, say) is recorded in [`Measurement::skipped`] rather than ending the run.
pub fn measure(
    cfg: &BenchConfig,
    system: &System,
    scenario: Scenario,
    size: usize,
    round: usize,
) -> Measurement {
    let mut m = Measurement {
        scenario,
        size,
        system: system.label.clone(),
        round,
        max: Trial::default(),
        zero_loss: None,
        zero_loss_trials: Vec::new(),
        skipped: None,
    };
    if system.kind == SystemKind::Ovs {
        if let Some(why) = ovs::Ovs::unavailable() {
            m.skipped = Some(why);
            return m;
        }
    }
    if let Err(e) = measure_into(cfg, system, scenario, size, &mut m) {
        m.skipped = Some(format!("failed: {e}"));
    }
    m
}

fn open_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce(u32) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    Netns::open(ns)?.run(move || {
        let idx = umacvlan::sys::if_nametoindex("eth0")
            .map_err(|e| Error::Config(format!("eth0 in the lab: {e}")))?;
        f(idx)
    })?
}

fn measure_into(
    cfg: &BenchConfig,
    system: &System,
    scenario: Scenario,
    size: usize,
    m: &mut Measurement,
) -> Result<(), Error> {
    let lab = lab::Lab::build(system, scenario)?;
    let p = lab.placement(scenario);
    let hook = cfg.sink;
    let sink = open_in(&p.sink_ns, move |i| Ok(Sink::attach(i, hook)?))?;
    let mut spec = FrameSpec::new(p.src, p.dst);
    spec.size = size;
    let fwd = spec.clone();
    let mut gen = open_in(&p.gen_ns, move |i| Generator::open(i, &fwd))?;
    // Warm-up: the receiver speaks first (learning bridges learn its MAC), then a
    // few frames forward, then settle.
    let mut back = FrameSpec::new(p.dst, p.src);
    back.src_ip = spec.dst_ip;
    back.dst_ip = spec.src_ip;
    let mut reply = open_in(&p.sink_ns, move |i| Generator::open(i, &back))?;
    let few = |n| Limit {
        count: Some(n),
        duration: Duration::from_millis(200),
        rate: None,
    };
    reply.run(few(8));
    drop(reply);
    gen.run(few(8));
    std::thread::sleep(Duration::from_millis(100));

    // Each trial its own UDP destination port: late frames of one trial are
    // strays to the next.
    let mut port = 10_000u16;
    let mut next_port = || {
        port += 1;
        port
    };
    m.max = trial(&mut gen, &sink, next_port(), None, cfg.seconds)?;
    if cfg.zero_loss_steps > 0 && m.max.sent > 0 {
        let (zl, trials) = zero_loss_search(m.max.sent_rate(), cfg.zero_loss_steps, |r| {
            trial(&mut gen, &sink, next_port(), Some(r), cfg.zero_loss_seconds)
        })?;
        m.zero_loss = Some(zl);
        m.zero_loss_trials = trials;
    }
    drop(gen);
    drop(sink);
    drop(lab);
    Ok(())
}

/// Runs the whole benchmark: scenario × size × round × system, each measurement
/// reported to `progress` as it completes.
///
/// # Errors
/// A bad configuration. A measurement that fails, or a competitor that is not
/// installed, is recorded as skipped with the reason.
#[cfg(test)]
pub fn run(
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&Measurement),
) -> Result<Vec<Measurement>, Error> {
    run_until(cfg, progress, &std::sync::atomic::AtomicBool::new(false))
}

/// [`run`], stopping early (after the measurement under way, whose network is
/// removed as usual) once `stop` is set, e.g. by SIGINT; returns what was measured.
///
/// # Errors
/// As [`run`].
pub fn run_until(
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&Measurement),
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Vec<Measurement>, Error> {
    if cfg.systems.is_empty() || cfg.sizes.is_empty() || cfg.scenarios.is_empty() || cfg.rounds == 0
    {
        return Err(Error::Config(
            "nothing to measure: give systems, sizes, scenarios and rounds ≥ 1".into(),
        ));
    }
    for &s in &cfg.sizes {
        if !(gen::MIN_FRAME..=gen::MAX_FRAME).contains(&s) {
            return Err(Error::Config(format!(
                "frame size {s} is outside 64..=1518"
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(s) = cfg.sizes.iter().find(|s| !seen.insert(**s)) {
        return Err(Error::Config(format!("frame size {s} is listed twice")));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(s) = cfg.scenarios.iter().find(|s| !seen.insert(**s)) {
        return Err(Error::Config(format!(
            "scenario {} is listed twice",
            s.name()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(s) = cfg.systems.iter().find(|s| !seen.insert(s.label.as_str())) {
        return Err(Error::Config(format!("system {s} is listed twice")));
    }
    let cores = core_affinity::get_core_ids().map_or(1, |c| c.len());
    for s in &cfg.systems {
        if s.tuning.core >= cores
            || cfg.gen_core >= cores
            || s.tuning.napi_core.is_some_and(|c| c >= cores)
        {
            return Err(Error::Config(format!(
                "{s}: core {} or generator core {} does not exist ({cores} cores)",
                s.tuning.core, cfg.gen_core
            )));
        }
    }
    // OVS daemons of a bench run that was killed (namespaces go by themselves).
    ovs::remove_stale();
    core_affinity::set_for_current(core_affinity::CoreId { id: cfg.gen_core });
    let mut out = Vec::new();
    for &scenario in &cfg.scenarios {
        for &size in &cfg.sizes {
            for round in 1..=cfg.rounds {
                for system in &cfg.systems {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok(out);
                    }
                    let m = measure(cfg, system, scenario, size, round);
                    progress(&m);
                    out.push(m);
                }
            }
        }
    }
    Ok(out)
}
