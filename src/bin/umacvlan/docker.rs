//! The Docker network driver: libnetwork's remote driver protocol (HTTP/1.1 and JSON
//! over a Unix socket under `/run/docker/plugins`), served by `umacvlan run --docker`,
//! and the remote IPAM driver beside it ([`pools`]).
//!
//! The driver is a translator: each call becomes the control requests a user would
//! send (`network create`, `endpoint add`, ...), handled on the daemon's thread like
//! any other, so a Docker network is an ordinary umacvlan network (named
//! `docker-<first 12 of its id>`, what `docker network ls` shows), recorded in the
//! same state and restored the same way. What Docker needs and a user does not:
//!
//! - `Join` must name an interface that exists in *dockerd's* namespace, which moves
//!   it into the container, renames it and addresses it. `SO_PEERCRED` on the
//!   connection gives dockerd's pid, so `CreateEndpoint` makes the endpoint's veth in
//!   `/proc/PID/ns/net` under a temporary name (`umvd` and 11 characters of the
//!   endpoint id), with the MAC Docker gave or one derived here and answered, and
//!   the address Docker's IPAM chose recorded but not set (Docker sets it).
//! - Docker does not send `CreateNetwork` again after a restart of the plugin or of
//!   itself: networks are found by id through their name, from the state.
//! - The endpoint belongs to a container (`container` = Docker's endpoint id): at a
//!   daemon stop its veth pair stays, and the next start takes it over as it is.
//!
//! HTTP is hyper's (the crate is well kept and Docker's client uses keep-alive and
//! chunked bodies); it runs on a thread of its own, on a single-threaded tokio
//! runtime, and each call reaches the daemon's thread through the server's queue.

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request as HttpRequest, Response as HttpResponse, StatusCode};
use serde_json::{json, Map, Value};

use crate::daemon::{Daemon, Error as DaemonError};
use crate::server::Gate;
use umacvlan::ctl::{EndpointAdd, NetworkSection, Request};
use umacvlan::wire::MacAddr;

/// Where Docker looks for a plugin named `umacvlan`.
pub const DEFAULT_PLUGIN_SOCKET: &str = "/run/docker/plugins/umacvlan.sock";

mod pools;

/// The calls the driver answers; anything else is 404 (Docker: not implemented).
const METHODS: [&str; 19] = [
    "Plugin.Activate",
    "NetworkDriver.GetCapabilities",
    "NetworkDriver.CreateNetwork",
    "NetworkDriver.DeleteNetwork",
    "NetworkDriver.CreateEndpoint",
    "NetworkDriver.DeleteEndpoint",
    "NetworkDriver.EndpointOperInfo",
    "NetworkDriver.Join",
    "NetworkDriver.Leave",
    "NetworkDriver.ProgramExternalConnectivity",
    "NetworkDriver.RevokeExternalConnectivity",
    "NetworkDriver.DiscoverNew",
    "NetworkDriver.DiscoverDelete",
    "IpamDriver.GetCapabilities",
    "IpamDriver.GetDefaultAddressSpaces",
    "IpamDriver.RequestPool",
    "IpamDriver.ReleasePool",
    "IpamDriver.RequestAddress",
    "IpamDriver.ReleaseAddress",
];

/// The largest request body read.
const MAX_BODY: usize = 1 << 20;

/// The network options (`docker network create -o KEY=VALUE`) the driver knows.
const OPTIONS: &str = "parent, macvlan_mode, host_port, strict, fastpath";

/// One driver call, as the HTTP side hands it to the daemon's thread.
#[derive(Debug)]
pub struct Call {
    /// `NetworkDriver.CreateNetwork`, ...
    pub method: String,
    /// The decoded JSON body (`{}` when empty).
    pub body: Value,
    /// The caller's pid (`SO_PEERCRED`): dockerd's.
    pub pid: Option<i32>,
}

/// Serves `listener` (Docker's plugin socket) on a thread of its own.
///
/// # Errors
/// If the thread or its runtime cannot be started.
pub fn spawn(listener: std::os::unix::net::UnixListener, gate: Gate) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("umacvlan-docker".into())
        .spawn(move || rt.block_on(serve(listener, gate)))?;
    Ok(())
}

async fn serve(listener: std::os::unix::net::UnixListener, gate: Gate) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("docker plugin socket: {e}");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("docker plugin socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(client) = gate.admit() else {
            tracing::warn!("docker plugin socket: too many clients, one refused");
            continue;
        };
        let pid = stream.peer_cred().ok().and_then(|c| c.pid());
        let gate = gate.clone();
        tokio::spawn(async move {
            let _client = client;
            let svc = hyper::service::service_fn(move |req| handle(req, pid, gate.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(crate::server::REQUEST_DEADLINE)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!("docker plugin connection: {e}");
            }
        });
    }
}

/// Answers one HTTP request.
async fn handle(
    req: HttpRequest<Incoming>,
    pid: Option<i32>,
    gate: Gate,
) -> Result<HttpResponse<Full<Bytes>>, Infallible> {
    let method = req.uri().path().trim_start_matches('/').to_string();
    if !METHODS.contains(&method.as_str()) {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            &json!({ "Err": format!("umacvlan does not implement {method}") }),
        ));
    }
    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(crate::server::REQUEST_DEADLINE, body).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return Ok(failure(format!("{method}: reading the request: {e}"))),
        Err(_) => return Ok(failure(format!("{method}: the request body did not come"))),
    };
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return Ok(failure(format!("{method}: malformed JSON: {e}"))),
        }
    };
    if method == "Plugin.Activate" {
        return Ok(reply(
            StatusCode::OK,
            &json!({ "Implements": ["NetworkDriver", "IpamDriver"] }),
        ));
    }
    let call = Call { method, body, pid };
    let answer = tokio::task::spawn_blocking(move || gate.docker(call)).await;
    Ok(match answer {
        Ok(Some(Ok(v))) => reply(StatusCode::OK, &v),
        Ok(Some(Err(e))) => failure(e),
        _ => failure("the umacvlan daemon is shutting down".into()),
    })
}

fn reply(status: StatusCode, v: &Value) -> HttpResponse<Full<Bytes>> {
    let mut r = HttpResponse::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/vnd.docker.plugins.v1.2+json"),
    );
    r
}

fn failure(msg: String) -> HttpResponse<Full<Bytes>> {
    tracing::warn!("docker: {msg}");
    reply(StatusCode::INTERNAL_SERVER_ERROR, &json!({ "Err": msg }))
}

/// Handles one call on the daemon's thread: `Ok` is the response body, `Err` the
/// message Docker shows the user.
pub fn answer(d: &mut Daemon, call: &Call) -> Result<Value, String> {
    let b = &call.body;
    match call.method.as_str() {
        "NetworkDriver.GetCapabilities" => {
            Ok(json!({ "Scope": "local", "ConnectivityScope": "local" }))
        }
        "NetworkDriver.CreateNetwork" => {
            let n = network_section(b)?;
            let name = n.name.clone();
            d.handle(Request::NetworkCreate(n))
                .map(|_| json!({}))
                .map_err(|e| format!("umacvlan network {name}: {e}"))
        }
        "NetworkDriver.DeleteNetwork" => {
            let name = network_name(b)?;
            match d.handle(Request::NetworkRm { name: name.clone() }) {
                Ok(_) | Err(DaemonError::NoSuchNetwork(_)) => Ok(json!({})),
                Err(e) => Err(format!("umacvlan network {name}: {e}")),
            }
        }
        "NetworkDriver.CreateEndpoint" => create_endpoint(d, b, call.pid),
        "NetworkDriver.DeleteEndpoint" => {
            let name = endpoint_name(b)?;
            match d.handle(Request::EndpointRm { name: name.clone() }) {
                Ok(_) | Err(DaemonError::NoSuchEndpoint(_)) => Ok(json!({})),
                Err(e) => Err(format!("umacvlan endpoint {name}: {e}")),
            }
        }
        "NetworkDriver.EndpointOperInfo" => {
            let name = endpoint_name(b)?;
            let ep = d
                .endpoint(&name)
                .ok_or_else(|| format!("no umacvlan endpoint {name}"))?;
            Ok(json!({ "Value": { "umacvlan.endpoint": name, "umacvlan.network": ep.network } }))
        }
        "NetworkDriver.Join" => join(d, b),
        "IpamDriver.GetCapabilities" => Ok(json!({ "RequiresMACAddress": false })),
        "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
            "LocalDefaultAddressSpace": "umacvlan-local",
            "GlobalDefaultAddressSpace": "umacvlan-global",
        })),
        "IpamDriver.RequestPool" => d.ipam_change(|p| pools::request_pool(p, b)),
        "IpamDriver.ReleasePool" => d.ipam_change(|p| pools::release_pool(p, b)),
        "IpamDriver.RequestAddress" => d.ipam_change(|p| pools::request_address(p, b)),
        "IpamDriver.ReleaseAddress" => d.ipam_change(|p| pools::release_address(p, b)),
        "NetworkDriver.Leave"
        | "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity"
        | "NetworkDriver.DiscoverNew"
        | "NetworkDriver.DiscoverDelete" => Ok(json!({})),
        other => Err(format!("umacvlan does not implement {other}")),
    }
}

/// A string field of a call, required.
fn field<'a>(b: &'a Value, key: &str) -> Result<&'a str, String> {
    b.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("the request has no {key}"))
}

/// A Docker object id: at least 12 lowercase hex digits.
fn id<'a>(b: &'a Value, key: &str) -> Result<&'a str, String> {
    let v = field(b, key)?;
    if v.len() < 12 || v.len() > 64 || !v.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{key} '{}' is not a Docker id", v.escape_debug()));
    }
    Ok(v)
}

/// The umacvlan network of a Docker network: `docker-` and its short id.
fn network_name(b: &Value) -> Result<String, String> {
    Ok(format!("docker-{}", &id(b, "NetworkID")?[..12]))
}

/// The umacvlan endpoint of a Docker endpoint: `docker-` and its short id.
fn endpoint_name(b: &Value) -> Result<String, String> {
    Ok(format!("docker-{}", &id(b, "EndpointID")?[..12]))
}

/// The network `docker network create -d umacvlan` asks for.
fn network_section(b: &Value) -> Result<NetworkSection, String> {
    let name = network_name(b)?;
    let generic = b
        .pointer("/Options/com.docker.network.generic")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let opt = |k: &str| -> Result<Option<String>, String> {
        match generic.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(v) => Err(format!("option {k}: '{v}' is not a value")),
        }
    };
    for k in generic.keys() {
        // Docker's own generic keys (com.docker.network.*) are Docker's business.
        if !["parent", "macvlan_mode", "host_port", "strict", "fastpath"].contains(&k.as_str())
            && !k.starts_with("com.docker.")
        {
            return Err(format!(
                "option {}: not an option of the umacvlan driver (it takes {OPTIONS})",
                k.escape_debug()
            ));
        }
    }
    let Some(given) = opt("parent")? else {
        return Err("option parent is required: the interface the network uses, e.g. docker network create -d umacvlan -o parent=eth1 (or eth1.20 for VLAN 20)".into());
    };
    let (parent, vlan) = parent_and_vlan(&given)?;
    let mode = match opt("macvlan_mode")? {
        None => None,
        Some(m) if ["bridge", "vepa", "private", "passthru"].contains(&m.as_str()) => Some(m),
        Some(m) => {
            return Err(format!(
                "option macvlan_mode: '{}' is not a mode (bridge, vepa, private or passthru)",
                m.escape_debug()
            ))
        }
    };
    let v4: &[Value] = b
        .get("IPv4Data")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    if v4.len() > 1 {
        return Err(format!(
            "a umacvlan network has one IPv4 subnet; {} were given",
            v4.len()
        ));
    }
    let (mut subnet, mut gateway, mut aux) = (None, None, vec![]);
    if let Some(d) = v4.first() {
        subnet = d.get("Pool").and_then(Value::as_str).map(str::to_string);
        gateway = d
            .get("Gateway")
            .and_then(Value::as_str)
            .map(|g| without_prefix(g).to_string());
        if let Some(a) = d.get("AuxAddresses").and_then(Value::as_object) {
            for (k, v) in a {
                let addr = v.as_str().map(without_prefix).unwrap_or_default();
                aux.push(format!("{k}={addr}"));
            }
        }
    }
    let flag = |k: &str| -> Result<Option<bool>, String> {
        match opt(k)?.as_deref() {
            None => Ok(None),
            Some("false") => Ok(Some(false)),
            Some("true") => Ok(Some(true)),
            Some(v) => Err(format!(
                "option {k}: '{}' is not true or false",
                v.escape_debug()
            )),
        }
    };
    Ok(NetworkSection {
        name,
        parent,
        mode,
        vlan: (vlan != 0).then_some(vlan),
        subnet,
        gateway,
        ip_range: None,
        aux_address: aux,
        host_port: opt("host_port")?,
        strict: flag("strict")?.filter(|&s| s),
        fastpath: flag("fastpath")?,
        endpoints: vec![],
    })
}

/// `eth1` → (eth1, untagged); `eth1.20` → (eth1, VLAN 20) unless an interface of
/// that very name exists (Docker's macvlan driver reads it the same way; umacvlan
/// tags itself, so no 802.1Q interface is made).
fn parent_and_vlan(given: &str) -> Result<(String, u16), String> {
    let exists = |n: &str| {
        umacvlan::link::Links::open()
            .and_then(|l| l.get(n))
            .is_ok_and(|l| l.is_some())
    };
    match given.rsplit_once('.') {
        Some((p, v)) if !p.is_empty() && !exists(given) => {
            let vlan: u16 = v
                .parse()
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| {
                    format!(
                        "option parent: '{}': the VLAN after the dot must be 1 to 4094",
                        given.escape_debug()
                    )
                })?;
            Ok((p.to_string(), vlan))
        }
        _ => Ok((given.to_string(), 0)),
    }
}

fn without_prefix(a: &str) -> &str {
    a.split_once('/').map_or(a, |(a, _)| a)
}

fn create_endpoint(d: &mut Daemon, b: &Value, pid: Option<i32>) -> Result<Value, String> {
    let network = network_name(b)?;
    let name = endpoint_name(b)?;
    let eid = id(b, "EndpointID")?;
    if d.network(&network).is_none() {
        return Err(format!("umacvlan has no network {network} for this Docker network: was it created while umacvlan ran with another state directory? Remove and create it again"));
    }
    let pid = pid.ok_or("cannot tell dockerd's pid from the connection (SO_PEERCRED)")?;
    let iface = b.get("Interface").cloned().unwrap_or(Value::Null);
    let s = |k: &str| {
        iface
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let address = s("Address");
    let given_mac = s("MacAddress");
    let mac = match &given_mac {
        Some(m) => m.clone(),
        None => {
            let v4 = address
                .as_deref()
                .and_then(|a| without_prefix(a).parse::<Ipv4Addr>().ok());
            derive_mac(&network, v4, eid, &d.macs_in_use(&network)).to_string()
        }
    };
    let add = EndpointAdd {
        name: name.clone(),
        network,
        netns: format!("/proc/{pid}/ns/net"),
        ifname: Some(temp_ifname(eid)),
        mac: Some(mac.clone()),
        ip: address,
        mode: None,
        container: Some(eid.to_string()),
        configure_ip: Some(false),
        mtu: None,
        strict: None,
        sources: vec![],
        nodst: None,
    };
    d.handle(Request::EndpointAdd(add))
        .map_err(|e| format!("umacvlan endpoint {name}: {e}"))?;
    Ok(match given_mac {
        Some(_) => json!({}),
        None => json!({ "Interface": { "MacAddress": mac } }),
    })
}

/// The name the endpoint's interface has in dockerd's namespace until Docker moves
/// it: `umvd` and 11 characters of the endpoint id (15 in all, IFNAMSIZ - 1).
fn temp_ifname(eid: &str) -> String {
    format!("umvd{}", &eid[..11])
}

/// A MAC for an endpoint Docker gave none: locally administered, `02`, a byte of
/// the network's name, then the endpoint's IPv4 address, so a container that gets
/// its address again gets its MAC again (Docker's own drivers derive it from the
/// address too); without one, bytes of the endpoint id. The next free one on the
/// network if that is taken.
fn derive_mac(network: &str, v4: Option<Ipv4Addr>, eid: &str, used: &[MacAddr]) -> MacAddr {
    let hex = |i: usize| u8::from_str_radix(&eid[2 * i..2 * i + 2], 16).unwrap_or(0);
    let net = network
        .bytes()
        .fold(0u8, |h, c| h.rotate_left(3) ^ c)
        .wrapping_add(1);
    let mut m = match v4 {
        Some(a) => {
            let o = a.octets();
            [0x02, net, o[0], o[1], o[2], o[3]]
        }
        None => [0x02, hex(0), hex(1), hex(2), hex(3), hex(4)],
    };
    for _ in 0..=u16::MAX {
        if !used.contains(&MacAddr(m)) {
            break;
        }
        let low = u16::from_be_bytes([m[4], m[5]]).wrapping_add(1);
        [m[4], m[5]] = low.to_be_bytes();
    }
    MacAddr(m)
}

fn join(d: &mut Daemon, b: &Value) -> Result<Value, String> {
    let name = endpoint_name(b)?;
    // Docker moves the interface into the container's sandbox once this returns:
    // its multicast membership is watched there.
    if let Some(sandbox) = b
        .get("SandboxKey")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        d.set_endpoint_netns(&name, sandbox)
            .map_err(|e| format!("umacvlan endpoint {name}: {e}"))?;
    }
    let ep = d.endpoint(&name).ok_or_else(|| {
        format!("no umacvlan endpoint {name} (was it removed, or lost with the daemon's state?)")
    })?;
    let net = d
        .network(&ep.network)
        .ok_or_else(|| format!("no umacvlan network {}", ep.network))?;
    let mut r = Map::new();
    r.insert(
        "InterfaceName".into(),
        json!({ "SrcName": ep.ifname, "DstPrefix": "eth" }),
    );
    match &net.gateway {
        Some(g) => {
            r.insert("Gateway".into(), json!(without_prefix(g)));
        }
        None => {
            r.insert("DisableGatewayService".into(), json!(true));
        }
    }
    Ok(Value::Object(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NID: &str = "3f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff";

    fn create(generic: Value, v4: Value) -> Result<NetworkSection, String> {
        network_section(&json!({
            "NetworkID": NID,
            "Options": { "com.docker.network.generic": generic, "com.docker.network.enable_ipv6": false },
            "IPv4Data": v4,
            "IPv6Data": [],
        }))
    }

    #[test]
    fn create_network_reads_dockers_macvlan_vocabulary() {
        let n = create(
            json!({ "parent": "umvnosuchif0.20", "macvlan_mode": "private", "host_port": "hp0" }),
            json!([{ "AddressSpace": "LocalDefault", "Pool": "10.7.0.0/24", "Gateway": "10.7.0.1/24",
                      "AuxAddresses": { "router": "10.7.0.2/24" } }]),
        )
        .unwrap();
        assert_eq!(n.name, "docker-3f1e2d3c4b5a");
        assert_eq!((n.parent.as_str(), n.vlan), ("umvnosuchif0", Some(20)));
        assert_eq!(n.mode.as_deref(), Some("private"));
        assert_eq!(n.subnet.as_deref(), Some("10.7.0.0/24"));
        assert_eq!(n.gateway.as_deref(), Some("10.7.0.1"));
        assert_eq!(n.aux_address, vec!["router=10.7.0.2".to_string()]);
        assert_eq!(n.host_port.as_deref(), Some("hp0"));
        let plain = create(json!({ "parent": "eth1" }), json!([])).unwrap();
        assert_eq!((plain.parent.as_str(), plain.vlan), ("eth1", None));
    }

    #[test]
    fn create_network_refuses_bad_options_naming_them() {
        let e = |g: Value| create(g, json!([])).unwrap_err();
        assert!(e(json!({})).contains("option parent is required"));
        assert!(e(json!({ "parent": "eth1", "colour": "blue" })).contains("option colour"));
        assert!(e(json!({ "parent": "eth1", "macvlan_mode": "hairpin" }))
            .contains("option macvlan_mode: 'hairpin' is not a mode"));
        assert!(e(json!({ "parent": "umvnosuchif0.5000" })).contains("1 to 4094"));
        assert!(e(json!({ "parent": "eth1", "host_port": 7 })).contains("option host_port"));
        let two = create(
            json!({ "parent": "eth1" }),
            json!([{ "Pool": "10.1.0.0/24" }, { "Pool": "10.2.0.0/24" }]),
        );
        assert!(two.unwrap_err().contains("one IPv4 subnet; 2 were given"));
        assert!(network_section(&json!({ "NetworkID": "xyz" }))
            .unwrap_err()
            .contains("not a Docker id"));
    }

    #[test]
    fn derived_macs_follow_the_address_and_never_collide() {
        let a: Ipv4Addr = "10.7.0.5".parse().unwrap();
        let m = derive_mac("docker-3f1e2d3c4b5a", Some(a), NID, &[]);
        assert_eq!(
            m,
            derive_mac("docker-3f1e2d3c4b5a", Some(a), &NID[1..], &[])
        );
        assert!(m.is_valid_station() && m.0[0] == 0x02 && m.0[2..] == [10, 7, 0, 5]);
        let next = derive_mac("docker-3f1e2d3c4b5a", Some(a), NID, &[m]);
        assert_ne!(next, m);
        let none = derive_mac("docker-3f1e2d3c4b5a", None, NID, &[]);
        assert_eq!(none.0, [0x02, 0x3f, 0x1e, 0x2d, 0x3c, 0x4b]);
        assert_eq!(temp_ifname(NID), "umvd3f1e2d3c4b5");
        assert_eq!(temp_ifname(NID).len(), 15);
    }
}
