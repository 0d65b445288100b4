//! The multicast membership of an endpoint's interface, as the kernel's macvlan keeps
//! it in each device's `mc_filter` (spec §3.5): the interface's L2 multicast list and
//! its `IFF_PROMISC`/`IFF_ALLMULTI` flags, read inside the endpoint's namespace.
//!
//! Why polling these two, rather than snooping IGMP/MLD reports or listening to
//! netlink: the L2 list is what the kernel filters on, and it holds every source of a
//! membership — IP joins of any socket (IGMP and MLD, whatever their versions and
//! whether reports are suppressed), the groups the stack joins itself (all-hosts,
//! all-nodes, solicited-node), `ip maddr add`, packet sockets' `PACKET_MR_MULTICAST` —
//! while reports miss most of them (`ip maddr`, MLD report suppression, a joined
//! group whose report was lost) and netlink announces none of them. Reading is cheap:
//! `/proc/net/dev_mcast` is opened once inside the namespace (a procfs net file keeps
//! showing the namespace it was opened in, whoever reads it later) and re-read from
//! the start; the flags come from one netlink request in that namespace.
//!
//! When the kernel recomputes: measured here (Linux 6.18), a macvlan device's filter
//! is recomputed when a group is added to its list, when its PROMISC/ALLMULTI flags
//! change and when it is brought up, but **not** when a group is removed (`ip maddr
//! del`, or an IGMP leave): a left group stays accepted until the next recomputation
//! (another join, a flag change, down/up). The watch does the same by default;
//! [`Leave::Prompt`] makes a leave take effect at the next read instead.
//!
//! The open file and the netlink socket hold the namespace alive, so the watch lets
//! go of them as soon as the namespace's path no longer names it (the runtime deleted
//! its bind mount, or the process whose `/proc/PID/ns/net` it was exited): the
//! namespace can then die, taking the endpoint's veth with it, as a container's exit
//! takes a kernel macvlan device (the daemon then removes the endpoint).

use std::fs::File;
use std::io::{Read, Seek};
use std::sync::Arc;

use crate::link::{Links, Netns};
use crate::view::McFilter;
use crate::wire::MacAddr;

/// When a left group stops being accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Leave {
    /// As the kernel: at the next recomputation of the filter (a join, a PROMISC or
    /// ALLMULTI change, the interface brought up).
    #[default]
    Kernel,
    /// At the next read: within one [`crate::dataplane::Dataplane::sync_multicast`].
    Prompt,
}

/// An endpoint's interface, watched in namespace `netns`.
pub(super) struct McWatch {
    netns: String,
    seen: Option<Seen>,
    leave: Leave,
    /// What was read last: the list, and whether it was PROMISC/ALLMULTI or up.
    last: Option<(Vec<MacAddr>, bool, bool)>,
    /// The filter in force.
    filter: McFilter,
}

/// The interface found: its namespace's `dev_mcast`, a netlink socket there, its
/// index there, and the namespace's identity (device and inode of its path).
struct Seen {
    dev_mcast: File,
    links: Links,
    ifindex: u32,
    id: (u64, u64),
}

/// The device and inode the namespace path `netns` names now.
fn identity(netns: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(Netns::path_of(netns))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl McWatch {
    /// Watches the peer of an endpoint veth in namespace `netns` (a name under
    /// /run/netns or a path).
    pub(super) fn new(netns: String, leave: Leave) -> Self {
        McWatch {
            netns,
            seen: None,
            leave,
            last: None,
            filter: McFilter::All,
        }
    }

    /// The interface now lives in namespace `netns` (a runtime moved it).
    /// Whether the peer was up at the last [`McWatch::read`]; `None` while it cannot
    /// be observed.
    pub(super) fn peer_up(&self) -> Option<bool> {
        self.last.as_ref().map(|l| l.2)
    }

    pub(super) fn set_netns(&mut self, netns: String) {
        self.netns = netns;
        self.seen = None;
    }

    /// The groups the interface accepts now. The peer of switch-side veth
    /// `host_ifindex`, with MAC `mac`, is looked for in the namespace as long as it is
    /// not found (Docker moves it after creating it); while it cannot be observed,
    /// every group is accepted, as before this existed.
    pub(super) fn read(&mut self, host_ifindex: u32, mac: MacAddr) -> McFilter {
        if self.seen.is_none() {
            self.seen = resolve(&self.netns, host_ifindex, mac);
        }
        // Let go of a namespace its path no longer names: it may be dying.
        if self
            .seen
            .as_ref()
            .is_some_and(|s| identity(&self.netns) != Some(s.id))
        {
            self.seen = None;
        }
        let Some(s) = &mut self.seen else {
            self.last = None;
            self.filter = McFilter::All;
            return McFilter::All;
        };
        let Some((list, all, up)) = read(s) else {
            self.seen = None;
            self.last = None;
            self.filter = McFilter::All;
            return McFilter::All;
        };
        let recompute = match &self.last {
            None => true,
            Some((old, old_all, old_up)) => {
                self.leave == Leave::Prompt
                    || all != *old_all
                    || (up && !old_up)
                    || list.iter().any(|m| !old.contains(m))
            }
        };
        if recompute {
            self.filter = if all {
                McFilter::All
            } else {
                McFilter::Groups(Arc::from(list.clone()))
            };
        }
        self.last = Some((list, all, up));
        self.filter.clone()
    }
}

/// Finds the peer in `netns`: linked to `host_ifindex` (`IFLA_LINK`), with MAC `mac`.
fn resolve(netns: &str, host_ifindex: u32, mac: MacAddr) -> Option<Seen> {
    let id = identity(netns)?;
    let ns = Netns::open(netns).ok()?;
    ns.run(|| {
        let dev_mcast = File::open("/proc/thread-self/net/dev_mcast").ok()?;
        let links = Links::open().ok()?;
        let peer = links
            .list()
            .ok()?
            .into_iter()
            .find(|l| l.mac == mac && l.link.map(|(i, _)| i) == Some(host_ifindex))?;
        Some(Seen {
            dev_mcast,
            links,
            ifindex: peer.index,
            id,
        })
    })
    .ok()
    .flatten()
}

/// A found interface's multicast list, whether it accepts every group
/// (PROMISC/ALLMULTI) and whether it is up; `None` if it is gone.
fn read(s: &mut Seen) -> Option<(Vec<MacAddr>, bool, bool)> {
    let l = s.links.get_index(s.ifindex).ok()??;
    let mut text = String::new();
    s.dev_mcast.rewind().ok()?;
    s.dev_mcast.read_to_string(&mut text).ok()?;
    Some((
        parse_dev_mcast(&text, s.ifindex),
        l.promisc || l.allmulti,
        l.up,
    ))
}

/// The groups of interface `ifindex` in `/proc/net/dev_mcast` text (`ifindex name
/// users global address`, the address as 12 hex digits), sorted.
fn parse_dev_mcast(text: &str, ifindex: u32) -> Vec<MacAddr> {
    let mut v: Vec<MacAddr> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let idx: u32 = w.next()?.parse().ok()?;
            let hex = w.nth(3)?;
            if idx != ifindex || hex.len() != 12 {
                return None;
            }
            let mut m = [0u8; 6];
            for (i, b) in m.iter_mut().enumerate() {
                *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
            }
            Some(MacAddr(m))
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_mcast_lines_of_one_interface() {
        let text = "2    eth0            1     0     333300000001\n\
                    2    eth0            1     0     01005e000001\n\
                    3    eth1            1     0     01005e4d0001\n\
                    2    eth0            2     0     01005e4d0001\n\
                    x    junk\n";
        let g = parse_dev_mcast(text, 2);
        let want: Vec<MacAddr> = [
            "01:00:5e:00:00:01",
            "01:00:5e:4d:00:01",
            "33:33:00:00:00:01",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(g, want);
        assert!(parse_dev_mcast(text, 9).is_empty());
    }
}
