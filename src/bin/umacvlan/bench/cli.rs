//! `umacvlan bench ...`: the benchmark driver, the generator and the sink on the
//! command line.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::report::{self, Machine};
use crate::bench::scale::{self, ScaleConfig};
use crate::bench::{BenchConfig, FrameSpec, Generator, Limit, Measurement, Scenario, System};
use umacvlan::bpf::{Sink, SinkHook, XdpMode};
use umacvlan::link::Netns;
use umacvlan::wire::MacAddr;

/// `umacvlan bench` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Measure umacvlan and its competitors, interleaved round by round, in
    /// namespaces the bench builds and removes; print a table, write JSON and SVG.
    Run(RunArgs),
    /// RFC 2889-style: time to add N endpoints, address capacity and broadcast
    /// forwarding rate against the endpoint count N, umacvlan and kernel macvlan side
    /// by side, in namespaces the bench builds and removes.
    #[command(visible_alias = "rfc2889")]
    Scale(ScaleArgs),
    /// Send UDP frames from an interface through a copy-mode AF_XDP socket.
    Gen(GenArgs),
    /// Count and drop every frame arriving on an interface (BPF), printing the rate.
    Sink(SinkArgs),
}

/// Options of `bench run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Scenarios: ep-ep, wire-ep, ep-wire.
    #[arg(long, value_delimiter = ',', default_value = "ep-ep,wire-ep,ep-wire")]
    scenarios: Vec<Scenario>,
    /// Frame sizes in bytes, FCS included (64..=1518).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "64,128,256,512,1024,1518"
    )]
    sizes: Vec<usize>,
    /// Systems, measured in this order each round: umacvlan, macvlan, bridge, ovs,
    /// l2fwd, redirect (the bare kernel redirect the fast path uses), each optionally
    /// with `:opt,opt` (generic, native, core=N, sleep=USECS, ring=N, budget=N,
    /// busypoll=USECS, napi=CORE, nowakeup; umacvlan: fast, slow, parent=xdp|tc,
    /// recv=kernel|all|CPU|A-B; umacvlan, macvlan and redirect: rps=MASK). Give one
    /// several times with different options to compare tunings in one run.
    #[arg(
        long,
        value_delimiter = ';',
        default_value = "umacvlan;umacvlan:slow;macvlan;macvlan:rps=2;redirect;bridge;ovs;l2fwd"
    )]
    systems: Vec<System>,
    /// Rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of the flat-out measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Zero-loss binary-search trials (0: skip the search).
    #[arg(long, default_value_t = 6)]
    zero_loss_steps: u32,
    /// Seconds of one zero-loss trial.
    #[arg(long, default_value_t = 0.5)]
    zero_loss_seconds: f64,
    /// The generator's core.
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    /// Sink hook: tc (ingress) or xdp.
    #[arg(long, default_value = "tc")]
    sink: String,
    /// Directory for results.json, plot.svg and table.md.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Options of `bench scale`.
#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// Endpoint counts N, each measured on a fresh network; the time per add is also
    /// reported around each of them (the 10th, 100th, 1000th add).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    counts: Vec<usize>,
    /// Systems, in this order each round: umacvlan (with the options of `bench run`
    /// but napi and rps, e.g. `umacvlan:slow`) and macvlan.
    #[arg(long, value_delimiter = ';', default_value = "umacvlan;macvlan")]
    systems: Vec<System>,
    /// Rounds (figures are medians over them).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of the broadcast trial.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Frame size in bytes, FCS included (64..=1518).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Endpoint namespaces the endpoints are spread over, at most.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Receivers (counting sinks), at most: with more endpoints, an evenly spaced
    /// subset has one, and the output says so.
    #[arg(long, default_value_t = 1000)]
    receivers: usize,
    /// Frames per second of the address-capacity trial (one frame per endpoint).
    #[arg(long, default_value_t = 10_000.0)]
    capacity_rate: f64,
    /// The generator's core.
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    /// Print the JSON document (as results.json) on stdout instead of the tables;
    /// progress goes to stderr.
    #[arg(long)]
    json: bool,
    /// Directory for results.json and table.md.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Options of `bench gen`.
#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// Namespace of the interface (a test namespace: the host's own namespace is
    /// refused unless --allow-host-interface).
    #[arg(long)]
    netns: Option<String>,
    /// Allow an interface of the host's own (initial) network namespace: traffic
    /// then leaves on a real network.
    #[arg(long)]
    allow_host_interface: bool,
    /// Interface to send from.
    #[arg(long)]
    dev: String,
    /// Destination MAC.
    #[arg(long)]
    dst_mac: MacAddr,
    /// Source MAC (default: the interface's).
    #[arg(long)]
    src_mac: Option<MacAddr>,
    /// Frame size in bytes, FCS included (64..=1518).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Frames per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many frames.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Source IPv4 address.
    #[arg(long, default_value = "10.30.0.1")]
    src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    #[arg(long, default_value = "10.30.0.2")]
    dst_ip: Ipv4Addr,
    /// UDP source port.
    #[arg(long, default_value_t = 1024)]
    sport: u16,
    /// UDP destination port.
    #[arg(long, default_value_t = 9)]
    dport: u16,
    /// Pin to this core.
    #[arg(long)]
    core: Option<usize>,
}

/// Options of `bench sink`.
#[derive(clap::Args, Debug)]
pub struct SinkArgs {
    /// Namespace of the interface (a test namespace: the host's own namespace is
    /// refused unless --allow-host-interface).
    #[arg(long)]
    netns: Option<String>,
    /// Allow an interface of the host's own (initial) network namespace: every
    /// frame it receives is dropped while the sink runs.
    #[arg(long)]
    allow_host_interface: bool,
    /// Interface to count on.
    #[arg(long)]
    dev: String,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Hook: tc (ingress), xdp (native) or xdp-generic.
    #[arg(long, default_value = "tc")]
    hook: String,
    /// Count only IPv4/UDP frames to this destination port (the generator's
    /// default is 9); others are reported apart. Default: count everything.
    #[arg(long)]
    udp_port: Option<u16>,
}

fn parse_hook(s: &str) -> Result<SinkHook> {
    Ok(match s {
        "tc" => SinkHook::TcIngress,
        "xdp" => SinkHook::Xdp(XdpMode::Native),
        "xdp-generic" => SinkHook::Xdp(XdpMode::Generic),
        _ => bail!("unknown sink hook {s:?}: use tc, xdp or xdp-generic"),
    })
}

fn secs(s: f64, what: &str) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s < 86_400.0) {
        bail!("{what} must be a positive number of seconds below a day, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Refuses the initial network namespace unless `allow`: the generator floods and
/// the sink drops everything, which is for test namespaces.
fn check_target(ns: &Option<String>, allow: bool) -> Result<()> {
    if allow {
        return Ok(());
    }
    let inode = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let target = match ns {
        Some(n) => Netns::path_of(n),
        None => "/proc/thread-self/ns/net".into(),
    };
    let (t, init) = (
        inode(&target.to_string_lossy())
            .with_context(|| format!("namespace {}", target.display()))?,
        inode("/proc/1/ns/net").context("the initial network namespace")?,
    );
    if t == init {
        bail!(
            "refusing an interface of the host's own network namespace (it floods, or drops \
             everything): give --netns of a test namespace, or --allow-host-interface"
        );
    }
    Ok(())
}

/// Runs `f` in namespace `ns` (or here).
fn in_ns<R: Send + 'static>(
    ns: &Option<String>,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R> {
    match ns {
        Some(n) => Ok(Netns::open(n)?.run(f)?),
        None => Ok(f()),
    }
}

fn ifindex(dev: &str) -> Result<u32> {
    umacvlan::sys::if_nametoindex(dev).with_context(|| format!("no interface {dev:?}"))
}

/// Runs a `bench` subcommand.
///
/// # Errors
/// Bad options, or any step failing; the message says which.
pub fn main(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Run(a) => run(a),
        BenchCmd::Scale(a) => scale(a),
        BenchCmd::Gen(a) => {
            check_target(&a.netns, a.allow_host_interface)?;
            if a.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                bail!("--rate must be a positive number of frames per second");
            }
            let dur = secs(a.seconds, "--seconds")?;
            let dev = a.dev.clone();
            let src = match a.src_mac {
                Some(m) => m,
                None => in_ns(&a.netns, move || -> Result<MacAddr> {
                    let s = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))
                        .with_context(|| format!("no interface {dev:?}"))?;
                    Ok(s.trim().parse()?)
                })??,
            };
            let spec = FrameSpec {
                size: a.size,
                dst_mac: a.dst_mac,
                src_mac: src,
                src_ip: a.src_ip,
                dst_ip: a.dst_ip,
                sport: a.sport,
                dport: a.dport,
            };
            spec.bytes()?;
            let dev = a.dev.clone();
            let mut gen = in_ns(&a.netns, move || -> Result<Generator> {
                Ok(Generator::open(ifindex(&dev)?, &spec)?)
            })??;
            if let Some(c) = a.core {
                core_affinity::set_for_current(core_affinity::CoreId { id: c });
            }
            let r = gen.run(Limit {
                count: a.count,
                duration: dur,
                rate: a.rate,
            });
            println!(
                "sent {} frames of {} bytes in {:.3} s: {:.0} frames/s",
                r.sent,
                a.size,
                r.elapsed.as_secs_f64(),
                r.rate()
            );
            Ok(())
        }
        BenchCmd::Sink(a) => {
            check_target(&a.netns, a.allow_host_interface)?;
            let hook = parse_hook(&a.hook)?;
            let dur = secs(a.seconds, "--seconds")?;
            let dev = a.dev.clone();
            let sink = in_ns(&a.netns, move || -> Result<Sink> {
                Ok(Sink::attach(ifindex(&dev)?, hook)?)
            })??;
            if let Some(p) = a.udp_port {
                sink.count_only_udp_port(p)?;
            }
            let start = Instant::now();
            let mut last = sink.count()?;
            while start.elapsed() < dur {
                std::thread::sleep(Duration::from_secs(1).min(dur.saturating_sub(start.elapsed())));
                let c = sink.count()?;
                println!(
                    "{:>12} frames/s {:>14} bytes/s",
                    c.frames - last.frames,
                    c.bytes - last.bytes
                );
                last = c;
            }
            println!(
                "total {} frames, {} bytes ({} other frames dropped)",
                last.frames, last.bytes, last.other
            );
            Ok(())
        }
    }
}

fn run(a: RunArgs) -> Result<()> {
    let cfg = BenchConfig {
        scenarios: a.scenarios,
        sizes: a.sizes,
        systems: a.systems,
        rounds: a.rounds,
        seconds: secs(a.seconds, "--seconds")?,
        zero_loss_steps: a.zero_loss_steps,
        zero_loss_seconds: secs(a.zero_loss_seconds, "--zero-loss-seconds")?,
        gen_core: a.gen_core,
        sink: parse_hook(&a.sink)?,
    };
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let machine = Machine::here();
    println!(
        "umacvlan bench: {} on {} ({} cores); {} round(s), {} s flat out, zero-loss {} × {} s",
        machine.kernel,
        machine.cpu,
        machine.cores,
        cfg.rounds,
        cfg.seconds.as_secs_f64(),
        cfg.zero_loss_steps,
        cfg.zero_loss_seconds.as_secs_f64()
    );
    let mut progress = |m: &Measurement| {
        if let Some(why) = &m.skipped {
            if m.round == 1 {
                println!(
                    "{:8} {:5} B  {:28} skipped: {why}",
                    m.scenario.name(),
                    m.size,
                    m.system
                );
            }
            return;
        }
        println!(
            "{:8} {:5} B  round {}  {:28} sent {:>9.0}/s delivered {:>9.0}/s  zero-loss {:>9}  cpu {:>6} ns/frame",
            m.scenario.name(),
            m.size,
            m.round,
            m.system,
            m.max.sent_rate(),
            m.max.rate(),
            m.zero_loss.map_or("-".into(), |z| format!("{z:.0}/s")),
            m.max.cpu_per_frame().map_or("-".into(), |c| format!("{c:.0}")),
        );
        let _ = std::io::stdout().flush();
    };
    // SIGINT/SIGTERM: finish the measurement under way (its namespaces and any OVS
    // instance are removed as usual), then report and write what was measured.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let ms = crate::bench::run_until(&cfg, &mut progress, &stop)?;
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        println!(
            "interrupted: reporting the {} measurement(s) made",
            ms.len()
        );
    }
    let rows = report::summarize(&cfg, &ms);
    let refsys = report::reference(&cfg);
    let table = report::table(&rows, refsys.as_deref());
    let summary = report::summary(&cfg, &ms, &rows);
    println!("{summary}");
    if let Some(dir) = &a.out {
        let j = report::json(&cfg, &ms, &machine);
        std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&j)?)?;
        std::fs::write(dir.join("plot.svg"), report::svg(&cfg, &rows))?;
        std::fs::write(
            dir.join("table.md"),
            format!("{summary}\n## Every cell\n{table}"),
        )?;
        println!(
            "wrote {0}/results.json, {0}/plot.svg, {0}/table.md",
            dir.display()
        );
    }
    Ok(())
}

/// The configuration of `bench scale` from its options.
fn scale_config(a: &ScaleArgs) -> Result<ScaleConfig> {
    let cfg = ScaleConfig {
        counts: a.counts.clone(),
        systems: a.systems.clone(),
        rounds: a.rounds,
        seconds: secs(a.seconds, "--seconds")?,
        size: a.size,
        namespaces: a.namespaces,
        receivers: a.receivers,
        capacity_rate: a.capacity_rate,
        gen_core: a.gen_core,
    };
    cfg.check()?;
    Ok(cfg)
}

fn scale(a: ScaleArgs) -> Result<()> {
    let cfg = scale_config(&a)?;
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let machine = Machine::here();
    // With --json, stdout is the document alone.
    let say = |line: &str| {
        if a.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
    };
    let counts: Vec<String> = cfg.counts.iter().map(ToString::to_string).collect();
    say(&format!(
        "umacvlan bench scale (RFC 2889): {} on {} ({} cores); N = {}; {} round(s); {} B \
         broadcast for {} s; at most {} namespaces, {} receivers",
        machine.kernel,
        machine.cpu,
        machine.cores,
        counts.join(", "),
        cfg.rounds,
        cfg.size,
        cfg.seconds.as_secs_f64(),
        cfg.namespaces,
        cfg.receivers
    ));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let ms = scale::run_until(&cfg, &mut |m| say(&scale::progress_line(m)), &stop)?;
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        say(&format!(
            "interrupted: reporting the {} measurement(s) made",
            ms.len()
        ));
    }
    let rows = scale::summarize(&cfg, &ms);
    let table = scale::table(&cfg, &rows);
    let doc = scale::json(&cfg, &ms, &machine);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{table}");
    }
    if let Some(dir) = &a.out {
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(&doc)?,
        )?;
        std::fs::write(dir.join("table.md"), &table)?;
        say(&format!(
            "wrote {0}/results.json, {0}/table.md",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `umacvlan bench ...` on its own.
    #[derive(clap::Parser, Debug)]
    struct Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    }

    fn scale_args(args: &[&str]) -> Result<ScaleArgs> {
        let all = ["bench", "scale"].iter().chain(args);
        match Bench::try_parse_from(all)?.cmd {
            BenchCmd::Scale(a) => Ok(a),
            other => bail!("not scale: {other:?}"),
        }
    }

    #[test]
    fn scale_options_parse_with_their_defaults_and_bad_ones_are_refused() {
        let cfg = scale_config(&scale_args(&[]).unwrap()).unwrap();
        assert_eq!(cfg.counts, vec![10, 100, 1000]);
        let labels: Vec<&str> = cfg.systems.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["umacvlan", "macvlan"]);
        assert_eq!((cfg.rounds, cfg.size, cfg.namespaces), (3, 64, 10));
        assert_eq!((cfg.receivers, cfg.seconds), (1000, Duration::from_secs(2)));
        let a = scale_args(&[
            "--counts",
            "3,12",
            "--systems",
            "macvlan;umacvlan:slow",
            "--rounds",
            "1",
            "--seconds",
            "0.3",
            "--receivers",
            "5",
            "--namespaces",
            "2",
            "--capacity-rate",
            "5000",
            "--size",
            "128",
            "--json",
        ])
        .unwrap();
        assert!(a.json);
        let cfg = scale_config(&a).unwrap();
        assert_eq!(cfg.counts, vec![3, 12]);
        assert_eq!(cfg.systems[1].tuning.fastpath, Some(false));
        assert_eq!(cfg.reference(), Some("macvlan"));
        assert_eq!((cfg.receivers, cfg.namespaces, cfg.size), (5, 2, 128));
        assert_eq!(cfg.capacity_rate, 5000.0);
        assert_eq!(cfg.seconds, Duration::from_millis(300));
        // The RFC's name is an alias of the subcommand.
        assert!(matches!(
            Bench::try_parse_from(["bench", "rfc2889", "--counts", "5"])
                .unwrap()
                .cmd,
            BenchCmd::Scale(_)
        ));
        for (bad, says) in [
            (&["--counts", "0"][..], "outside 1..=65536"),
            (&["--counts", "10,10"], "listed twice"),
            (&["--counts", "ten"], "invalid digit"),
            (&["--systems", "bridge"], "measures umacvlan and macvlan"),
            (&["--systems", "umacvlan;umacvlan"], "listed twice"),
            (&["--systems", "macvlan:rps=2"], "no napi or rps"),
            (&["--size", "63"], "outside 64..=1518"),
            (&["--receivers", "0"], "at least 1"),
            (&["--seconds", "0"], "positive number of seconds"),
            (&["--capacity-rate=-1"], "positive number of frames/s"),
            (&["--rounds", "0"], "rounds ≥ 1"),
            (&["--gen-core", "4096"], "does not exist"),
        ] {
            let e = scale_args(bad)
                .and_then(|a| scale_config(&a))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
