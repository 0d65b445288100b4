//! Map keys, values and constants shared with `bpf/steer.h`.
//!
//! Every struct is `#[repr(C)]`, keeps the C field names and has its size and field
//! offsets asserted at compile time; `tests/bpf_object.rs` also checks them against the
//! BTF that clang wrote into the object. Multi-byte fields are in host byte order.
//! Values cross into the kernel as bytes ([`FdbKey::to_bytes`] and friends), so no
//! `unsafe` transmute is needed.

use core::mem::{offset_of, size_of};

use crate::port::PortId;
use crate::wire::MacAddr;

/// Slots in the `xsks` XSKMAP (`STEER_MAX_XSKS`).
pub const MAX_XSKS: u32 = 4096;
/// Entries in the `devs` hash (`STEER_MAX_DEVS`).
pub const MAX_DEVS: u32 = 1024;
/// Entries in the `fdb` hash (`STEER_MAX_FDB`).
pub const MAX_FDB: u32 = 65536;
/// Entries in the `srcs` hash (`STEER_MAX_SRCS`).
pub const MAX_SRCS: u32 = 4096;
/// Entries in the `groups` hash (`STEER_MAX_GROUPS`).
pub const MAX_GROUPS: u32 = 16384;

/// [`DevVal::role`]: the parent NIC (`ROLE_PARENT`).
pub const ROLE_PARENT: u32 = 1;
/// [`DevVal::role`]: an endpoint's host-side veth or the mirror veth; every frame goes
/// to the AF_XDP socket of its rx queue (`ROLE_PORT`).
pub const ROLE_PORT: u32 = 2;
/// [`DevVal::flags`]: the parent is in passthru mode; every unicast goes to the switch
/// (`DEV_F_PASSTHRU`).
pub const DEV_F_PASSTHRU: u32 = 1;
/// [`DevVal::flags`]: the `srcs` map has entries (a source-mode endpoint is up), so
/// the programs look frames from the wire up there (`DEV_F_SOURCES`); without it
/// they do not pay for the lookup.
pub const DEV_F_SOURCES: u32 = 2;
/// [`DevVal::flags`]: the parent carries no XDP program; its tc program steers unicast
/// as well, handing what the switch must see to the mirror veth (`DEV_F_TC_STEER`).
/// See [`crate::dataplane::ParentHook`].
pub const DEV_F_TC_STEER: u32 = 4;
/// [`FdbVal::flags`]: the MAC is the source of a private, passthru or source endpoint;
/// a multicast frame from it arriving on the parent is its own frame reflected by the
/// external switch and must not reach the host stack (spec W9) (`FDB_F_HOST_SUPPRESS`).
pub const FDB_F_HOST_SUPPRESS: u32 = 1;
/// [`FdbVal::flags`]: the MAC is a source-mode endpoint's own; frames to it go to the
/// host (spec W4), so XDP treats it as a miss (`FDB_F_NOT_DST`).
pub const FDB_F_NOT_DST: u32 = 2;
/// `srcs` value: frames from this source MAC are consumed by the switch, which makes
/// the source-mode copies; the host does not get them (spec §3.1 `nodst`,
/// `SRC_F_NODST`).
pub const SRC_F_NODST: u32 = 1;
/// Largest VLAN id (12 bits).
pub const VLAN_MAX: u16 = 0x0fff;

/// Key of the `fdb` map (`struct fdb_key`): a VLAN id and a MAC address.
#[doc(alias = "fdb_key")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FdbKey {
    /// VLAN id of the outermost tag, `0` for untagged (and priority-tagged) frames.
    pub vlan: u16,
    /// MAC address in transmission order.
    pub mac: [u8; 6],
}

/// Value of the `fdb` map (`struct fdb_val`).
#[doc(alias = "fdb_val")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FdbVal {
    /// Switch port of the endpoint that owns the MAC (a [`PortId`]).
    pub port: u32,
    /// `FDB_F_*` flags ([`FDB_F_HOST_SUPPRESS`]).
    pub flags: u32,
}

/// Value of the `devs` map (`struct dev_val`): what an interface is to the program.
#[doc(alias = "dev_val")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DevVal {
    /// [`ROLE_PARENT`] or [`ROLE_PORT`].
    pub role: u32,
    /// `xsks` slot of rx queue 0; queue `q` redirects to slot `xsk_base + q`.
    pub xsk_base: u32,
    /// Parent: ifindex of the veth that gets a clone of every multicast frame (its
    /// peer carries [`ROLE_PORT`] and must run native XDP); [`ROLE_FAST_PORT`]: the
    /// collector veth its frames for the switch go out of; `0` for none.
    pub mirror_ifindex: u32,
    /// `DEV_F_*` flags ([`DEV_F_PASSTHRU`]).
    pub flags: u32,
    /// Receive queues `0..queues` have a socket (slots `xsk_base..xsk_base + queues`);
    /// a frame for the switch on another queue is counted
    /// ([`Counter::XdpUnboundQueue`]) and passed to the host.
    pub queues: u32,
    /// The longest frame its sockets' UMEM frames hold (frame size less the XDP
    /// headroom); a longer one for the switch is counted ([`Counter::XdpTooBig`]) and
    /// dropped. `0`: no limit.
    pub max_len: u32,
    /// [`ROLE_FAST_PORT`]: the endpoint's switch port.
    pub port: u16,
    /// [`ROLE_FAST_PORT`]: the endpoint's MAC; the fast path takes only frames from it.
    pub mac: [u8; 6],
}

/// Key of the `fast` map (`struct fast_key`): a class of senders and a destination
/// MAC.
#[doc(alias = "fast_key")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FastKey {
    /// The senders' class ([`FastIn::class`]).
    pub class: u32,
    /// Destination MAC in transmission order.
    pub mac: [u8; 6],
    /// Zero.
    pub pad: u16,
}

/// Value of the `fast` and `fast_wire` maps (`struct fast_val`).
#[doc(alias = "fast_val")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct FastVal {
    /// [`FAST_F_PEER`]: the egress endpoint's switch-side veth; [`FAST_F_WIRE`]: the parent.
    pub ifindex: u32,
    /// The egress port (for its counters).
    pub port: u16,
    /// [`FAST_F_WIRE`]: the tag to push, `0` for none.
    pub vlan: u16,
    /// The longest payload (after the Ethernet header) the egress takes.
    pub mtu: u16,
    /// `FAST_F_*`.
    pub flags: u16,
}

/// Value of the `fast_in` map (`struct fast_in`), keyed by a fast port's ifindex.
#[doc(alias = "fast_in")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FastIn {
    /// Its class: the `fast` entries it uses.
    pub class: u32,
    /// The ingress port (its counters).
    pub in_port: u16,
    /// Its MAC: a frame from another source, or to this MAC, goes to the switch.
    pub src: [u8; 6],
    /// Where unicast without a `fast` entry goes.
    pub dflt: FastVal,
}

/// One port's fast-path counters in `port_stats` (`struct port_cnt`), per CPU.
#[doc(alias = "port_cnt")]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortCnt {
    /// Frames the port sent that the kernel forwarded.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the kernel delivered to the port.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames the port sent that the kernel program dropped (a refused redirect, a
    /// shim that could not be put in front).
    pub failed: u64,
}

/// Into the destination endpoint's namespace (`bpf_redirect_peer`).
pub const FAST_F_PEER: u16 = 1;
/// To the parent's egress (`bpf_redirect`).
pub const FAST_F_WIRE: u16 = 2;
/// The switch decides: an explicit entry beside a fast default.
pub const FAST_F_SLOW: u16 = 4;
/// An endpoint veth carrying the tc program `port_in` instead of XDP.
pub const ROLE_FAST_PORT: u32 = 3;
/// Slots of `port_stats` (one per [`PortId`]), and the most `fast_wire` entries.
pub const MAX_PORT_STATS: u32 = 1024;
/// Most entries of `fast`.
pub const MAX_FAST: u32 = 65536;

const _: () = {
    assert!(size_of::<FdbKey>() == 8);
    assert!(offset_of!(FdbKey, vlan) == 0);
    assert!(offset_of!(FdbKey, mac) == 2);
    assert!(size_of::<FdbVal>() == 8);
    assert!(offset_of!(FdbVal, port) == 0);
    assert!(offset_of!(FdbVal, flags) == 4);
    assert!(size_of::<DevVal>() == 32);
    assert!(offset_of!(DevVal, port) == 24);
    assert!(offset_of!(DevVal, mac) == 26);
    assert!(size_of::<FastKey>() == 12);
    assert!(offset_of!(FastKey, mac) == 4);
    assert!(offset_of!(FastKey, pad) == 10);
    assert!(size_of::<FastVal>() == 12);
    assert!(size_of::<FastIn>() == 24);
    assert!(offset_of!(FastIn, in_port) == 4);
    assert!(offset_of!(FastIn, src) == 6);
    assert!(offset_of!(FastIn, dflt) == 12);
    assert!(offset_of!(FastVal, port) == 4);
    assert!(offset_of!(FastVal, vlan) == 6);
    assert!(offset_of!(FastVal, mtu) == 8);
    assert!(offset_of!(FastVal, flags) == 10);
    assert!(size_of::<PortCnt>() == 40);
    assert!(offset_of!(DevVal, role) == 0);
    assert!(offset_of!(DevVal, xsk_base) == 4);
    assert!(offset_of!(DevVal, mirror_ifindex) == 8);
    assert!(offset_of!(DevVal, flags) == 12);
    assert!(offset_of!(DevVal, queues) == 16);
    assert!(offset_of!(DevVal, max_len) == 20);
};

impl FdbKey {
    /// The key for `mac` on VLAN `vlan` (`0` = untagged).
    pub const fn new(vlan: u16, mac: MacAddr) -> Self {
        FdbKey { vlan, mac: mac.0 }
    }

    /// The MAC address.
    pub const fn mac_addr(&self) -> MacAddr {
        MacAddr(self.mac)
    }

    /// The key's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..2].copy_from_slice(&self.vlan.to_ne_bytes());
        b[2..8].copy_from_slice(&self.mac);
        b
    }

    /// Parses a key read back from the map; `None` unless `b` is 8 bytes long.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 8] = b.try_into().ok()?;
        Some(FdbKey {
            vlan: u16::from_ne_bytes([b[0], b[1]]),
            mac: [b[2], b[3], b[4], b[5], b[6], b[7]],
        })
    }
}

impl FdbVal {
    /// The value for an endpoint on switch port `port`.
    pub fn new(port: PortId, flags: u32) -> Self {
        FdbVal {
            port: u32::from(port.0),
            flags,
        }
    }

    /// The value's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0..4].copy_from_slice(&self.port.to_ne_bytes());
        b[4..8].copy_from_slice(&self.flags.to_ne_bytes());
        b
    }

    /// Parses a value read back from the map; `None` unless `b` is 8 bytes long.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 8] = b.try_into().ok()?;
        Some(FdbVal {
            port: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            flags: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

impl DevVal {
    /// The parent NIC: its rx queues `0..queues` use slots `xsk_base..`, multicast is
    /// cloned to `mirror_ifindex` (`0` = none), and `passthru` sends every unicast to
    /// the switch.
    pub const fn parent(xsk_base: u32, queues: u32, mirror_ifindex: u32, passthru: bool) -> Self {
        DevVal {
            role: ROLE_PARENT,
            xsk_base,
            mirror_ifindex,
            flags: if passthru { DEV_F_PASSTHRU } else { 0 },
            queues,
            max_len: 0,
            port: 0,
            mac: [0; 6],
        }
    }

    /// This value with `flag` set (`on`) or cleared.
    const fn with_flag(self, flag: u32, on: bool) -> Self {
        let flags = if on {
            self.flags | flag
        } else {
            self.flags & !flag
        };
        DevVal { flags, ..self }
    }

    /// This value with [`DEV_F_SOURCES`] set (`on`) or cleared.
    pub const fn with_sources(self, on: bool) -> Self {
        self.with_flag(DEV_F_SOURCES, on)
    }

    /// This value with [`DEV_F_TC_STEER`] set (`on`) or cleared.
    pub const fn with_tc_steer(self, on: bool) -> Self {
        self.with_flag(DEV_F_TC_STEER, on)
    }

    /// This value with frames longer than `max_len` counted and dropped.
    pub const fn with_max_len(self, max_len: u32) -> Self {
        DevVal { max_len, ..self }
    }

    /// A port veth (an endpoint's host side, or the mirror veth's peer): every frame
    /// on rx queues `0..queues` goes to the socket in slot `xsk_base + rx queue`. On
    /// the mirror veth's peer, attach XDP in native mode (generic XDP skips redirected
    /// clones).
    pub const fn port(xsk_base: u32, queues: u32) -> Self {
        DevVal {
            role: ROLE_PORT,
            xsk_base,
            mirror_ifindex: 0,
            flags: 0,
            queues,
            max_len: 0,
            port: 0,
            mac: [0; 6],
        }
    }

    /// A fast port: endpoint `port` (MAC `mac`), whose veth runs the tc program
    /// `port_in`: frames with an entry in `fast` go straight to their egress, the
    /// rest to the switch through `collector`.
    pub const fn fast_port(port: PortId, mac: MacAddr, collector: u32) -> Self {
        DevVal {
            role: ROLE_FAST_PORT,
            xsk_base: 0,
            mirror_ifindex: collector,
            flags: 0,
            queues: 0,
            max_len: 0,
            port: port.0,
            mac: mac.0,
        }
    }

    /// The value's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in [
            self.role,
            self.xsk_base,
            self.mirror_ifindex,
            self.flags,
            self.queues,
            self.max_len,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b[24..26].copy_from_slice(&self.port.to_ne_bytes());
        b[26..32].copy_from_slice(&self.mac);
        b
    }

    /// Parses a value read back from the map; `None` unless `b` is 32 bytes long.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 32] = b.try_into().ok()?;
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(DevVal {
            role: w(0),
            xsk_base: w(4),
            mirror_ifindex: w(8),
            flags: w(12),
            queues: w(16),
            max_len: w(20),
            port: u16::from_ne_bytes([b[24], b[25]]),
            mac: [b[26], b[27], b[28], b[29], b[30], b[31]],
        })
    }
}

impl FastKey {
    /// The key's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.class.to_ne_bytes());
        b[4..10].copy_from_slice(&self.mac);
        b[10..12].copy_from_slice(&self.pad.to_ne_bytes());
        b
    }
}

impl FastVal {
    /// The value's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.ifindex.to_ne_bytes());
        for (i, v) in [self.port, self.vlan, self.mtu, self.flags]
            .into_iter()
            .enumerate()
        {
            b[4 + 2 * i..6 + 2 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

impl FastIn {
    /// The value's bytes as the kernel reads them.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.class.to_ne_bytes());
        b[4..6].copy_from_slice(&self.in_port.to_ne_bytes());
        b[6..12].copy_from_slice(&self.src);
        b[12..24].copy_from_slice(&self.dflt.to_bytes());
        b
    }
}

impl PortCnt {
    /// Parses one CPU's value; `None` unless `b` is 40 bytes long.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 40] = b.try_into().ok()?;
        let w = |i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(PortCnt {
            rx_packets: w(0),
            rx_bytes: w(1),
            tx_packets: w(2),
            tx_bytes: w(3),
            failed: w(4),
        })
    }

    /// Adds `o`'s counters (another CPU's) to these.
    pub fn add(&mut self, o: &PortCnt) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.failed += o.failed;
    }
}

/// Number of entries in the per-CPU `counters` array (`CNT_MAX`).
pub const COUNTERS: usize = 23;

/// Indices of the per-CPU `counters` array (`enum steer_counter`).
///
/// `XDP_*` counters come from the `steer` XDP program, `TC_*` ones from the `mirror`
/// tc program. Read them summed over CPUs with
/// [`Steering::counters`](super::Steering::counters) and index with
/// [`Counter::index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum Counter {
    /// Parent: passed to the host on purpose (multicast/broadcast, fdb miss).
    XdpPass = 0,
    /// Redirected into an AF_XDP socket (`bpf_redirect_map` said `XDP_REDIRECT`). The
    /// kernel can still drop it afterwards, e.g. if the socket is bound to another queue.
    XdpRedirect = 1,
    /// Meant for the switch, but the slot held no socket: fell back to `XDP_PASS`.
    XdpRedirectFail = 2,
    /// XDP ran on an ifindex missing from `devs` (or with an unknown role): `XDP_PASS`.
    XdpNotOurs = 3,
    /// tc, on a parent without XDP ([`DEV_F_TC_STEER`]): unicast for the switch, moved
    /// to the mirror veth (the `xdp_*` counters of the parent's unicast then count
    /// what the tc program decided).
    TcWireToSwitch = 4,
    /// Parent: shorter than its Ethernet (and VLAN) header: `XDP_PASS`.
    XdpMalformed = 5,
    /// tc: a multicast/broadcast clone went to the mirror veth.
    TcMirrored = 6,
    /// tc: `bpf_clone_redirect` to the mirror veth failed.
    TcMirrorFail = 7,
    /// tc: a multicast from a [`FDB_F_HOST_SUPPRESS`] source was dropped (spec W9).
    TcSuppressed = 8,
    /// tc: multicast on an ifindex missing from `devs`: passed untouched.
    TcNotOurs = 9,
    /// For the switch, but on a receive queue without a socket (beyond
    /// [`DevVal::queues`]): passed to the host instead. Non-zero means the parent
    /// has more queues than the switch serves.
    XdpUnboundQueue = 10,
    /// For the switch, but longer than its sockets' UMEM frames hold
    /// ([`DevVal::max_len`]): dropped (the kernel would drop it at the socket).
    XdpTooBig = 11,
    /// Parent: more than two VLAN tags, which the switch does not handle: passed to the
    /// host.
    XdpTagStack = 12,
    /// Parent: tagged unicast for a (VLAN, MAC) no endpoint has (an unknown VLAN,
    /// typically): passed to the host.
    XdpTaggedMiss = 13,
    /// tc: a frame from a source MAC a source-mode endpoint lists was cloned to the
    /// mirror for the switch's copies (spec §3.1).
    TcSourceCopied = 14,
    /// tc: ... and dropped for the host: a `nodst` endpoint lists it.
    TcSourceConsumed = 15,
    /// tc: a multicast no endpoint of its VLAN accepts was not cloned to the switch
    /// (the host has it; the switch would have dropped it).
    TcUnwanted = 16,
    /// tc: forwarded by the kernel fast path (from an endpoint or from the wire).
    TcFast = 17,
    /// tc: a fast-path redirect the helper refused: dropped.
    TcFastFail = 18,
    /// tc: from a fast port to the switch, through the collector veth.
    TcToSwitch = 19,
    /// tc: the collector shim could not be put in front of a frame: dropped.
    TcShimFail = 20,
    /// Parent: passed by XDP for the tc fast path into an endpoint.
    XdpFastPass = 21,
    /// tc: a fast-path frame of a captured port found the capture ring full: the
    /// capture lost it (the frame itself was forwarded).
    CaptureLost = 22,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTERS] = [
        Counter::XdpPass,
        Counter::XdpRedirect,
        Counter::XdpRedirectFail,
        Counter::XdpNotOurs,
        Counter::TcWireToSwitch,
        Counter::XdpMalformed,
        Counter::TcMirrored,
        Counter::TcMirrorFail,
        Counter::TcSuppressed,
        Counter::TcNotOurs,
        Counter::XdpUnboundQueue,
        Counter::XdpTooBig,
        Counter::XdpTagStack,
        Counter::XdpTaggedMiss,
        Counter::TcSourceCopied,
        Counter::TcSourceConsumed,
        Counter::TcUnwanted,
        Counter::TcFast,
        Counter::TcFastFail,
        Counter::TcToSwitch,
        Counter::TcShimFail,
        Counter::XdpFastPass,
        Counter::CaptureLost,
    ];

    /// Index into the array [`Steering::counters`](super::Steering::counters) returns.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short stable name for logs and metrics (`xdp_pass`, `tc_mirrored`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::XdpPass => "xdp_pass",
            Counter::XdpRedirect => "xdp_redirect",
            Counter::XdpRedirectFail => "xdp_redirect_fail",
            Counter::XdpNotOurs => "xdp_not_ours",
            Counter::XdpMalformed => "xdp_malformed",
            Counter::TcMirrored => "tc_mirrored",
            Counter::TcMirrorFail => "tc_mirror_fail",
            Counter::TcSuppressed => "tc_suppressed",
            Counter::TcNotOurs => "tc_not_ours",
            Counter::XdpUnboundQueue => "xdp_unbound_queue",
            Counter::XdpTooBig => "xdp_too_big",
            Counter::XdpTagStack => "xdp_tag_stack",
            Counter::XdpTaggedMiss => "xdp_tagged_miss",
            Counter::TcSourceCopied => "tc_source_copied",
            Counter::TcSourceConsumed => "tc_source_consumed",
            Counter::TcUnwanted => "tc_unwanted",
            Counter::TcFast => "tc_fast",
            Counter::TcFastFail => "tc_fast_fail",
            Counter::TcToSwitch => "tc_to_switch",
            Counter::TcShimFail => "tc_shim_fail",
            Counter::XdpFastPass => "xdp_fast_pass",
            Counter::CaptureLost => "capture_lost",
            Counter::TcWireToSwitch => "tc_wire_to_switch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdb_key_bytes_round_trip() {
        let k = FdbKey::new(100, MacAddr([2, 0, 0, 0, 0, 9]));
        let b = k.to_bytes();
        assert_eq!(&b[..2], &100u16.to_ne_bytes());
        assert_eq!(&b[2..], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(FdbKey::from_bytes(&b), Some(k));
        assert_eq!(FdbKey::from_bytes(&b[..7]), None);
    }

    #[test]
    fn values_round_trip() {
        let v = FdbVal::new(PortId(7), FDB_F_HOST_SUPPRESS);
        assert_eq!(v.port, 7);
        assert_eq!(FdbVal::from_bytes(&v.to_bytes()), Some(v));
        let d = DevVal::parent(4, 2, 12, true);
        assert_eq!(d.flags, DEV_F_PASSTHRU);
        assert_eq!(DevVal::from_bytes(&d.to_bytes()), Some(d));
        assert_eq!(DevVal::port(9, 1).role, ROLE_PORT);
    }

    #[test]
    fn counter_indices_are_dense() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{}", c.name());
        }
    }
}

/// Bytes of a frame a fast-path capture record holds at most (`CAPTURE_MAX`).
pub const CAPTURE_MAX: u32 = 2048;
/// Capture what a port sent (the switch received) (`CAPTURE_IN`).
pub const CAPTURE_IN: u32 = 1;
/// Capture what was delivered to a port (`CAPTURE_OUT`).
pub const CAPTURE_OUT: u32 = 2;

/// One record of the `capture_rb` ring buffer (`struct capture_rec`): a frame the
/// fast path forwarded for a captured port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureRec<'a> {
    /// When, in `CLOCK_MONOTONIC` nanoseconds.
    pub ts: u64,
    /// The port.
    pub port: u16,
    /// [`CAPTURE_IN`] or [`CAPTURE_OUT`].
    pub dir: u32,
    /// The frame's length.
    pub len: u32,
    /// Its first bytes (the snap length).
    pub data: &'a [u8],
}

impl<'a> CaptureRec<'a> {
    /// Parses a record as the ring buffer hands it over; `None` if it is malformed.
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let u32_at = |at: usize| Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?));
        let ts = u64::from_ne_bytes(b.get(0..8)?.try_into().ok()?);
        let (port, dir, len, caplen) = (u32_at(8)?, u32_at(12)?, u32_at(16)?, u32_at(20)?);
        if caplen > CAPTURE_MAX {
            return None;
        }
        Some(CaptureRec {
            ts,
            port: u16::try_from(port).ok()?,
            dir,
            len,
            data: b.get(24..24 + caplen as usize)?,
        })
    }
}
