//! The daemon's TOML configuration, with the vocabulary of `docker network create -d
//! macvlan` and the CNI macvlan plugin.
//!
//! ```toml
//! [daemon]
//! socket = "/run/umacvlan/umacvlan.sock"
//!
//! [[network]]
//! name = "lan"
//! parent = "eth1"
//! mode = "bridge"          # default, as in Docker and CNI
//!
//! [[network.endpoint]]
//! name = "web"
//! netns = "web"            # /run/netns/web, or a path such as /proc/1234/ns/net
//! ip = "192.168.32.10/24"
//! ```
//!
//! [`Config::parse`] checks every field and names the one that is wrong.

use std::path::PathBuf;

use serde::Deserialize;

use crate::ipam::Pool;
use umacvlan::link::IpCidr;
use umacvlan::mode::Mode;
use umacvlan::wire::MacAddr;

/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/umacvlan/umacvlan.sock";

/// `[daemon]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Control socket path.
    pub socket: Option<PathBuf>,
    /// Prometheus text endpoint, `ADDR:PORT`, serving `GET /metrics`.
    pub metrics: Option<String>,
    /// Worker threads per parent (default: one per receive queue, up to the cores).
    pub workers: Option<u32>,
    /// UMEM frames of each worker (default 16384).
    pub frames: Option<u32>,
    /// State directory (default /var/lib/umacvlan).
    pub state_dir: Option<PathBuf>,
    /// When a group an endpoint left stops reaching it: `kernel` (default: at the
    /// next recomputation of its filter, as the kernel) or `prompt`.
    pub multicast_leave: Option<String>,
    /// The kernel fast path for networks that do not say (default true).
    pub fastpath: Option<bool>,
    /// Where each parent's frames are steered from: `auto` (default: tc on a veth
    /// parent with the fast path on, else XDP), `xdp` or `tc`.
    pub parent_hook: Option<String>,
    /// Which CPUs receive what a fast-path endpoint sends (RPS on its veth):
    /// `kernel` (default: no RPS), `all` or a CPU list (`1`, `2-3`).
    pub receive_cpus: Option<String>,
    /// Pin worker `w` of each parent to core `worker_core + w` (default: not pinned).
    pub worker_core: Option<usize>,
}

pub use umacvlan::ctl::{EndpointSection, NetworkSection};

/// `[docker]`: the Docker network driver (`docker network create -d umacvlan`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DockerSection {
    /// Serve the driver (default false).
    #[serde(default)]
    pub enabled: bool,
    /// The plugin socket (default /run/docker/plugins/umacvlan.sock); Docker names
    /// the driver after the file (`umacvlan.sock`: `-d umacvlan`).
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    daemon: DaemonSection,
    #[serde(default)]
    docker: DockerSection,
    #[serde(default, rename = "network")]
    networks: Vec<NetworkSection>,
}

/// A checked network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Network {
    /// Name.
    pub name: String,
    /// Parent interface.
    pub parent: String,
    /// Mode of its endpoints unless they say otherwise.
    #[serde(serialize_with = "ser_mode")]
    pub mode: Mode,
    /// VLAN (0 = untagged).
    pub vlan: u16,
    /// IPAM subnet, as given.
    pub subnet: Option<String>,
    /// IPAM gateway, as given.
    pub gateway: Option<String>,
    /// IPAM range, as given.
    pub ip_range: Option<String>,
    /// Auxiliary addresses, as given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aux_address: Vec<String>,
    /// The address plan, when a subnet is given.
    #[serde(skip)]
    pub pool: Option<Pool>,
    /// Host port interface name.
    pub host_port: Option<String>,
    /// Strict private isolation for every endpoint.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
    /// The kernel fast path, if the network says (else the daemon's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fastpath: Option<bool>,
}

/// A checked endpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    /// Name.
    pub name: String,
    /// Its network.
    pub network: String,
    /// Target namespace.
    pub netns: String,
    /// Interface name inside it.
    pub ifname: String,
    /// MAC, if given.
    #[serde(serialize_with = "ser_opt_mac")]
    pub mac: Option<MacAddr>,
    /// Address, if given.
    #[serde(serialize_with = "ser_opt_cidr")]
    pub ip: Option<IpCidr>,
    /// Mode, if it differs from the network's.
    #[serde(serialize_with = "ser_opt_mode")]
    pub mode: Option<Mode>,
    /// MTU, if given.
    pub mtu: Option<u16>,
    /// Source mode: the source MACs it gets copies for.
    #[serde(skip)]
    pub sources: Vec<MacAddr>,
    /// Source mode: `nodst`.
    #[serde(skip)]
    pub nodst: bool,
    /// Strict private isolation.
    pub strict: bool,
    /// The container runtime's id for it ([`umacvlan::ctl::EndpointAdd::container`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Whether the daemon puts `ip` on the interface.
    #[serde(skip)]
    pub configure_ip: bool,
    /// The switch-side veth of an earlier run to take over
    /// ([`umacvlan::dataplane::EndpointNet::adopt`]).
    #[serde(skip)]
    pub adopt: Option<String>,
}

fn ser_mode<S: serde::Serializer>(m: &Mode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}
fn ser_opt_mode<S: serde::Serializer>(m: &Option<Mode>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_some(m.as_str()),
        None => s.serialize_none(),
    }
}
fn ser_opt_mac<S: serde::Serializer>(m: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_some(&m.to_string()),
        None => s.serialize_none(),
    }
}
fn ser_opt_cidr<S: serde::Serializer>(m: &Option<IpCidr>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_some(&m.to_string()),
        None => s.serialize_none(),
    }
}

/// The checked configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Control socket.
    pub socket: Option<PathBuf>,
    /// Where to serve Prometheus metrics.
    pub metrics: Option<std::net::SocketAddr>,
    /// Worker threads per parent; `None`: one per receive queue, up to the cores.
    pub workers: Option<u32>,
    /// UMEM frames of each worker; `None`: the dataplane's default.
    pub frames: Option<u32>,
    /// State directory; `None`: the default.
    pub state_dir: Option<PathBuf>,
    /// When a left multicast group stops reaching an endpoint.
    pub multicast_leave: umacvlan::dataplane::Leave,
    /// The kernel fast path for networks that do not say.
    pub fastpath: bool,
    /// Where each parent's frames are steered from.
    pub parent_hook: umacvlan::dataplane::ParentHook,
    /// Which CPUs receive what a fast-path endpoint sends.
    pub receive_cpus: umacvlan::dataplane::ReceiveCpus,
    /// The first worker's core, if the workers are pinned.
    pub worker_core: Option<usize>,
    /// The Docker driver's socket, if the driver is enabled.
    pub docker: Option<PathBuf>,
    /// Networks, in file order.
    pub networks: Vec<Network>,
    /// Endpoints, in file order.
    pub endpoints: Vec<Endpoint>,
}

/// A configuration error naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {msg}")]
pub struct ConfigError {
    /// Where: `network 'lan'.mode`, `endpoint 'web'.mac`, or the TOML position.
    pub field: String,
    /// What is wrong.
    pub msg: String,
}

fn err(field: impl Into<String>, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        field: field.into(),
        msg: msg.to_string(),
    }
}

/// Checks an interface name as the kernel does: 1..=15 bytes, not `.` or `..`, no `/`,
/// `:`, whitespace or control characters.
pub fn check_ifname(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(err(
            field,
            format!(
                "'{}' is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// The longest network or endpoint name.
pub const MAX_NAME: usize = 64;

/// Checks a network or endpoint name by Docker's rule, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// at most [`MAX_NAME`] characters: safe in paths, logs, tables and metric labels,
/// and never one of the daemon's own port names (the host port's has a `/`).
pub fn check_name(field: &str, kind: &str, name: &str) -> Result<(), ConfigError> {
    let ok = name.len() <= MAX_NAME
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(err(
            field,
            format!(
                "'{}' is not a valid {kind} name: a letter or digit, then letters, digits, '_', '.' or '-', at most {MAX_NAME} characters",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// Checks a namespace given as a name under /run/netns or a path: no control
/// characters, and a bare name follows the interface-name rules' spirit (no spaces).
fn check_netns(field: &str, ns: &str) -> Result<(), ConfigError> {
    if ns.is_empty() {
        return Err(err(
            field,
            "must name a namespace (under /run/netns) or a path",
        ));
    }
    if ns.chars().any(char::is_control) || (!ns.contains('/') && ns.contains(char::is_whitespace)) {
        return Err(err(
            field,
            format!("'{}' is not a namespace name or path", ns.escape_debug()),
        ));
    }
    Ok(())
}

/// Parses a mode for `field`.
pub fn parse_mode(field: &str, s: &str) -> Result<Mode, ConfigError> {
    let m: Mode = s.parse().map_err(|e| err(field, e))?;
    Ok(m)
}

/// Parses a VLAN id for `field` (1..=4094).
pub fn parse_vlan(field: &str, v: u16) -> Result<u16, ConfigError> {
    umacvlan::wire::VlanId::new_checked(v)
        .map(|v| v.get())
        .ok_or_else(|| err(field, format!("{v} is out of range: use 1..4094")))
}

/// Checks a network section.
///
/// # Errors
/// The first field that is wrong.
pub fn check_network(n: &NetworkSection) -> Result<Network, ConfigError> {
    check_name("network.name", "network", &n.name)?;
    let f = |x: &str| format!("network '{}'.{x}", n.name);
    check_ifname(&f("parent"), &n.parent)?;
    let mode = match &n.mode {
        Some(m) => parse_mode(&f("mode"), m)?,
        None => Mode::Bridge,
    };
    let vlan = match n.vlan {
        Some(v) => parse_vlan(&f("vlan"), v)?,
        None => 0,
    };
    let cidr = |k: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| v.parse::<IpCidr>().map_err(|e| err(f(k), e)))
            .transpose()
    };
    let subnet = cidr("subnet", &n.subnet)?;
    let range = cidr("ip_range", &n.ip_range)?;
    let mut reserved = Vec::new();
    if let Some(g) = &n.gateway {
        // Docker hands the gateway over with its prefix length; either is accepted.
        let a = g
            .split_once('/')
            .map_or(g.as_str(), |(a, _)| a)
            .parse::<std::net::IpAddr>()
            .map_err(|_| err(f("gateway"), format!("'{g}' is not an IP address")))?;
        reserved.push((a, "the gateway"));
    }
    for x in &n.aux_address {
        let a = x.rsplit_once('=').map_or(x.as_str(), |(_, a)| a);
        let a = a.parse::<std::net::IpAddr>().map_err(|_| {
            err(
                f("aux_address"),
                format!("'{}' is not NAME=ADDRESS", x.escape_debug()),
            )
        })?;
        reserved.push((a, "an auxiliary address"));
    }
    let pool = match subnet {
        Some(sn) => Some(Pool::new(sn, range, reserved).map_err(|e| err(f("subnet"), e))?),
        None if range.is_some() || !reserved.is_empty() => {
            let k = if range.is_some() {
                "ip_range"
            } else if n.gateway.is_some() {
                "gateway"
            } else {
                "aux_address"
            };
            return Err(err(f(k), "needs a subnet"));
        }
        None => None,
    };
    if n.strict == Some(true) && mode != Mode::Private {
        return Err(err(f("strict"), "strict applies to private mode only"));
    }
    if let Some(h) = &n.host_port {
        check_ifname(&f("host_port"), h)?;
        if mode == Mode::Passthru {
            return Err(err(
                f("host_port"),
                "a passthru network has room for one endpoint only",
            ));
        }
    }
    Ok(Network {
        name: n.name.clone(),
        parent: n.parent.clone(),
        mode,
        vlan,
        subnet: n.subnet.clone(),
        gateway: n.gateway.clone(),
        ip_range: n.ip_range.clone(),
        aux_address: n.aux_address.clone(),
        pool,
        host_port: n.host_port.clone(),
        strict: n.strict == Some(true),
        fastpath: n.fastpath,
    })
}

/// Checks an endpoint section of network `net`.
///
/// # Errors
/// The first field that is wrong.
pub fn check_endpoint(net: &str, e: &EndpointSection) -> Result<Endpoint, ConfigError> {
    check_name("endpoint.name", "endpoint", &e.name)?;
    check_name("endpoint.network", "network", net)?;
    let f = |x: &str| format!("endpoint '{}'.{x}", e.name);
    check_netns(&f("netns"), &e.netns)?;
    let ifname = e.ifname.clone().unwrap_or_else(|| "eth0".into());
    check_ifname(&f("ifname"), &ifname)?;
    let mac = match &e.mac {
        Some(m) => {
            let m: MacAddr = m
                .parse()
                .map_err(|x| err(f("mac"), format!("'{m}': {x}")))?;
            if !m.is_valid_station() {
                return Err(err(
                    f("mac"),
                    format!("{m} is not a unicast station address"),
                ));
            }
            Some(m)
        }
        None => None,
    };
    let ip =
        e.ip.as_deref()
            .map(|s| s.parse::<IpCidr>().map_err(|x| err(f("ip"), x)))
            .transpose()?;
    let mode = e
        .mode
        .as_deref()
        .map(|m| parse_mode(&f("mode"), m))
        .transpose()?;
    let mtu = match e.mtu {
        Some(m) if m < 68 => {
            return Err(err(
                f("mtu"),
                format!("{m} is below 68, the least IPv4 needs"),
            ))
        }
        m => m,
    };
    if e.strict == Some(true) && mode.is_some_and(|m| m != Mode::Private) {
        return Err(err(f("strict"), "strict applies to private mode only"));
    }
    let source = mode == Some(Mode::Source);
    if !source && (!e.sources.is_empty() || e.nodst.is_some()) {
        let k = if e.sources.is_empty() {
            "nodst"
        } else {
            "sources"
        };
        return Err(err(f(k), "applies to mode source only"));
    }
    let sources = e
        .sources
        .iter()
        .map(|m| {
            m.parse::<MacAddr>()
                .map_err(|x| err(f("sources"), format!("'{}': {x}", m.escape_debug())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Endpoint {
        name: e.name.clone(),
        network: net.into(),
        netns: e.netns.clone(),
        ifname,
        mac,
        ip,
        mode,
        mtu,
        sources,
        nodst: e.nodst == Some(true),
        strict: e.strict == Some(true),
        container: None,
        configure_ip: true,
        adopt: None,
    })
}

impl Config {
    /// Parses and checks a TOML text.
    ///
    /// # Errors
    /// A syntax error with its position, an unknown key, or the first wrong field;
    /// duplicate network or endpoint names.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: File =
            toml::from_str(text).map_err(|e| err("config", e.to_string().trim_end()))?;
        let metrics = file
            .daemon
            .metrics
            .as_deref()
            .map(|m| {
                m.parse::<std::net::SocketAddr>().map_err(|_| {
                    err(
                        "daemon.metrics",
                        format!("'{m}' is not ADDRESS:PORT, e.g. 127.0.0.1:9482"),
                    )
                })
            })
            .transpose()?;
        if file.daemon.workers == Some(0) {
            return Err(err("daemon.workers", "must be at least 1"));
        }
        if let Some(f) = file.daemon.frames {
            if !(4096..=1 << 20).contains(&f) {
                return Err(err(
                    "daemon.frames",
                    format!("{f} is out of range: use 4096..=1048576"),
                ));
            }
        }
        let multicast_leave = match file.daemon.multicast_leave.as_deref() {
            None | Some("kernel") => umacvlan::dataplane::Leave::Kernel,
            Some("prompt") => umacvlan::dataplane::Leave::Prompt,
            Some(o) => {
                return Err(err(
                    "daemon.multicast_leave",
                    format!("'{}' is not kernel or prompt", o.escape_debug()),
                ))
            }
        };
        let parent_hook = match file.daemon.parent_hook.as_deref() {
            None => umacvlan::dataplane::ParentHook::Auto,
            Some(h) => h.parse().map_err(|e| err("daemon.parent_hook", e))?,
        };
        let receive_cpus = match file.daemon.receive_cpus.as_deref() {
            None => umacvlan::dataplane::ReceiveCpus::Kernel,
            Some(r) => r.parse().map_err(|e| err("daemon.receive_cpus", e))?,
        };
        let mut c = Config {
            multicast_leave,
            parent_hook,
            receive_cpus,
            worker_core: file.daemon.worker_core,
            fastpath: file.daemon.fastpath.unwrap_or(true),
            socket: file.daemon.socket,
            metrics,
            workers: file.daemon.workers,
            frames: file.daemon.frames,
            state_dir: file.daemon.state_dir,
            docker: file.docker.enabled.then(|| {
                file.docker
                    .socket
                    .clone()
                    .unwrap_or_else(|| crate::docker::DEFAULT_PLUGIN_SOCKET.into())
            }),
            ..Config::default()
        };
        for n in &file.networks {
            let net = check_network(n)?;
            if c.networks.iter().any(|x| x.name == net.name) {
                return Err(err(
                    format!("network '{}'", net.name),
                    "duplicate network name",
                ));
            }
            for e in &n.endpoints {
                let ep = check_endpoint(&net.name, e)?;
                if c.endpoints.iter().any(|x| x.name == ep.name) {
                    return Err(err(
                        format!("endpoint '{}'", ep.name),
                        "duplicate endpoint name",
                    ));
                }
                c.endpoints.push(ep);
            }
            c.networks.push(net);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(include_str!("../../../examples/umacvlan.toml")).unwrap();
        assert_eq!(c.networks.len(), 2);
        assert_eq!(c.networks[0].mode, Mode::Bridge, "bridge is the default");
        assert_eq!(c.networks[1].vlan, 20);
        // The fast path is the default; a network may turn it off.
        assert!(c.fastpath);
        assert_eq!(
            (c.networks[0].fastpath, c.networks[1].fastpath),
            (None, Some(false))
        );
        assert!(
            !Config::parse("[daemon]\nfastpath = false\n")
                .unwrap()
                .fastpath
        );
        use umacvlan::dataplane::ParentHook;
        assert_eq!(c.parent_hook, ParentHook::Auto);
        assert_eq!(c.receive_cpus, umacvlan::dataplane::ReceiveCpus::Kernel);
        assert_eq!(c.worker_core, None);
        assert_eq!(
            Config::parse("[daemon]\nworker_core = 1\n")
                .unwrap()
                .worker_core,
            Some(1)
        );
        assert_eq!(
            Config::parse("[daemon]\nreceive_cpus = '1'\n")
                .unwrap()
                .receive_cpus,
            umacvlan::dataplane::ReceiveCpus::Cpus(vec![1])
        );
        assert_eq!(
            Config::parse("[daemon]\nparent_hook = 'xdp'\n")
                .unwrap()
                .parent_hook,
            ParentHook::Xdp
        );
        assert!(c
            .endpoints
            .iter()
            .any(|e| e.ifname == "eth0" && e.mac.is_some()));
        assert_eq!(c.docker, None, "the Docker driver is off unless enabled");
        let on = Config::parse("[docker]\nenabled = true\n").unwrap();
        assert_eq!(
            on.docker.as_deref(),
            Some(std::path::Path::new(crate::docker::DEFAULT_PLUGIN_SOCKET))
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            ("[[network]]\nname='n'\nparent='eth1'\nmode='passthrough'\n", "network 'n'.mode: unknown macvlan mode 'passthrough'"),
            ("[[network]]\nname='n'\nparent='eth1'\nvlan=4095\n", "network 'n'.vlan: 4095 is out of range"),
            ("[[network]]\nname='n'\nparent='eth1'\nsubnet='10.0.0.0'\n", "network 'n'.subnet: '10.0.0.0' is not ADDRESS/PREFIX"),
            ("[[network]]\nname='n'\nparent='eth1'\nip_range='10.0.0.0/28'\n", "network 'n'.ip_range: needs a subnet"),
            ("[[network]]\nname='n'\nparent='eth1'\nsubnet='10.0.0.0/24'\nip_range='10.0.1.0/28'\n", "network 'n'.subnet: 10.0.1.0 is not in the network's subnet"),
            ("[[network]]\nname='n'\nparent='eth1'\nsubnet='10.0.0.0/24'\naux_address=['nas=10.0.0.300']\n", "network 'n'.aux_address: 'nas=10.0.0.300' is not NAME=ADDRESS"),
            ("[[network]]\nname='n'\nparent='eth1'\nsubnet='10.0.0.0/24'\ngateway='10.9.0.1'\n", "network 'n'.subnet: 10.9.0.1 is not in the network's subnet"),
            ("[[network]]\nname='n'\nparent='an/interface'\n", "network 'n'.parent"),
            ("[[network]]\nname='n'\nparent='eth1'\n[[network.endpoint]]\nname='e'\nnetns='x'\nmac='01:00:5e:00:00:01'\n", "endpoint 'e'.mac: 01:00:5e:00:00:01 is not a unicast"),
            ("[[network]]\nname='n'\nparent='eth1'\n[[network.endpoint]]\nname='e'\nnetns='x'\nmac='zz'\n", "endpoint 'e'.mac: 'zz'"),
            ("[[network]]\nname='n'\nparent='eth1'\n[[network.endpoint]]\nname='e'\nnetns='x'\nip='10.0.0.1/40'\n", "endpoint 'e'.ip"),
            ("[[network]]\nname='n'\nparent='eth1'\ncolour='red'\n", "unknown field `colour`"),
            ("[[network]]\nname='n'\nparent='eth1'\n[[network]]\nname='n'\nparent='eth2'\n", "network 'n': duplicate network name"),
            ("[[network]]\nname='n'\nparent='eth1'\n[[network.endpoint]]\nname='e'\nnetns='x'\n[[network.endpoint]]\nname='e'\nnetns='y'\n", "duplicate endpoint name"),
            ("[daemon]\nmetrics='localhost'\n", "daemon.metrics: 'localhost' is not ADDRESS:PORT"),
            ("[daemon]\nparent_hook='ebpf'\n", "daemon.parent_hook: 'ebpf' is not a parent hook: use auto, xdp or tc"),
            ("[daemon]\nreceive_cpus='first'\n", "daemon.receive_cpus: 'first' is not kernel, all or a CPU list"),
            ("[[network]]\nname='n'\nparent='eth1'\nmode='passthru'\nhost_port='hp0'\n", "network 'n'.host_port: a passthru network has room for one endpoint only"),
            ("[[network]]\nname='n'\nparent='eth1'\nhost_port='a very long name'\n", "network 'n'.host_port"),
            ("[[network]]\nname='n'\n", "missing field `parent`"),
            ("[[network]\n", "config: "),
            ("[[network]]\nname='a/b'\nparent='eth1'\n", "network.name: 'a/b' is not a valid network name"),
            ("[[network]]\nname='..'\nparent='eth1'\n", "network.name: '..' is not a valid network name"),
            ("[[network]]\nname='has space'\nparent='eth1'\n", "network.name"),
            ("[[network]]\nname='-x'\nparent='eth1'\n", "network.name"),
            ("[[network]]\nname=''\nparent='eth1'\n", "network.name"),
            ("[[network]]\nname=\"a\\u001b[31mred\"\nparent='eth1'\n", "'a\\u{1b}[31mred' is not a valid network name"),
            ("[[network]]\nname='n'\nparent='eth1'\n[[network.endpoint]]\nname=\"e\\nx\"\nnetns='x'\n", "endpoint.name: 'e\\nx' is not a valid endpoint name"),
            ("[[network]]\nname='n'\nparent='eth1'\n[[network.endpoint]]\nname='e'\nnetns=\"x\\ny\"\n", "endpoint 'e'.netns: 'x\\ny' is not a namespace"),
        ];
        let long = format!("[[network]]\nname='{}'\nparent='eth1'\n", "n".repeat(65));
        assert!(Config::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("at most 64 characters"));
        let fits = format!(
            "[[network]]\nname='{}'\nparent='eth1'\n",
            "A0_.-".repeat(12)
        );
        assert!(
            Config::parse(&fits).is_ok(),
            "60 characters of the allowed kinds"
        );
        for (text, want) in cases {
            let e = Config::parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "for {text:?}: {e}");
        }
    }
}
