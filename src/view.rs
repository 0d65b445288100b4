//! [`PortTable`]: the immutable picture of one switch's ports that the datapath reads
//! once per burst. Built by [`crate::topology::Topology`], published through
//! [`crate::table::rcu`].

use std::sync::Arc;

use hashbrown::HashMap;

use crate::port::{Mode, PortId, PortSet};
use crate::table::{Fdb, FdbKey};
use crate::wire::MacAddr;

/// Which multicast groups an endpoint accepts (the kernel's per-endpoint `mc_filter`,
/// spec §3.5, done as an exact match).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum McFilter {
    /// Every group: the endpoint is PROMISC or ALLMULTI. The default for endpoints
    /// whose memberships the switch cannot observe.
    #[default]
    All,
    /// Broadcast plus exactly these groups.
    Groups(Arc<[MacAddr]>),
}

impl McFilter {
    /// Whether a frame to `group` passes. Broadcast always does.
    #[inline]
    pub fn accepts(&self, group: MacAddr) -> bool {
        match self {
            McFilter::All => true,
            McFilter::Groups(g) => group.is_broadcast() || g.contains(&group),
        }
    }
}

/// What the datapath knows about an endpoint port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Its own MAC (for passthru: the parent's).
    pub mac: MacAddr,
    /// Its macvlan mode.
    pub mode: Mode,
    /// The network's VLAN on the uplink (0 = untagged).
    pub vlan: u16,
    /// Administratively up. A down endpoint is not in the kernel's `vlan_hash`.
    pub up: bool,
    /// Source mode `nodst`: frames matched by source MAC are not delivered elsewhere.
    pub nodst: bool,
    /// Strict private isolation (an option beyond the kernel): also drop *unicast*
    /// reflected between this endpoint and a sibling.
    pub strict: bool,
    /// Multicast groups accepted.
    pub mc: McFilter,
}

/// The role of a port in the switch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// The parent NIC: its receive side is the wire's ingress, its transmit the wire.
    Uplink,
    /// The parent's own kernel stack ("passed to host").
    Host,
    /// A macvlan endpoint.
    Endpoint(EndpointInfo),
}

/// One port's published state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Human name (endpoint or interface name), for counters and errors.
    pub name: Arc<str>,
    /// Its role.
    pub role: Role,
    /// Largest L3 payload it accepts (the MTU).
    pub mtu: u16,
}

impl PortInfo {
    /// The endpoint part, if this port is an endpoint.
    #[inline(always)]
    pub fn endpoint(&self) -> Option<&EndpointInfo> {
        match &self.role {
            Role::Endpoint(e) => Some(e),
            _ => None,
        }
    }
}

/// A source-mode entry: frames whose source MAC matches are copied to `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceEntry {
    /// The source-mode endpoint.
    pub port: PortId,
}

/// One network (VLAN) as its floods read it, computed when the table is built so a
/// flood costs a few set unions, not a look at every member.
#[derive(Clone, Debug, Default)]
pub struct Network {
    members: Vec<PortId>,
    /// UP endpoints accepting every group, by mode (`Mode as usize`); `None` until
    /// the first one joins (most networks of a 4 094-VLAN trunk hold few endpoints).
    open: Option<Box<[PortSet; MODES]>>,
    /// UP endpoints with an exact multicast filter: a flood checks each one.
    filtered: Vec<PortId>,
    /// Whether an endpoint of the network is strict private.
    any_strict: bool,
}

/// Number of [`Mode`]s.
const MODES: usize = Mode::ALL.len();

/// Largest VLAN id, plus one.
const VLANS: usize = 4096;

static NO_PORTS: PortSet = PortSet::new();

impl Network {
    /// Its endpoints, up or down, in the order they were added.
    #[inline]
    pub fn members(&self) -> &[PortId] {
        &self.members
    }

    /// Its UP endpoints in `mode` that accept every multicast group.
    #[inline]
    pub fn open(&self, mode: Mode) -> &PortSet {
        self.open.as_ref().map_or(&NO_PORTS, |o| &o[mode as usize])
    }

    /// Its UP endpoints with an exact multicast filter ([`McFilter::Groups`]).
    #[inline]
    pub fn filtered(&self) -> &[PortId] {
        &self.filtered
    }

    /// Whether one of its endpoints is strict private (`mode` private, `strict` set),
    /// up or down.
    #[inline]
    pub fn any_strict(&self) -> bool {
        self.any_strict
    }

    fn add(&mut self, id: PortId, ep: &EndpointInfo) {
        self.members.push(id);
        self.any_strict |= ep.mode == Mode::Private && ep.strict;
        if !ep.up {
            return;
        }
        match ep.mc {
            McFilter::All => self
                .open
                .get_or_insert_with(|| Box::new([const { PortSet::new() }; MODES]))
                [ep.mode as usize]
                .insert(id),
            McFilter::Groups(_) => self.filtered.push(id),
        }
    }
}

/// The switch as the datapath sees it: ports, FDB, source-MAC entries and the
/// endpoints of each network (VLAN), all immutable once published.
#[derive(Clone, Debug)]
pub struct PortTable {
    ports: Vec<Option<PortInfo>>,
    fdb: Fdb,
    sources: HashMap<FdbKey, Vec<SourceEntry>>,
    /// Networks, in the order they were declared.
    networks: Vec<Network>,
    /// Index into `networks` plus one, by VLAN id (0: no such network): a frame's
    /// network without hashing.
    network_of: Box<[u16]>,
    uplink: PortId,
    host: Option<PortId>,
    passthru: Option<PortId>,
    parent_mac: MacAddr,
}

impl PortTable {
    /// A table with only the uplink (and optionally the host port).
    pub fn new(
        uplink: PortId,
        uplink_info: PortInfo,
        host: Option<(PortId, PortInfo)>,
        parent_mac: MacAddr,
    ) -> Self {
        let mut t = PortTable {
            ports: Vec::new(),
            fdb: Fdb::new(),
            sources: HashMap::new(),
            networks: Vec::new(),
            network_of: vec![0; VLANS].into_boxed_slice(),
            uplink,
            host: host.as_ref().map(|h| h.0),
            passthru: None,
            parent_mac,
        };
        t.set_port(uplink, uplink_info);
        if let Some((id, info)) = host {
            t.set_port(id, info);
        }
        t
    }

    fn set_port(&mut self, id: PortId, info: PortInfo) {
        let i = id.0 as usize;
        if self.ports.len() <= i {
            self.ports.resize(i + 1, None);
        }
        self.ports[i] = Some(info);
    }

    /// Declares network `vlan` (so its tagged frames are not "unknown VLAN").
    ///
    /// # Panics
    /// If `vlan` is above 4095.
    pub fn add_network(&mut self, vlan: u16) {
        self.network_mut(vlan);
    }

    fn network_mut(&mut self, vlan: u16) -> &mut Network {
        let slot = &mut self.network_of[vlan as usize];
        if *slot == 0 {
            self.networks.push(Network::default());
            *slot = self.networks.len() as u16;
        }
        &mut self.networks[*slot as usize - 1]
    }

    /// Adds endpoint `id`: its FDB entry (if up), its network membership and flood
    /// lists, its source entries (`sources`, source mode only) and, for passthru, the
    /// port's owner.
    ///
    /// # Errors
    /// [`crate::table::Error::Occupied`] if its MAC is already in the FDB.
    ///
    /// # Panics
    /// If `info` is not an endpoint's, or its VLAN is above 4095.
    pub fn add_endpoint(
        &mut self,
        id: PortId,
        info: PortInfo,
        sources: &[MacAddr],
    ) -> Result<(), crate::table::Error> {
        let ep = info
            .endpoint()
            .expect("add_endpoint takes an endpoint")
            .clone();
        if ep.up {
            self.fdb.insert_static(FdbKey::new(ep.vlan, ep.mac), id)?;
        }
        if ep.mode == Mode::Passthru {
            self.passthru = Some(id);
        }
        if ep.mode == Mode::Source {
            for &m in sources {
                self.sources
                    .entry(FdbKey::new(ep.vlan, m))
                    .or_default()
                    .push(SourceEntry { port: id });
            }
        }
        self.network_mut(ep.vlan).add(id, &ep);
        self.set_port(id, info);
        Ok(())
    }

    /// Port `id`'s state.
    #[inline(always)]
    pub fn port(&self, id: PortId) -> Option<&PortInfo> {
        self.ports.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// Endpoint `id`'s state.
    #[inline(always)]
    pub fn endpoint(&self, id: PortId) -> Option<&EndpointInfo> {
        self.port(id).and_then(PortInfo::endpoint)
    }

    /// Every port, by id.
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &PortInfo)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (PortId(i as u16), p)))
    }

    /// The UP endpoint owning `mac` in `vlan` (the kernel's `macvlan_hash_lookup`).
    #[inline(always)]
    pub fn lookup(&self, vlan: u16, mac: MacAddr) -> Option<PortId> {
        self.fdb.lookup(FdbKey::new(vlan, mac))
    }

    /// Source-mode entries matching source MAC `mac` in `vlan`.
    #[inline(always)]
    pub fn sources(&self, vlan: u16, mac: MacAddr) -> &[SourceEntry] {
        if self.sources.is_empty() {
            return &[];
        }
        self.sources
            .get(&FdbKey::new(vlan, mac))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether any source-mode entry exists, in any network.
    #[inline]
    pub fn has_sources(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Network `vlan`, if one uses it.
    #[inline(always)]
    pub fn network(&self, vlan: u16) -> Option<&Network> {
        match self.network_of.get(vlan as usize) {
            Some(&i) if i != 0 => Some(&self.networks[i as usize - 1]),
            _ => None,
        }
    }

    /// Endpoints of network `vlan`, up or down.
    #[inline]
    pub fn members(&self, vlan: u16) -> &[PortId] {
        self.network(vlan).map_or(&[], Network::members)
    }

    /// Whether a network uses `vlan`.
    #[inline]
    pub fn has_network(&self, vlan: u16) -> bool {
        self.network(vlan).is_some()
    }

    /// The uplink port.
    #[inline(always)]
    pub fn uplink(&self) -> PortId {
        self.uplink
    }

    /// The host-stack port, if the switch has one.
    #[inline(always)]
    pub fn host(&self) -> Option<PortId> {
        self.host
    }

    /// The passthru endpoint, if the parent is in passthru mode.
    #[inline(always)]
    pub fn passthru(&self) -> Option<PortId> {
        self.passthru
    }

    /// The parent's MAC.
    pub fn parent_mac(&self) -> MacAddr {
        self.parent_mac
    }

    /// The FDB.
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }
}
