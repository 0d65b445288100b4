//! Endpoint → endpoint throughput, umacvlan against kernel macvlan (bridge mode), in
//! the same run, interleaved round by round.
//!
//! A copy-mode AF_XDP generator in c1's namespace sends 64-byte frames to c2's MAC
//! for a fixed time; the count is what c2's `eth0` received. Each round measures the
//! kernel's macvlan and umacvlan on identical fresh topologies; the output gives each
//! round and the medians and the paired ratio (umacvlan / kernel, per round).
//!
//! Privileges: root. Builds and removes its own namespaces (`umvrt-<k|u>-<pid>-*`).
//! `UMACVLAN_XDP=generic` runs umacvlan's XDP in generic mode.
//! Run: `cargo run --release --example e2e_rate -- [ROUNDS] [SECONDS]`

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use umacvlan::dataplane::{Dataplane, DataplaneConfig, EndpointNet};
use umacvlan::demo::Namespaces;
use umacvlan::link::Netns;
use umacvlan::mode::Mode;
use umacvlan::port::{FramePool, Port};
use umacvlan::topology::EndpointConfig;
use umacvlan::wire::{emit_header, EtherType, MacAddr};
use umacvlan::xsk::{Umem, XskConfig, XskPort, XskSocket};

const C1: &str = "02:42:0a:1e:00:0b";
const C2: &str = "02:42:0a:1e:00:0c";

fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip").args(args).output()?;
    anyhow::ensure!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

/// rx_packets of `ifname` in namespace `ns`.
fn rx_packets(ns: &Netns, ifname: &'static str) -> Result<u64> {
    ns.run(move || -> Result<u64> {
        let s = std::fs::read_to_string("/proc/thread-self/net/dev")?;
        let line = s
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{ifname}:")))
            .context("no such interface")?;
        Ok(line
            .split(':')
            .nth(1)
            .context("format")?
            .split_whitespace()
            .nth(1)
            .context("format")?
            .parse()?)
    })?
}

/// Sends 64-byte frames c1 → c2 from c1's eth0 for `secs` seconds; returns frames sent.
fn generate(c1: &Netns, secs: f64) -> Result<u64> {
    c1.run(move || -> Result<u64> {
        let ifindex = umacvlan::sys::if_nametoindex("eth0")?;
        let mut umem = Umem::new(4096, 2048)?;
        let cfg = XskConfig {
            fill_level: 64,
            fill_batch: 64,
            ..XskConfig::default()
        };
        let mut port = XskPort::new(XskSocket::new(&mut umem, ifindex, 0, &cfg)?, &cfg)?;
        let mut frame = [0u8; 60];
        emit_header(
            &mut frame,
            C2.parse()?,
            C1.parse()?,
            None,
            EtherType(0x88b5),
        );
        let (mut sent, mut batch) = (0u64, Vec::with_capacity(64));
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            port.maintain(&mut umem);
            while batch.len() < 64 {
                match umem.alloc_with(&frame) {
                    Some(f) => batch.push(f),
                    None => break,
                }
            }
            let before = batch.len();
            port.transmit(&mut umem, &mut batch);
            sent += (before - batch.len()) as u64;
        }
        batch.drain(..).for_each(|f| umem.free(f));
        Ok(sent)
    })?
}

struct Topo {
    _spaces: Namespaces,
    c1: Netns,
    c2: Netns,
    names: Vec<String>,
}

fn topo(tag: &str) -> Result<Topo> {
    // `umvrt-<tag>-<pid>-*`, removed on drop and, if a run was killed, on the next.
    let mut spaces = Namespaces::new(&format!("umvrt-{tag}"));
    let names: Vec<String> = ["host", "ext", "c1", "c2"]
        .iter()
        .map(|n| spaces.create(n))
        .collect::<Result<_, _>>()?;
    ip(&[
        "-n", &names[0], "link", "add", "par", "type", "veth", "peer", "name", "eth0", "netns",
        &names[1],
    ])?;
    ip(&["-n", &names[0], "link", "set", "par", "up"])?;
    ip(&["-n", &names[1], "link", "set", "eth0", "up"])?;
    Ok(Topo {
        c1: Netns::open(&names[2])?,
        c2: Netns::open(&names[3])?,
        _spaces: spaces,
        names,
    })
}

fn kernel_round(secs: f64) -> Result<(u64, u64)> {
    let t = topo("k")?;
    for (i, mac) in [(2, C1), (3, C2)] {
        let tmp = format!("mv{i}");
        ip(&[
            "-n",
            &t.names[0],
            "link",
            "add",
            "link",
            "par",
            "name",
            &tmp,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ])?;
        ip(&[
            "-n",
            &t.names[0],
            "link",
            "set",
            &tmp,
            "address",
            mac,
            "netns",
            &t.names[i],
        ])?;
        ip(&["-n", &t.names[i], "link", "set", &tmp, "name", "eth0", "up"])?;
    }
    measure(&t, secs)
}

fn umacvlan_round(secs: f64) -> Result<(u64, u64)> {
    let t = topo("u")?;
    let host = Netns::open(&t.names[0])?;
    let eps = [t.names[2].clone(), t.names[3].clone()];
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let th = std::thread::spawn(move || {
        let run = || -> Result<Dataplane> {
            host.enter()?;
            let mut cfg = DataplaneConfig::new("par");
            // Busy-poll on the second core; the generator and the kernel's veth work run on the first.
            cfg.worker.core = Some(1);
            cfg.worker.idle_sleep = Duration::ZERO;
            if std::env::var("UMACVLAN_XDP").is_ok_and(|v| v == "generic") {
                cfg.xdp_mode = umacvlan::bpf::XdpMode::Generic;
            }
            let mut dp = Dataplane::start(cfg)?;
            for (i, (ns, mac)) in eps.iter().zip([C1, C2]).enumerate() {
                let c = EndpointConfig::new(format!("c{}", i + 1), Mode::Bridge)
                    .with_mac(mac.parse::<MacAddr>()?);
                dp.add_endpoint(
                    c,
                    EndpointNet {
                        netns: ns.clone(),
                        ifname: "eth0".into(),
                        addrs: vec![],
                    },
                )?;
            }
            Ok(dp)
        };
        match run() {
            Ok(dp) => {
                let _ = ready_tx.send(Ok(()));
                let _ = stop_rx.recv();
                dp.stop();
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        }
    });
    ready_rx.recv()??;
    let r = measure(&t, secs);
    let _ = stop_tx.send(());
    let _ = th.join();
    r
}

fn measure(t: &Topo, secs: f64) -> Result<(u64, u64)> {
    let before = rx_packets(&t.c2, "eth0")?;
    let sent = generate(&t.c1, secs)?;
    std::thread::sleep(Duration::from_millis(100));
    Ok((sent, rx_packets(&t.c2, "eth0")? - before))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).map_or(Ok(3), |a| a.parse()).context("ROUNDS")?;
    let secs: f64 = args
        .get(2)
        .map_or(Ok(3.0), |a| a.parse())
        .context("SECONDS")?;
    let (mut k, mut u, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    println!("64-byte frames, endpoint → endpoint, bridge mode, {secs} s per measurement");
    for r in 1..=rounds {
        let (ks, kd) = kernel_round(secs)?;
        let (us, ud) = umacvlan_round(secs)?;
        let (kr, ur) = (kd as f64 / secs, ud as f64 / secs);
        println!("round {r}: kernel macvlan {:>9.0} frames/s delivered (sent {ks}) | umacvlan {:>9.0} frames/s delivered (sent {us}) | ratio {:.2}", kr, ur, ur / kr);
        k.push(kr);
        u.push(ur);
        ratio.push(ur / kr);
    }
    println!(
        "median: kernel macvlan {:.0} frames/s, umacvlan {:.0} frames/s, paired ratio {:.2}",
        median(&mut k),
        median(&mut u),
        median(&mut ratio)
    );
    Ok(())
}
