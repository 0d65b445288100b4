//! The control protocol: versioned JSON over a Unix stream socket, one request and
//! one response per connection, each a single line of at most [`MAX_MESSAGE`] bytes.
//!
//! ```text
//! → {"version":1,"op":"endpoint_add","name":"web","network":"lan","netns":"web","ip":"192.168.32.10/24"}
//! ← {"version":1,"ok":true,"data":{...}}
//! ← {"version":1,"ok":false,"error":"endpoint 'web'.mac: 'zz': expected six two-digit hex groups ..."}
//! ```
//!
//! A message that is not valid JSON, names an unknown operation or field, has another
//! version, is truncated or too long gets an error response and changes nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Protocol version.
pub const VERSION: u32 = 1;
/// Largest request or response line, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// An endpoint as written: `[[network.endpoint]]` of the daemon's configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// Unique endpoint name.
    pub name: String,
    /// Target namespace.
    pub netns: String,
    /// Interface name inside it (default `eth0`).
    pub ifname: Option<String>,
    /// MAC (default: random, locally administered).
    pub mac: Option<String>,
    /// Address with prefix.
    pub ip: Option<String>,
    /// Mode (default: the network's).
    pub mode: Option<String>,
    /// MTU of its interface (default: the parent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Private mode only: strict isolation, also from the host behind the parent
    /// (default false, as the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Source mode only: the source MACs whose frames it receives copies of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Source mode only: frames from its sources go nowhere else, not even to the
    /// host (`nodst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodst: Option<bool>,
}

/// A network as written: `network create`, or `[[network]]` of the configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Unique network name.
    pub name: String,
    /// Parent interface.
    pub parent: String,
    /// Mode (default bridge).
    pub mode: Option<String>,
    /// 802.1Q VLAN id.
    pub vlan: Option<u16>,
    /// IPAM subnet: endpoints without an address get one of it.
    pub subnet: Option<String>,
    /// IPAM gateway: never handed out (needs `subnet`).
    pub gateway: Option<String>,
    /// IPAM range: where addresses are handed out from, within `subnet`.
    pub ip_range: Option<String>,
    /// Addresses never handed out, `NAME=ADDRESS` or `ADDRESS` (Docker's
    /// `--aux-address`; needs `subnet`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aux_address: Vec<String>,
    /// Host port: an interface the daemon creates in its own namespace, attached to
    /// the network as a bridge-mode port, so the host can reach its endpoints.
    pub host_port: Option<String>,
    /// Private mode only: every endpoint strictly isolated, also from the host
    /// behind the parent (default false, as the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// The kernel fast path for this network's unicast (default: the daemon's
    /// `[daemon] fastpath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fastpath: Option<bool>,
    /// Endpoints.
    #[serde(default, rename = "endpoint", skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSection>,
}

/// `endpoint add` arguments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointAdd {
    /// Endpoint name.
    pub name: String,
    /// Its network.
    pub network: String,
    /// Target namespace.
    pub netns: String,
    /// Interface name inside it.
    pub ifname: Option<String>,
    /// MAC.
    pub mac: Option<String>,
    /// Address with prefix.
    pub ip: Option<String>,
    /// Mode (default: the network's).
    pub mode: Option<String>,
    /// MTU of its interface (default: the parent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Private mode only: strict isolation, also from the host behind the parent
    /// (default false, as the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Source mode only: the source MACs whose frames it receives copies of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Source mode only: frames from its sources go nowhere else, not even to the
    /// host (`nodst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodst: Option<bool>,
    /// The container runtime's id for this endpoint (the Docker driver's endpoint
    /// id, a CNI container id). Such an endpoint's interface lives where the runtime
    /// moves it, so it is never made again: a daemon stop keeps its veth pair and
    /// the next start takes it over as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Whether the daemon puts `ip` on the interface (default true). `false`: the
    /// address is only reserved and recorded, and the runtime configures it (Docker
    /// does, once it has moved the interface into the container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configure_ip: Option<bool>,
}

/// `explain`: what the switch decides for one frame, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Explain {
    /// The sender: an endpoint's name, `wire` (the parent's uplink) or `host` (the
    /// host port).
    pub from: String,
    /// The destination: an endpoint's name, a MAC, an endpoint's IP address or
    /// `broadcast`. Not with `frame`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The source MAC (default: the sender's own; from the wire, an external one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// The network, for `wire` and `host` (default: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// A whole frame in hex, as read from a pcap file, instead of `to` and `src`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
}

/// `capture`: stream a port's frames. The answer is a response line, then the frames
/// as [`CAPTURE_FRAME`] messages until the capture ends, then a [`CAPTURE_END`]
/// message with what it caught and lost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// The port: an endpoint's name, a host port's interface, `wire` or a parent's
    /// name (its uplink).
    pub port: String,
    /// The network, for `wire` when the daemon has several parents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `in` (what the port sends), `out` (what it is sent) or `inout` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Bytes kept of each frame (default and most: 2048).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snaplen: Option<u32>,
    /// Stop after this many frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// A captured frame on a capture stream: this byte, then a byte for the direction
/// (0: the port sent it, 1: it was sent to the port), a byte for the path (0: the
/// switch, 1: the kernel fast path), a zero byte, the time in nanoseconds since the
/// Unix epoch (u64), the frame's length and the bytes that follow (u32 each, all
/// little-endian), then those bytes.
pub const CAPTURE_FRAME: u8 = b'F';
/// The end of a capture stream: this byte, then a JSON line (`captured`, `lost`).
pub const CAPTURE_END: u8 = b'E';

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// `network create`.
    NetworkCreate(NetworkSection),
    /// `network rm`.
    NetworkRm {
        /// Network name.
        name: String,
    },
    /// `network ls`.
    NetworkLs,
    /// `network inspect`.
    NetworkInspect {
        /// Network name.
        name: String,
    },
    /// `endpoint add`.
    EndpointAdd(EndpointAdd),
    /// `endpoint rm`.
    EndpointRm {
        /// Endpoint name.
        name: String,
    },
    /// `endpoint ls`.
    EndpointLs,
    /// `stats`.
    Stats,
    /// `explain`.
    Explain(Explain),
    /// `capture`.
    Capture(Capture),
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    #[serde(flatten)]
    body: T,
}

/// A response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// Protocol version.
    pub version: u32,
    /// Success.
    pub ok: bool,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// What went wrong, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A success carrying `data`.
    pub fn ok(data: serde_json::Value) -> Self {
        Response {
            version: VERSION,
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    /// A failure.
    pub fn err(e: impl std::fmt::Display) -> Self {
        Response {
            version: VERSION,
            ok: false,
            data: None,
            error: Some(e.to_string()),
        }
    }
}

/// Why a request line is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("request longer than {MAX_MESSAGE} bytes")]
    TooLong,
    /// Ended before its newline.
    #[error("truncated request: no terminating newline")]
    Truncated,
    /// Not JSON, or not a known request.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Another protocol version.
    #[error("unsupported protocol version {0}: this daemon speaks version {VERSION}")]
    Version(u32),
    /// The whole request did not arrive in time.
    #[error("request timed out after {} s", .0.as_secs_f64())]
    TimedOut(Duration),
}

/// Decodes one request line (without or with its trailing newline).
///
/// # Errors
/// [`DecodeError`].
pub fn decode(line: &[u8]) -> Result<Request, DecodeError> {
    if line.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLong);
    }
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    // serde_json keeps the last of two equal keys; a request that says two things is
    // refused instead.
    let mut de = serde_json::Deserializer::from_slice(line);
    serde::Deserializer::deserialize_any(&mut de, NoDuplicateKeys)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let version = match v.get("version") {
        None => return Err(DecodeError::Malformed("missing \"version\"".into())),
        Some(n) => n.as_u64().ok_or_else(|| {
            DecodeError::Malformed(format!(
                "\"version\" must be a number, e.g. {VERSION}, not {n}"
            ))
        })?,
    };
    if version != u64::from(VERSION) {
        return Err(DecodeError::Version(version.min(u64::from(u32::MAX)) as u32));
    }
    let mut v = v;
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
    }
    serde_json::from_value(v).map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// A visitor that walks a JSON value and fails on an object with a key twice.
struct NoDuplicateKeys;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key \"{k}\"")));
            }
            map.next_value_seed(NoDuplicateKeys)?;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicateKeys)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for NoDuplicateKeys {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Encodes a request as one line.
pub fn encode(req: &Request) -> Vec<u8> {
    let mut b = serde_json::to_vec(&Envelope {
        version: VERSION,
        body: req,
    })
    .expect("requests serialise");
    b.push(b'\n');
    b
}

/// Reads one newline-terminated line of at most [`MAX_MESSAGE`] bytes from `s`, all of
/// it within `within` (a client sending a byte now and then gets no more time).
///
/// # Errors
/// [`DecodeError::TimedOut`], [`DecodeError::TooLong`], [`DecodeError::Truncated`],
/// or an I/O error as malformed.
pub fn read_line_within(s: &mut UnixStream, within: Duration) -> Result<Vec<u8>, DecodeError> {
    let deadline = std::time::Instant::now() + within;
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(DecodeError::TimedOut(within));
        }
        s.set_read_timeout(Some(left))
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(DecodeError::TimedOut(within))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DecodeError::Malformed(e.to_string())),
        };
        if n == 0 {
            return Err(DecodeError::Truncated);
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..i]);
            return if line.len() > MAX_MESSAGE {
                Err(DecodeError::TooLong)
            } else {
                Ok(line)
            };
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > MAX_MESSAGE {
            return Err(DecodeError::TooLong);
        }
    }
}

/// Reads one newline-terminated line of at most [`MAX_MESSAGE`] bytes.
///
/// # Errors
/// [`DecodeError::TooLong`], [`DecodeError::Truncated`], or an I/O error as malformed.
pub fn read_line(r: impl Read) -> Result<Vec<u8>, DecodeError> {
    let mut line = Vec::new();
    let mut br = BufReader::new(r.take(MAX_MESSAGE as u64 + 1));
    br.read_until(b'\n', &mut line)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if line.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLong);
    }
    if line.last() != Some(&b'\n') {
        return Err(DecodeError::Truncated);
    }
    line.pop();
    Ok(line)
}

/// Sends `req` to the daemon at `socket` and returns its response.
///
/// # Errors
/// [`CallError`]: the daemon is not running or not reachable, or answered
/// something unreadable.
pub fn call(socket: &Path, req: &Request) -> Result<Response, CallError> {
    let at = || socket.display().to_string();
    let mut s = UnixStream::connect(socket).map_err(|source| CallError::Connect {
        socket: at(),
        source,
    })?;
    let sent = s
        .set_read_timeout(Some(Duration::from_secs(60)))
        .and_then(|()| s.write_all(&encode(req)));
    sent.map_err(|source| CallError::Send {
        socket: at(),
        source,
    })?;
    let line = read_line(&mut s).map_err(CallError::Receive)?;
    let r: Response = serde_json::from_slice(&line).map_err(CallError::Unreadable)?;
    if r.version != VERSION {
        return Err(CallError::Version(r.version));
    }
    Ok(r)
}

/// Why [`call`] got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No daemon listens there.
    #[error("cannot reach the umacvlan daemon at {socket}: {source} (is `umacvlan run` running? see --socket)")]
    Connect {
        /// The control socket.
        socket: String,
        /// Why.
        source: std::io::Error,
    },
    /// The request could not be sent.
    #[error("sending to {socket}: {source}")]
    Send {
        /// The control socket.
        socket: String,
        /// Why.
        source: std::io::Error,
    },
    /// No complete answer.
    #[error("reading the daemon's answer: {0}")]
    Receive(DecodeError),
    /// An answer that is not a response.
    #[error("unreadable answer from the daemon: {0}")]
    Unreadable(serde_json::Error),
    /// Another protocol version.
    #[error("the daemon speaks protocol version {0}, this client {VERSION}")]
    Version(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let reqs = [
            Request::NetworkLs,
            Request::Stats,
            Request::EndpointRm { name: "web".into() },
            Request::EndpointAdd(EndpointAdd {
                name: "web".into(),
                network: "lan".into(),
                netns: "web".into(),
                ifname: None,
                mac: Some("02:42:00:00:00:01".into()),
                ip: None,
                mode: None,
                container: Some("c0ffee".into()),
                configure_ip: Some(false),
                mtu: Some(1400),
                strict: None,
                sources: vec!["02:00:00:00:00:e0".into()],
                nodst: Some(true),
            }),
        ];
        for r in reqs {
            let line = encode(&r);
            assert_eq!(decode(&line[..line.len() - 1]).unwrap(), r);
        }
        assert!(matches!(
            decode(br#"{"version":2,"op":"stats"}"#),
            Err(DecodeError::Version(2))
        ));
        assert!(matches!(
            decode(br#"{"op":"stats"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(br#"{"version":1,"op":"format_disk"}"#),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(decode(br#"{"version":1,"op":"endpoint_add","name":"x","network":"n","netns":"y","colour":1}"#), Err(DecodeError::Malformed(_))));
        // Two equal keys, at the top or inside: refused, not "the last one wins".
        for dup in [
            &br#"{"version":1,"op":"network_rm","name":"a","name":"b"}"#[..],
            br#"{"version":1,"version":1,"op":"stats"}"#,
            br#"{"version":1,"op":"network_create","name":"n","parent":"eth1","endpoint":[{"name":"e","name":"f","netns":"x"}]}"#,
        ] {
            let e = decode(dup).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{e}");
        }
        let e = decode(br#"{"version":"1","op":"stats"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"version\" must be a number"), "{e}");
        assert!(matches!(
            decode(b"{\"version\":1,\"op\":"),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            read_line(&b"{\"version\":1}"[..]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            read_line(&vec![b'x'; MAX_MESSAGE + 10][..]),
            Err(DecodeError::TooLong)
        );
        assert_eq!(read_line(&b"abc\nrest"[..]).unwrap(), b"abc");
    }
}
