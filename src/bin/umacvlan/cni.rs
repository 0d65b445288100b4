//! The CNI plugin: the `umacvlan` binary, installed in a runtime's plugin directory
//! (`/opt/cni/bin/umacvlan`), acts as the plugin `"type": "umacvlan"` whenever
//! `CNI_COMMAND` is set (CNI specification 1.1.0; configurations of 0.3.x, 0.4.0
//! and 1.0.0 are accepted too).
//!
//! The plugin only asks: the running daemon owns the switch, and the plugin talks
//! to it over its control socket (`socket` in the configuration, default
//! [`DEFAULT_SOCKET`]). The configuration's network (`name`) is the daemon's network
//! of that name, made on the first `ADD` from `master`, `mode`, `vlan` and
//! `host_port`; each attachment (container id and interface) is the endpoint
//! `cni-<hash of both>`, owned by the container (a daemon restart takes it over and
//! never makes it again).
//!
//! Addresses: the configured IPAM plugin is run exactly as the reference plugins run
//! it (found in `CNI_PATH`, same environment, the configuration on stdin; a 1.1.0
//! configuration is handed down to the newest version the IPAM plugin speaks), and
//! its addresses and routes are configured inside the container's namespace by the
//! plugin. `"ipam": {"type": "umacvlan", "subnet": ..., "gateway": ..., "ip_range":
//! ...}` uses the daemon's own IPAM instead.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::config::DEFAULT_SOCKET;
use umacvlan::ctl::{self, CallError, EndpointAdd, NetworkSection, Request};
use umacvlan::link::{IpCidr, Links, Netns};

/// The specification versions the plugin speaks.
pub const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A CNI error: the spec's reserved codes, or ours (100 and up).
#[derive(Debug)]
pub struct CniError {
    code: u32,
    msg: String,
    details: String,
}

/// Incompatible CNI version.
const E_VERSION: u32 = 1;
/// Invalid necessary environment variables.
const E_ENV: u32 = 4;
/// I/O failure.
const E_IO: u32 = 5;
/// Failed to decode content.
const E_DECODE: u32 = 6;
/// Invalid network config.
const E_CONFIG: u32 = 7;
/// Try again later (the daemon is not running).
const E_LATER: u32 = 11;
/// STATUS: the plugin is not available.
const E_UNAVAILABLE: u32 = 50;
/// The daemon refused the request.
const E_REFUSED: u32 = 100;
/// CHECK found a difference.
const E_CHECK: u32 = 101;
/// The IPAM plugin failed or could not be run.
const E_IPAM: u32 = 102;

impl CniError {
    fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    fn details(mut self, d: impl std::fmt::Display) -> Self {
        self.details = d.to_string();
        self
    }
}

type Result<T> = std::result::Result<T, CniError>;

/// Runs as the plugin: reads the configuration from stdin, answers on stdout.
/// Returns the exit status.
pub fn main() -> i32 {
    let cmd = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut input = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut input);
    let version = asked_version(&input);
    let out = std::io::stdout();
    match run(&cmd, &input) {
        Ok(Some(v)) => {
            let _ = writeln!(out.lock(), "{v}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let v = json!({ "cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details });
            let _ = writeln!(out.lock(), "{v}");
            1
        }
    }
}

/// The `cniVersion` of `input` if it is one the plugin speaks, else the newest.
fn asked_version(input: &[u8]) -> String {
    serde_json::from_slice::<Value>(input)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|v| VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_string())
}

/// `CNI_COMMAND` with its configuration.
fn run(cmd: &str, input: &[u8]) -> Result<Option<Value>> {
    if cmd == "VERSION" {
        let asked = asked_version(input);
        return Ok(Some(
            json!({ "cniVersion": asked, "supportedVersions": VERSIONS }),
        ));
    }
    let conf = Conf::parse(input)?;
    if matches!(cmd, "STATUS" | "GC") && version_key(&conf.version) < version_key("1.1.0") {
        return Err(CniError::new(
            E_VERSION,
            format!(
                "{cmd} needs cniVersion 1.1.0; the configuration says {}",
                conf.version
            ),
        ));
    }
    match cmd {
        "ADD" => add(&conf, &Env::read(true)?, input).map(Some),
        "DEL" => del(&conf, &Env::read(false)?, input).map(|()| None),
        "CHECK" => check(&conf, &Env::read(true)?, input).map(|()| None),
        "STATUS" => status(&conf).map(|()| None),
        "GC" => gc(&conf, input).map(|()| None),
        "" => Err(CniError::new(E_ENV, "CNI_COMMAND is empty")),
        other => Err(CniError::new(
            E_ENV,
            format!(
                "CNI_COMMAND '{}' is not ADD, DEL, CHECK, STATUS, GC or VERSION",
                other.escape_debug()
            ),
        )),
    }
}

/// `1.0.0` → (1, 0, 0), for ordering versions.
fn version_key(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// The network configuration: the reference macvlan plugin's fields and ours.
#[derive(Debug)]
struct Conf {
    version: String,
    name: String,
    master: Option<String>,
    mode: Option<String>,
    mtu: Option<u16>,
    mac: Option<String>,
    vlan: Option<u16>,
    host_port: Option<String>,
    strict: bool,
    socket: PathBuf,
    ipam: Option<Value>,
    /// The whole configuration as given.
    raw: Value,
}

impl Conf {
    fn parse(input: &[u8]) -> Result<Conf> {
        let raw: Value = serde_json::from_slice(input).map_err(|e| {
            CniError::new(E_DECODE, "the network configuration on stdin is not JSON").details(e)
        })?;
        let bad = |k: &str, want: &str| CniError::new(E_CONFIG, format!("field {k}: {want}"));
        let string = |k: &str| -> Result<Option<String>> {
            match raw.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(k, "must be a string")),
            }
        };
        let version = string("cniVersion")?.ok_or_else(|| bad("cniVersion", "is required"))?;
        if !VERSIONS.contains(&version.as_str()) {
            return Err(CniError::new(
                E_VERSION,
                format!(
                    "cniVersion {version} is not supported; umacvlan speaks {}",
                    VERSIONS.join(", ")
                ),
            ));
        }
        let name = string("name")?.ok_or_else(|| bad("name", "is required"))?;
        crate::config::check_name("name", "network", &name)
            .map_err(|e| CniError::new(E_CONFIG, e.to_string()))?;
        let number = |k: &str, max: u64| -> Result<Option<u64>> {
            match raw.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|n| *n <= max)
                    .map(Some)
                    .ok_or_else(|| bad(k, &format!("must be a whole number up to {max}"))),
            }
        };
        let mode = string("mode")?;
        if let Some(m) = &mode {
            if !["bridge", "vepa", "private", "passthru"].contains(&m.as_str()) {
                return Err(bad(
                    "mode",
                    &format!(
                        "'{}' is not bridge, vepa, private or passthru",
                        m.escape_debug()
                    ),
                ));
            }
        }
        let strict = match raw.get("strict") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("strict", "must be true or false")),
        };
        Ok(Conf {
            version,
            name,
            master: string("master")?,
            mode,
            mtu: number("mtu", u64::from(u16::MAX))?.map(|n| n as u16),
            mac: string("mac")?,
            vlan: number("vlan", 4094)?.map(|n| n as u16).filter(|v| *v != 0),
            host_port: string("host_port")?,
            strict,
            socket: string("socket")?.map_or_else(|| DEFAULT_SOCKET.into(), PathBuf::from),
            ipam: raw.get("ipam").filter(|v| !v.is_null()).cloned(),
            raw,
        })
    }

    /// The IPAM plugin to run, if one is configured and it is not the daemon's.
    fn ipam_plugin(&self) -> Option<&str> {
        self.ipam
            .as_ref()
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
            .filter(|t| *t != "umacvlan")
    }

    fn daemon_ipam(&self) -> Option<&Value> {
        self.ipam
            .as_ref()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("umacvlan"))
    }

    fn runtime(&self, key: &str) -> Option<&Value> {
        self.raw.pointer(&format!("/runtimeConfig/{key}"))
    }
}

/// The runtime's environment variables.
struct Env {
    container: String,
    netns: String,
    ifname: String,
    args: Vec<(String, String)>,
}

impl Env {
    /// `netns`: `CNI_NETNS` is required (ADD, CHECK); DEL may come without it.
    fn read(netns: bool) -> Result<Env> {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let need = |k: &str| {
            let v = var(k);
            if v.is_empty() {
                Err(CniError::new(E_ENV, format!("{k} is not set")))
            } else {
                Ok(v)
            }
        };
        Ok(Env {
            container: need("CNI_CONTAINERID")?,
            netns: if netns {
                need("CNI_NETNS")?
            } else {
                var("CNI_NETNS")
            },
            ifname: need("CNI_IFNAME")?,
            args: var("CNI_ARGS")
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    fn arg(&self, k: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// The daemon's endpoint of an attachment: `cni-` and a hash of container id and
/// interface (both may be long or use any character; the name must be a name).
fn endpoint_name(container: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("cni-{h:016x}")
}

/// One control request; a daemon that is not there is "try again later".
fn ask(socket: &Path, req: Request) -> Result<Value> {
    match ctl::call(socket, &req) {
        Ok(r) if r.ok => Ok(r.data.unwrap_or(Value::Null)),
        Ok(r) => Err(CniError::new(
            E_REFUSED,
            r.error
                .unwrap_or_else(|| "the daemon refused the request".into()),
        )),
        Err(CallError::Connect { socket, source }) => Err(CniError::new(
            E_LATER,
            format!("umacvlan daemon not running on {socket}: start it with `umacvlan run`"),
        )
        .details(source)),
        Err(e) => Err(CniError::new(E_IO, e.to_string())),
    }
}

/// Makes the configuration's network in the daemon, or checks the one there.
fn ensure_network(conf: &Conf) -> Result<()> {
    let master = conf.master.as_deref().ok_or_else(|| {
        CniError::new(
            E_CONFIG,
            "field master is required: the parent interface, e.g. \"master\": \"eth1\"",
        )
    })?;
    let inspect = || {
        ask(
            &conf.socket,
            Request::NetworkInspect {
                name: conf.name.clone(),
            },
        )
    };
    let found = match inspect() {
        Ok(v) => v,
        Err(e) if e.code == E_REFUSED && e.msg.starts_with("no network named") => {
            let ipam = conf.daemon_ipam();
            let s = |k: &str| {
                ipam.and_then(|i| i.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let n = NetworkSection {
                name: conf.name.clone(),
                parent: master.to_string(),
                mode: conf.mode.clone(),
                vlan: conf.vlan,
                subnet: s("subnet"),
                gateway: s("gateway"),
                ip_range: s("ip_range"),
                aux_address: vec![],
                host_port: conf.host_port.clone(),
                strict: None,
                fastpath: None,
                endpoints: vec![],
            };
            match ask(&conf.socket, Request::NetworkCreate(n)) {
                Ok(_) => return Ok(()),
                // Another ADD made it meanwhile: check it below.
                Err(e) if e.msg.contains("already exists") => inspect()?,
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let net = &found["network"];
    let want_mode = conf.mode.as_deref().unwrap_or("bridge");
    let (parent, mode, vlan) = (
        net["parent"].as_str().unwrap_or_default(),
        net["mode"].as_str().unwrap_or_default(),
        net["vlan"].as_u64().unwrap_or(0) as u16,
    );
    if parent != master || mode != want_mode || vlan != conf.vlan.unwrap_or(0) {
        return Err(CniError::new(
            E_CONFIG,
            format!(
                "the daemon's network '{}' has parent {parent}, mode {mode}, VLAN {vlan}; this configuration says {master}, {want_mode}, {}: give it another name, or remove that network",
                conf.name,
                conf.vlan.unwrap_or(0)
            ),
        ));
    }
    Ok(())
}

/// The IPAM plugin's binary in `CNI_PATH`.
fn ipam_binary(kind: &str) -> Result<PathBuf> {
    if kind.is_empty() || kind.contains('/') {
        return Err(CniError::new(
            E_CONFIG,
            format!("ipam.type '{}' is not a plugin name", kind.escape_debug()),
        ));
    }
    let path = std::env::var("CNI_PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                E_IPAM,
                format!("IPAM plugin '{kind}' not found in CNI_PATH ({path})"),
            )
        })
}

/// Runs the IPAM plugin `kind` for `cmd` with the configuration `input` (handed down
/// to a version it speaks); its result for ADD.
fn delegate(kind: &str, cmd: &str, input: &[u8], conf: &Conf) -> Result<Option<Value>> {
    let bin = ipam_binary(kind)?;
    let exec = |cmd: &str, stdin: &[u8]| -> Result<(bool, Vec<u8>)> {
        let mut child = Command::new(&bin)
            .env("CNI_COMMAND", cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| CniError::new(E_IPAM, format!("running {}", bin.display())).details(e))?;
        if let Some(mut i) = child.stdin.take() {
            let _ = i.write_all(stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| CniError::new(E_IPAM, format!("running {}", bin.display())).details(e))?;
        Ok((out.status.success(), out.stdout))
    };
    // The newest version both speak.
    let (_, v) = exec(
        "VERSION",
        json!({ "cniVersion": conf.version }).to_string().as_bytes(),
    )?;
    let theirs: Vec<String> = serde_json::from_slice::<Value>(&v)
        .ok()
        .and_then(|v| v.get("supportedVersions").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    if matches!(cmd, "STATUS" | "GC") && !theirs.iter().any(|t| t == "1.1.0") {
        return Ok(None); // It predates STATUS and GC: nothing to do for it.
    }
    let version = if theirs.contains(&conf.version) {
        conf.version.clone()
    } else {
        theirs
            .iter()
            .filter(|t| VERSIONS.contains(&t.as_str()))
            .filter(|t| version_key(t) <= version_key(&conf.version))
            .max_by_key(|t| version_key(t))
            .cloned()
            .ok_or_else(|| {
                CniError::new(
                    E_IPAM,
                    format!(
                        "IPAM plugin {kind} speaks none of the versions up to {}",
                        conf.version
                    ),
                )
            })?
    };
    let stdin = if version == conf.version {
        input.to_vec()
    } else {
        let mut c = conf.raw.clone();
        c["cniVersion"] = json!(version);
        c.to_string().into_bytes()
    };
    let (ok, out) = exec(cmd, &stdin)?;
    let v: Option<Value> = serde_json::from_slice(&out).ok();
    if !ok {
        let msg = v
            .as_ref()
            .and_then(|v| v.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or("failed without a message")
            .to_string();
        return Err(CniError::new(E_IPAM, format!("IPAM plugin {kind}: {msg}"))
            .details(String::from_utf8_lossy(&out)));
    }
    Ok(v)
}

/// An address of a result: `10.0.0.5/24` and its gateway.
#[derive(Debug, Clone)]
struct ResultIp {
    address: IpCidr,
    gateway: Option<IpAddr>,
}

fn parse_ips(v: &Value) -> Result<Vec<ResultIp>> {
    let mut out = Vec::new();
    for ip in v.get("ips").and_then(Value::as_array).into_iter().flatten() {
        let a = ip
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let address: IpCidr = a
            .parse()
            .map_err(|e| CniError::new(E_IPAM, format!("the IPAM result's address '{a}': {e}")))?;
        let gateway = ip
            .get("gateway")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok());
        out.push(ResultIp { address, gateway });
    }
    Ok(out)
}

/// The spec's result, in the configuration's version.
fn result(
    conf: &Conf,
    env: &Env,
    mac: &str,
    ips: &[ResultIp],
    routes: &Value,
    dns: &Value,
) -> Value {
    let old = version_key(&conf.version) < version_key("1.0.0");
    let ips: Vec<Value> = ips
        .iter()
        .map(|ip| {
            let mut o = json!({ "address": ip.address.to_string(), "interface": 0 });
            if let Some(g) = ip.gateway {
                o["gateway"] = json!(g.to_string());
            }
            if old {
                o["version"] = json!(if ip.address.addr.is_ipv4() { "4" } else { "6" });
            }
            o
        })
        .collect();
    json!({
        "cniVersion": conf.version,
        "interfaces": [{ "name": env.ifname, "mac": mac, "sandbox": env.netns }],
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

fn add(conf: &Conf, env: &Env, input: &[u8]) -> Result<Value> {
    ensure_network(conf)?;
    let mac = conf
        .runtime("mac")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| env.arg("MAC").map(str::to_string))
        .or_else(|| conf.mac.clone());
    let name = endpoint_name(&env.container, &env.ifname);
    // Addresses first, from the IPAM plugin (released again if the rest fails).
    let delegated = match conf.ipam_plugin() {
        Some(kind) => Some((
            kind,
            delegate(kind, "ADD", input, conf)?.unwrap_or(Value::Null),
        )),
        None => None,
    };
    let undo_ipam = || {
        if let Some((kind, _)) = &delegated {
            let _ = delegate(kind, "DEL", input, conf);
        }
    };
    let mut ips = match &delegated {
        Some((_, r)) => parse_ips(r).inspect_err(|_| undo_ipam())?,
        None => vec![],
    };
    // The daemon's IPAM: CNI_ARGS IP= or runtimeConfig ips, else the next free one.
    let wanted = conf.daemon_ipam().and_then(|i| {
        let prefix = i
            .get("subnet")
            .and_then(Value::as_str)
            .and_then(|s| s.split_once('/'))
            .map(|(_, p)| p.to_string())?;
        let asked = conf
            .runtime("ips")
            .and_then(|v| v.get(0))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| env.arg("IP").map(str::to_string))?;
        Some(if asked.contains('/') {
            asked
        } else {
            format!("{asked}/{prefix}")
        })
    });
    let add = EndpointAdd {
        name: name.clone(),
        network: conf.name.clone(),
        netns: env.netns.clone(),
        ifname: Some(env.ifname.clone()),
        mac,
        ip: match &delegated {
            Some(_) => ips
                .iter()
                .find(|i| i.address.addr.is_ipv4())
                .map(|i| i.address.to_string()),
            None => wanted,
        },
        mode: None,
        container: Some(env.container.clone()),
        configure_ip: Some(delegated.is_none()),
        mtu: conf.mtu,
        strict: conf.strict.then_some(true),
        sources: vec![],
        nodst: None,
    };
    let made = ask(&conf.socket, Request::EndpointAdd(add)).inspect_err(|_| undo_ipam())?;
    let mac = made["mac"].as_str().unwrap_or_default().to_string();
    let undo = || {
        let _ = ask(&conf.socket, Request::EndpointRm { name: name.clone() });
        undo_ipam();
    };
    let mut routes = json!([]);
    let mut dns = conf.raw.get("dns").cloned().unwrap_or(json!({}));
    match &delegated {
        Some((_, r)) => {
            routes = r.get("routes").cloned().unwrap_or(json!([]));
            if let Some(d) = r.get("dns").filter(|d| !d.is_null()) {
                dns = d.clone();
            }
            configure(env, &ips, &routes).inspect_err(|_| undo())?;
        }
        None => {
            if let Some(a) = made["ip"].as_str().and_then(|a| a.parse::<IpCidr>().ok()) {
                let gateway = conf
                    .daemon_ipam()
                    .and_then(|i| i.get("gateway"))
                    .and_then(Value::as_str)
                    .and_then(|g| g.parse().ok());
                ips.push(ResultIp {
                    address: a,
                    gateway,
                });
            }
            if let Some(r) = conf.daemon_ipam().and_then(|i| i.get("routes")) {
                routes = r.clone();
                configure(env, &[], &routes).inspect_err(|_| undo())?;
            }
        }
    }
    Ok(result(conf, env, &mac, &ips, &routes, &dns))
}

/// Puts `ips` and `routes` on the endpoint's interface in its namespace, as the
/// reference plugins do (a route without `gw` goes through the gateway of the first
/// address of its family).
fn configure(env: &Env, ips: &[ResultIp], routes: &Value) -> Result<()> {
    let fail = |what: &str, e: umacvlan::link::Error| {
        CniError::new(E_IO, format!("{what} in {}", env.netns)).details(e)
    };
    let ns = Netns::open(&env.netns).map_err(|e| fail("opening the namespace", e))?;
    let links = Links::open_in(&ns).map_err(|e| fail("netlink", e))?;
    let link = links
        .require(&env.ifname)
        .map_err(|e| fail("the endpoint's interface", e))?;
    for ip in ips {
        links
            .add_addr(link.index, &env.ifname, ip.address.addr, ip.address.prefix)
            .map_err(|e| fail("adding an address", e))?;
    }
    for r in routes.as_array().into_iter().flatten() {
        let dst = r.get("dst").and_then(Value::as_str).unwrap_or_default();
        let dst: IpCidr = dst
            .parse()
            .map_err(|e| CniError::new(E_CONFIG, format!("route dst '{dst}': {e}")))?;
        let gw = r
            .get("gw")
            .and_then(Value::as_str)
            .and_then(|g| g.parse::<IpAddr>().ok())
            .or_else(|| {
                ips.iter()
                    .find(|i| i.address.addr.is_ipv4() == dst.addr.is_ipv4())
                    .and_then(|i| i.gateway)
            });
        links
            .add_route(link.index, &env.ifname, dst, gw)
            .map_err(|e| fail("adding a route", e))?;
    }
    Ok(())
}

fn del(conf: &Conf, env: &Env, input: &[u8]) -> Result<()> {
    let name = endpoint_name(&env.container, &env.ifname);
    match ask(&conf.socket, Request::EndpointRm { name }) {
        Ok(_) => {}
        // Gone already: DEL is idempotent.
        Err(e) if e.code == E_REFUSED && e.msg.starts_with("no endpoint named") => {}
        Err(e) => return Err(e),
    }
    if let Some(kind) = conf.ipam_plugin() {
        delegate(kind, "DEL", input, conf)?;
    }
    Ok(())
}

fn check(conf: &Conf, env: &Env, input: &[u8]) -> Result<()> {
    let prev = conf
        .raw
        .get("prevResult")
        .filter(|p| !p.is_null())
        .ok_or_else(|| CniError::new(E_CONFIG, "CHECK needs prevResult"))?;
    let name = endpoint_name(&env.container, &env.ifname);
    let eps = ask(&conf.socket, Request::EndpointLs)?;
    let ep = eps
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name.as_str())
        .ok_or_else(|| {
            CniError::new(
                E_CHECK,
                format!(
                    "the daemon has no endpoint for container {} interface {} (expected {name})",
                    env.container, env.ifname
                ),
            )
        })?;
    if ep["container"].as_str() != Some(env.container.as_str())
        || ep["network"] != conf.name.as_str()
    {
        return Err(CniError::new(
            E_CHECK,
            format!(
                "endpoint {name} belongs to container {} on network {}",
                ep["container"], ep["network"]
            ),
        ));
    }
    let want_mac = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| i["name"] == env.ifname.as_str())
        .and_then(|i| i["mac"].as_str())
        .ok_or_else(|| {
            CniError::new(
                E_CHECK,
                format!("prevResult names no interface {}", env.ifname),
            )
        })?;
    let ns = Netns::open(&env.netns).map_err(|e| {
        CniError::new(E_CHECK, format!("namespace {} is gone", env.netns)).details(e)
    })?;
    let links = Links::open_in(&ns).map_err(|e| CniError::new(E_IO, "netlink").details(e))?;
    let link = links
        .get(&env.ifname)
        .map_err(|e| CniError::new(E_IO, "netlink").details(e))?
        .ok_or_else(|| {
            CniError::new(
                E_CHECK,
                format!("interface {} is missing in {}", env.ifname, env.netns),
            )
        })?;
    let mac = link.mac.to_string();
    if !mac.eq_ignore_ascii_case(want_mac) || ep["mac"].as_str() != Some(mac.as_str()) {
        return Err(CniError::new(
            E_CHECK,
            format!(
                "interface {} has MAC {mac}; prevResult says {want_mac}, the daemon {}",
                env.ifname, ep["mac"]
            ),
        ));
    }
    let have: BTreeSet<String> = links
        .addrs(link.index, &env.ifname)
        .map_err(|e| CniError::new(E_IO, "netlink").details(e))?
        .iter()
        .map(|a| a.to_string())
        .collect();
    for ip in parse_ips(prev)? {
        if !have.contains(&ip.address.to_string()) {
            return Err(CniError::new(
                E_CHECK,
                format!(
                    "interface {} lacks address {} of prevResult (it has {:?})",
                    env.ifname, ip.address, have
                ),
            ));
        }
    }
    if let Some(kind) = conf.ipam_plugin() {
        delegate(kind, "CHECK", input, conf)?;
    }
    Ok(())
}

fn status(conf: &Conf) -> Result<()> {
    let down = |e: CniError| CniError::new(E_UNAVAILABLE, e.msg).details(e.details);
    let nets = ask(&conf.socket, Request::NetworkLs).map_err(down)?;
    let ours = nets
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == conf.name.as_str());
    match ours {
        Some(n) if n["pending"] == true => Err(CniError::new(
            E_UNAVAILABLE,
            format!(
                "network '{}' is pending in the daemon: its parent {} is missing",
                conf.name, n["parent"]
            ),
        )),
        Some(_) => Ok(()),
        None => {
            let master = conf.master.as_deref().unwrap_or_default();
            let there = Links::open()
                .and_then(|l| l.get(master))
                .is_ok_and(|l| l.is_some());
            if there {
                Ok(())
            } else {
                Err(CniError::new(
                    E_UNAVAILABLE,
                    format!(
                        "the parent interface '{}' (master) is missing",
                        master.escape_debug()
                    ),
                ))
            }
        }
    }
}

fn gc(conf: &Conf, input: &[u8]) -> Result<()> {
    let valid: BTreeSet<String> = conf
        .raw
        .get("cni.dev/valid-attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some(endpoint_name(
                a.get("containerID")?.as_str()?,
                a.get("ifname")?.as_str()?,
            ))
        })
        .collect();
    let eps = ask(&conf.socket, Request::EndpointLs)?;
    for e in eps.as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default();
        if e["network"] == conf.name.as_str() && name.starts_with("cni-") && !valid.contains(name) {
            match ask(
                &conf.socket,
                Request::EndpointRm {
                    name: name.to_string(),
                },
            ) {
                Ok(_) => {}
                Err(e) if e.msg.starts_with("no endpoint named") => {}
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(kind) = conf.ipam_plugin() {
        delegate(kind, "GC", input, conf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_checked_field_by_field() {
        let c = |s: &str| Conf::parse(s.as_bytes());
        let ok = c(r#"{"cniVersion":"1.0.0","name":"lan","type":"umacvlan","master":"eth1","mode":"private","vlan":20,"mtu":1400,"ipam":{"type":"host-local"},"capabilities":{"mac":true}}"#).unwrap();
        assert_eq!(
            (ok.master.as_deref(), ok.vlan, ok.mtu),
            (Some("eth1"), Some(20), Some(1400))
        );
        assert_eq!(ok.ipam_plugin(), Some("host-local"));
        assert_eq!(ok.socket, PathBuf::from(DEFAULT_SOCKET));
        let e = |s: &str| c(s).unwrap_err();
        assert_eq!(e(r#"{"cniVersion":"0.2.0","name":"n"}"#).code, E_VERSION);
        assert_eq!(e("not json").code, E_DECODE);
        assert!(e(r#"{"cniVersion":"1.0.0","name":"n","mode":"hairpin"}"#)
            .msg
            .contains("field mode"));
        assert!(e(r#"{"cniVersion":"1.0.0","name":"n","vlan":5000}"#)
            .msg
            .contains("field vlan"));
        assert!(e(r#"{"cniVersion":"1.0.0","name":"a b"}"#)
            .msg
            .contains("not a valid network name"));
        let d = c(r#"{"cniVersion":"1.1.0","name":"n","ipam":{"type":"umacvlan","subnet":"10.0.0.0/24"}}"#).unwrap();
        assert!(d.ipam_plugin().is_none() && d.daemon_ipam().is_some());
    }

    #[test]
    fn versions_and_names() {
        let v = run("VERSION", br#"{"cniVersion":"0.4.0"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(
            v["supportedVersions"].as_array().unwrap().len(),
            VERSIONS.len()
        );
        assert!(
            version_key("1.1.0") > version_key("1.0.0")
                && version_key("1.0.0") > version_key("0.4.0")
        );
        let e = run("GC", br#"{"cniVersion":"1.0.0","name":"n"}"#).unwrap_err();
        assert_eq!(e.code, E_VERSION);
        let a = endpoint_name("c1", "eth0");
        assert_eq!(a, endpoint_name("c1", "eth0"));
        assert_ne!(a, endpoint_name("c1", "eth1"));
        assert_ne!(endpoint_name("ab", "c"), endpoint_name("a", "bc"));
        assert!(crate::config::check_name("n", "endpoint", &a).is_ok());
    }
}
