//! The control model of one parent: its endpoints and the kernel's configuration rules
//! (spec §5), and the publishing of the [`PortTable`] the datapath reads.
//!
//! Every change is made on a copy of the state, checked as a whole, turned into a new
//! port table and only then published and kept. A refused change therefore leaves both
//! the state and what the datapath sees exactly as they were.
//!
//! Port ids: the uplink is [`UPLINK`], the host stack [`HOST`]; endpoints get the
//! lowest free id from 2 on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::mode::Mode;
use crate::port::{PortId, MAX_PORTS};
use crate::table::{rcu, Reader, Writer};
use crate::view::{EndpointInfo, McFilter, PortInfo, PortTable, Role};
use crate::wire::MacAddr;

/// The uplink's port id.
pub const UPLINK: PortId = PortId(0);
/// The host stack's port id.
pub const HOST: PortId = PortId(1);
/// The smallest MTU an endpoint may have (IPv4's minimum, as the kernel enforces).
pub const MIN_MTU: u16 = 68;

/// The parent ("lower") device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentConfig {
    /// Interface name.
    pub name: String,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its current MTU.
    pub mtu: u16,
}

/// An endpoint as requested by a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Unique name.
    pub name: String,
    /// Its MAC; `None` picks a random locally administered one. Ignored for passthru,
    /// which takes the parent's.
    pub mac: Option<MacAddr>,
    /// Mode.
    pub mode: Mode,
    /// Network VLAN (0 = untagged).
    pub vlan: u16,
    /// MTU; `None` takes the parent's.
    pub mtu: Option<u16>,
    /// Administratively up.
    pub up: bool,
    /// Source mode only: `nodst`.
    pub nodst: bool,
    /// Private mode only: strict isolation (see [`EndpointInfo::strict`]).
    pub strict: bool,
    /// Multicast groups accepted.
    pub mc: McFilter,
    /// Source mode only: the source MACs it receives copies for.
    pub sources: Vec<MacAddr>,
}

impl EndpointConfig {
    /// An up endpoint named `name` in mode `mode`, untagged, with a random MAC.
    pub fn new(name: impl Into<String>, mode: Mode) -> Self {
        EndpointConfig {
            name: name.into(),
            mac: None,
            mode,
            vlan: 0,
            mtu: None,
            up: true,
            nodst: false,
            strict: false,
            mc: McFilter::All,
            sources: Vec::new(),
        }
    }

    /// With MAC `mac`.
    pub fn with_mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
}

/// An endpoint as configured: the request with its MAC, MTU and id resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its port id.
    pub id: PortId,
    /// The request, with `mac` and `mtu` always `Some`.
    pub cfg: EndpointConfig,
}

impl Endpoint {
    /// The resolved MAC.
    pub fn mac(&self) -> MacAddr {
        self.cfg.mac.expect("resolved at add")
    }

    /// The resolved MTU.
    pub fn mtu(&self) -> u16 {
        self.cfg.mtu.expect("resolved at add")
    }
}

/// A configuration change the rules refuse. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Passthru requested on a parent that already has endpoints.
    #[error("cannot add passthru endpoint '{name}': parent {parent} already has {count} endpoint(s); passthru needs the parent to itself")]
    PassthruBusy {
        /// The refused endpoint.
        name: String,
        /// The parent.
        parent: String,
        /// Endpoints already there.
        count: usize,
    },
    /// A second endpoint on a passthru parent.
    #[error("cannot add endpoint '{name}': parent {parent} is in passthru mode, owned by endpoint '{owner}'")]
    PassthruExclusive {
        /// The refused endpoint.
        name: String,
        /// The parent.
        parent: String,
        /// The passthru endpoint.
        owner: String,
    },
    /// A mode change to or from passthru.
    #[error("cannot change endpoint '{name}' from {from} to {to}: passthru cannot be switched on or off; remove the endpoint and add it again")]
    PassthruChange {
        /// The endpoint.
        name: String,
        /// Current mode.
        from: Mode,
        /// Requested mode.
        to: Mode,
    },
    /// The MAC is already used by an up endpoint or the parent.
    #[error("MAC address {mac} of endpoint '{name}' is already in use by {owner}")]
    MacInUse {
        /// The endpoint.
        name: String,
        /// The address.
        mac: MacAddr,
        /// Who holds it: "endpoint 'x'" or "the parent eth0".
        owner: String,
    },
    /// Not a unicast station address.
    #[error("MAC address {mac} of endpoint '{name}' is not usable: it must be unicast and not all zeros")]
    BadMac {
        /// The endpoint.
        name: String,
        /// The address.
        mac: MacAddr,
    },
    /// MTU above the parent's.
    #[error("MTU {mtu} of endpoint '{name}' exceeds the MTU {parent_mtu} of parent {parent}")]
    MtuTooLarge {
        /// The endpoint.
        name: String,
        /// Requested.
        mtu: u16,
        /// The parent.
        parent: String,
        /// The parent's MTU.
        parent_mtu: u16,
    },
    /// MTU below 68.
    #[error("MTU {mtu} of '{name}' is below the minimum of {MIN_MTU}")]
    MtuTooSmall {
        /// The endpoint or parent.
        name: String,
        /// Requested.
        mtu: u16,
    },
    /// VLAN id outside 1..=4094 (0 means untagged).
    #[error("VLAN {vlan} of '{name}' is out of range: use 1..4094, or none for untagged")]
    BadVlan {
        /// The endpoint.
        name: String,
        /// Requested.
        vlan: u16,
    },
    /// Name already taken.
    #[error("an endpoint named '{0}' already exists")]
    DuplicateName(String),
    /// Empty name.
    #[error("an endpoint name must not be empty")]
    EmptyName,
    /// No such endpoint.
    #[error("no endpoint named '{0}'")]
    NoSuchEndpoint(String),
    /// No port with that id in the table.
    #[error("no port {0} in the port table")]
    NoSuchPort(PortId),
    /// Source MACs (or nodst) on an endpoint that is not in source mode.
    #[error("endpoint '{name}' is in {mode} mode: source MAC lists and nodst are only valid in source mode")]
    SourceOnly {
        /// The endpoint.
        name: String,
        /// Its mode.
        mode: Mode,
    },
    /// The switch is full.
    #[error("the switch already has the maximum of {MAX_PORTS} ports")]
    TooManyPorts,
    /// The system random source failed while picking a MAC.
    #[error("could not generate a random MAC address: {0}")]
    Random(String),
}

#[derive(Clone, Debug)]
struct State {
    parent: ParentConfig,
    host: bool,
    networks: BTreeSet<u16>,
    endpoints: BTreeMap<String, Endpoint>,
}

/// One parent's control state and the writer of its published port table.
pub struct Topology {
    state: State,
    writer: Writer<PortTable>,
}

impl Topology {
    /// A parent with no endpoints, an untagged network, and (if `host`) a host port.
    ///
    /// # Errors
    /// If the parent's MAC is not a station address or its MTU is below 68.
    pub fn new(parent: ParentConfig, host: bool) -> Result<Self, ControlError> {
        let state = State {
            parent,
            host,
            networks: [0].into(),
            endpoints: BTreeMap::new(),
        };
        validate(&state)?;
        let (writer, _) = rcu(build(&state)?);
        Ok(Topology { state, writer })
    }

    /// A reader for a datapath worker.
    pub fn reader(&self) -> Reader<PortTable> {
        self.writer.reader()
    }

    /// The currently published port table.
    pub fn table(&self) -> Arc<PortTable> {
        self.writer.current()
    }

    /// The parent.
    pub fn parent(&self) -> &ParentConfig {
        &self.state.parent
    }

    /// Endpoint `name`.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.state.endpoints.get(name)
    }

    /// Every endpoint, by name.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.state.endpoints.values()
    }

    fn commit(&mut self, next: State) -> Result<(), ControlError> {
        validate(&next)?;
        let table = build(&next)?;
        self.writer.replace(table);
        self.state = next;
        Ok(())
    }

    fn change<R>(
        &mut self,
        f: impl FnOnce(&mut State) -> Result<R, ControlError>,
    ) -> Result<R, ControlError> {
        let mut next = self.state.clone();
        let r = f(&mut next)?;
        self.commit(next)?;
        Ok(r)
    }

    /// Declares network VLAN `vlan` (0 = untagged) on this parent.
    ///
    /// # Errors
    /// [`ControlError::BadVlan`].
    pub fn add_network(&mut self, vlan: u16) -> Result<(), ControlError> {
        self.change(|s| {
            check_vlan(&s.parent.name, vlan)?;
            s.networks.insert(vlan);
            Ok(())
        })
    }

    /// Adds an endpoint (spec §5: passthru exclusivity, MAC clashes at up, MTU).
    ///
    /// # Errors
    /// Any [`ControlError`] naming the rule; nothing changes.
    pub fn add_endpoint(&mut self, cfg: EndpointConfig) -> Result<PortId, ControlError> {
        self.change(|s| Self::add_to(s, cfg))
    }

    /// Whether [`Topology::add_endpoint`] would accept `cfg`, without changing anything.
    ///
    /// # Errors
    /// The error `add_endpoint` would return.
    pub fn check_endpoint(&self, cfg: EndpointConfig) -> Result<(), ControlError> {
        let mut next = self.state.clone();
        Self::add_to(&mut next, cfg)?;
        validate(&next)?;
        build(&next).map(|_| ())
    }

    fn add_to(s: &mut State, mut cfg: EndpointConfig) -> Result<PortId, ControlError> {
        {
            if cfg.name.is_empty() {
                return Err(ControlError::EmptyName);
            }
            if s.endpoints.contains_key(&cfg.name) {
                return Err(ControlError::DuplicateName(cfg.name));
            }
            if let Some(owner) = s.endpoints.values().find(|e| e.cfg.mode == Mode::Passthru) {
                return Err(ControlError::PassthruExclusive {
                    name: cfg.name,
                    parent: s.parent.name.clone(),
                    owner: owner.cfg.name.clone(),
                });
            }
            if cfg.mode == Mode::Passthru && !s.endpoints.is_empty() {
                return Err(ControlError::PassthruBusy {
                    name: cfg.name,
                    parent: s.parent.name.clone(),
                    count: s.endpoints.len(),
                });
            }
            let used: BTreeSet<u16> = s.endpoints.values().map(|e| e.id.0).collect();
            let id = (2..MAX_PORTS as u16)
                .find(|i| !used.contains(i))
                .ok_or(ControlError::TooManyPorts)?;
            cfg.mac = Some(match (cfg.mode, cfg.mac) {
                (Mode::Passthru, _) => s.parent.mac,
                (_, Some(m)) => m,
                (_, None) => {
                    MacAddr::random_local().map_err(|e| ControlError::Random(e.to_string()))?
                }
            });
            cfg.mtu = Some(cfg.mtu.unwrap_or(s.parent.mtu));
            s.networks.insert(cfg.vlan);
            let id = PortId(id);
            s.endpoints.insert(cfg.name.clone(), Endpoint { id, cfg });
            Ok(id)
        }
    }

    /// Removes endpoint `name` and returns its port id.
    ///
    /// # Errors
    /// [`ControlError::NoSuchEndpoint`].
    pub fn remove_endpoint(&mut self, name: &str) -> Result<PortId, ControlError> {
        self.change(|s| {
            s.endpoints
                .remove(name)
                .map(|e| e.id)
                .ok_or_else(|| ControlError::NoSuchEndpoint(name.into()))
        })
    }

    fn edit(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut EndpointConfig) -> Result<(), ControlError>,
    ) -> Result<(), ControlError> {
        self.change(|s| {
            let e = s
                .endpoints
                .get_mut(name)
                .ok_or_else(|| ControlError::NoSuchEndpoint(name.into()))?;
            f(&mut e.cfg)
        })
    }

    /// Brings endpoint `name` up or down. Up checks its MAC against the parent and the
    /// other up endpoints, as the kernel does at `ip link set up`.
    ///
    /// # Errors
    /// [`ControlError::MacInUse`], [`ControlError::NoSuchEndpoint`].
    pub fn set_up(&mut self, name: &str, up: bool) -> Result<(), ControlError> {
        self.edit(name, |c| {
            c.up = up;
            Ok(())
        })
    }

    /// Changes endpoint `name`'s mode. Leaving source mode flushes its source list.
    ///
    /// # Errors
    /// [`ControlError::PassthruChange`] to or from passthru.
    pub fn set_mode(&mut self, name: &str, mode: Mode) -> Result<(), ControlError> {
        self.edit(name, |c| {
            if (c.mode == Mode::Passthru) != (mode == Mode::Passthru) {
                return Err(ControlError::PassthruChange {
                    name: c.name.clone(),
                    from: c.mode,
                    to: mode,
                });
            }
            if mode != Mode::Source {
                c.sources.clear();
                c.nodst = false;
            }
            c.mode = mode;
            Ok(())
        })
    }

    /// Changes endpoint `name`'s MAC (for passthru this changes the parent's MAC too).
    ///
    /// # Errors
    /// [`ControlError::BadMac`], [`ControlError::MacInUse`].
    pub fn set_mac(&mut self, name: &str, mac: MacAddr) -> Result<(), ControlError> {
        self.change(|s| {
            let e = s
                .endpoints
                .get_mut(name)
                .ok_or_else(|| ControlError::NoSuchEndpoint(name.into()))?;
            e.cfg.mac = Some(mac);
            if e.cfg.mode == Mode::Passthru {
                s.parent.mac = mac;
            }
            Ok(())
        })
    }

    /// Changes endpoint `name`'s MTU.
    ///
    /// # Errors
    /// [`ControlError::MtuTooLarge`], [`ControlError::MtuTooSmall`].
    pub fn set_mtu(&mut self, name: &str, mtu: u16) -> Result<(), ControlError> {
        self.edit(name, |c| {
            c.mtu = Some(mtu);
            Ok(())
        })
    }

    /// Sets the multicast groups endpoint `name` accepts (its interface's multicast
    /// list, or every group when it is PROMISC or ALLMULTI; spec §3.5).
    ///
    /// # Errors
    /// [`ControlError::NoSuchEndpoint`].
    pub fn set_mc(&mut self, name: &str, mc: McFilter) -> Result<(), ControlError> {
        self.edit(name, |c| {
            c.mc = mc;
            Ok(())
        })
    }

    /// The parent's MTU changed: endpoints above it shrink to it and are never grown back.
    ///
    /// # Errors
    /// [`ControlError::MtuTooSmall`].
    pub fn set_parent_mtu(&mut self, mtu: u16) -> Result<(), ControlError> {
        self.change(|s| {
            s.parent.mtu = mtu;
            for e in s.endpoints.values_mut() {
                if e.mtu() > mtu {
                    e.cfg.mtu = Some(mtu);
                }
            }
            Ok(())
        })
    }
}

fn check_vlan(name: &str, vlan: u16) -> Result<(), ControlError> {
    if vlan > 4094 {
        return Err(ControlError::BadVlan {
            name: name.into(),
            vlan,
        });
    }
    Ok(())
}

/// The invariants of a whole state (spec §5).
fn validate(s: &State) -> Result<(), ControlError> {
    let p = &s.parent;
    if !p.mac.is_valid_station() {
        return Err(ControlError::BadMac {
            name: p.name.clone(),
            mac: p.mac,
        });
    }
    if p.mtu < MIN_MTU {
        return Err(ControlError::MtuTooSmall {
            name: p.name.clone(),
            mtu: p.mtu,
        });
    }
    let passthru = s.endpoints.values().find(|e| e.cfg.mode == Mode::Passthru);
    if let (Some(pt), true) = (passthru, s.endpoints.len() > 1) {
        let other = s
            .endpoints
            .values()
            .find(|e| e.id != pt.id)
            .expect("len > 1");
        return Err(ControlError::PassthruExclusive {
            name: other.cfg.name.clone(),
            parent: p.name.clone(),
            owner: pt.cfg.name.clone(),
        });
    }
    let mut up_macs: BTreeMap<(u16, MacAddr), &str> = BTreeMap::new();
    for e in s.endpoints.values() {
        let c = &e.cfg;
        let name = c.name.clone();
        check_vlan(&name, c.vlan)?;
        if !e.mac().is_valid_station() {
            return Err(ControlError::BadMac { name, mac: e.mac() });
        }
        if e.mtu() > p.mtu {
            return Err(ControlError::MtuTooLarge {
                name,
                mtu: e.mtu(),
                parent: p.name.clone(),
                parent_mtu: p.mtu,
            });
        }
        if e.mtu() < MIN_MTU {
            return Err(ControlError::MtuTooSmall { name, mtu: e.mtu() });
        }
        if c.mode != Mode::Source && (!c.sources.is_empty() || c.nodst) {
            return Err(ControlError::SourceOnly { name, mode: c.mode });
        }
        if c.up && c.mode != Mode::Passthru {
            if e.mac() == p.mac {
                return Err(ControlError::MacInUse {
                    name,
                    mac: e.mac(),
                    owner: format!("the parent {}", p.name),
                });
            }
            if let Some(other) = up_macs.insert((c.vlan, e.mac()), &c.name) {
                return Err(ControlError::MacInUse {
                    name,
                    mac: e.mac(),
                    owner: format!("endpoint '{other}'"),
                });
            }
        }
    }
    Ok(())
}

/// The port table of a valid state.
fn build(s: &State) -> Result<PortTable, ControlError> {
    let p = &s.parent;
    let info = |name: &str, role, mtu| PortInfo {
        name: Arc::from(name),
        role,
        mtu,
    };
    let host = s.host.then(|| (HOST, info("host", Role::Host, p.mtu)));
    let mut t = PortTable::new(UPLINK, info(&p.name, Role::Uplink, p.mtu), host, p.mac);
    for &v in &s.networks {
        t.add_network(v);
    }
    for e in s.endpoints.values() {
        let c = &e.cfg;
        let ei = EndpointInfo {
            mac: e.mac(),
            mode: c.mode,
            vlan: c.vlan,
            up: c.up,
            nodst: c.nodst,
            strict: c.strict,
            mc: c.mc.clone(),
        };
        // validate() already refuses clashing up MACs; this maps the table's own check.
        t.add_endpoint(e.id, info(&c.name, Role::Endpoint(ei), e.mtu()), &c.sources)
            .map_err(|err| match err {
                crate::table::Error::Occupied { mac, owner, .. } => ControlError::MacInUse {
                    name: c.name.clone(),
                    mac,
                    owner: format!("{owner}"),
                },
            })?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests;
