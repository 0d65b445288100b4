//! The benchmark's network: namespaces built per measurement and removed after it.
//!
//! ```text
//!   ext ns: eth0 ──veth── host ns: par (the parent NIC)
//!                                   │ the system under test: umacvlan on par, kernel
//!                                   │ macvlans on par, a bridge over par + veths,
//!                                   │ OVS over par + veths, or l2fwd between two of them
//!   c1 ns: eth0 ───────────────────┤
//!   c2 ns: eth0 ───────────────────┘
//! ```
//!
//! Every system gives c1, c2 and ext the same MACs, so one generator/sink placement
//! per scenario fits them all.
//!
//! [`ScaleLab`] is the network of `bench scale`: the same wire and parent, and many
//! endpoints spread over a few namespaces.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Error, Scenario, System, SystemKind};
use umacvlan::bpf::XdpMode;
use umacvlan::dataplane::{Dataplane, DataplaneConfig, EndpointNet};
use umacvlan::link::Namespaces;
use umacvlan::link::{Links, Netns};
use umacvlan::mode::Mode;
use umacvlan::topology::EndpointConfig;
use umacvlan::wire::MacAddr;
use umacvlan::xsk::XskConfig;

/// c1's MAC (the endpoint that sends in endpoint→endpoint and endpoint→wire).
pub const C1_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x1e, 0x00, 0x0b]);
/// c2's MAC (the endpoint that receives in endpoint→endpoint and wire→endpoint).
pub const C2_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x1e, 0x00, 0x0c]);
/// The external host's MAC, on the far side of the parent.
pub const EXT_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x1e, 0x00, 0xfe]);

/// Namespace prefix tag: `umvb-<pid>-*`; a killed run's sets go at the next start.
pub const NS_TAG: &str = "umvb";

/// A built network with a system running on it. Dropping it stops the system and
/// removes every namespace.
pub struct Lab {
    /// Holds what runs the system (a dataplane thread, l2fwd, OVS daemons).
    running: Option<Running>,
    /// Namespace names: host, ext, c1, c2.
    pub host: String,
    /// The external host's namespace.
    pub ext: String,
    /// Endpoint 1's namespace.
    pub c1: String,
    /// Endpoint 2's namespace.
    pub c2: String,
    _spaces: Namespaces,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// What runs the system; held only for its `Drop`.
#[allow(dead_code)]
enum Running {
    Redirect(Vec<umacvlan::bpf::Sink>),
    Umacvlan(DpHost),
    L2fwd(super::l2fwd::L2fwd),
    Ovs(super::ovs::Ovs),
}

/// Where a scenario's generator and sink sit: (namespace, src MAC, dst MAC) of the
/// generator, and the sink's namespace. Both use `eth0`.
pub struct Placement {
    /// Generator namespace.
    pub gen_ns: String,
    /// Generator's source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
    /// Sink namespace.
    pub sink_ns: String,
}

impl Lab {
    /// Builds the network and starts `system` on it for `scenario` (l2fwd forwards
    /// one direction only; the others serve every scenario).
    ///
    /// # Errors
    /// Any kernel step; what was built is removed again.
    pub fn build(system: &System, scenario: Scenario) -> Result<Lab, Error> {
        let n = next_seq();
        let mut spaces = Namespaces::new(NS_TAG);
        let [host, ext, c1, c2] =
            ["h", "x", "c1", "c2"].map(|name| spaces.create(&format!("{n}{name}")));
        let (host, ext, c1, c2) = (host?, ext?, c1?, c2?);
        let mut lab = Lab {
            running: None,
            host,
            ext,
            c1,
            c2,
            _spaces: spaces,
        };
        // No IPv6: its autoconfiguration chatter (DAD, MLD, router solicitations)
        // would reach the sink through the flooding systems and blur the counts.
        for ns in [&lab.host, &lab.ext, &lab.c1, &lab.c2] {
            no_ipv6(ns)?;
        }
        let hl = Links::open_in(&Netns::open(&lab.host)?)?;
        hl.add_veth("par", "xpeer")?;
        let par = hl.require("par")?;
        hl.set_up(par.index, "par", true)?;
        place(&hl, "xpeer", &lab.ext, EXT_MAC)?;
        let veths = || -> Result<(), Error> {
            for (v, p, ns, mac) in [("v1", "p1", &lab.c1, C1_MAC), ("v2", "p2", &lab.c2, C2_MAC)] {
                hl.add_veth(v, p)?;
                let i = hl.require(v)?;
                hl.set_up(i.index, v, true)?;
                place(&hl, p, ns, mac)?;
            }
            Ok(())
        };
        match system.kind {
            SystemKind::Macvlan => {
                for (v, ns, mac) in [("mv1", &lab.c1, C1_MAC), ("mv2", &lab.c2, C2_MAC)] {
                    hl.add_macvlan(v, par.index, Mode::Bridge)?;
                    place(&hl, v, ns, mac)?;
                }
            }
            SystemKind::Bridge => {
                veths()?;
                hl.add_bridge("br0")?;
                let br = hl.require("br0")?;
                for p in ["par", "v1", "v2"] {
                    hl.set_controller(hl.require(p)?.index, p, br.index)?;
                }
                hl.set_up(br.index, "br0", true)?;
                // Docker's setting: bridged IPv4 goes through iptables.
                let h = Netns::open(&lab.host)?;
                h.run(|| std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n"))?
                    .map_err(|e| {
                        Error::Config(format!(
                            "cannot set net.bridge.bridge-nf-call-iptables=1 (is br_netfilter \
                         loaded? `modprobe br_netfilter`): {e}"
                        ))
                    })?;
            }
            SystemKind::L2fwd => {
                veths()?;
                let (from, to) = match scenario {
                    Scenario::EpToEp | Scenario::EpBroadcast => ("v1", "v2"),
                    Scenario::WireToEp => ("par", "v2"),
                    Scenario::EpToWire => ("v1", "par"),
                };
                let fwd = super::l2fwd::L2fwd::start(super::l2fwd::L2fwdConfig {
                    netns: lab.host.clone(),
                    from: from.into(),
                    to: to.into(),
                    xdp_mode: system.tuning.xdp_mode.unwrap_or(XdpMode::Generic),
                    core: Some(system.tuning.core),
                    burst: 32,
                    xsk: xsk_config(&system.tuning),
                    tuning: system.tuning.socket,
                })?;
                if let Some(core) = system.tuning.napi_core {
                    threaded_napi(&lab.host, core)?;
                }
                lab.running = Some(Running::L2fwd(fwd));
            }
            SystemKind::Ovs => {
                veths()?;
                lab.running = Some(Running::Ovs(super::ovs::Ovs::start(
                    &lab.host,
                    &["par", "v1", "v2"],
                    system.tuning.xdp_mode.unwrap_or(XdpMode::Native),
                    system.tuning.core,
                )?));
            }
            SystemKind::Redirect => {
                veths()?;
                let idx = |n: &str| hl.require(n).map(|l| l.index);
                let (v1, v2, p) = (idx("v1")?, idx("v2")?, idx("par")?);
                // One direction of the scenario's flow, as the fast path forwards it.
                let (from, to, peer) = match scenario {
                    Scenario::EpToEp | Scenario::EpBroadcast => (v1, v2, true),
                    Scenario::WireToEp => (p, v2, true),
                    Scenario::EpToWire => (v1, p, false),
                };
                let hook = umacvlan::bpf::SinkHook::Redirect { ifindex: to, peer };
                let r =
                    Netns::open(&lab.host)?.run(|| umacvlan::bpf::Sink::attach(from, hook))??;
                lab.running = Some(Running::Redirect(vec![r]));
            }
            SystemKind::Umacvlan => {
                // A `Dataplane` is used and dropped in its own namespace: a thread there.
                let dp = DpHost::start(&lab.host, &system.tuning)?;
                for (i, (ns, mac)) in [(lab.c1.clone(), C1_MAC), (lab.c2.clone(), C2_MAC)]
                    .into_iter()
                    .enumerate()
                {
                    let c = EndpointConfig::new(format!("c{}", i + 1), Mode::Bridge).with_mac(mac);
                    let net = EndpointNet {
                        netns: ns,
                        ifname: "eth0".into(),
                        addrs: vec![],
                        queues: None,
                        adopt: None,
                    };
                    dp.call(move |dp| dp.add_endpoint(c, net))??;
                }
                if let Some(core) = system.tuning.napi_core {
                    threaded_napi(&lab.host, core)?;
                }
                lab.running = Some(Running::Umacvlan(dp));
            }
        }
        // Every interface of the lab: a frame is received (netif_rx) where it enters a
        // host, and for kernel macvlan that is the parent even between two endpoints
        // (bridge mode hands the frame to the lower device, whose rx handler delivers
        // it), so a mask on the endpoints' interfaces alone steers nothing.
        if let Some(m) = system.tuning.rps {
            for ns in [&lab.host, &lab.ext, &lab.c1, &lab.c2] {
                set_rps(ns, "*", m)?;
            }
        }
        Ok(lab)
    }

    /// The generator's and the sink's places for `scenario`.
    pub fn placement(&self, scenario: Scenario) -> Placement {
        let (gen_ns, src, dst, sink_ns) = match scenario {
            Scenario::EpToEp => (&self.c1, C1_MAC, C2_MAC, &self.c2),
            Scenario::WireToEp => (&self.ext, EXT_MAC, C2_MAC, &self.c2),
            Scenario::EpToWire => (&self.c1, C1_MAC, EXT_MAC, &self.ext),
            Scenario::EpBroadcast => (&self.c1, C1_MAC, MacAddr::BROADCAST, &self.c2),
        };
        Placement {
            gen_ns: gen_ns.clone(),
            src,
            dst,
            sink_ns: sink_ns.clone(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Stop the system before its interfaces go.
        self.running.take();
    }
}

/// The number of the next lab: namespaces are `umvb-<pid>-<n><name>`, so several
/// labs may live at once in one process.
fn next_seq() -> u32 {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Gives `dev` (in `hl`'s namespace) `mac`, moves it to `ns`, names it `eth0` there
/// and brings it up.
fn place(hl: &Links, dev: &str, ns: &str, mac: MacAddr) -> Result<(), Error> {
    let i = hl.require(dev)?;
    hl.set_mac(i.index, dev, mac)?;
    let target = Netns::open(ns)?;
    hl.move_to(i.index, dev, &target)?;
    let tl = Links::open_in(&target)?;
    let i = tl.require(dev)?;
    tl.rename(i.index, "eth0")?;
    tl.set_up(i.index, "eth0", true)?;
    Ok(())
}

/// The dataplane's socket configuration, with `tuning.ring` applied to every ring.
fn xsk_config(t: &super::Tuning) -> XskConfig {
    let mut x = DataplaneConfig::new("par").xsk;
    x.need_wakeup = t.need_wakeup;
    if let Some(r) = t.ring {
        x.rx_size = r;
        x.tx_size = r;
        x.fill_size = r;
        x.comp_size = r;
        x.fill_level = r / 2;
        x.fill_batch = x.fill_batch.min(r / 2);
    }
    x
}

/// The dataplane's configuration on `par` for a umacvlan system's `t`.
fn dataplane_config(t: &super::Tuning) -> DataplaneConfig {
    let mut cfg = DataplaneConfig::new("par");
    cfg.worker.core = Some(t.core);
    if let Some(f) = t.fastpath {
        cfg.fastpath = f;
    }
    if let Some(h) = t.parent_hook {
        cfg.parent_hook = h;
    }
    // `rps=MASK` sets the lab's every interface, the endpoints' veths included.
    if let Some(r) = t.receive_cpus.clone() {
        cfg.receive_cpus = r;
    }
    cfg.worker.idle_sleep = t.idle_sleep.unwrap_or(if cfg.fastpath {
        cfg.worker.idle_sleep
    } else {
        std::time::Duration::ZERO
    });
    if let Some(m) = t.xdp_mode {
        cfg.xdp_mode = m;
        cfg.endpoint_xdp_mode = m;
    }
    cfg.tuning = t.socket;
    cfg.xsk = xsk_config(t);
    cfg
}

/// Turns IPv6 off in namespace `ns`, for the interfaces there and those to come: its
/// autoconfiguration chatter (DAD, MLD, router solicitations) would reach the sinks
/// through the flooding systems and blur the counts.
fn no_ipv6(ns: &str) -> Result<(), Error> {
    Netns::open(ns)?
        .run(|| {
            for k in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{k}/disable_ipv6"), "1\n")?;
            }
            Ok::<(), std::io::Error>(())
        })?
        .map_err(|e| Error::Config(format!("cannot disable IPv6 in {ns}: {e}")))
}

/// Sets the RPS mask of every receive queue of the interfaces matching `glob` in
/// namespace `ns` (sysfs is mounted as for [`threaded_napi`]).
fn set_rps(ns: &str, glob: &str, mask: u32) -> Result<(), Error> {
    let script = format!(
        "mount -t sysfs sysfs /sys && n=0 && for f in /sys/class/net/{glob}/queues/rx-*/rps_cpus; do \
         [ -w $f ] && echo {mask:x} > $f && n=$((n+1)); done; [ $n -gt 0 ]"
    );
    let out = Netns::open(ns)?.run(move || {
        std::process::Command::new("unshare")
            .args(["-m", "sh", "-c", &script])
            .output()
    })??;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "unshare (rps)",
            output: format!(
                "no receive queue of {glob} took the RPS mask: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

/// Switches every interface of namespace `ns` to threaded NAPI and pins the NAPI
/// kthreads to `core`.
///
/// sysfs shows the namespace of whoever mounted it, so the switch is made by a
/// child in a private mount namespace (`unshare -m`) that mounts its own sysfs.
fn threaded_napi(ns: &str, core: usize) -> Result<(), Error> {
    let script = "mount -t sysfs sysfs /sys && for d in /sys/class/net/*; do \
                  [ -w $d/threaded ] && echo 1 > $d/threaded && echo ${d##*/}; done; true";
    let before = napi_kthreads();
    let out = Netns::open(ns)?.run(move || {
        std::process::Command::new("unshare")
            .args(["-m", "sh", "-c", script])
            .output()
    })??;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "unshare",
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let devs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    // Pin only the NAPI kthreads (`napi/<dev>-<id>`) that appeared just now.
    let fresh: Vec<i32> = napi_kthreads()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if fresh.is_empty() {
        return Err(Error::Config(format!(
            "threaded NAPI: no new NAPI kthread appeared for {devs:?}"
        )));
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(core);
    for pid in fresh {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            rustix::thread::sched_setaffinity(Some(p), &set)
                .map_err(|e| Error::Config(format!("pin NAPI kthread {pid}: {e}")))?;
        }
    }
    Ok(())
}

/// Pids of the kernel's NAPI kthreads.
fn napi_kthreads() -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.starts_with("napi/").then_some(pid)
        })
        .collect()
}

/// Endpoint `i`'s MAC in a [`ScaleLab`]: `02:42:0a:1f:HH:LL`, `HHLL` = `i` (so at most
/// 65 536 endpoints).
pub fn scale_mac(i: usize) -> MacAddr {
    MacAddr([0x02, 0x42, 0x0a, 0x1f, (i >> 8) as u8, i as u8])
}

/// The network of `bench scale` (RFC 2889): the wire and the parent as in [`Lab`],
/// and `groups` endpoint namespaces the endpoints are spread over, endpoint `i`
/// named `m<i>` in namespace `e<i % groups>`. The system starts with no endpoint;
/// [`ScaleLab::add`] adds one at a time and says how long it took.
///
/// ```text
///   ext ns: eth0 ──veth── host ns: par ─┬─ umacvlan (a Dataplane on par) or kernel
///                                       │  macvlans on par
///                          e0 ns: m0, m<groups>, m<2·groups>, …
///                          e1 ns: m1, m<groups+1>, …
///                          …
/// ```
///
/// Dropping it stops the system, deletes the parent (which takes the kernel's
/// macvlans with it) and removes every namespace.
pub struct ScaleLab {
    dp: Option<DpHost>,
    kind: SystemKind,
    /// The parent's namespace.
    pub host: String,
    /// The external host's namespace (the generator's, on `eth0`).
    pub ext: String,
    /// The endpoint namespaces.
    pub groups: Vec<String>,
    host_links: Links,
    par_index: u32,
    _spaces: Namespaces,
}

impl std::fmt::Debug for ScaleLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleLab")
            .field("host", &self.host)
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

impl ScaleLab {
    /// Builds the namespaces and the wire, and starts `system` (umacvlan or macvlan)
    /// on the parent with no endpoint.
    ///
    /// # Errors
    /// [`Error::Config`] for a system other than umacvlan or macvlan, or one with
    /// options `bench scale` does not apply (`napi`, `rps`); any kernel step. What was
    /// built is removed again.
    pub fn build(system: &System, groups: usize) -> Result<ScaleLab, Error> {
        if !matches!(system.kind, SystemKind::Umacvlan | SystemKind::Macvlan) {
            return Err(Error::Config(format!(
                "bench scale measures umacvlan and macvlan, not {system}"
            )));
        }
        if system.tuning.napi_core.is_some() || system.tuning.rps.is_some() {
            return Err(Error::Config(format!(
                "{system}: bench scale takes no napi or rps option"
            )));
        }
        let n = next_seq();
        let mut spaces = Namespaces::new(NS_TAG);
        let host = spaces.create(&format!("{n}h"))?;
        let ext = spaces.create(&format!("{n}x"))?;
        let groups = (0..groups.max(1))
            .map(|g| spaces.create(&format!("{n}e{g}")))
            .collect::<Result<Vec<_>, _>>()?;
        for ns in [&host, &ext].into_iter().chain(&groups) {
            no_ipv6(ns)?;
        }
        let hl = Links::open_in(&Netns::open(&host)?)?;
        hl.add_veth("par", "xpeer")?;
        let par = hl.require("par")?;
        hl.set_up(par.index, "par", true)?;
        place(&hl, "xpeer", &ext, EXT_MAC)?;
        let mut lab = ScaleLab {
            dp: None,
            kind: system.kind,
            host,
            ext,
            groups,
            host_links: hl,
            par_index: par.index,
            _spaces: spaces,
        };
        if system.kind == SystemKind::Umacvlan {
            lab.dp = Some(DpHost::start(&lab.host, &system.tuning)?);
        }
        Ok(lab)
    }

    /// Endpoint `i`'s namespace, interface name and MAC.
    pub fn endpoint(&self, i: usize) -> (&str, String, MacAddr) {
        (
            &self.groups[i % self.groups.len()],
            format!("m{i}"),
            scale_mac(i),
        )
    }

    /// Adds endpoint `i` (bridge mode) and returns how long the system took.
    ///
    /// umacvlan: [`Dataplane::add_endpoint`] on the dataplane's own thread (a veth
    /// pair, its peer moved into the namespace, named, given its MAC and brought up;
    /// the switch's socket, programs and tables). macvlan: from this thread, over
    /// netlink as umacvlan does it: create the macvlan on the parent, give it its
    /// MAC, move it into the namespace, open a netlink socket there and bring it up
    /// (what `ip link add link par name m<i> type macvlan mode bridge`, `ip link set
    /// m<i> address … netns …` and `ip -n … link set m<i> up` do, without three
    /// processes).
    ///
    /// # Errors
    /// The system's refusal or any kernel step.
    pub fn add(&self, i: usize) -> Result<Duration, Error> {
        let (ns, ifname, mac) = self.endpoint(i);
        let ns = ns.to_string();
        match &self.dp {
            Some(dp) => {
                let c = EndpointConfig::new(ifname.clone(), Mode::Bridge).with_mac(mac);
                let net = EndpointNet {
                    netns: ns,
                    ifname,
                    addrs: vec![],
                    queues: None,
                    adopt: None,
                };
                let (took, r) = dp.call(move |dp| {
                    let t0 = std::time::Instant::now();
                    let r = dp.add_endpoint(c, net);
                    (t0.elapsed(), r)
                })?;
                r?;
                Ok(took)
            }
            None => {
                debug_assert_eq!(self.kind, SystemKind::Macvlan);
                let t0 = std::time::Instant::now();
                let hl = &self.host_links;
                hl.add_macvlan(&ifname, self.par_index, Mode::Bridge)?;
                let made = (|| -> Result<(), Error> {
                    let l = hl.require(&ifname)?;
                    hl.set_mac(l.index, &ifname, mac)?;
                    let target = Netns::open(&ns)?;
                    hl.move_to(l.index, &ifname, &target)?;
                    let tl = Links::open_in(&target)?;
                    let l = tl.require(&ifname)?;
                    tl.set_up(l.index, &ifname, true)?;
                    Ok(())
                })();
                let took = t0.elapsed();
                if let Err(e) = made {
                    if let Ok(Some(l)) = hl.get(&ifname) {
                        let _ = hl.delete(l.index, &ifname);
                    }
                    return Err(e);
                }
                Ok(took)
            }
        }
    }

    /// umacvlan: the frames lost so far, summed over the ports, by reason: the
    /// switch's drops ([`umacvlan::port::DropReason::as_str`]) and what the kernel
    /// lost on the way to its sockets
    /// ([`umacvlan::xsk::Statistics::rx_losses`]: `kernel_rx_ring_full`,
    /// `kernel_fill_ring_empty`, `kernel_rx_dropped`); `None` for macvlan.
    ///
    /// # Errors
    /// The dataplane's, reading its counters.
    pub fn switch_drops(&self) -> Result<Option<BTreeMap<String, u64>>, Error> {
        let Some(dp) = &self.dp else {
            return Ok(None);
        };
        let (stats, socks) = dp.call(|dp| Ok::<_, Error>((dp.stats()?, dp.socket_stats()?)))??;
        let mut by = BTreeMap::new();
        for (_, s) in &stats {
            for r in umacvlan::port::DropReason::ALL {
                *by.entry(r.as_str().to_string()).or_insert(0) += s.drops[r.index()];
            }
        }
        for (_, x) in &socks {
            for (k, v) in x.rx_losses() {
                *by.entry(k.to_string()).or_insert(0) += v;
            }
        }
        Ok(Some(by))
    }
}

impl Drop for ScaleLab {
    fn drop(&mut self) {
        // The switch first (it removes its veths), then the parent: the kernel's
        // macvlans go with it, in one batch, before their namespaces do.
        self.dp.take();
        let _ = self.host_links.delete(self.par_index, "par");
    }
}

type Job = Box<dyn FnOnce(&mut Dataplane) + Send>;

/// A dataplane on `par` in namespace `host`, started with no endpoint, owned by a thread
/// living there that runs on it what [`DpHost::call`] gives it; stopped on drop.
struct DpHost {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DpHost {
    fn start(host: &str, t: &super::Tuning) -> Result<DpHost, Error> {
        let host = Netns::open(host)?;
        let cfg = dataplane_config(t);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), Error>>();
        let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::spawn(move || {
            let started = host
                .enter()
                .map_err(Error::from)
                .and_then(|()| Dataplane::start(cfg).map_err(Error::from));
            match started {
                Ok(mut dp) => {
                    let _ = ready_tx.send(Ok(()));
                    // Until the sender goes.
                    for job in jobs_rx {
                        job(&mut dp);
                    }
                    dp.stop();
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(DpHost {
                jobs: Some(jobs_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(Error::Config("the umacvlan dataplane did not start".into())),
        }
    }

    /// Runs `f` on the dataplane, on its thread, and returns what it returned.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Dataplane) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let gone = || Error::Config("the umacvlan dataplane thread is gone".into());
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(Box::new(move |dp: &mut Dataplane| {
                let _ = tx.send(f(dp));
            }))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }
}

impl Drop for DpHost {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
