//! The daemon's state: networks, endpoints and one [`Dataplane`] per parent, and the
//! handling of control requests.
//!
//! Every request is checked completely before anything changes; a request that fails
//! half-way undoes what it did, so a refused request leaves the daemon as it was.
//! Like the [`Dataplane`]s it owns, a `Daemon` stays on the thread (network namespace)
//! that made it.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::{
    check_endpoint, check_network, Config, ConfigError, Endpoint, Network, NetworkSection,
};
use umacvlan::ctl::{EndpointAdd, Request};
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

fn vlan_words(vlan: u16) -> String {
    if vlan == 0 {
        "untagged".to_string()
    } else {
        format!("on VLAN {vlan}")
    }
}

/// Networks, endpoints and dataplanes.
pub struct Daemon {
    planes: BTreeMap<String, Dataplane>,
    networks: BTreeMap<String, Network>,
    endpoints: BTreeMap<String, Endpoint>,
    make_config: Box<dyn Fn(&str) -> DataplaneConfig>,
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
        }
    }

    /// Creates the networks and endpoints of `cfg`, in order.
    ///
    /// # Errors
    /// The first failure, naming the network or endpoint; what was created stays (the
    /// caller exits and [`Daemon::shutdown`] removes it).
    pub fn apply(&mut self, cfg: &Config) -> Result<(), Error> {
        fn failed<'a>(what: &'static str, name: &'a str) -> impl FnOnce(Error) -> Error + 'a {
            move |e| Error::Apply {
                what,
                name: name.to_string(),
                source: Box::new(e),
            }
        }
        for n in &cfg.networks {
            self.create_network(n.clone())
                .map_err(failed("network", &n.name))?;
        }
        for e in &cfg.endpoints {
            self.add_endpoint(e.clone())
                .map_err(failed("endpoint", &e.name))?;
        }
        Ok(())
    }

    /// Handles one control request.
    ///
    /// # Errors
    /// A message for the user; nothing changed.
    pub fn handle(&mut self, req: Request) -> Result<Value, Error> {
        match req {
            Request::NetworkCreate(n) => self.network_create(n),
            Request::NetworkRm { name } => self.network_rm(&name),
            Request::NetworkLs => Ok(json!(self.networks.values().collect::<Vec<_>>())),
            Request::NetworkInspect { name } => self.network_inspect(&name),
            Request::EndpointAdd(e) => self.endpoint_add(e),
            Request::EndpointRm { name } => self.endpoint_rm(&name),
            Request::EndpointLs => Ok(self.endpoint_ls()),
            Request::Stats => self.stats(),
            #[allow(unreachable_patterns)]
            _ => Err(Error::Unsupported),
        }
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
        if self.networks.contains_key(&net.name) {
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
            let dp = Dataplane::start((self.make_config)(&net.parent))?;
            self.planes.insert(net.parent.clone(), dp);
        }
        let dp = self.planes.get_mut(&net.parent).expect("present");
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
        let mut cfg = EndpointConfig::new(Self::host_port_endpoint(&net.name), Mode::Bridge);
        cfg.vlan = net.vlan;
        let here = EndpointNet {
            netns: "/proc/thread-self/ns/net".into(),
            ifname: ifname.into(),
            addrs: vec![],
            queues: None,
        };
        dp.add_endpoint(cfg, here)
            .map(|_| ())
            .map_err(|source| Error::HostPort {
                ifname: ifname.into(),
                source: Box::new(source),
            })
    }

    fn network_rm(&mut self, name: &str) -> Result<Value, Error> {
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
        };
        let ep = check_endpoint(&a.network, &sec)?;
        let name = ep.name.clone();
        self.add_endpoint(ep)?;
        let all = self.endpoint_ls();
        Ok(all
            .as_array()
            .and_then(|v| v.iter().find(|e| e["name"] == name.as_str()).cloned())
            .unwrap_or(Value::Null))
    }

    fn add_endpoint(&mut self, ep: Endpoint) -> Result<(), Error> {
        if self.endpoints.contains_key(&ep.name) {
            return Err(Error::EndpointExists(ep.name));
        }
        let net = self
            .networks
            .get(&ep.network)
            .ok_or_else(|| Error::NoSuchNetwork(ep.network.clone()))?;
        let mode = ep.mode.unwrap_or(net.mode);
        if (mode == Mode::Passthru) != (net.mode == Mode::Passthru) {
            return Err(Error::ModeMismatch {
                mode,
                network: net.name.clone(),
                network_mode: net.mode,
            });
        }
        let mut cfg = EndpointConfig::new(ep.name.clone(), mode);
        cfg.mac = ep.mac;
        cfg.vlan = net.vlan;
        let netcfg = EndpointNet {
            netns: ep.netns.clone(),
            ifname: ep.ifname.clone(),
            addrs: ep.ip.into_iter().collect(),
            queues: None,
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
                    "ip": e.ip.map(|i| i.to_string()),
                })
            })
            .collect::<Vec<_>>())
    }

    /// Periodic work: follows a change of every parent's receive queues
    /// ([`Dataplane::sync_queues`]), logging what changed. Call it about once a second.
    pub fn tick(&mut self) {
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
            let ports: Vec<Value> = dp
                .stats()?
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
                    json!({
                        "port": name, "rx_packets": s.rx_packets, "rx_bytes": s.rx_bytes,
                        "tx_packets": s.tx_packets, "tx_bytes": s.tx_bytes, "drops": drops,
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
            parents.push(json!({
                "parent": parent, "fdb_entries": dp.table().fdb().len(),
                "queues": dp.queues(), "workers": dp.workers(),
                "kernel": kernel, "ports": ports,
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
    /// interface the daemon created.
    pub fn shutdown(mut self) {
        for (_, dp) in std::mem::take(&mut self.planes) {
            dp.stop();
        }
    }
}
