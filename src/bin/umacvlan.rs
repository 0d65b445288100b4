//! The `umacvlan` command line.
//!
//! For now it has one job: `umacvlan simulate` runs the switching core in memory (an
//! uplink, the host stack and endpoints in every mode), feeds it random traffic —
//! unicast, broadcast, multicast and frames reflected by a hairpin switch — and prints
//! the per-port counters. The AF_XDP datapath and the daemon come next.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use umacvlan::mode::{DropReason, Mode};
use umacvlan::port::{FramePool, MemPool, MemPort};
use umacvlan::switch::Switch;
use umacvlan::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
use umacvlan::wire::{emit_header, EtherType, MacAddr};

#[derive(Parser)]
#[command(
    name = "umacvlan",
    version,
    about = "A userspace macvlan: an AF_XDP L2 switch with the kernel macvlan's modes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the switching core in memory on random traffic and print per-port counters.
    Simulate {
        /// Frames to inject.
        #[arg(long, default_value_t = 200_000)]
        frames: u64,
        /// Random seed (the run is deterministic for a seed).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Endpoint modes, comma separated (bridge, vepa, private, source; or passthru alone).
        #[arg(long, default_value = "bridge,bridge,vepa,private")]
        modes: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Simulate {
            frames,
            seed,
            modes,
        } => simulate(frames, seed, &modes),
    }
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn simulate(frames: u64, seed: u64, modes: &str) -> Result<()> {
    let modes: Vec<Mode> = modes
        .split(',')
        .map(|m| m.trim().parse::<Mode>())
        .collect::<Result<_, _>>()
        .context("--modes")?;
    if modes.is_empty() {
        bail!("--modes: give at least one endpoint mode");
    }
    let parent_mac: MacAddr = "02:00:00:00:00:fe".parse()?;
    let parent = ParentConfig {
        name: "sim0".into(),
        mac: parent_mac,
        mtu: 1500,
    };
    let mut topo = Topology::new(parent, true)?;
    let ext: MacAddr = "00:11:22:33:44:55".parse()?;
    let mut ports = vec![
        (UPLINK, "uplink".to_string(), ext),
        (HOST, "host".to_string(), parent_mac),
    ];
    for (i, &mode) in modes.iter().enumerate() {
        let name = format!("e{}", i + 1);
        let mut cfg =
            EndpointConfig::new(name.clone(), mode).with_mac(MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
        if mode == Mode::Source {
            cfg.sources = vec![ext];
        }
        let id = topo
            .add_endpoint(cfg)
            .with_context(|| format!("endpoint {name} ({mode})"))?;
        let mac = topo.endpoint(&name).map(|e| e.mac()).unwrap_or(parent_mac);
        ports.push((id, format!("{name} ({mode})"), mac));
    }
    let mut sw: Switch<MemPort, MemPool> = Switch::new(topo.reader(), MemPool::new(8192, 2048));
    for (id, _, _) in &ports {
        sw.attach(*id, MemPort::new(1024))?;
    }
    let mut rng = Rng(seed.max(1));
    let dsts: Vec<MacAddr> = ports
        .iter()
        .map(|p| p.2)
        .chain([
            MacAddr::BROADCAST,
            "01:00:5e:00:00:01".parse()?,
            "02:99:00:00:00:01".parse()?,
        ])
        .collect();
    let mut buf = [0u8; 128];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < frames {
        for _ in 0..64.min(frames - sent) {
            let (ingress, _, own) = &ports[rng.below(ports.len())];
            // From the uplink, a third of the frames are an endpoint's own, reflected.
            let src = if *ingress == UPLINK && rng.below(3) == 0 {
                ports[rng.below(ports.len())].2
            } else {
                *own
            };
            let dst = dsts[rng.below(dsts.len())];
            let len = 60 + rng.below(68);
            emit_header(&mut buf, dst, src, None, EtherType::IPV4);
            let f = sw
                .pool_mut()
                .alloc_with(&buf[..len])
                .context("frame pool exhausted")?;
            sw.port_mut(*ingress).expect("attached").inject(f);
            sent += 1;
        }
        while sw.poll() > 0 {}
        for (id, _, _) in &ports {
            while let Some(f) = sw.port_mut(*id).expect("attached").pop_tx() {
                sw.pool_mut().free(f);
            }
        }
    }
    let elapsed = start.elapsed();
    println!("umacvlan simulate: {sent} random frames through an in-memory switch (seed {seed}) in {elapsed:.2?}\n");
    println!(
        "{:<16} {:>10} {:>12} {:>10} {:>12} {:>8}  drops by reason",
        "port", "rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "drops"
    );
    for (id, name, _) in &ports {
        let s = sw.stats(*id).expect("attached");
        let reasons: Vec<String> = s.drop_reasons().map(|(r, n)| format!("{r}={n}")).collect();
        println!(
            "{:<16} {:>10} {:>12} {:>10} {:>12} {:>8}  {}",
            name,
            s.rx_packets,
            s.rx_bytes,
            s.tx_packets,
            s.tx_bytes,
            s.total_drops(),
            reasons.join(" ")
        );
    }
    let total_tx: u64 = ports
        .iter()
        .map(|p| sw.stats(p.0).map_or(0, |s| s.tx_packets))
        .sum();
    let loops: u64 = ports
        .iter()
        .map(|p| sw.stats(p.0).map_or(0, |s| s.dropped(DropReason::Loop)))
        .sum();
    println!(
        "\ndelivered {total_tx} copies; {loops} bridge self-sends dropped; fdb entries: {}",
        topo.table().fdb().len()
    );
    let in_use = sw.pool().in_use();
    if in_use != 0 {
        bail!("{in_use} frames leaked");
    }
    println!("all frames returned to the pool: no leak");
    Ok(())
}
