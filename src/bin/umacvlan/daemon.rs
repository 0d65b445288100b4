//! The daemon's state: networks, endpoints and one [`Dataplane`] per parent, and the
//! handling of control requests.
//!
//! Every request is checked completely before anything changes; a request that fails
//! half-way undoes what it did, so a refused request leaves the daemon as it was.
//! Like the [`Dataplane`]s it owns, a `Daemon` stays on the thread (network namespace)
//! that made it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::config::{
    check_endpoint, check_network, Config, ConfigError, Endpoint, Network, NetworkSection,
};
use crate::state::{EndpointRecord, PoolRecord, State, StateError, StateFile, STATE_VERSION};
use umacvlan::ctl::{EndpointAdd, EndpointSection, Explain, Request};
use umacvlan::dataplane::{Dataplane, DataplaneConfig, EndpointNet};
use umacvlan::mode::Mode;
use umacvlan::topology::EndpointConfig;

/// Why the daemon refused or failed a change; the message is for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the request or the file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The dataplane of a parent.
    #[error(transparent)]
    Dataplane(Box<umacvlan::dataplane::Error>),
    /// No network of that name.
    #[error("no network named '{}'", .0.escape_debug())]
    NoSuchNetwork(String),
    /// No endpoint of that name.
    #[error("no endpoint named '{}'", .0.escape_debug())]
    NoSuchEndpoint(String),
    /// The name is taken.
    #[error("a network named '{0}' already exists")]
    NetworkExists(String),
    /// The name is taken.
    #[error("an endpoint named '{0}' already exists")]
    EndpointExists(String),
    /// `network create` with endpoints in it.
    #[error("network create takes no endpoints; add them with endpoint add")]
    EndpointsInCreate,
    /// Passthru needs the parent alone.
    #[error("cannot use mode passthru, macvlan network '{other}' is already using parent interface {parent}")]
    ParentTaken {
        /// The network already there.
        other: String,
        /// The parent.
        parent: String,
    },
    /// The parent is in passthru mode.
    #[error(
        "macvlan network '{other}' is already using parent interface {parent} in mode passthru"
    )]
    ParentPassthru {
        /// The passthru network.
        other: String,
        /// The parent.
        parent: String,
    },
    /// Another network has that VLAN on the parent.
    #[error("macvlan network '{other}' already uses parent interface {parent} {}", vlan_words(*.vlan))]
    VlanTaken {
        /// The network already there.
        other: String,
        /// The parent.
        parent: String,
        /// The VLAN (0 = untagged).
        vlan: u16,
    },
    /// The host port could not be made.
    #[error("host port {ifname}: {source}")]
    HostPort {
        /// Its interface name.
        ifname: String,
        /// Why.
        source: Box<umacvlan::dataplane::Error>,
    },
    /// A network with endpoints cannot go.
    #[error("network '{name}' still has endpoints ({}); remove them first", endpoints.join(", "))]
    NetworkInUse {
        /// The network.
        name: String,
        /// Its endpoints.
        endpoints: Vec<String>,
    },
    /// Passthru is per network.
    #[error("endpoint mode {mode} does not fit network '{network}' in mode {network_mode}: passthru is per network")]
    ModeMismatch {
        /// The endpoint's mode.
        mode: Mode,
        /// The network.
        network: String,
        /// The network's mode.
        network_mode: Mode,
    },
    /// The parent is one of the daemon's own interfaces.
    #[error("{0} is an interface of this daemon (an endpoint's veth, the mirror pair or a host port), not a parent; give the NIC the traffic uses")]
    OwnInterface(String),
    /// The network's address plan refuses the endpoint's address.
    #[error("endpoint '{endpoint}'.ip: {source}")]
    Ipam {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: crate::ipam::IpamError,
    },
    /// A network of the state that could not be made at start.
    #[error("network '{0}' was not restored at start (see the daemon's log; its parent may be missing): restart the daemon once the parent is back, or remove it with network rm")]
    NetworkPending(String),
    /// The state could not be written: the change was undone.
    #[error("{0}; the change was undone")]
    State(#[from] StateError),
    /// A `capture` request that cannot be served.
    #[error("capture: {0}")]
    Capture(String),
    /// An `explain` request that names nothing the daemon knows.
    #[error("explain: {0}")]
    Explain(String),
    /// A request this daemon does not know.
    #[error("unsupported request")]
    Unsupported,
    /// Applying the configuration file: which network or endpoint failed.
    #[error("{what} '{name}': {source}")]
    Apply {
        /// `network` or `endpoint`.
        what: &'static str,
        /// Its name.
        name: String,
        /// Why.
        source: Box<Error>,
    },
}

impl From<umacvlan::dataplane::Error> for Error {
    fn from(e: umacvlan::dataplane::Error) -> Self {
        Error::Dataplane(Box::new(e))
    }
}

/// An endpoint's multicast filter for `network inspect`: `"all"` or its groups.
fn mc_json(mc: &umacvlan::view::McFilter) -> Value {
    match mc {
        umacvlan::view::McFilter::Groups(g) => {
            json!(g.iter().map(|m| m.to_string()).collect::<Vec<_>>())
        }
        _ => json!("all"),
    }
}

fn vlan_words(vlan: u16) -> String {
    if vlan == 0 {
        "untagged".to_string()
    } else {
        format!("on VLAN {vlan}")
    }
}

/// A capture the control socket streams to its client.
pub struct CaptureRun {
    /// Its parent.
    pub parent: String,
    /// Its frames.
    pub capture: umacvlan::dataplane::Capture,
    /// Frames to stream before it ends.
    pub count: Option<u64>,
    /// When it ends.
    pub until: Option<std::time::Instant>,
    /// The fast path's `capture_lost` counter when it started.
    pub kernel_lost: u64,
}

/// Networks, endpoints and dataplanes.
pub struct Daemon {
    planes: BTreeMap<String, Dataplane>,
    networks: BTreeMap<String, Network>,
    endpoints: BTreeMap<String, Endpoint>,
    make_config: Box<dyn Fn(&str) -> DataplaneConfig>,
    /// Where every change is recorded; `None`: nowhere (tests of the daemon's logic).
    state: Option<StateFile>,
    /// Networks and endpoints of the configuration file (the rest were made at run
    /// time).
    from_config: BTreeSet<(&'static str, String)>,
    /// Run-time networks of the state that could not be made again at start (their
    /// parent is missing, say), with their endpoints: kept in the state, not lost,
    /// until they are removed with `network rm` or a later start makes them.
    pending: State,
    /// In [`Daemon::restore`]: dataplanes keep an earlier run's endpoint veths for
    /// their endpoints to take over.
    restoring: bool,
    /// The Docker IPAM driver's pools, by id.
    ipam: BTreeMap<String, PoolRecord>,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon::new(Box::new(|p: &str| DataplaneConfig::new(p)))
    }
}

impl Daemon {
    /// A daemon making each parent's dataplane with `make_config(parent)`.
    pub fn new(make_config: Box<dyn Fn(&str) -> DataplaneConfig>) -> Self {
        Daemon {
            planes: BTreeMap::new(),
            networks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            make_config,
            state: None,
            from_config: BTreeSet::new(),
            pending: State::default(),
            restoring: false,
            ipam: BTreeMap::new(),
        }
    }

    /// Records every change in `state` from now on.
    pub fn with_state(mut self, state: StateFile) -> Self {
        self.state = Some(state);
        self
    }

    /// Brings back the configuration file's networks and endpoints and, after them,
    /// the state's: run-time networks and endpoints, and the MACs and addresses chosen
    /// for the file's endpoints. The file wins a conflict of names. A run-time
    /// endpoint that cannot be made again (its namespace is gone, say) is dropped from
    /// the state; each such case is returned as a warning.
    ///
    /// # Errors
    /// A network or endpoint of the file that fails, named ([`Error::Apply`]); what
    /// was created stays (the caller exits and [`Daemon::shutdown`] removes it).
    pub fn restore(&mut self, cfg: &Config, st: &State) -> Result<Vec<String>, Error> {
        let mut warnings = Vec::new();
        self.ipam = st
            .ipam_pools
            .iter()
            .map(|p| (p.id.clone(), p.clone()))
            .collect();
        self.restoring = true;
        let r = self.restore_all(cfg, st, &mut warnings);
        self.restoring = false;
        // What an earlier run left and nothing took over goes now.
        for (parent, dp) in &mut self.planes {
            for gone in dp.remove_unclaimed() {
                tracing::warn!(parent = %parent, "removed a leftover of an earlier run: interface {gone} (no endpoint of the state claims it)");
            }
        }
        r?;
        self.save(None)?;
        Ok(warnings)
    }

    fn restore_all(
        &mut self,
        cfg: &Config,
        st: &State,
        warnings: &mut Vec<String>,
    ) -> Result<(), Error> {
        fn failed<'a>(what: &'static str, name: &'a str) -> impl FnOnce(Error) -> Error + 'a {
            move |e| Error::Apply {
                what,
                name: name.to_string(),
                source: Box::new(e),
            }
        }
        for n in &cfg.networks {
            self.from_config.insert(("network", n.name.clone()));
            self.create_network(n.clone())
                .map_err(failed("network", &n.name))?;
        }
        for n in &st.networks {
            if self.networks.contains_key(&n.name) {
                warnings.push(format!("network '{}' of the state: the configuration file has one of that name, which wins", n.name));
                continue;
            }
            if let Err(e) = check_network(n)
                .map_err(Error::from)
                .and_then(|net| self.create_network(net))
            {
                warnings.push(format!("network '{}' of the state not restored, kept in the state with its endpoints (a restart tries again; network rm removes it): {e}", n.name));
                self.pending.networks.push(n.clone());
            }
        }
        let recorded = |name: &str, net: &str| {
            st.endpoints
                .iter()
                .find(|r| r.from_config && r.endpoint.name == name && r.network == net)
        };
        for e in &cfg.endpoints {
            self.from_config.insert(("endpoint", e.name.clone()));
            let mut e = e.clone();
            // What the file leaves open is what was chosen last time.
            if let Some(r) = recorded(&e.name, &e.network) {
                if e.mac.is_none() {
                    e.mac = r.endpoint.mac.as_deref().and_then(|m| m.parse().ok());
                }
                if e.ip.is_none() {
                    e.ip = r.endpoint.ip.as_deref().and_then(|a| a.parse().ok());
                }
                e.adopt = r.host_ifname.clone();
            }
            self.add_restored(e.clone())
                .map_err(failed("endpoint", &e.name))?;
        }
        for r in st.endpoints.iter().filter(|r| !r.from_config) {
            let name = &r.endpoint.name;
            if self.pending.networks.iter().any(|n| n.name == r.network) {
                self.pending.endpoints.push(r.clone());
                continue;
            }
            if self.endpoints.contains_key(name) {
                warnings.push(format!("endpoint '{name}' of the state: the configuration file has one of that name, which wins"));
                continue;
            }
            if let Err(e) = check_endpoint(&r.network, &r.endpoint)
                .map_err(Error::from)
                .and_then(|mut ep| {
                    ep.container = r.container.clone();
                    ep.configure_ip = r.configure_ip != Some(false);
                    ep.adopt = r.host_ifname.clone();
                    self.add_restored(ep)
                })
            {
                warnings.push(format!("endpoint '{name}' of the state dropped: {e}"));
            }
        }
        Ok(())
    }

    /// Adds an endpoint of the file or the state: takes over the veth it had if it is
    /// still there; if not, makes it again, unless a container runtime owns it (its
    /// interface was moved where only the runtime knows).
    fn add_restored(&mut self, ep: Endpoint) -> Result<(), Error> {
        let Some(veth) = ep.adopt.clone() else {
            return self.add_endpoint(ep);
        };
        match self.add_endpoint(ep.clone()) {
            Ok(()) => {
                tracing::info!(endpoint = %ep.name, "took over its interface {veth}");
                Ok(())
            }
            Err(e) if ep.container.is_none() => {
                tracing::info!(endpoint = %ep.name, "making it again: {e}");
                self.add_endpoint(Endpoint { adopt: None, ..ep })
            }
            Err(e) => Err(e),
        }
    }

    /// What the state file holds now, less `without` (a network or endpoint about to
    /// go).
    fn records(&self, without: Option<(&str, &str)>) -> State {
        let keep = |what: &'static str, name: &str| without != Some((what, name));
        let networks = self
            .networks
            .values()
            .filter(|n| {
                keep("network", &n.name) && !self.from_config.contains(&("network", n.name.clone()))
            })
            .map(|n| NetworkSection {
                name: n.name.clone(),
                parent: n.parent.clone(),
                mode: Some(n.mode.as_str().to_string()),
                vlan: (n.vlan != 0).then_some(n.vlan),
                subnet: n.subnet.clone(),
                gateway: n.gateway.clone(),
                ip_range: n.ip_range.clone(),
                aux_address: n.aux_address.clone(),
                host_port: n.host_port.clone(),
                strict: n.strict.then_some(true),
                fastpath: n.fastpath,
                endpoints: vec![],
            })
            .collect();
        let endpoints = self
            .endpoints
            .values()
            .filter(|e| keep("endpoint", &e.name))
            .map(|e| EndpointRecord {
                network: e.network.clone(),
                from_config: self.from_config.contains(&("endpoint", e.name.clone())),
                container: e.container.clone(),
                configure_ip: (!e.configure_ip).then_some(false),
                host_ifname: self
                    .networks
                    .get(&e.network)
                    .and_then(|n| self.planes.get(&n.parent))
                    .and_then(|dp| dp.endpoint_veth(&e.name))
                    .map(str::to_string),
                endpoint: EndpointSection {
                    name: e.name.clone(),
                    netns: e.netns.clone(),
                    ifname: Some(e.ifname.clone()),
                    mac: self.live_mac(e).or(e.mac).map(|m| m.to_string()),
                    ip: e.ip.map(|a| a.to_string()),
                    mode: e.mode.map(|m| m.as_str().to_string()),
                    mtu: e.mtu,
                    strict: e.strict.then_some(true),
                    sources: e.sources.iter().map(|m| m.to_string()).collect(),
                    nodst: e.nodst.then_some(true),
                },
            })
            .collect();
        let mut st = State {
            version: STATE_VERSION,
            networks,
            endpoints,
            ipam_pools: self.ipam.values().cloned().collect(),
        };
        for n in &self.pending.networks {
            if keep("network", &n.name) {
                st.networks.push(n.clone());
                st.endpoints.extend(
                    self.pending
                        .endpoints
                        .iter()
                        .filter(|r| r.network == n.name)
                        .cloned(),
                );
            }
        }
        st
    }

    /// A network kept in the state but not made at start, if `name` is one.
    fn pending_network(&self, name: &str) -> Option<&NetworkSection> {
        self.pending.networks.iter().find(|n| n.name == name)
    }

    fn live_mac(&self, e: &Endpoint) -> Option<umacvlan::wire::MacAddr> {
        let parent = &self.networks.get(&e.network)?.parent;
        Some(self.planes.get(parent)?.topology().endpoint(&e.name)?.mac())
    }

    /// Writes the state (less `without`), if the daemon keeps one.
    fn save(&self, without: Option<(&str, &str)>) -> Result<(), StateError> {
        match &self.state {
            Some(f) => f.save(&self.records(without)),
            None => Ok(()),
        }
    }

    /// Handles one control request.
    ///
    /// # Errors
    /// A message for the user; nothing changed.
    pub fn handle(&mut self, req: Request) -> Result<Value, Error> {
        match req {
            Request::NetworkCreate(n) => {
                let name = n.name.clone();
                let v = self.network_create(n)?;
                self.saved_or_undone(|d| {
                    let _ = d.network_rm(&name);
                })?;
                Ok(v)
            }
            Request::NetworkRm { name } => self.removal("network", &name, Self::network_rm),
            Request::NetworkLs => {
                let mut v: Vec<Value> = self.networks.values().map(|n| json!(n)).collect();
                v.extend(self.pending.networks.iter().map(|n| {
                    json!({ "name": n.name, "parent": n.parent, "mode": n.mode, "vlan": n.vlan.unwrap_or(0), "pending": true })
                }));
                Ok(json!(v))
            }
            Request::NetworkInspect { name } => self.network_inspect(&name),
            Request::EndpointAdd(e) => {
                let name = e.name.clone();
                let v = self.endpoint_add(e)?;
                self.saved_or_undone(|d| {
                    let _ = d.endpoint_rm(&name);
                })?;
                Ok(v)
            }
            Request::EndpointRm { name } => self.removal("endpoint", &name, Self::endpoint_rm),
            Request::EndpointLs => Ok(self.endpoint_ls()),
            Request::Stats => self.stats(),
            Request::Explain(x) => self.explain(&x),
            // Streamed by the control socket (server.rs), never answered in one line.
            Request::Capture(_) => Err(Error::Unsupported),
            #[allow(unreachable_patterns)]
            _ => Err(Error::Unsupported),
        }
    }

    /// Records a change just made; if that fails, `undo` takes it back.
    fn saved_or_undone(&mut self, undo: impl FnOnce(&mut Self)) -> Result<(), Error> {
        if let Err(e) = self.save(None) {
            undo(self);
            return Err(e.into());
        }
        Ok(())
    }

    /// Removes network or endpoint `name` with `rm`: recorded as gone first, so a
    /// crash in between leaves nothing the state would bring back half; if `rm`
    /// refuses, the record is put back.
    fn removal(
        &mut self,
        what: &'static str,
        name: &str,
        rm: fn(&mut Self, &str) -> Result<Value, Error>,
    ) -> Result<Value, Error> {
        let exists = match what {
            "network" => self.networks.contains_key(name) || self.pending_network(name).is_some(),
            _ => self.endpoints.contains_key(name),
        };
        if exists {
            self.save(Some((what, name)))?;
        }
        let r = rm(self, name);
        if r.is_ok() {
            self.from_config.remove(&(what, name.to_string()));
        }
        if r.is_err() && exists {
            if let Err(e) = self.save(None) {
                tracing::error!("{e}");
            }
        }
        r
    }

    fn network_create(&mut self, n: NetworkSection) -> Result<Value, Error> {
        if !n.endpoints.is_empty() {
            return Err(Error::EndpointsInCreate);
        }
        let net = check_network(&n)?;
        let name = net.name.clone();
        self.create_network(net)?;
        Ok(json!(self.networks[&name]))
    }

    fn create_network(&mut self, net: Network) -> Result<(), Error> {
        if self.networks.contains_key(&net.name) || self.pending_network(&net.name).is_some() {
            return Err(Error::NetworkExists(net.name));
        }
        if self.is_own_interface(&net.parent) {
            return Err(Error::OwnInterface(net.parent));
        }
        for other in self.networks.values().filter(|o| o.parent == net.parent) {
            let (other, parent) = (other.name.clone(), net.parent.clone());
            let o = &self.networks[&other];
            if net.mode == Mode::Passthru {
                return Err(Error::ParentTaken { other, parent });
            }
            if o.mode == Mode::Passthru {
                return Err(Error::ParentPassthru { other, parent });
            }
            if o.vlan == net.vlan {
                return Err(Error::VlanTaken {
                    other,
                    parent,
                    vlan: net.vlan,
                });
            }
        }
        let fresh = !self.planes.contains_key(&net.parent);
        if fresh {
            let mut c = (self.make_config)(&net.parent);
            c.adopt = self.restoring;
            let dp = Dataplane::start(c)?;
            self.planes.insert(net.parent.clone(), dp);
        }
        let dp = self.planes.get_mut(&net.parent).expect("present");
        if let Some(on) = net.fastpath {
            dp.set_fastpath(net.vlan, on);
        }
        let mut r = dp.add_network(net.vlan).map_err(Error::from);
        if r.is_ok() {
            if let Some(h) = &net.host_port {
                r = Self::add_host_port(dp, &net, h);
            }
        }
        if let Err(e) = r {
            if fresh {
                if let Some(dp) = self.planes.remove(&net.parent) {
                    dp.stop();
                }
            }
            return Err(e);
        }
        self.networks.insert(net.name.clone(), net);
        Ok(())
    }

    /// Whether `ifname` is an interface the daemon made: a host port, or a
    /// dataplane's endpoint veth or mirror pair ([`umacvlan::dataplane::is_switch_interface`]).
    fn is_own_interface(&self, ifname: &str) -> bool {
        umacvlan::dataplane::is_switch_interface(ifname)
            || self
                .networks
                .values()
                .any(|n| n.host_port.as_deref() == Some(ifname))
    }

    /// The endpoint name of network `net`'s host port.
    fn host_port_endpoint(net: &str) -> String {
        format!("{net}/host")
    }

    /// The host port: a veth pair whose far end, named `ifname`, stays in the daemon's
    /// own namespace for the host to address; the near end is a bridge-mode port.
    fn add_host_port(dp: &mut Dataplane, net: &Network, ifname: &str) -> Result<(), Error> {
        // An earlier run's host port, kept with the endpoint veths at a restart, is
        // made again.
        dp.release_kept_peer(ifname)?;
        let mut cfg = EndpointConfig::new(Self::host_port_endpoint(&net.name), Mode::Bridge);
        cfg.vlan = net.vlan;
        let here = EndpointNet {
            netns: "/proc/thread-self/ns/net".into(),
            ifname: ifname.into(),
            addrs: vec![],
            queues: None,
            adopt: None,
        };
        dp.add_endpoint(cfg, here)
            .map(|_| ())
            .map_err(|source| Error::HostPort {
                ifname: ifname.into(),
                source: Box::new(source),
            })
    }

    fn network_rm(&mut self, name: &str) -> Result<Value, Error> {
        if self.pending_network(name).is_some() {
            self.pending.networks.retain(|n| n.name != name);
            self.pending.endpoints.retain(|r| r.network != name);
            return Ok(json!({ "removed": name }));
        }
        let net = self
            .networks
            .get(name)
            .ok_or_else(|| Error::NoSuchNetwork(name.into()))?;
        let users: Vec<String> = self
            .endpoints
            .values()
            .filter(|e| e.network == name)
            .map(|e| e.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(Error::NetworkInUse {
                name: name.into(),
                endpoints: users,
            });
        }
        let parent = net.parent.clone();
        if net.host_port.is_some() {
            let hp = Self::host_port_endpoint(name);
            self.planes
                .get_mut(&parent)
                .expect("present")
                .remove_endpoint(&hp)?;
        }
        self.networks.remove(name);
        if !self.networks.values().any(|n| n.parent == parent) {
            if let Some(dp) = self.planes.remove(&parent) {
                dp.stop();
            }
        }
        Ok(json!({ "removed": name }))
    }

    fn network_inspect(&self, name: &str) -> Result<Value, Error> {
        let net = self
            .networks
            .get(name)
            .ok_or_else(|| Error::NoSuchNetwork(name.into()))?;
        let dp = &self.planes[&net.parent];
        let eps: Vec<Value> = self
            .endpoints
            .values()
            .filter(|e| e.network == name)
            .map(|e| {
                let live = dp.topology().endpoint(&e.name);
                json!({
                    "name": e.name, "netns": e.netns, "ifname": e.ifname,
                    "mac": live.map(|l| l.mac().to_string()),
                    "mode": live.map(|l| l.cfg.mode.as_str()),
                    "mtu": live.map(|l| l.mtu()),
                    "strict": live.map(|l| l.cfg.strict),
                    "multicast": live.map(|l| mc_json(&l.cfg.mc)),
                    "sources": live.map(|l| l.cfg.sources.iter().map(|m| m.to_string()).collect::<Vec<_>>()),
                    "nodst": live.map(|l| l.cfg.nodst),
                    "ip": e.ip.map(|i| i.to_string()),
                })
            })
            .collect();
        Ok(
            json!({ "network": net, "parent_mac": dp.topology().parent().mac.to_string(), "endpoints": eps }),
        )
    }

    fn endpoint_add(&mut self, a: EndpointAdd) -> Result<Value, Error> {
        let sec = crate::config::EndpointSection {
            name: a.name,
            netns: a.netns,
            ifname: a.ifname,
            mac: a.mac,
            ip: a.ip,
            mode: a.mode,
            mtu: a.mtu,
            strict: a.strict,
            sources: a.sources,
            nodst: a.nodst,
        };
        let mut ep = check_endpoint(&a.network, &sec)?;
        if let Some(c) = &a.container {
            crate::config::check_name("endpoint.container", "container id", c)?;
        }
        ep.container = a.container;
        ep.configure_ip = a.configure_ip != Some(false);
        let name = ep.name.clone();
        self.add_endpoint(ep)?;
        let all = self.endpoint_ls();
        Ok(all
            .as_array()
            .and_then(|v| v.iter().find(|e| e["name"] == name.as_str()).cloned())
            .unwrap_or(Value::Null))
    }

    fn add_endpoint(&mut self, mut ep: Endpoint) -> Result<(), Error> {
        if self.endpoints.contains_key(&ep.name) {
            return Err(Error::EndpointExists(ep.name));
        }
        if self.pending_network(&ep.network).is_some() {
            return Err(Error::NetworkPending(ep.network));
        }
        let net = self
            .networks
            .get(&ep.network)
            .ok_or_else(|| Error::NoSuchNetwork(ep.network.clone()))?;
        if let Some(pool) = &net.pool {
            let used: Vec<_> = self
                .endpoints
                .values()
                .filter(|e| e.network == net.name)
                .filter_map(|e| Some((e.ip?.addr, e.name.clone())))
                .collect();
            let got = match ep.ip {
                Some(want) => pool.check(want, &used),
                None => pool.allocate(&used),
            };
            ep.ip = Some(got.map_err(|source| Error::Ipam {
                endpoint: ep.name.clone(),
                source,
            })?);
        }
        let mode = ep.mode.unwrap_or(net.mode);
        if (mode == Mode::Passthru) != (net.mode == Mode::Passthru) {
            return Err(Error::ModeMismatch {
                mode,
                network: net.name.clone(),
                network_mode: net.mode,
            });
        }
        if ep.strict && mode != Mode::Private {
            return Err(ConfigError {
                field: format!("endpoint '{}'.strict", ep.name),
                msg: format!("strict applies to private mode only; the endpoint's mode is {mode}"),
            }
            .into());
        }
        let mut cfg = EndpointConfig::new(ep.name.clone(), mode);
        cfg.mac = ep.mac;
        cfg.vlan = net.vlan;
        cfg.mtu = ep.mtu;
        cfg.sources = ep.sources.clone();
        cfg.nodst = ep.nodst;
        cfg.strict = ep.strict || (net.strict && mode == Mode::Private);
        let netcfg = EndpointNet {
            netns: ep.netns.clone(),
            ifname: ep.ifname.clone(),
            addrs: ep.ip.filter(|_| ep.configure_ip).into_iter().collect(),
            queues: None,
            adopt: ep.adopt.clone(),
        };
        let dp = self
            .planes
            .get_mut(&net.parent)
            .expect("a network has a dataplane");
        dp.add_endpoint(cfg, netcfg)?;
        self.endpoints.insert(ep.name.clone(), ep);
        Ok(())
    }

    fn endpoint_rm(&mut self, name: &str) -> Result<Value, Error> {
        let ep = self
            .endpoints
            .get(name)
            .ok_or_else(|| Error::NoSuchEndpoint(name.into()))?;
        let parent = &self.networks[&ep.network].parent;
        self.planes
            .get_mut(parent)
            .expect("present")
            .remove_endpoint(name)?;
        self.endpoints.remove(name);
        Ok(json!({ "removed": name }))
    }

    fn endpoint_ls(&self) -> Value {
        json!(self
            .endpoints
            .values()
            .map(|e| {
                let net = &self.networks[&e.network];
                let live = self
                    .planes
                    .get(&net.parent)
                    .and_then(|dp| dp.topology().endpoint(&e.name));
                json!({
                    "name": e.name, "network": e.network, "netns": e.netns, "ifname": e.ifname,
                    "mac": live.map(|l| l.mac().to_string()),
                    "mode": live.map(|l| l.cfg.mode.as_str()),
                    "mtu": live.map(|l| l.mtu()),
                    "strict": live.map(|l| l.cfg.strict),
                    "multicast": live.map(|l| mc_json(&l.cfg.mc)),
                    "sources": live.map(|l| l.cfg.sources.iter().map(|m| m.to_string()).collect::<Vec<_>>()),
                    "nodst": live.map(|l| l.cfg.nodst),
                    "ip": e.ip.map(|i| i.to_string()),
                    "container": e.container,
                })
            })
            .collect::<Vec<_>>())
    }

    /// Starts the capture `x` asks for: the port resolved, its frames flowing into
    /// the returned [`CaptureRun`] until [`Daemon::capture_stop`].
    ///
    /// # Errors
    /// An unknown port or direction, a bad snap length; the dataplane's.
    pub fn capture_start(
        &mut self,
        x: &umacvlan::ctl::Capture,
    ) -> Result<(Value, CaptureRun), Error> {
        use umacvlan::dataplane::CaptureConfig;
        use umacvlan::topology::UPLINK;
        let bad = |m: String| Error::Capture(m);
        let (inbound, outbound) = match x.direction.as_deref() {
            None | Some("inout") => (true, true),
            Some("in") => (true, false),
            Some("out") => (false, true),
            Some(d) => {
                return Err(bad(format!(
                    "direction '{}': use in, out or inout",
                    d.escape_debug()
                )))
            }
        };
        let snaplen = x.snaplen.unwrap_or(CaptureConfig::MAX_SNAPLEN);
        if snaplen == 0 || snaplen > CaptureConfig::MAX_SNAPLEN {
            return Err(bad(format!(
                "snap length {snaplen}: use 1 to {}",
                CaptureConfig::MAX_SNAPLEN
            )));
        }
        if let Some(s) = x.seconds.filter(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad(format!("seconds {s}: give a positive duration")));
        }
        // The port: an endpoint, a host port, or a parent's uplink.
        let host_of = |p: &str| {
            self.networks
                .values()
                .find(|n| n.host_port.as_deref() == Some(p))
                .map(|n| (n.parent.clone(), Self::host_port_endpoint(&n.name)))
        };
        let (parent, port) = if let Some(e) = self.endpoints.get(&x.port) {
            let parent = self.networks[&e.network].parent.clone();
            let id = self
                .planes
                .get(&parent)
                .and_then(|dp| dp.topology().endpoint(&e.name))
                .map(|l| l.id)
                .ok_or_else(|| bad(format!("endpoint '{}' is not switched now", e.name)))?;
            (parent, id)
        } else if let Some((parent, ep)) = host_of(&x.port) {
            let id = self
                .planes
                .get(&parent)
                .and_then(|dp| dp.topology().endpoint(&ep))
                .map(|l| l.id)
                .ok_or_else(|| bad(format!("host port '{}' is not switched now", x.port)))?;
            (parent, id)
        } else if x.port == "wire" || self.planes.contains_key(&x.port) {
            let parent = if x.port != "wire" {
                x.port.clone()
            } else if let Some(n) = &x.network {
                self.networks
                    .get(n)
                    .ok_or_else(|| Error::NoSuchNetwork(n.clone()))?
                    .parent
                    .clone()
            } else if self.planes.len() == 1 {
                self.planes.keys().next().unwrap().clone()
            } else {
                return Err(bad(format!(
                    "wire: which parent? give --network or the parent's name ({})",
                    self.planes.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            (parent, UPLINK)
        } else {
            return Err(bad(format!(
                "no port '{}': give an endpoint, a host port, wire or a parent",
                x.port.escape_debug()
            )));
        };
        let dp = self
            .planes
            .get_mut(&parent)
            .ok_or_else(|| bad(format!("parent {parent} has no dataplane")))?;
        let kernel_lost = Self::kernel_capture_lost(dp);
        let cfg = CaptureConfig {
            inbound,
            outbound,
            snaplen,
            ..CaptureConfig::default()
        };
        let capture = dp.capture(port, cfg)?;
        let info = json!({
            "port": x.port, "parent": parent, "snaplen": snaplen,
            "direction": x.direction.as_deref().unwrap_or("inout"),
        });
        let run = CaptureRun {
            parent,
            capture,
            count: x.count,
            until: x
                .seconds
                .map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s)),
            kernel_lost,
        };
        Ok((info, run))
    }

    /// Ends capture `run` and says what the fast path lost meanwhile (its ring full).
    pub fn capture_stop(&mut self, parent: &str, id: u64, kernel_lost_at_start: u64) -> u64 {
        let Some(dp) = self.planes.get_mut(parent) else {
            return 0;
        };
        if let Err(e) = dp.capture_stop(id) {
            tracing::warn!(parent = %parent, "ending a capture: {e}");
        }
        Self::kernel_capture_lost(dp).saturating_sub(kernel_lost_at_start)
    }

    fn kernel_capture_lost(dp: &Dataplane) -> u64 {
        dp.steering()
            .counters()
            .map_or(0, |c| c[umacvlan::bpf::Counter::CaptureLost.index()])
    }

    /// What the switch decides for the frame `x` describes, and why: the rules the
    /// datapath's own decision applied, the modes of the parties, the ports it goes
    /// to or the drop reason, whether the kernel fast path forwards it; and, when it
    /// leaves by the wire for a destination on the same parent, what happens if the
    /// external switch reflects it (hairpin, a VEPA switch).
    fn explain(&self, x: &Explain) -> Result<Value, Error> {
        use umacvlan::mode::{Facts, Verdict};
        use umacvlan::topology::{HOST, UPLINK};
        use umacvlan::wire::{EtherType, EthernetFrame, MacAddr};
        let bad = |m: String| Error::Explain(m);
        // The sender: its network, parent and port.
        let (net, ingress, own) = match x.from.as_str() {
            "wire" | "host" => {
                let net = match &x.network {
                    Some(n) => self
                        .networks
                        .get(n)
                        .ok_or_else(|| Error::NoSuchNetwork(n.clone()))?,
                    None if self.networks.len() == 1 => self.networks.values().next().unwrap(),
                    None => {
                        return Err(bad(format!(
                            "from {}: which network? give --network (there are {})",
                            x.from,
                            self.networks.len()
                        )))
                    }
                };
                let port = if x.from == "wire" { UPLINK } else { HOST };
                (net, port, None)
            }
            name => {
                let e = self
                    .endpoints
                    .get(name)
                    .ok_or_else(|| Error::NoSuchEndpoint(name.to_string()))?;
                let net = &self.networks[&e.network];
                let live = self
                    .planes
                    .get(&net.parent)
                    .and_then(|dp| dp.topology().endpoint(name))
                    .ok_or_else(|| bad(format!("endpoint '{name}' is not switched now")))?;
                (net, live.id, Some(live.mac()))
            }
        };
        let dp = self
            .planes
            .get(&net.parent)
            .ok_or_else(|| bad(format!("network '{}' has no dataplane", net.name)))?;
        let table = dp.table();
        if table.port(ingress).is_none() {
            return Err(bad(format!(
                "network '{}' has no host port (host_port in its config)",
                net.name
            )));
        }
        let mac_of = |s: &str, what: &str| -> Result<MacAddr, Error> {
            s.parse()
                .map_err(|e| bad(format!("{what} '{}': {e}", s.escape_debug())))
        };
        // The frame's header.
        let (facts, payload, to_name) = if let Some(hex) = &x.frame {
            if x.to.is_some() || x.src.is_some() {
                return Err(bad("give a frame or --to/--src, not both".into()));
            }
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
                .filter(|_| hex.len() % 2 == 0)
                .ok_or_else(|| bad("the frame is not hex".into()))?;
            let h = EthernetFrame::new_checked(&bytes[..])
                .map_err(|e| bad(format!("the frame: {e}")))?;
            let f = Facts {
                dst: h.dst(),
                src: h.src(),
                vlan: h.vlan().unwrap_or(0),
                ethertype: h.ethertype(),
            };
            (f, bytes.len() - h.payload_offset(), None)
        } else {
            let to =
                x.to.as_deref()
                    .ok_or_else(|| bad("where to? give a destination".into()))?;
            let (dst, name) = if to == "broadcast" {
                (MacAddr::BROADCAST, None)
            } else if let Some(e) = self.endpoints.get(to) {
                let m = self
                    .planes
                    .get(&self.networks[&e.network].parent)
                    .and_then(|dp| dp.topology().endpoint(to))
                    .map(|l| l.mac())
                    .ok_or_else(|| bad(format!("endpoint '{to}' is not switched now")))?;
                (m, Some(to.to_string()))
            } else if let Ok(ip) = to.parse::<std::net::IpAddr>() {
                let e = self
                    .endpoints
                    .values()
                    .find(|e| e.ip.is_some_and(|c| c.addr == ip))
                    .ok_or_else(|| {
                        bad(format!("no endpoint has the address {ip}: give its MAC"))
                    })?;
                let m = self
                    .planes
                    .get(&self.networks[&e.network].parent)
                    .and_then(|dp| dp.topology().endpoint(&e.name))
                    .map(|l| l.mac())
                    .ok_or_else(|| bad(format!("endpoint '{}' is not switched now", e.name)))?;
                (m, Some(e.name.clone()))
            } else {
                let m = to.parse().map_err(|_| {
                    bad(format!(
                        "destination '{}': no endpoint of that name, and not a MAC or an IP address",
                        to.escape_debug()
                    ))
                })?;
                (m, None)
            };
            let src = match (&x.src, own) {
                (Some(s), _) => mac_of(s, "source")?,
                (None, Some(m)) => m,
                // An external host's: no endpoint's.
                (None, None) if ingress == HOST => table.parent_mac(),
                (None, None) => "02:00:00:ee:ee:ee".parse().unwrap(),
            };
            let f = Facts {
                dst,
                src,
                vlan: if ingress == UPLINK { net.vlan } else { 0 },
                ethertype: EtherType::IPV4,
            };
            (f, 64, name)
        };
        let name = |p| {
            table
                .port(p)
                .map_or_else(|| p.to_string(), |i| i.name.to_string())
        };
        let mode_of = |m: MacAddr| {
            table
                .lookup(net.vlan, m)
                .and_then(|p| table.endpoint(p).map(|e| (name(p), e.mode.as_str())))
        };
        let describe = |ingress, f: &Facts| {
            let e = dp.explain(ingress, f, payload);
            let (outcome, to, drop) = match &e.verdict {
                Verdict::Forward(p) => ("forward", vec![name(*p)], None),
                Verdict::Multi(s) => ("flood", s.iter().map(name).collect(), None),
                Verdict::Drop(r) => ("drop", vec![], Some(r.as_str())),
            };
            json!({
                "ingress": name(ingress),
                "verdict": outcome, "egress": to, "drop": drop,
                "rules": e.rules.iter().map(|r| json!({"id": r.id(), "text": r.text()})).collect::<Vec<_>>(),
                "fast_path": e.fast.map(name),
            })
        };
        let first = describe(ingress, &facts);
        // Out by the wire to something on this parent: what a reflecting switch brings.
        let leaves = dp
            .explain(ingress, &facts, payload)
            .verdict
            .targets()
            .contains(UPLINK);
        let local = facts.dst.is_multicast() || table.lookup(net.vlan, facts.dst).is_some();
        let reflected = (ingress != UPLINK && leaves && local).then(|| {
            let f = Facts {
                vlan: net.vlan,
                ..facts
            };
            describe(UPLINK, &f)
        });
        Ok(json!({
            "network": net.name, "parent": net.parent, "vlan": net.vlan,
            "from": x.from, "to": to_name.or_else(|| mode_of(facts.dst).map(|(n, _)| n)),
            "frame": {
                "src": facts.src.to_string(), "dst": facts.dst.to_string(),
                "vlan": facts.vlan, "ethertype": format!("{:#06x}", facts.ethertype.0),
            },
            "modes": {
                "from": mode_of(facts.src).map(|(_, m)| m),
                "to": mode_of(facts.dst).map(|(_, m)| m),
            },
            "decision": first,
            "if_reflected": reflected,
        }))
    }

    /// Periodic work: removes endpoints whose interface vanished
    /// ([`Dataplane::vanished`]) and follows a change of every parent's receive
    /// queues ([`Dataplane::sync_queues`]), logging what changed. Call it about once a
    /// second.
    pub fn tick(&mut self) {
        let mut gone = Vec::new();
        for (parent, dp) in &self.planes {
            match dp.vanished() {
                Ok(v) => gone.extend(v),
                Err(e) => tracing::warn!(parent = %parent, "{e}"),
            }
        }
        gone.retain(|n| self.endpoints.contains_key(n));
        for name in gone {
            match self.removal("endpoint", &name, Self::endpoint_rm) {
                Ok(_) => {
                    tracing::warn!(endpoint = %name, "its interface is gone (its namespace was destroyed): endpoint removed")
                }
                Err(e) => {
                    tracing::error!(endpoint = %name, "its interface is gone, but removing it failed: {e}")
                }
            }
        }
        for (parent, dp) in &mut self.planes {
            match dp.sync_queues() {
                Ok(None) => {}
                Ok(Some(c)) => tracing::info!(
                    parent = %parent,
                    before = c.before,
                    now = c.now,
                    "receive queues changed: 0..{} bound",
                    c.bound
                ),
                Err(e) => tracing::error!(parent = %parent, "{e}"),
            }
        }
    }

    fn stats(&self) -> Result<Value, Error> {
        let mut parents = Vec::new();
        for (parent, dp) in &self.planes {
            let kernel: serde_json::Map<String, Value> = dp
                .steering()
                .counters()
                .map_err(umacvlan::dataplane::Error::from)?
                .iter()
                .zip(umacvlan::bpf::Counter::ALL)
                .map(|(n, c)| (c.name().to_string(), json!(n)))
                .collect();
            let sockets: BTreeMap<String, umacvlan::xsk::Statistics> =
                dp.socket_stats()?.into_iter().collect();
            let mut rows = dp.stats()?;
            // Sockets of no port (the fast path's collector) count their losses too.
            for (name, x) in &sockets {
                if !rows.iter().any(|(r, _)| r == name) && x.rx_losses().iter().any(|l| l.1 > 0) {
                    rows.push((name.clone(), Default::default()));
                }
            }
            let ports: Vec<Value> = rows
                .into_iter()
                .map(|(name, s)| {
                    let mut drops: serde_json::Map<String, Value> = s
                        .drop_reasons()
                        .map(|(r, n)| (r.to_string(), json!(n)))
                        .collect();
                    // What the kernel lost before the switch saw it counts too.
                    let x = sockets.get(&name).copied().unwrap_or_default();
                    for (r, n) in x.rx_losses() {
                        if n > 0 {
                            drops.insert(r.to_string(), json!(n));
                        }
                    }
                    // The kernel fast path's own losses.
                    if s.fast.failed > 0 {
                        drops.insert("fast_path_failed".into(), json!(s.fast.failed));
                    }
                    let f = s.fast;
                    json!({
                        "port": name, "rx_packets": s.rx_packets, "rx_bytes": s.rx_bytes,
                        "tx_packets": s.tx_packets, "tx_bytes": s.tx_bytes, "drops": drops,
                        // Which path carried the frames counted above.
                        "path": {
                            "fast": {
                                "rx_packets": f.rx_packets, "rx_bytes": f.rx_bytes,
                                "tx_packets": f.tx_packets, "tx_bytes": f.tx_bytes,
                            },
                            "slow": {
                                "rx_packets": s.rx_packets - f.rx_packets,
                                "rx_bytes": s.rx_bytes - f.rx_bytes,
                                "tx_packets": s.tx_packets - f.tx_packets,
                                "tx_bytes": s.tx_bytes - f.tx_bytes,
                            },
                        },
                        "sockets": {
                            "rx_dropped": x.rx_dropped, "rx_ring_full": x.rx_ring_full,
                            "rx_fill_ring_empty": x.rx_fill_ring_empty_descs,
                            "rx_invalid_descs": x.rx_invalid_descs,
                            "tx_invalid_descs": x.tx_invalid_descs,
                            "tx_ring_empty": x.tx_ring_empty_descs,
                        },
                    })
                })
                .collect();
            let maps: serde_json::Map<String, Value> = dp
                .steering()
                .map_entries()
                .into_iter()
                .map(|(m, n)| (m.to_string(), json!(n)))
                .collect();
            let load: Vec<Value> = dp
                .worker_load()
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    json!({
                        "worker": i, "busy_seconds": l.busy.as_secs_f64(),
                        "elapsed_seconds": l.elapsed.as_secs_f64(),
                    })
                })
                .collect();
            let rings: serde_json::Map<String, Value> = dp
                .ring_levels()?
                .into_iter()
                .map(|(port, now, size)| {
                    let mut v: serde_json::Map<String, Value> = now
                        .by_name()
                        .iter()
                        .map(|(r, n)| (r.to_string(), json!(n)))
                        .collect();
                    v.insert(
                        "size".into(),
                        json!(size
                            .by_name()
                            .iter()
                            .map(|(r, n)| (r.to_string(), json!(n)))
                            .collect::<serde_json::Map<_, _>>()),
                    );
                    (port, Value::Object(v))
                })
                .collect();
            let u = dp.umem_accounting()?;
            let to_sockets = dp.umem_lent_to_open_sockets()?;
            let sockets = dp.umem_sockets()?;
            parents.push(json!({
                "parent": parent, "fdb_entries": dp.table().fdb().len(),
                "queues": dp.queues(), "workers": dp.workers(),
                "kernel": kernel, "ports": ports,
                // How busy each worker was, how full each port's rings are now.
                "workers_load": load, "rings": rings,
                // Entries in the kernel maps, and where the UMEMs' frames are.
                "maps": maps,
                "umem": {
                    "total": u.total, "free": u.free, "held": u.held, "lent": u.lent,
                    "lent_to_open_sockets": to_sockets, "sockets": sockets,
                },
            }));
        }
        Ok(json!(parents))
    }

    /// The counters in the Prometheus text exposition format.
    ///
    /// # Errors
    /// A worker that does not answer.
    pub fn metrics(&self) -> Result<String, Error> {
        use std::fmt::Write;
        let stats = self.stats()?;
        let mut out = String::new();
        let series = [
            (
                "rx_packets",
                "umacvlan_rx_packets_total",
                "Frames received by a port.",
            ),
            (
                "rx_bytes",
                "umacvlan_rx_bytes_total",
                "Bytes received by a port.",
            ),
            (
                "tx_packets",
                "umacvlan_tx_packets_total",
                "Frames transmitted by a port.",
            ),
            (
                "tx_bytes",
                "umacvlan_tx_bytes_total",
                "Bytes transmitted by a port.",
            ),
        ];
        // Label values (text exposition format): backslash, quote and newline escaped.
        let esc = |v: &Value| {
            v.as_str()
                .unwrap_or("")
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        for (key, name, help) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for p in stats.as_array().into_iter().flatten() {
                for q in p["ports"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "{name}{{parent=\"{}\",port=\"{}\"}} {}",
                        esc(&p["parent"]),
                        esc(&q["port"]),
                        q[key].as_u64().unwrap_or(0)
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP umacvlan_path_packets_total Frames of a port by the path that carried them: fast (forwarded by the kernel) or slow (through the switch).\n# TYPE umacvlan_path_packets_total counter");
        for p in stats.as_array().into_iter().flatten() {
            for q in p["ports"].as_array().into_iter().flatten() {
                for path in ["fast", "slow"] {
                    for dir in ["rx", "tx"] {
                        let _ = writeln!(
                            out,
                            "umacvlan_path_packets_total{{parent=\"{}\",port=\"{}\",path=\"{path}\",direction=\"{dir}\"}} {}",
                            esc(&p["parent"]),
                            esc(&q["port"]),
                            q["path"][path][format!("{dir}_packets")].as_u64().unwrap_or(0)
                        );
                    }
                }
            }
        }
        let _ = writeln!(out, "# HELP umacvlan_drops_total Frames dropped by a port, by reason.\n# TYPE umacvlan_drops_total counter");
        for p in stats.as_array().into_iter().flatten() {
            for q in p["ports"].as_array().into_iter().flatten() {
                for (reason, n) in q["drops"].as_object().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "umacvlan_drops_total{{parent=\"{}\",port=\"{}\",reason=\"{reason}\"}} {}",
                        esc(&p["parent"]),
                        esc(&q["port"]),
                        n.as_u64().unwrap_or(0)
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP umacvlan_fdb_entries Entries in a parent's forwarding table.\n# TYPE umacvlan_fdb_entries gauge");
        for p in stats.as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "umacvlan_fdb_entries{{parent=\"{}\"}} {}",
                esc(&p["parent"]),
                p["fdb_entries"].as_u64().unwrap_or(0)
            );
        }
        let _ = writeln!(out, "# HELP umacvlan_worker_busy_seconds_total Time a worker spent in passes that moved frames; its rate is the worker's busy fraction.\n# TYPE umacvlan_worker_busy_seconds_total counter");
        let _ = writeln!(out, "# HELP umacvlan_worker_seconds_total Time since a worker started.\n# TYPE umacvlan_worker_seconds_total counter");
        for p in stats.as_array().into_iter().flatten() {
            for w in p["workers_load"].as_array().into_iter().flatten() {
                for (name, key) in [
                    ("umacvlan_worker_busy_seconds_total", "busy_seconds"),
                    ("umacvlan_worker_seconds_total", "elapsed_seconds"),
                ] {
                    let _ = writeln!(
                        out,
                        "{name}{{parent=\"{}\",worker=\"{}\"}} {}",
                        esc(&p["parent"]),
                        w["worker"],
                        w[key].as_f64().unwrap_or(0.0)
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP umacvlan_ring_entries Entries in a port's AF_XDP rings now (rx waiting for the switch, fill lent for receiving, tx queued, completion to take back), summed over its sockets.\n# TYPE umacvlan_ring_entries gauge");
        let _ = writeln!(out, "# HELP umacvlan_ring_size The size of those rings, summed the same way.\n# TYPE umacvlan_ring_size gauge");
        for p in stats.as_array().into_iter().flatten() {
            for (port, r) in p["rings"].as_object().into_iter().flatten() {
                for ring in ["rx", "fill", "tx", "completion"] {
                    for (name, v) in [
                        ("umacvlan_ring_entries", &r[ring]),
                        ("umacvlan_ring_size", &r["size"][ring]),
                    ] {
                        let _ = writeln!(
                            out,
                            "{name}{{parent=\"{}\",port=\"{}\",ring=\"{ring}\"}} {}",
                            esc(&p["parent"]),
                            esc(&Value::from(port.as_str())),
                            v.as_u64().unwrap_or(0)
                        );
                    }
                }
            }
        }
        let _ = writeln!(out, "# HELP umacvlan_map_entries Entries in a parent's kernel maps, by map (fdb, fast, ...).\n# TYPE umacvlan_map_entries gauge");
        for p in stats.as_array().into_iter().flatten() {
            for (map, n) in p["maps"].as_object().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "umacvlan_map_entries{{parent=\"{}\",map=\"{map}\"}} {}",
                    esc(&p["parent"]),
                    n.as_u64().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(out, "# HELP umacvlan_umem_frames The workers' UMEM frames of a parent, by state: free, held by the switch, lent to the kernel (fill, rx, tx and completion rings).\n# TYPE umacvlan_umem_frames gauge");
        for p in stats.as_array().into_iter().flatten() {
            for state in ["free", "held", "lent"] {
                let _ = writeln!(
                    out,
                    "umacvlan_umem_frames{{parent=\"{}\",state=\"{state}\"}} {}",
                    esc(&p["parent"]),
                    p["umem"][state].as_u64().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(out, "# HELP umacvlan_steering_total What the parent's XDP and tc programs did, by counter (xdp_redirect, xdp_unbound_queue, xdp_too_big, ...).\n# TYPE umacvlan_steering_total counter");
        for p in stats.as_array().into_iter().flatten() {
            for (counter, n) in p["kernel"].as_object().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "umacvlan_steering_total{{parent=\"{}\",counter=\"{counter}\"}} {}",
                    esc(&p["parent"]),
                    n.as_u64().unwrap_or(0)
                );
            }
        }
        Ok(out)
    }

    /// Removes every endpoint and network: detaches every program and deletes every
    /// interface the daemon created, except the veth pairs of endpoints a container
    /// runtime owns ([`Endpoint::container`]) if `keep_containers`: the containers
    /// keep their interfaces (unswitched until the next start takes them over, as the
    /// state records).
    pub fn shutdown(mut self, keep_containers: bool) {
        let keep: BTreeSet<String> = self
            .endpoints
            .values()
            .filter(|e| keep_containers && e.container.is_some())
            .map(|e| e.name.clone())
            .collect();
        for (_, dp) in std::mem::take(&mut self.planes) {
            dp.stop_keeping(&keep);
        }
    }

    /// Changes the IPAM driver's pools with `f`, recorded before the answer; if `f`
    /// or the recording fails, the pools are as they were.
    ///
    /// # Errors
    /// `f`'s, or the state's.
    pub fn ipam_change<T>(
        &mut self,
        f: impl FnOnce(&mut BTreeMap<String, PoolRecord>) -> Result<T, String>,
    ) -> Result<T, String> {
        let before = self.ipam.clone();
        let v = f(&mut self.ipam).inspect_err(|_| self.ipam = before.clone())?;
        self.saved_or_undone(|d| d.ipam = before)
            .map_err(|e| e.to_string())?;
        Ok(v)
    }

    /// Follows every endpoint's multicast membership ([`Dataplane::sync_multicast`]).
    /// Call it often (every 200 ms): a join takes effect at the next call.
    pub fn sync_multicast(&mut self) {
        for (parent, dp) in &mut self.planes {
            match dp.sync_multicast() {
                Ok(v) => {
                    for name in v {
                        let mc = dp.topology().endpoint(&name).map(|e| mc_json(&e.cfg.mc));
                        tracing::debug!(parent = %parent, endpoint = %name, groups = ?mc, "multicast membership changed");
                    }
                }
                Err(e) => tracing::warn!(parent = %parent, "multicast membership: {e}"),
            }
        }
    }

    /// Endpoint `name`'s interface was moved into namespace `netns` (Docker's
    /// sandbox): recorded, and watched there for its multicast membership.
    ///
    /// # Errors
    /// The state could not be written.
    pub fn set_endpoint_netns(&mut self, name: &str, netns: &str) -> Result<(), Error> {
        let Some(e) = self.endpoints.get_mut(name) else {
            return Err(Error::NoSuchEndpoint(name.into()));
        };
        let before = std::mem::replace(&mut e.netns, netns.to_string());
        let parent = self.networks[&e.network].parent.clone();
        self.saved_or_undone(|d| {
            if let Some(e) = d.endpoints.get_mut(name) {
                e.netns = before;
            }
        })?;
        if let Some(dp) = self.planes.get_mut(&parent) {
            dp.set_endpoint_netns(name, netns);
        }
        Ok(())
    }

    /// Network `name`, if it exists (and is not pending).
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.get(name)
    }

    /// Endpoint `name`, if it exists.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.get(name)
    }

    /// The MACs in use on network `name`: its parent's and its endpoints'.
    pub fn macs_in_use(&self, name: &str) -> Vec<umacvlan::wire::MacAddr> {
        let Some(net) = self.networks.get(name) else {
            return vec![];
        };
        let Some(dp) = self.planes.get(&net.parent) else {
            return vec![];
        };
        let mut v = vec![dp.topology().parent().mac];
        v.extend(
            self.endpoints
                .values()
                .filter(|e| e.network == name)
                .filter_map(|e| self.live_mac(e)),
        );
        v
    }
}
