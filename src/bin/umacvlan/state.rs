//! The daemon's durable state: what was created at run time (networks and endpoints
//! made through the control socket) and what was chosen for the configuration file's
//! endpoints (a MAC or an address the file leaves open), so a restart brings back
//! the same networks, endpoints, MACs and addresses.
//!
//! One JSON file, `STATE_DIR/state.json`, replaced atomically: written to a temporary
//! file, synced, renamed over the old one, and the directory synced, before the
//! request that changed it is answered. A file that cannot be read, is not JSON or is
//! of another version is refused with an error naming it; it is never half-applied.
//!
//! On a conflict the configuration file wins: a network or endpoint of the file
//! replaces a run-time one of the same name (with a warning in the log).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{EndpointSection, NetworkSection};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/umacvlan";
/// Version of the state file's format.
pub const STATE_VERSION: u32 = 1;

/// An endpoint as recorded: as written, but with its MAC and address filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRecord {
    /// Its network.
    pub network: String,
    /// From the configuration file (only its MAC and address are taken from here).
    pub from_config: bool,
    /// The endpoint.
    pub endpoint: EndpointSection,
    /// Its container ([`umacvlan::ctl::EndpointAdd::container`]): taken over at a
    /// start, never made again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `false`: its address is only recorded ([`umacvlan::ctl::EndpointAdd::configure_ip`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configure_ip: Option<bool>,
    /// The switch-side veth it had, for the next start to take over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
}

/// The contents of the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version, [`STATE_VERSION`].
    pub version: u32,
    /// Networks created at run time.
    pub networks: Vec<NetworkSection>,
    /// Every endpoint.
    pub endpoints: Vec<EndpointRecord>,
    /// The pools of the Docker IPAM driver (`--ipam-driver umacvlan`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipam_pools: Vec<PoolRecord>,
}

/// A pool of the Docker IPAM driver and what it handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRecord {
    /// Its id, as Docker passes it back: the subnet.
    pub id: String,
    /// The subnet (`--subnet`).
    pub pool: String,
    /// Where endpoint addresses come from (`--ip-range`), within the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_pool: Option<String>,
    /// The addresses handed out (gateway, auxiliary and endpoint addresses).
    #[serde(default)]
    pub allocated: Vec<String>,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state file of this version.
    #[error("state file {path} is unusable ({why}); nothing of it was applied: move it away to start without it, or put back a good copy")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    /// The state in directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> StateFile {
        StateFile { dir: dir.into() }
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Reads the state; an empty one if there is no file yet.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] for a file that is not a whole state file of this
    /// version; [`StateError::Io`].
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: STATE_VERSION,
                    ..State::default()
                })
            }
            Err(source) => {
                return Err(StateError::Io {
                    path,
                    op: "read",
                    source,
                })
            }
        };
        let corrupt = |why: String| StateError::Corrupt {
            path: path.clone(),
            why,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        match v.get("version").and_then(serde_json::Value::as_u64) {
            Some(n) if n == u64::from(STATE_VERSION) => {}
            Some(n) => {
                return Err(corrupt(format!(
                    "format version {n}, this daemon reads version {STATE_VERSION}"
                )))
            }
            None => return Err(corrupt("no \"version\"".into())),
        }
        serde_json::from_value(v).map_err(|e| corrupt(e.to_string()))
    }

    /// Replaces the state atomically: a reader (or a crash) sees the old state or
    /// the new one, never a mix.
    ///
    /// # Errors
    /// [`StateError::Io`]; the old state is then still in place.
    pub fn save(&self, st: &State) -> Result<(), StateError> {
        let io = |path: &Path, op: &'static str| {
            let path = path.to_path_buf();
            move |source| StateError::Io { path, op, source }
        };
        create_private_dir(&self.dir).map_err(io(&self.dir, "create the directory"))?;
        let path = self.path();
        let tmp = self.dir.join("state.json.tmp");
        let mut body = serde_json::to_vec_pretty(st).expect("state serialises");
        body.push(b'\n');
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp, "create"))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp, "write"))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path, "replace"))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir, "sync the directory"))
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("umacvlan-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn sample() -> State {
        State {
            version: STATE_VERSION,
            networks: vec![NetworkSection {
                name: "lan".into(),
                parent: "eth1".into(),
                mode: None,
                vlan: Some(20),
                subnet: Some("10.0.0.0/24".into()),
                gateway: None,
                ip_range: None,
                aux_address: vec![],
                host_port: None,
                strict: None,
                fastpath: None,
                endpoints: vec![],
            }],
            endpoints: vec![EndpointRecord {
                network: "lan".into(),
                from_config: false,
                endpoint: EndpointSection {
                    name: "web".into(),
                    netns: "web".into(),
                    ifname: Some("eth0".into()),
                    mac: Some("02:42:0a:00:00:02".into()),
                    ip: Some("10.0.0.2/24".into()),
                    mode: None,
                    mtu: Some(1400),
                    strict: None,
                    sources: vec![],
                    nodst: None,
                },
                container: Some("4d1f".into()),
                configure_ip: Some(false),
                host_ifname: Some("umv2e1".into()),
            }],
            ipam_pools: vec![PoolRecord {
                id: "10.0.0.0/24".into(),
                pool: "10.0.0.0/24".into(),
                sub_pool: Some("10.0.0.128/25".into()),
                allocated: vec!["10.0.0.1".into(), "10.0.0.128".into()],
            }],
        }
    }

    #[test]
    fn round_trip_and_atomic_replace() {
        let d = dir("rt");
        let f = StateFile::new(&d);
        assert_eq!(f.load().unwrap().networks.len(), 0, "no file: empty");
        f.save(&sample()).unwrap();
        assert_eq!(f.load().unwrap(), sample());
        let mut s = sample();
        s.endpoints.clear();
        f.save(&s).unwrap();
        assert_eq!(f.load().unwrap(), s);
        assert!(!d.join("state.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_or_foreign_file_is_refused_by_name() {
        let d = dir("bad");
        let f = StateFile::new(&d);
        f.save(&sample()).unwrap();
        let whole = std::fs::read(f.path()).unwrap();
        for (bad, want) in [
            (whole[..whole.len() / 2].to_vec(), "EOF while parsing"),
            (
                br#"{"version":7,"networks":[],"endpoints":[]}"#.to_vec(),
                "format version 7",
            ),
            (br#"{"networks":[]}"#.to_vec(), "no \"version\""),
            (
                br#"{"version":1,"networks":[],"endpoints":[],"extra":1}"#.to_vec(),
                "unknown field",
            ),
        ] {
            std::fs::write(f.path(), &bad).unwrap();
            let e = f.load().unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("state.json") && e.contains("move it away"),
                "{e}"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
