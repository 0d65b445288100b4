//! A switch on real interfaces: the parent NIC, the XDP steering program, AF_XDP
//! sockets sharing one UMEM, veth endpoints in their namespaces, and a worker thread.
//!
//! # How frames reach the switch
//! * **Parent, unicast**: the XDP program looks the destination up in its copy of the
//!   FDB; frames for an up endpoint (or every unicast, in passthru) are redirected to
//!   the socket of the queue they arrived on. Everything else — the parent's own MAC,
//!   unknown unicast — is passed to the host stack, so the host's own networking on
//!   the parent keeps working while the switch runs (spec W2, W3).
//! * **Parent, broadcast and multicast**: the host stack and the endpoints both need
//!   them, and XDP cannot clone. XDP passes them; a tc ingress program clones each one
//!   to a *mirror* veth pair whose far end is bound by a switch socket, so the switch
//!   receives a copy "from the wire" and floods it (W6–W8). For a reflected broadcast
//!   of a private or passthru endpoint (W9) the tc program then drops the original, so
//!   the host stack does not see it, as in the kernel.
//! * **Endpoints**: each endpoint is a veth pair; the far end lives in the endpoint's
//!   namespace, the near end carries XDP that hands every frame to its socket.
//! * **Transmit to the wire** goes through the parent's queue-0 socket. Host-bound
//!   verdicts are not sent anywhere: the kernel already delivered those frames.
//!
//! # Namespaces
//! A `Dataplane` works in the network namespace of the thread that starts it; the
//! worker thread inherits it. Call its methods, and drop it, from that thread (or
//! another thread in the same namespace): the kernel resolves interface indexes in
//! the caller's namespace.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crate::app::{AppHandler, AppPort};
use crate::bpf::{
    DevVal, Steering, XdpMode, DEV_F_PASSTHRU, FDB_F_HOST_SUPPRESS, ROLE_PARENT, ROLE_PORT,
};
use crate::link::{IpCidr, LinkInfo, Links, VethEndpoint};
use crate::mode::Mode;
use crate::port::{Bundle, Frame, Port, PortId, PortTable};
use crate::switch::{PortStats, Switch, Worker, WorkerConfig, WorkerGone};
use crate::topology::{ControlError, EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
use crate::xsk::{SocketTuning, Umem, XskConfig, XskPort};

/// A port of the dataplane: AF_XDP sockets, or an in-process endpoint.
#[non_exhaustive]
pub enum DpPort {
    /// One or more AF_XDP sockets (the uplink bundles the parent's queues and the mirror).
    Xsk(Bundle<XskPort>),
    /// An in-process endpoint.
    App(AppPort<Box<dyn AppHandler<Umem>>>),
}

impl Port<Umem> for DpPort {
    #[inline]
    fn receive(&mut self, pool: &mut Umem, out: &mut Vec<Frame>, max: usize) {
        match self {
            DpPort::Xsk(p) => p.receive(pool, out, max),
            DpPort::App(p) => p.receive(pool, out, max),
        }
    }

    #[inline]
    fn transmit(&mut self, pool: &mut Umem, frames: &mut Vec<Frame>) {
        match self {
            DpPort::Xsk(p) => p.transmit(pool, frames),
            DpPort::App(p) => p.transmit(pool, frames),
        }
    }

    #[inline]
    fn maintain(&mut self, pool: &mut Umem) {
        match self {
            DpPort::Xsk(p) => p.maintain(pool),
            DpPort::App(p) => p.maintain(pool),
        }
    }
}

type Sw = Switch<DpPort, Umem, 32>;

/// How to run a dataplane.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// The parent interface.
    pub parent: String,
    /// Parent receive queues to bind (one socket each). Must equal the parent's
    /// receive queue count: frames arriving on an unbound queue are dropped.
    pub queues: u32,
    /// Worker threads, 1..=`queues`. Worker `w` serves parent queues `q` with
    /// `q % workers == w` and queue `w` of every endpoint veth and of the mirror, each
    /// worker with its own UMEM, so no frame ever crosses between workers.
    pub workers: u32,
    /// Native or generic XDP on the parent. Native is the fast mode on a real NIC;
    /// on a veth parent generic was faster (BENCHMARKS.md).
    pub xdp_mode: XdpMode,
    /// XDP mode on the endpoints' host-side veths. Generic by default: on veth,
    /// native XDP must first move an skb without 256 bytes of headroom (the
    /// container's frames, typically) into a page, and generic was as fast or
    /// faster in 42 of 54 paired cells of the benchmark, by 8 % at the median and
    /// up to 39 % for 1518-byte frames (BENCHMARKS.md, "Tuning").
    pub endpoint_xdp_mode: XdpMode,
    /// UMEM frames shared by every socket.
    pub frames: u32,
    /// Ring sizes and fill policy of every socket.
    pub xsk: XskConfig,
    /// The worker thread.
    pub worker: WorkerConfig,
    /// Kernel tuning of every socket (transmit budget, busy polling); none by default.
    pub tuning: SocketTuning,
}

impl DataplaneConfig {
    /// Defaults for `parent`: one queue, native XDP on the parent and generic on the
    /// endpoints' veths, 16384 frames, rings of 1024.
    pub fn new(parent: impl Into<String>) -> Self {
        let xsk = XskConfig {
            rx_size: 1024,
            tx_size: 1024,
            fill_size: 1024,
            comp_size: 1024,
            fill_level: 512,
            fill_batch: 64,
            ..XskConfig::default()
        };
        DataplaneConfig {
            parent: parent.into(),
            queues: 1,
            workers: 1,
            xdp_mode: XdpMode::Native,
            endpoint_xdp_mode: XdpMode::Generic,
            frames: 16384,
            xsk,
            worker: WorkerConfig::default(),
            tuning: SocketTuning::default(),
        }
    }
}

/// What an endpoint's interface inside its namespace looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointNet {
    /// Target namespace: a name under /run/netns or a path.
    pub netns: String,
    /// Interface name inside it.
    pub ifname: String,
    /// Addresses inside it.
    pub addrs: Vec<IpCidr>,
}

/// Why the dataplane refused or failed something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration rule (spec §5).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Interfaces or namespaces.
    #[error(transparent)]
    Link(#[from] crate::link::Error),
    /// The XDP/tc programs or their maps.
    #[error(transparent)]
    Bpf(#[from] crate::bpf::Error),
    /// AF_XDP sockets or UMEM.
    #[error(transparent)]
    Xsk(#[from] crate::xsk::Error),
    /// The worker thread.
    #[error(transparent)]
    Worker(#[from] WorkerGone),
    /// The parent cannot carry endpoints.
    #[error("{0}")]
    Parent(String),
    /// RLIMIT_MEMLOCK too low for the UMEM.
    #[error(transparent)]
    Memlock(#[from] crate::sys::MemlockError),
    /// Thread creation.
    #[error("cannot start the worker thread: {0}")]
    Spawn(std::io::Error),
}

type Result<T> = std::result::Result<T, Error>;

struct EndpointRt {
    id: PortId,
    /// The veth and XSKMAP slot; `None` for an in-process endpoint.
    veth: Option<(u32, String, u32)>,
}

/// A running switch on one parent.
pub struct Dataplane {
    cfg: DataplaneConfig,
    links: Arc<Links>,
    steering: Steering,
    topo: Topology,
    workers: Vec<Worker<DpPort, Umem, 32>>,
    parent: LinkInfo,
    mirror: (LinkInfo, LinkInfo),
    endpoints: BTreeMap<String, EndpointRt>,
    /// XSKMAP blocks of `workers` slots (one per queue) free for reuse.
    free_slots: Vec<u32>,
    next_slot: u32,
    stopped: bool,
}

/// Opens a socket on the worker's UMEM, attaches it as port `id` and returns a
/// short-lived duplicate of its fd (for the XSKMAP; closed right after).
fn open_port(
    worker: &Worker<DpPort, Umem, 32>,
    id: PortId,
    socks: Vec<(u32, u32)>,
    xsk: XskConfig,
    tuning: SocketTuning,
) -> Result<Vec<OwnedFd>> {
    let r = worker.exec(move |sw: &mut Sw| -> Result<Vec<OwnedFd>> {
        let mut ports = Vec::new();
        for (ifindex, queue) in socks {
            let p = XskPort::open(sw.pool_mut(), ifindex, queue, &xsk)?;
            p.socket().tune(&tuning)?;
            ports.push(p);
        }
        let fds = ports
            .iter()
            .map(|p| p.socket().as_fd().try_clone_to_owned())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::Parent(format!("dup socket fd: {e}")))?;
        sw.attach(id, DpPort::Xsk(Bundle::new(ports, 0)))
            .map_err(|e| Error::Parent(e.to_string()))?;
        Ok(fds)
    })?;
    r
}

impl Dataplane {
    /// Starts a switch on `cfg.parent` in the calling thread's namespace.
    ///
    /// What a switch killed on this parent left behind (`kill -9`, a crash) is
    /// removed first, one line on stderr each: its XDP and tc programs, which no
    /// process holds open any more ([`Steering::remove_leftovers`]), then, once the
    /// parent's XDP hook is ours, interfaces named like ours (`umv<ifindex>ma`/`mb`,
    /// `umv<ifindex>e<port>`).
    ///
    /// # Errors
    /// If the parent is missing or unsuitable, it already carries an XDP program the
    /// switch did not attach, or any kernel step fails; everything set up so far is
    /// undone.
    pub fn start(cfg: DataplaneConfig) -> Result<Dataplane> {
        // The UMEM is pinned memory: unless CAP_IPC_LOCK exempts us, make sure
        // RLIMIT_MEMLOCK allows it, or say what to do.
        if !has_cap_ipc_lock() {
            crate::sys::raise_memlock_limit(u64::from(cfg.frames) * 4096 + (16 << 20))?;
        }
        let n = cfg.workers;
        if n == 0 || n > cfg.queues {
            return Err(Error::Parent(format!(
                "workers ({n}) must be between 1 and the number of parent queues ({}): each worker transmits through a queue of its own",
                cfg.queues
            )));
        }
        let links = Arc::new(Links::open()?);
        let parent = links.require(&cfg.parent)?;
        if parent.loopback || parent.mac.is_zero() {
            return Err(Error::Parent(format!(
                "{} is not an Ethernet device: a parent needs a MAC address",
                cfg.parent
            )));
        }
        let topo = Topology::new(
            ParentConfig {
                name: parent.name.clone(),
                mac: parent.mac,
                mtu: parent.mtu.min(u16::MAX as u32) as u16,
            },
            true,
        )?;
        let mut steering = Steering::load()?;
        // A switch killed on this parent (`kill -9`, a crash) left its programs
        // attached, held open by no process: remove them. A running switch's programs
        // are held open by it and stay, so the attach below refuses the parent.
        for what in steering.remove_leftovers(parent.index)? {
            tracing::warn!(parent = %cfg.parent, "removed a leftover of an earlier run: {what}");
        }
        // First of all, claim the parent's XDP hook: this refuses a parent that carries
        // someone else's program before anything else is touched. Until the parent is
        // in the `devs` map the program passes every frame to the host.
        steering.attach_xdp(parent.index, cfg.xdp_mode)?;
        // The mirror pair: tc clones multicast into `a`; it comes out of `b` into a socket.
        let (ma, mb) = (
            format!("umv{}ma", parent.index),
            format!("umv{}mb", parent.index),
        );
        // The parent is ours now, so interfaces named like ours on it are leftovers:
        // the mirror pair and endpoint veths (deleting one removes its peer in the
        // endpoint's namespace too).
        for l in links.list()? {
            if l.name == ma || l.name == mb || is_endpoint_veth(&l.name, parent.index) {
                // Deleting one end of a pair removes the other: it may be gone already.
                if links.get(&l.name)?.is_some_and(|now| now.index == l.index) {
                    links.delete(l.index, &l.name)?;
                    tracing::warn!(parent = %cfg.parent, "removed a leftover of an earlier run: interface {}", l.name);
                }
            }
        }
        links.add_veth_mq(&ma, &mb, n)?;
        let mut dp_links = Some(links.clone());
        let cleanup_mirror = scopeguard(move || {
            if let Some(l) = dp_links.take() {
                if let Ok(Some(m)) = l.get(&format!("umv{}ma", parent.index)) {
                    let _ = l.delete(m.index, "mirror");
                }
            }
        });
        let mirror_a = links.require(&ma)?;
        let mirror_b = links.require(&mb)?;
        links.set_up(mirror_a.index, &ma, true)?;
        links.set_up(mirror_b.index, &mb, true)?;

        // A received frame lands 256 bytes into its UMEM frame (XDP_PACKET_HEADROOM).
        let frame_size = if parent.mtu as usize + 22 + 256 > 2048 {
            4096
        } else {
            2048
        };
        let mut workers = Vec::new();
        for w in 0..n {
            let umem = Umem::new(cfg.frames, frame_size)?;
            let mut sw: Sw = Switch::new(topo.reader(), umem);
            sw.set_kernel_host(Some(HOST));
            let mut wc = cfg.worker.clone();
            wc.core = wc.core.map(|c| c + w as usize);
            workers.push(Worker::spawn(sw, wc).map_err(Error::Spawn)?);
        }
        let q = cfg.queues;
        for (w, worker) in workers.iter().enumerate() {
            let w = w as u32;
            // The uplink of worker w: its parent queues (the first also transmits to the
            // wire) and its queue of the mirror.
            let mut socks: Vec<(u32, u32)> = (w..q)
                .step_by(n as usize)
                .map(|qi| (parent.index, qi))
                .collect();
            socks.push((mirror_b.index, w));
            let fds = open_port(worker, UPLINK, socks.clone(), cfg.xsk.clone(), cfg.tuning)?;
            for ((dev, qi), fd) in socks.iter().zip(&fds) {
                let slot = if *dev == parent.index { *qi } else { q + qi };
                steering.set_xsk(slot, fd.as_fd())?;
            }
        }
        steering.set_device(
            mirror_b.index,
            DevVal {
                role: ROLE_PORT,
                xsk_base: q,
                mirror_ifindex: 0,
                flags: 0,
            },
        )?;
        steering.set_device(
            parent.index,
            DevVal {
                role: ROLE_PARENT,
                xsk_base: 0,
                mirror_ifindex: mirror_a.index,
                flags: 0,
            },
        )?;
        // Always native: generic XDP skips frames a BPF program redirected, and every
        // mirrored copy is one.
        steering.attach_xdp(mirror_b.index, XdpMode::Native)?;
        steering.attach_tc_ingress(parent.index)?;
        cleanup_mirror.defuse();
        tracing::info!(parent = %cfg.parent, queues = q, workers = n, xdp = ?cfg.xdp_mode, endpoint_xdp = ?cfg.endpoint_xdp_mode, "dataplane started");
        Ok(Dataplane {
            next_slot: q + n,
            stopped: false,
            cfg,
            links,
            steering,
            topo,
            workers,
            parent,
            mirror: (mirror_a, mirror_b),
            endpoints: BTreeMap::new(),
            free_slots: Vec::new(),
        })
    }

    /// Runs `f` on every worker, in order, and collects the results.
    fn on_workers<R: Send + 'static>(
        &self,
        f: impl Fn(u32, &mut Sw) -> R + Send + Sync + Clone + 'static,
    ) -> Result<Vec<R>> {
        let mut out = Vec::with_capacity(self.workers.len());
        for (w, worker) in self.workers.iter().enumerate() {
            let f = f.clone();
            out.push(worker.exec(move |sw: &mut Sw| f(w as u32, sw))?);
        }
        Ok(out)
    }

    /// A free block of one XSKMAP slot per worker.
    fn alloc_slots(&mut self) -> u32 {
        self.free_slots.pop().unwrap_or_else(|| {
            self.next_slot += self.workers.len() as u32;
            self.next_slot - self.workers.len() as u32
        })
    }

    /// The published port table.
    pub fn table(&self) -> Arc<PortTable> {
        self.topo.table()
    }

    /// Declares network VLAN `vlan` on this parent (0 = untagged), so its tagged
    /// frames are switched even before it has endpoints.
    ///
    /// # Errors
    /// [`ControlError::BadVlan`].
    pub fn add_network(&mut self, vlan: u16) -> Result<()> {
        Ok(self.topo.add_network(vlan)?)
    }

    /// The control model.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Adds an endpoint: the rules of spec §5 first, then its veth pair, socket, XDP
    /// program and FDB entry. On failure nothing of it remains.
    ///
    /// # Errors
    /// A rule ([`Error::Control`]) or a kernel step.
    pub fn add_endpoint(&mut self, cfg: EndpointConfig, net: EndpointNet) -> Result<PortId> {
        let name = cfg.name.clone();
        if cfg.mode == Mode::Source {
            return Err(Error::Parent(format!(
                "endpoint '{name}': source mode is not available on real interfaces yet (only in the in-memory switch)"
            )));
        }
        // Refuse by the rules (spec §5) before creating anything. Then publish it down,
        // so no worker sends to it before its port exists, and bring it up once its
        // socket is attached.
        self.topo.check_endpoint(cfg.clone())?;
        let want_up = cfg.up;
        let id = self
            .topo
            .add_endpoint(EndpointConfig { up: false, ..cfg })?;
        match self
            .plumb(&name, id, net)
            .and_then(|()| self.bring_up(&name, want_up))
        {
            Ok(()) => Ok(id),
            Err(e) => {
                self.unplumb(&name);
                let _ = self.topo.remove_endpoint(&name);
                Err(e)
            }
        }
    }

    fn plumb(&mut self, name: &str, id: PortId, net: EndpointNet) -> Result<()> {
        let ep = self.topo.endpoint(name).expect("just added").clone();
        let host_ifname = endpoint_veth_name(self.parent.index, id);
        let veth = VethEndpoint {
            host_ifname: host_ifname.clone(),
            netns: net.netns,
            ifname: net.ifname,
            mac: ep.mac(),
            mtu: ep.mtu() as u32,
            addrs: net.addrs,
            queues: self.workers.len() as u32,
        };
        let host_ifindex = veth.create(&self.links)?;
        let slot = self.alloc_slots();
        self.endpoints.insert(
            name.to_string(),
            EndpointRt {
                id,
                veth: Some((host_ifindex, host_ifname, slot)),
            },
        );
        self.steering.set_device(
            host_ifindex,
            DevVal {
                role: ROLE_PORT,
                xsk_base: slot,
                mirror_ifindex: 0,
                flags: 0,
            },
        )?;
        // Worker w serves queue w of the endpoint's veth.
        for (w, worker) in self.workers.iter().enumerate() {
            let fds = open_port(
                worker,
                id,
                vec![(host_ifindex, w as u32)],
                self.cfg.xsk.clone(),
                self.cfg.tuning,
            )?;
            self.steering.set_xsk(slot + w as u32, fds[0].as_fd())?;
        }
        self.steering
            .attach_xdp(host_ifindex, self.cfg.endpoint_xdp_mode)
            .map_err(Error::from)
    }

    /// Brings a plumbed endpoint up (or leaves it down) and mirrors it into the maps.
    fn bring_up(&mut self, name: &str, up: bool) -> Result<()> {
        self.topo.set_up(name, up)?;
        let c = self.topo.endpoint(name).expect("exists").cfg.clone();
        self.sync_fdb(&c)
    }

    /// Mirrors one endpoint's state into the XDP program's maps.
    fn sync_fdb(&mut self, c: &EndpointConfig) -> Result<()> {
        let ep = self.topo.endpoint(&c.name).expect("exists");
        let suppress = if matches!(c.mode, Mode::Private | Mode::Passthru) {
            FDB_F_HOST_SUPPRESS
        } else {
            0
        };
        if c.mode == Mode::Passthru {
            let dev = DevVal {
                role: ROLE_PARENT,
                xsk_base: 0,
                mirror_ifindex: self.mirror.0.index,
                flags: if c.up { DEV_F_PASSTHRU } else { 0 },
            };
            self.steering.set_device(self.parent.index, dev)?;
        }
        if c.up {
            self.steering
                .fdb_insert(c.vlan, ep.mac(), ep.id, suppress)?;
        } else {
            self.steering.fdb_remove(c.vlan, ep.mac())?;
        }
        Ok(())
    }

    /// Adds an in-process endpoint: frames the switch delivers to it are handed to
    /// a handler made by `handler` (one per worker) on the worker thread (see [`crate::app`]); what it returns is sent
    /// into the switch from the endpoint.
    ///
    /// # Errors
    /// A rule ([`Error::Control`]) or the worker.
    pub fn add_app_endpoint(
        &mut self,
        cfg: EndpointConfig,
        handler: impl Fn() -> Box<dyn AppHandler<Umem>>,
    ) -> Result<PortId> {
        let name = cfg.name.clone();
        self.topo.check_endpoint(cfg.clone())?;
        let want_up = cfg.up;
        let id = self
            .topo
            .add_endpoint(EndpointConfig { up: false, ..cfg })?;
        let mut r = Ok(());
        for worker in &self.workers {
            let port = DpPort::App(AppPort::new(handler(), 256));
            r = r.and_then(|()| {
                worker
                    .attach(id, port)
                    .map_err(Error::from)
                    .and_then(|r| r.map_err(|e| Error::Parent(e.to_string())))
            });
        }
        let r = r.and_then(|()| {
            self.endpoints
                .insert(name.clone(), EndpointRt { id, veth: None });
            self.bring_up(&name, want_up)
        });
        match r {
            Ok(()) => Ok(id),
            Err(e) => {
                self.unplumb(&name);
                let _ = self.topo.remove_endpoint(&name);
                Err(e)
            }
        }
    }

    /// Undoes whatever of an endpoint's plumbing exists (best effort).
    fn unplumb(&mut self, name: &str) {
        if let Some(ep) = self.topo.endpoint(name) {
            let (vlan, mac, mode) = (ep.cfg.vlan, ep.mac(), ep.cfg.mode);
            let _ = self.steering.fdb_remove(vlan, mac);
            if mode == Mode::Passthru {
                let dev = DevVal {
                    role: ROLE_PARENT,
                    xsk_base: 0,
                    mirror_ifindex: self.mirror.0.index,
                    flags: 0,
                };
                let _ = self.steering.set_device(self.parent.index, dev);
            }
        }
        let Some(rt) = self.endpoints.remove(name) else {
            return;
        };
        if let Some((ifindex, _, slot)) = &rt.veth {
            let _ = self.steering.clear_xsk(*slot);
            let _ = self.steering.detach_xdp(*ifindex);
            let _ = self.steering.remove_device(*ifindex);
        }
        let id = rt.id;
        let _ = self.on_workers(move |_, sw: &mut Sw| {
            match sw.detach(id) {
                Some(DpPort::App(mut p)) => p.clear(sw.pool_mut()),
                other => drop(other),
            }
            sw.pool_mut().reclaim_closed();
        });
        if let Some((ifindex, ifname, slot)) = rt.veth {
            let _ = self.links.delete(ifindex, &ifname);
            self.free_slots.push(slot);
        }
    }

    /// Removes endpoint `name` and its interfaces.
    ///
    /// # Errors
    /// [`ControlError::NoSuchEndpoint`].
    pub fn remove_endpoint(&mut self, name: &str) -> Result<()> {
        if self.topo.endpoint(name).is_none() {
            return Err(ControlError::NoSuchEndpoint(name.into()).into());
        }
        // Down first, so no worker sends to its port while it is being taken apart.
        let _ = self.topo.set_up(name, false);
        self.unplumb(name);
        self.topo.remove_endpoint(name)?;
        Ok(())
    }

    /// Per-port counters, by port name.
    ///
    /// # Errors
    /// [`Error::Worker`].
    pub fn stats(&self) -> Result<Vec<(String, PortStats)>> {
        let t = self.topo.table();
        let mut sum: BTreeMap<PortId, PortStats> = BTreeMap::new();
        for w in &self.workers {
            for (id, s) in w.stats()? {
                sum.entry(id).or_default().merge(&s);
            }
        }
        Ok(sum
            .into_iter()
            .map(|(id, s)| {
                (
                    t.port(id)
                        .map_or_else(|| id.to_string(), |p| p.name.to_string()),
                    s,
                )
            })
            .collect())
    }

    /// Where the UMEM's frames are: free, held by the switch, lent to the kernel.
    ///
    /// # Errors
    /// [`Error::Worker`].
    pub fn umem_accounting(&self) -> Result<crate::xsk::Accounting> {
        let all = self.on_workers(|_, sw: &mut Sw| sw.pool().accounting())?;
        Ok(all
            .into_iter()
            .fold(crate::xsk::Accounting::default(), |a, b| {
                crate::xsk::Accounting {
                    total: a.total + b.total,
                    free: a.free + b.free,
                    held: a.held + b.held,
                    lent: a.lent + b.lent,
                }
            }))
    }

    /// The XDP/tc programs and maps.
    pub fn steering(&self) -> &Steering {
        &self.steering
    }

    fn teardown(&mut self) {
        let names: Vec<String> = self.endpoints.keys().cloned().collect();
        for n in names {
            self.unplumb(&n);
        }
        let _ = self.steering.detach_tc(self.parent.index);
        let _ = self.steering.detach_xdp(self.parent.index);
        let _ = self.steering.detach_xdp(self.mirror.1.index);
        for w in self.workers.drain(..) {
            let _ = w.stop();
        }
        self.stopped = true;
        let _ = self.links.delete(self.mirror.0.index, &self.mirror.0.name);
    }

    /// Stops the worker, detaches every program and removes every interface the
    /// dataplane created.
    pub fn stop(mut self) {
        self.teardown();
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if !self.stopped {
            self.teardown();
        }
    }
}

/// The host-side name of an endpoint's veth: `umv<parent ifindex>e<port id>`.
fn endpoint_veth_name(parent: u32, id: PortId) -> String {
    format!("umv{parent}e{}", id.0)
}

/// Whether `name` is exactly of the form [`endpoint_veth_name`] gives for `parent`.
fn is_endpoint_veth(name: &str, parent: u32) -> bool {
    name.strip_prefix(&format!("umv{parent}e"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether the calling thread holds CAP_IPC_LOCK, which exempts AF_XDP UMEM
/// registration from RLIMIT_MEMLOCK.
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Runs a closure on drop unless defused.
struct ScopeGuard<F: FnOnce()>(Option<F>);

fn scopeguard<F: FnOnce()>(f: F) -> ScopeGuard<F> {
    ScopeGuard(Some(f))
}

impl<F: FnOnce()> ScopeGuard<F> {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for ScopeGuard<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_exact_endpoint_veth_names_are_recognised() {
        assert_eq!(endpoint_veth_name(3, PortId(12)), "umv3e12");
        assert!(is_endpoint_veth("umv3e12", 3));
        assert!(is_endpoint_veth(&endpoint_veth_name(3, PortId(2)), 3));
        for other in [
            "umv3e", "umv31e2", "umv3e2x", "umv3ma", "umv3mb", "xumv3e2", "umv3e-1", "eth0",
        ] {
            assert!(!is_endpoint_veth(other, 3), "{other}");
        }
        assert!(!is_endpoint_veth("umv3e2", 31));
    }
}
