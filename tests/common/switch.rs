//! Running an in-process `Dataplane` in a test namespace while a test body runs.

use std::sync::mpsc;

use umacvlan::dataplane::{Dataplane, DataplaneConfig, EndpointNet};
use umacvlan::link::Netns;
use umacvlan::mode::Mode;
use umacvlan::switch::PortStats;
use umacvlan::topology::EndpointConfig;

/// Runs a dataplane started with `cfg` on its own thread inside namespace `ns`:
/// `setup` adds endpoints, then `body` runs on the calling thread while it switches,
/// then the per-port counters are taken and the dataplane stops. Returns the body's
/// result and the counters, or the error of the start or of `setup` (the body does
/// not run then).
pub fn with_switch<T>(
    ns: &str,
    cfg: DataplaneConfig,
    setup: impl FnOnce(&mut Dataplane) -> Result<(), String> + Send,
    body: impl FnOnce() -> T,
) -> Result<(T, Vec<(String, PortStats)>), String> {
    with_switch_then(ns, cfg, setup, body, |dp| dp.stats().unwrap())
}

/// [`with_switch`], with `finish` instead of the counters: it runs on the dataplane
/// (still switching) after the body, and what it returns is returned; then the
/// dataplane stops.
pub fn with_switch_then<T, R: Send>(
    ns: &str,
    cfg: DataplaneConfig,
    setup: impl FnOnce(&mut Dataplane) -> Result<(), String> + Send,
    body: impl FnOnce() -> T,
    finish: impl FnOnce(&mut Dataplane) -> R + Send,
) -> Result<(T, R), String> {
    let ns = Netns::open(ns).unwrap();
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        // Dropped when the body panics too: the dataplane stops before the panic goes on.
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let th = s.spawn(move || {
            ns.enter().unwrap();
            let mut dp = match Dataplane::start(cfg) {
                Ok(dp) => dp,
                Err(e) => {
                    ready_tx.send(Err(e.to_string())).unwrap();
                    return None;
                }
            };
            if let Err(e) = setup(&mut dp) {
                ready_tx.send(Err(e)).unwrap();
                return None;
            }
            ready_tx.send(Ok(())).unwrap();
            // As the daemon does: follow the endpoints' multicast membership.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stop_rx.recv_timeout(std::time::Duration::from_millis(100))
            {
                dp.sync_multicast().unwrap();
            }
            let r = finish(&mut dp);
            dp.stop();
            Some(r)
        });
        ready_rx.recv().unwrap()?;
        let t = body();
        stop_tx.send(()).unwrap();
        Ok((t, th.join().unwrap().expect("the dataplane ran")))
    })
}

/// Adds endpoints `e1`..`eN` of topology `t` in `modes` to `dp`: each with the
/// topology's MAC and address, as `eth0` in its namespace; `tweak` may change an
/// endpoint's configuration first (given its number, from 1).
pub fn add_topo_endpoints(
    dp: &mut Dataplane,
    t: &super::topo::Topo,
    modes: &[Mode],
    tweak: impl Fn(usize, &mut EndpointConfig),
) -> Result<(), String> {
    use super::topo::{ep_ip, ep_mac};
    for (i, mode) in modes.iter().enumerate() {
        let n = i + 1;
        let mut cfg =
            EndpointConfig::new(format!("e{n}"), *mode).with_mac(ep_mac(n).parse().unwrap());
        tweak(n, &mut cfg);
        let net = EndpointNet {
            netns: t.eps[i].clone(),
            ifname: "eth0".into(),
            addrs: vec![format!("{}/24", ep_ip(n)).parse().unwrap()],
            queues: None,
            adopt: None,
        };
        dp.add_endpoint(cfg, net)
            .map_err(|e| format!("endpoint e{n}: {e}"))?;
    }
    Ok(())
}

/// Port `name`'s counters in `stats` (what [`with_switch`] returns).
pub fn stat<'a>(stats: &'a [(String, PortStats)], name: &str) -> &'a PortStats {
    &stats
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no port {name} in {stats:?}"))
        .1
}
