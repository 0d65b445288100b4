//! Embedding umacvlan: a switch inside your own process, with an in-process endpoint.
//!
//! What it shows: building a [`Dataplane`] on a parent interface, attaching two
//! container-like endpoints (veth pairs into their own network namespaces) and one
//! **in-process endpoint** — a [`Responder`] that answers ARP and ping from inside
//! this process, zero-copy, on the worker thread — then pinging around and printing
//! the per-port counters.
//!
//! Privileges: root (namespaces, XDP, AF_XDP). Setup: none; it builds its own
//! topology in fresh network namespaces and removes them on exit:
//!
//! ```text
//!   [umvex-<pid>-ext] eth0 10.20.0.100 ──veth── par [umvex-<pid>-host] ← the switch's parent
//!                                                    ├─ c1: eth0 10.20.0.11 (bridge)
//!                                                    ├─ c2: eth0 10.20.0.12 (bridge)
//!                                                    └─ app: 10.20.0.64, in this process
//! ```
//!
//! Run: `cargo run --example embedded`

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};
use umacvlan::app::Responder;
use umacvlan::dataplane::{Dataplane, DataplaneConfig, EndpointNet};
use umacvlan::link::Namespaces;
use umacvlan::link::{Links, Netns};
use umacvlan::mode::Mode;
use umacvlan::topology::EndpointConfig;
use umacvlan::wire::MacAddr;

fn ping(ns: &str, ip: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-q", "-n", "-c", "2", "-i", "0.2", "-W", "1", ip,
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn main() -> Result<()> {
    // Fresh namespaces `umvex-<pid>-*`, removed on drop (and on the next run if killed).
    let mut spaces = Namespaces::new("umvex");
    let host = Netns::open(&spaces.create("host")?)?;
    let ext_name = spaces.create("ext")?;
    let ext = Netns::open(&ext_name)?;
    let c: Vec<String> = (1..=2)
        .map(|i| spaces.create(&format!("c{i}")))
        .collect::<Result<_, _>>()?;

    // The parent `par` in the host namespace; its peer is the external host's eth0.
    let hl = Links::open_in(&host)?;
    hl.add_veth("par", "ext0")?;
    hl.move_to(hl.require("ext0")?.index, "ext0", &ext)?;
    hl.set_up(hl.require("par")?.index, "par", true)?;
    let el = Links::open_in(&ext)?;
    let e = el.require("ext0")?;
    el.rename(e.index, "eth0")?;
    el.add_addr(e.index, "eth0", "10.20.0.100".parse()?, 24)?;
    el.set_up(e.index, "eth0", true)?;

    // The switch lives in the host namespace: run it on a thread that entered it.
    let c2 = c.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let switch = std::thread::spawn(move || -> Result<()> {
        host.enter()?;
        let setup = || -> Result<Dataplane> {
            let mut dp = Dataplane::start(DataplaneConfig::new("par"))?;
            for (i, ns) in c2.iter().enumerate() {
                let n = i + 1;
                let cfg = EndpointConfig::new(format!("c{n}"), Mode::Bridge)
                    .with_mac(format!("02:42:0a:14:00:{:02x}", 10 + n).parse()?);
                let net = EndpointNet {
                    netns: ns.clone(),
                    ifname: "eth0".into(),
                    addrs: vec![format!("10.20.0.{}/24", 10 + n).parse()?],
                    queues: None,
                    adopt: None,
                };
                dp.add_endpoint(cfg, net)?;
            }
            let mac: MacAddr = "02:42:0a:14:00:40".parse()?;
            let app = EndpointConfig::new("app", Mode::Bridge).with_mac(mac);
            dp.add_app_endpoint(app, move || {
                Box::new(Responder::new(mac, Ipv4Addr::new(10, 20, 0, 64)))
            })?;
            Ok(dp)
        };
        let dp = match setup() {
            Ok(dp) => dp,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return Ok(());
            }
        };
        let _ = ready_tx.send(Ok(()));
        let _ = stop_rx.recv();
        println!("\nper-port counters:");
        println!("{:<6} {:>8} {:>8}  drops", "port", "rx", "tx");
        for (name, s) in dp.stats()? {
            let drops: Vec<String> = s.drop_reasons().map(|(r, n)| format!("{r}={n}")).collect();
            println!(
                "{name:<6} {:>8} {:>8}  {}",
                s.rx_packets,
                s.tx_packets,
                drops.join(" ")
            );
        }
        dp.stop();
        Ok(())
    });
    ready_rx.recv().context("switch thread")??;

    let checks = [
        (
            &c[0],
            "10.20.0.12",
            "c1 → c2 (bridge mode, switched locally)",
        ),
        (&c[0], "10.20.0.64", "c1 → app (in-process endpoint)"),
        (&c[0], "10.20.0.100", "c1 → ext (out of the parent)"),
        (&ext_name, "10.20.0.64", "ext → app (in from the parent)"),
    ];
    let mut failed = 0;
    for (ns, ip, what) in checks {
        let ok = ping(ns, ip);
        failed += usize::from(!ok);
        println!("{:<4} {what}", if ok { "ok" } else { "FAIL" });
    }
    stop_tx.send(()).ok();
    switch
        .join()
        .map_err(|_| anyhow::anyhow!("switch thread panicked"))??;
    if failed > 0 {
        bail!("{failed} ping(s) failed");
    }
    Ok(())
}
