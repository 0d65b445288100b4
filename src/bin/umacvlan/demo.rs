//! `umacvlan demo`: a self-contained tour on a machine with no spare NIC.
//!
//! It builds, in fresh network namespaces named `umvdemo-<pid>-*` (removed on exit,
//! and on the next run if a run was killed):
//!
//! ```text
//!   [ext] eth0 10.20.0.100 ── [wire] br0 (the external switch) ── par [host] ← parent
//!                                                                   ├─ c1 10.20.0.11 (bridge)
//!                                                                   ├─ c2 10.20.0.12 (bridge)
//!                                                                   └─ app 10.20.0.64, in-process
//! ```
//!
//! then runs the switch, pings across it, prints the counters, and removes everything.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Command;

use umacvlan::app::Responder;
use umacvlan::dataplane::{Dataplane, DataplaneConfig, EndpointNet};
use umacvlan::link::{Links, Namespaces, Netns};
use umacvlan::mode::Mode;
use umacvlan::topology::EndpointConfig;
use umacvlan::wire::MacAddr;

/// A demo failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Building the topology.
    #[error(transparent)]
    Link(#[from] umacvlan::link::Error),
    /// Running the switch.
    #[error(transparent)]
    Dataplane(#[from] umacvlan::dataplane::Error),
    /// Writing the report.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Some pings failed.
    #[error("{0} of the demo's pings failed")]
    Pings(usize),
}

fn ping(ns: &str, ip: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-q", "-n", "-c", "2", "-i", "0.2", "-W", "1", ip,
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the demo, writing its report to `out`.
///
/// # Errors
/// A kernel step, or a failed ping (after cleaning up).
pub fn run(out: &mut dyn Write) -> Result<(), Error> {
    let mut ns = Namespaces::new("umvdemo");
    let (wire, ext, host) = (ns.create("wire")?, ns.create("ext")?, ns.create("host")?);
    let c: Vec<String> = (1..=2)
        .map(|i| ns.create(&format!("c{i}")))
        .collect::<Result<_, _>>()?;
    writeln!(
        out,
        "umacvlan demo: namespaces {}*",
        &host[..host.len() - 4]
    )?;

    // The external switch: a bridge in `wire`, with the external host and the parent.
    let wl = Links::open_in(&Netns::open(&wire)?)?;
    wl.add_bridge("br0")?;
    let br = wl.require("br0")?;
    wl.set_up(br.index, "br0", true)?;
    for (port, peer, target) in [("wext", "eth0", &ext), ("wpar", "par", &host)] {
        wl.add_veth(port, peer)?;
        let p = wl.require(port)?;
        wl.set_controller(p.index, port, br.index)?;
        wl.set_up(p.index, port, true)?;
        wl.move_to(wl.require(peer)?.index, peer, &Netns::open(target)?)?;
    }
    let el = Links::open_in(&Netns::open(&ext)?)?;
    let e = el.require("eth0")?;
    el.add_addr(e.index, "eth0", "10.20.0.100".parse().expect("literal"), 24)?;
    el.set_up(e.index, "eth0", true)?;
    let hl = Links::open_in(&Netns::open(&host)?)?;
    let p = hl.require("par")?;
    hl.set_up(p.index, "par", true)?;

    // The switch runs on a thread inside the host namespace.
    let hostns = Netns::open(&host)?;
    let cs = c.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), Error>>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let switch = std::thread::spawn(move || -> Result<Vec<String>, Error> {
        hostns.enter()?;
        let setup = || -> Result<Dataplane, Error> {
            let mut dp = Dataplane::start(DataplaneConfig::new("par"))?;
            for (i, n) in cs.iter().enumerate() {
                let k = i + 1;
                let mac = MacAddr([0x02, 0x42, 0x0a, 0x14, 0x00, 10 + k as u8]);
                let net = EndpointNet {
                    netns: n.clone(),
                    ifname: "eth0".into(),
                    addrs: vec![format!("10.20.0.{}/24", 10 + k).parse().expect("literal")],
                    queues: None,
                    adopt: None,
                };
                dp.add_endpoint(
                    EndpointConfig::new(format!("c{k}"), Mode::Bridge).with_mac(mac),
                    net,
                )?;
            }
            let mac = MacAddr([0x02, 0x42, 0x0a, 0x14, 0x00, 0x40]);
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
                return Ok(Vec::new());
            }
        };
        let _ = ready_tx.send(Ok(()));
        let _ = stop_rx.recv();
        let mut lines = vec![format!("{:<6} {:>8} {:>8}  drops", "port", "rx", "tx")];
        for (name, s) in dp.stats()? {
            let drops: Vec<String> = s.drop_reasons().map(|(r, n)| format!("{r}={n}")).collect();
            lines.push(format!(
                "{name:<6} {:>8} {:>8}  {}",
                s.rx_packets,
                s.tx_packets,
                drops.join(" ")
            ));
        }
        dp.stop();
        Ok(lines)
    });
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(Error::Pings(0)),
    }
    writeln!(
        out,
        "switch running on par: c1, c2 (bridge mode) and an in-process endpoint 'app'\n"
    )?;
    let checks = [
        (
            &c[0],
            "10.20.0.12",
            "c1 → c2    bridge mode: switched locally",
        ),
        (
            &c[0],
            "10.20.0.64",
            "c1 → app   an in-process endpoint answering ARP and ping",
        ),
        (
            &c[0],
            "10.20.0.100",
            "c1 → ext   out of the parent, through the external switch",
        ),
        (&ext, "10.20.0.64", "ext → app  in from the parent"),
    ];
    let mut failed = 0;
    for (from, ip, what) in checks {
        let ok = ping(from, ip);
        failed += usize::from(!ok);
        writeln!(out, "  {:<4} {what}", if ok { "ok" } else { "FAIL" })?;
    }
    let _ = stop_tx.send(());
    let lines = switch
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
    writeln!(out, "\nper-port counters:")?;
    for l in lines {
        writeln!(out, "  {l}")?;
    }
    drop(ns);
    writeln!(
        out,
        "\nremoved every namespace, interface and program the demo made"
    )?;
    if failed > 0 {
        return Err(Error::Pings(failed));
    }
    Ok(())
}
