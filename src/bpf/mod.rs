//! The eBPF steering program (`bpf/steer.bpf.c`): loading, attaching, and its maps.
//!
//! The switch does not take whole NICs. An XDP program, `steer`, sits on the parent
//! NIC and on every port veth and decides per frame whether the switch's AF_XDP socket
//! or the host stack gets it; a tc program, `mirror`, on the parent's clsact ingress
//! gives the switch a copy of each multicast frame through a "mirror" veth:
//!
//! ```text
//!  parent NIC ──XDP steer──┬─ unicast, fdb{vid,dst} hit ──▶ xsks[base+q] (+4 B metadata: port)
//!                          ├─ passthru: any unicast ───────▶ xsks[base+q] (metadata 0xffffffff)
//!                          └─ miss / multicast ─▶ XDP_PASS ─▶ tc mirror ─┬─ clone ─▶ mirror veth
//!                                                                        └─ W9 source? drop : host
//!  port veth (ROLE_PORT) ──XDP steer──▶ xsks[base+q]  (the mirror veth's peer is one too)
//! ```
//! A redirect to a slot without a socket falls back to `XDP_PASS`, so the host keeps
//! working while the switch starts or restarts.
//!
//! # Maps
//! * `xsks` (XSKMAP, [`MAX_XSKS`] slots): [`Steering::set_xsk`]. The slot is
//!   `xsk_base + rx queue`: AF_XDP only delivers to a socket bound to the arrival queue.
//! * `devs` (hash, ifindex → [`DevVal`]): [`Steering::set_device`].
//! * `fdb` (hash, [`FdbKey`] → [`FdbVal`], [`MAX_FDB`]): [`Steering::fdb_insert`].
//! * `counters` (per-CPU array, [`Counter`]): [`Steering::counters`].
//!
//! # Metadata
//! None: the switch decides again from the frame itself (it must see source entries,
//! strict private and the rest, which the fdb hit does not tell), and some kernels
//! refuse `bpf_xdp_adjust_meta` to XDP programs (6.18 here, "program of this type
//! cannot use helper"), so `steer` does not call it.
//!
//! # VLAN tags
//! The fdb key uses the outermost tag's VLAN id (`0` = untagged). XDP only sees tags
//! that are inside the frame: a NIC with receive VLAN offload (`rxvlan`) strips them
//! to the descriptor, and a veth keeps a tag sent by a VLAN device on its peer out of
//! band, so such frames look untagged (turn `rxvlan`/`txvlan` off where tagged
//! traffic must be steered). At tc ingress the stack has already taken the tag out
//! of the frame; `mirror` matches on it there and puts it back inline for the clone
//! only, so the switch receives mirrored frames with their tag.
//!
//! # XDP modes
//! [`XdpMode::Native`] and [`XdpMode::Generic`] both carry the metadata into a
//! copy-mode AF_XDP socket (tested on veth). The mirror veth's peer must run
//! **native** XDP: generic XDP skips frames a BPF redirect injected
//! (`skb_is_redirected`), and every mirrored clone is one, so it would reach the
//! peer's stack instead of the switch.
//!
//! # Ownership and safety
//! A [`Steering`] owns the loaded object and remembers what it attached. It never
//! replaces an XDP program it did not attach ([`Error::ForeignXdp`]), detaches only
//! programs whose kernel id is its own, and destroys a clsact qdisc only if it created
//! it and no filter is left on it. Dropping it detaches everything, best effort, in the
//! network namespace each attachment was made in.
//!
//! The one exception is explicit: after `kill -9` a switch's programs stay attached,
//! held open by no process, and [`Steering::remove_leftovers`] removes such programs
//! when they carry our programs' names (and the clsact qdisc they leave empty). A
//! program some process holds open, e.g. a running switch's, is never removed.
//!
//! Interface indices are those of the calling thread's network namespace, as for
//! libbpf. Requires Linux 5.9 or later (the fallback action in the flags of
//! `bpf_redirect_map`); developed on 6.18. Root, or `CAP_BPF` + `CAP_NET_ADMIN` +
//! `CAP_PERFMON`. See the kernel's
//! [AF_XDP](https://docs.kernel.org/networking/af_xdp.html) documentation.

mod error;
mod leftover;
mod nl;
#[cfg(feature = "cli")]
mod sink;
#[allow(unsafe_code)]
mod skel;
mod types;

pub use error::Error;
#[cfg(feature = "cli")]
pub use sink::{Sink, SinkCount, SinkHook};
pub use types::{
    CaptureRec, Counter, DevVal, FastIn, FastKey, FastVal, FdbKey, FdbVal, PortCnt, CAPTURE_IN,
    CAPTURE_MAX, CAPTURE_OUT, COUNTERS, DEV_F_PASSTHRU, DEV_F_SOURCES, DEV_F_TC_STEER, FAST_F_PEER,
    FAST_F_SLOW, FAST_F_WIRE, FDB_F_HOST_SUPPRESS, FDB_F_NOT_DST, MAX_DEVS, MAX_FAST, MAX_FDB,
    MAX_GROUPS, MAX_PORT_STATS, MAX_SRCS, MAX_XSKS, ROLE_FAST_PORT, ROLE_PARENT, ROLE_PORT,
    SRC_F_NODST, VLAN_MAX,
};

use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, TcHook, Xdp, XdpFlags, TC_EGRESS, TC_INGRESS};

use crate::port::PortId;
use crate::wire::MacAddr;
use skel::{SteerSkel, SteerSkelBuilder};

/// The compiled BPF object (`steer.bpf.o`, an ELF file), as embedded in the binary.
///
/// Useful to inspect it (`tests/bpf_object.rs`) or to load it with other tools.
pub const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));

/// Name of the XDP program in [`OBJECT`].
pub const XDP_PROG: &str = "steer";
/// Name of its twin, the same program under a second id ([`Steering::refresh_xdp`]).
pub const XDP_TWIN_PROG: &str = "steer_twin";
/// Name of the tc program in [`OBJECT`].
pub const TC_PROG: &str = "mirror";
/// Name of the tc program on fast ports (endpoint veths without XDP).
pub const TC_PORT_PROG: &str = "port_in";

/// What one run of `steer` did ([`Steering::test_xdp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct XdpTestRun {
    /// The XDP action: `XDP_PASS` (2), `XDP_REDIRECT` (4), ...
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

/// Whether some process (this one included) holds BPF program `prog_id` open,
/// directly or through a BPF link: a switch that runs holds its programs, a killed one
/// does not (see [`Steering::remove_leftovers`]). If `/proc` cannot be read, assume
/// it does.
pub fn is_held_open(prog_id: u32) -> bool {
    leftover::held_open(prog_id)
}

/// How the XDP program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum XdpMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`): fast, needs driver support (veth has it).
    Native,
    /// On the skb after allocation (`XDP_FLAGS_SKB_MODE`): works everywhere, slow, and
    /// AF_XDP sockets then run in copy mode.
    Generic,
}

impl XdpMode {
    fn flags(self) -> XdpFlags {
        match self {
            XdpMode::Native => XdpFlags::DRV_MODE,
            XdpMode::Generic => XdpFlags::SKB_MODE,
        }
    }

    /// `native` or `generic`.
    pub const fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The network namespace an attachment was made in, kept open so that cleanup can
/// go back to it from any thread; `None` if `/proc` could not tell (then: here).
struct NetnsRef(Option<crate::link::Netns>);

impl NetnsRef {
    fn current() -> NetnsRef {
        NetnsRef(crate::link::Netns::current().ok())
    }

    fn same(&self, other: &NetnsRef) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => a.same(b),
            _ => true,
        }
    }

    /// Runs `f` in this namespace ([`crate::link::Netns::run`]); `None` if the
    /// namespace cannot be entered.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Option<R> {
        match &self.0 {
            None => Some(f()),
            Some(ns) => ns.run(f).ok(),
        }
    }
}

/// An XDP attachment this [`Steering`] made.
struct XdpLink {
    ifindex: u32,
    mode: XdpMode,
    netns: NetnsRef,
}

/// A tc attachment this [`Steering`] made.
struct TcLink {
    ifindex: u32,
    /// `port_in` rather than `mirror`.
    port_in: bool,
    /// Filter handle and priority the kernel chose.
    handle: u32,
    priority: u32,
    created_qdisc: bool,
    netns: NetnsRef,
}

/// XDP programs on an interface, per mode (0 = none).
#[derive(Clone, Copy, Debug, Default)]
struct XdpState {
    drv: u32,
    skb: u32,
    hw: u32,
}

impl XdpState {
    fn modes(self) -> [(u32, &'static str); 3] {
        [
            (self.drv, "native"),
            (self.skb, "generic"),
            (self.hw, "offload"),
        ]
    }
}

/// The loaded steering object: both programs, their maps, and what was attached.
///
/// # Examples
/// ```no_run
/// use umacvlan::bpf::{DevVal, Steering, XdpMode, FDB_F_HOST_SUPPRESS};
/// use umacvlan::port::PortId;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Root. The parent `eth1` is ifindex 3; the mirror veth pair is 8 <-> 9.
/// let mut st = Steering::load()?;
/// st.set_device(3, DevVal::parent(0, 1, 8, false))?; // queues 0.. use slots 0..
/// st.set_device(9, DevVal::port(64, 1))?; // the mirror peer's queue 0 is slot 64
/// st.fdb_insert(0, "02:00:00:00:00:01".parse()?, PortId(2), 0)?; // a bridge endpoint
/// st.fdb_insert(0, "02:00:00:00:00:02".parse()?, PortId(3), FDB_F_HOST_SUPPRESS)?; // private
/// st.attach_xdp(3, XdpMode::Native)?;
/// st.attach_xdp(9, XdpMode::Native)?; // the mirror peer: always native
/// st.attach_tc_ingress(3)?;
/// // ... bind AF_XDP sockets, then st.set_xsk(0 + queue, sock.as_fd()) ...
/// # Ok(()) }
/// ```
pub struct Steering {
    skel: SteerSkel<'static>,
    steer_id: u32,
    twin_id: u32,
    mirror_id: u32,
    port_in_id: u32,
    xdp: Vec<XdpLink>,
    tc: Vec<TcLink>,
    /// Ports with a fast-path capture.
    captured: std::collections::BTreeSet<u16>,
}

impl fmt::Debug for Steering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steering")
            .field("steer_id", &self.steer_id)
            .field("mirror_id", &self.mirror_id)
            .field(
                "xdp",
                &self
                    .xdp
                    .iter()
                    .map(|l| (l.ifindex, l.mode))
                    .collect::<Vec<_>>(),
            )
            .field("tc", &self.tc.iter().map(|l| l.ifindex).collect::<Vec<_>>())
            .finish()
    }
}

fn check_ifindex(ifindex: u32) -> Result<i32, Error> {
    match i32::try_from(ifindex) {
        Ok(i) if i > 0 => Ok(i),
        _ => Err(Error::OutOfRange {
            what: "ifindex",
            value: ifindex.into(),
            max: i32::MAX as u64,
        }),
    }
}

fn check_vlan(vlan: u16) -> Result<(), Error> {
    if vlan > VLAN_MAX {
        return Err(Error::OutOfRange {
            what: "vlan",
            value: vlan.into(),
            max: VLAN_MAX.into(),
        });
    }
    Ok(())
}

fn check_port(port: PortId) -> Result<[u8; 4], Error> {
    if u32::from(port.0) >= MAX_PORT_STATS {
        return Err(Error::OutOfRange {
            what: "port id",
            value: port.0.into(),
            max: (MAX_PORT_STATS - 1).into(),
        });
    }
    Ok(u32::from(port.0).to_ne_bytes())
}

fn check_slot(slot: u32) -> Result<(), Error> {
    if slot >= MAX_XSKS {
        return Err(Error::OutOfRange {
            what: "xsk slot",
            value: slot.into(),
            max: (MAX_XSKS - 1).into(),
        });
    }
    Ok(())
}

fn map_err(op: &'static str, map: &'static str) -> impl FnOnce(libbpf_rs::Error) -> Error {
    move |source| Error::Map { op, map, source }
}

/// A delete that treats "not there" as done.
fn delete_idempotent(
    map: &impl MapCore,
    key: &[u8],
    op: &'static str,
    name: &'static str,
) -> Result<(), Error> {
    match map.delete(key) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(map_err(op, name)(e)),
    }
}

impl Steering {
    /// Opens and loads the steering object into the kernel. Nothing is attached yet
    /// and every map is empty.
    ///
    /// Each load keeps one pointer-sized allocation for the life of the process (the
    /// skeleton's object slot, which must outlive it); load once per daemon.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] without the privileges; [`Error::Load`] if the
    /// kernel rejects the object (the verifier log goes to stderr).
    pub fn load() -> Result<Steering, Error> {
        let slot: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = SteerSkelBuilder::default()
            .open(slot)
            .map_err(|e| Error::load("open BPF object steer", e))?;
        let skel = open
            .load()
            .map_err(|e| Error::load("load BPF object steer", e))?;
        let steer_id = libbpf_rs::Program::id_from_fd(skel.progs.steer.as_fd())
            .map_err(|e| Error::load("query id of program steer", e))?;
        let twin_id = libbpf_rs::Program::id_from_fd(skel.progs.steer_twin.as_fd())
            .map_err(|e| Error::load("query id of program steer_twin", e))?;
        let mirror_id = libbpf_rs::Program::id_from_fd(skel.progs.mirror.as_fd())
            .map_err(|e| Error::load("query id of program mirror", e))?;
        let port_in_id = libbpf_rs::Program::id_from_fd(skel.progs.port_in.as_fd())
            .map_err(|e| Error::load("query id of program port_in", e))?;
        Ok(Steering {
            skel,
            steer_id,
            twin_id,
            mirror_id,
            port_in_id,
            xdp: Vec::new(),
            tc: Vec::new(),
            captured: Default::default(),
        })
    }

    /// Kernel id of the loaded XDP program `steer` (what `ip link` and `bpftool`
    /// show on an interface it is attached to; after [`Steering::refresh_xdp`] an
    /// interface may carry its twin instead, [`Steering::xdp_twin_id`]).
    pub fn xdp_prog_id(&self) -> u32 {
        self.steer_id
    }

    /// Kernel id of the loaded twin of `steer`, `steer_twin`.
    pub fn xdp_twin_id(&self) -> u32 {
        self.twin_id
    }

    /// Whether `id` is one of this instance's XDP programs.
    fn own_xdp(&self, id: u32) -> bool {
        id != 0 && (id == self.steer_id || id == self.twin_id)
    }

    /// Kernel id of the loaded tc program `mirror`.
    pub fn tc_prog_id(&self) -> u32 {
        self.mirror_id
    }

    /// Kernel id of the loaded tc program `port_in` (fast ports).
    pub fn tc_port_prog_id(&self) -> u32 {
        self.port_in_id
    }

    /// Interfaces (ifindex, mode) this instance attached the XDP program to.
    pub fn xdp_attached(&self) -> Vec<(u32, XdpMode)> {
        self.xdp.iter().map(|l| (l.ifindex, l.mode)).collect()
    }

    /// Interfaces this instance attached the tc program to.
    pub fn tc_attached(&self) -> Vec<u32> {
        self.tc.iter().map(|l| l.ifindex).collect()
    }

    fn xdp_query(&self, ifindex: u32, idx: i32) -> Result<XdpState, Error> {
        let q = Xdp::new(self.skel.progs.steer.as_fd())
            .query(idx, XdpFlags::NONE)
            .map_err(Self::interface_err("query XDP", ifindex))?;
        Ok(XdpState {
            drv: q.drv_prog_id,
            skb: q.skb_prog_id,
            hw: q.hw_prog_id,
        })
    }

    fn foreign(&self, ifindex: u32, st: XdpState) -> Option<Error> {
        st.modes()
            .into_iter()
            .find(|&(id, _)| id != 0 && !self.own_xdp(id))
            .map(|(prog_id, mode)| {
                if leftover::is_steering_program(prog_id) {
                    // Named and typed like ours, not ours: another switch's (a dead
                    // one's is removed before this is asked).
                    Error::OtherSwitch {
                        ifname: nl::ifname(ifindex),
                        ifindex,
                        prog_id,
                    }
                } else {
                    Error::ForeignXdp {
                        ifname: nl::ifname(ifindex),
                        ifindex,
                        prog_id,
                        mode,
                    }
                }
            })
    }

    fn ours(&self, st: XdpState) -> Option<XdpMode> {
        if self.own_xdp(st.drv) {
            Some(XdpMode::Native)
        } else if self.own_xdp(st.skb) {
            Some(XdpMode::Generic)
        } else {
            None
        }
    }

    /// Attaches the XDP program to `ifindex` in `mode`. Attaching again where it is
    /// already attached in the same mode does nothing.
    ///
    /// # Errors
    /// * [`Error::ForeignXdp`] if the interface already carries an XDP program that
    ///   this instance did not attach (any mode); it is left in place.
    /// * [`Error::ModeConflict`] if ours is attached in the other mode.
    /// * [`Error::Interface`] if the kernel refuses, e.g. `EOPNOTSUPP` for native mode
    ///   on a driver without XDP, or `ENODEV`.
    /// * [`Error::OutOfRange`] for ifindex 0 or above `i32::MAX`.
    pub fn attach_xdp(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), Error> {
        let idx = check_ifindex(ifindex)?;
        let st = self.xdp_query(ifindex, idx)?;
        if let Some(e) = self.foreign(ifindex, st) {
            return Err(e);
        }
        match self.ours(st) {
            Some(m) if m == mode => {
                self.remember_xdp(ifindex, mode);
                return Ok(());
            }
            Some(m) => {
                return Err(Error::ModeConflict {
                    ifname: nl::ifname(ifindex),
                    ifindex,
                    attached: m.name(),
                    requested: mode.name(),
                })
            }
            None => {}
        }
        let attached = Xdp::new(self.skel.progs.steer.as_fd())
            .attach(idx, mode.flags() | XdpFlags::UPDATE_IF_NOEXIST);
        if let Err(source) = attached {
            // Lost a race against another agent: report what is there now.
            if let Some(e) = self
                .xdp_query(ifindex, idx)
                .ok()
                .and_then(|st| self.foreign(ifindex, st))
            {
                return Err(e);
            }
            return Err(Error::Interface {
                op: match mode {
                    XdpMode::Native => "attach XDP (native)",
                    XdpMode::Generic => "attach XDP (generic)",
                },
                ifname: nl::ifname(ifindex),
                ifindex,
                source,
            });
        }
        self.remember_xdp(ifindex, mode);
        Ok(())
    }

    /// Installs the XDP program on `ifindex` anew, so that its driver runs it on
    /// every receive queue the device has now: swaps `steer` and its twin
    /// `steer_twin` in one atomic replace (no frame misses the program). veth needs
    /// it after `ethtool -L` added queues; other drivers take it as a program swap.
    /// Generic mode runs on every queue anyway: nothing to do. Returns whether it
    /// swapped.
    ///
    /// # Errors
    /// [`Error::Interface`] if the query or the replace fails; `Ok(false)` if ours is
    /// not attached there.
    pub fn refresh_xdp(&mut self, ifindex: u32) -> Result<bool, Error> {
        let idx = check_ifindex(ifindex)?;
        let st = self.xdp_query(ifindex, idx)?;
        if !self.own_xdp(st.drv) {
            return Ok(false);
        }
        let (old, new) = if st.drv == self.steer_id {
            (&self.skel.progs.steer, &self.skel.progs.steer_twin)
        } else {
            (&self.skel.progs.steer_twin, &self.skel.progs.steer)
        };
        Xdp::new(new.as_fd())
            .replace(idx, old.as_fd())
            .map_err(Self::interface_err("replace XDP", ifindex))?;
        Ok(true)
    }

    fn remember_xdp(&mut self, ifindex: u32, mode: XdpMode) {
        let here = NetnsRef::current();
        if !self
            .xdp
            .iter()
            .any(|l| l.ifindex == ifindex && l.netns.same(&here))
        {
            self.xdp.push(XdpLink {
                ifindex,
                mode,
                netns: here,
            });
        }
    }

    /// Detaches the XDP program from `ifindex` if, and only if, the program there is
    /// this instance's. Returns whether something was detached.
    ///
    /// The check and the detach are two calls: an agent replacing our program in
    /// between would lose its program. libbpf-rs exposes no compare-and-detach.
    ///
    /// # Errors
    /// [`Error::Interface`] if the query or the detach fails.
    pub fn detach_xdp(&mut self, ifindex: u32) -> Result<bool, Error> {
        let idx = check_ifindex(ifindex)?;
        let here = NetnsRef::current();
        self.xdp
            .retain(|l| !(l.ifindex == ifindex && l.netns.same(&here)));
        let st = self.xdp_query(ifindex, idx)?;
        let Some(mode) = self.ours(st) else {
            return Ok(false);
        };
        Xdp::new(self.skel.progs.steer.as_fd())
            .detach(idx, mode.flags())
            .map_err(Self::interface_err("detach XDP", ifindex))?;
        Ok(true)
    }

    fn interface_err(op: &'static str, ifindex: u32) -> impl FnOnce(libbpf_rs::Error) -> Error {
        move |source| Error::Interface {
            op,
            ifname: nl::ifname(ifindex),
            ifindex,
            source,
        }
    }

    fn netlink_err(op: &'static str, ifindex: u32) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Netlink {
            op,
            ifname: nl::ifname(ifindex),
            ifindex,
            source,
        }
    }

    /// Attaches the tc program to the clsact ingress hook of `ifindex`, creating the
    /// clsact qdisc if there is none. Filters already there stay. The kernel picks
    /// our priority, ahead of the existing filters; `mirror` hands every frame it
    /// does not drop on to them (`TC_ACT_UNSPEC`). Attaching twice does nothing.
    ///
    /// # Errors
    /// [`Error::Netlink`] if the qdisc query fails, [`Error::Interface`] if creating
    /// the qdisc or attaching fails (a qdisc created here is removed again).
    pub fn attach_tc_ingress(&mut self, ifindex: u32) -> Result<(), Error> {
        self.attach_tc(ifindex, false)
    }

    /// Attaches the tc program `port_in` to the clsact ingress hook of `ifindex`, an
    /// endpoint's switch-side veth that carries no XDP program (a fast port,
    /// [`DevVal::fast_port`]), as [`Steering::attach_tc_ingress`] does `mirror`.
    ///
    /// # Errors
    /// As [`Steering::attach_tc_ingress`].
    pub fn attach_tc_port(&mut self, ifindex: u32) -> Result<(), Error> {
        self.attach_tc(ifindex, true)
    }

    fn attach_tc(&mut self, ifindex: u32, port_in: bool) -> Result<(), Error> {
        check_ifindex(ifindex)?;
        let here = NetnsRef::current();
        if self
            .tc
            .iter()
            .any(|l| l.ifindex == ifindex && l.netns.same(&here))
        {
            return Ok(());
        }
        let prog = if port_in {
            &self.skel.progs.port_in
        } else {
            &self.skel.progs.mirror
        };
        let link = attach_tc_ingress(prog.as_fd(), ifindex, port_in)?;
        self.tc.push(link);
        Ok(())
    }

    /// Detaches the tc program from `ifindex` (only a filter that runs our program),
    /// and removes the clsact qdisc if this instance created it and no other filter
    /// uses it. Returns whether a filter was removed.
    ///
    /// # Errors
    /// [`Error::Interface`] if the detach fails, [`Error::Netlink`] if the filter
    /// listing fails.
    pub fn detach_tc(&mut self, ifindex: u32) -> Result<bool, Error> {
        check_ifindex(ifindex)?;
        let here = NetnsRef::current();
        let Some(pos) = self
            .tc
            .iter()
            .position(|l| l.ifindex == ifindex && l.netns.same(&here))
        else {
            return Ok(false);
        };
        let link = self.tc.swap_remove(pos);
        let (fd, id) = self.tc_prog(link.port_in);
        detach_tc_link(fd, &link, id).map_err(|(op, e)| match e {
            TcDetachError::Bpf(source) => Error::Interface {
                op,
                ifname: nl::ifname(ifindex),
                ifindex,
                source,
            },
            TcDetachError::Netlink(source) => Error::Netlink {
                op,
                ifname: nl::ifname(ifindex),
                ifindex,
                source,
            },
        })
    }

    /// The fd and id of the tc program a link runs.
    fn tc_prog(&self, port_in: bool) -> (BorrowedFd<'_>, u32) {
        if port_in {
            (self.skel.progs.port_in.as_fd(), self.port_in_id)
        } else {
            (self.skel.progs.mirror.as_fd(), self.mirror_id)
        }
    }

    /// Sets what the fast path does with frames arriving on fast port `ifindex`:
    /// its class, port, MAC and default.
    ///
    /// # Errors
    /// [`Error::Map`] (`E2BIG` when [`MAX_PORT_STATS`] fast ports exist).
    pub fn fast_in_insert(&self, ifindex: u32, val: FastIn) -> Result<(), Error> {
        self.skel
            .maps
            .fast_in
            .update(&ifindex.to_ne_bytes(), &val.to_bytes(), MapFlags::ANY)
            .map_err(map_err("update", "fast_in"))
    }

    /// Removes fast port `ifindex`'s entry (absent: done): its frames all go to the
    /// switch.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn fast_in_remove(&self, ifindex: u32) -> Result<(), Error> {
        delete_idempotent(
            &self.skel.maps.fast_in,
            &ifindex.to_ne_bytes(),
            "delete",
            "fast_in",
        )
    }

    /// Sets the fast-path entry of class `class` for destination `mac`.
    ///
    /// # Errors
    /// [`Error::Map`] (`E2BIG` when [`MAX_FAST`] entries exist).
    pub fn fast_insert(&self, class: u32, mac: MacAddr, val: FastVal) -> Result<(), Error> {
        let k = FastKey {
            class,
            mac: mac.0,
            pad: 0,
        };
        self.skel
            .maps
            .fast
            .update(&k.to_bytes(), &val.to_bytes(), MapFlags::ANY)
            .map_err(map_err("update", "fast"))
    }

    /// Removes a fast-path entry (absent: done).
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn fast_remove(&self, class: u32, mac: MacAddr) -> Result<(), Error> {
        let k = FastKey {
            class,
            mac: mac.0,
            pad: 0,
        };
        delete_idempotent(&self.skel.maps.fast, &k.to_bytes(), "delete", "fast")
    }

    /// Sets the fast-path entry of unicast from the wire to `(vlan, mac)`.
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::OutOfRange`] for a VLAN id above 4095.
    pub fn fast_wire_insert(&self, vlan: u16, mac: MacAddr, val: FastVal) -> Result<(), Error> {
        check_vlan(vlan)?;
        self.skel
            .maps
            .fast_wire
            .update(
                &FdbKey::new(vlan, mac).to_bytes(),
                &val.to_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_err("update", "fast_wire"))
    }

    /// Removes a fast-path entry from the wire (absent: done).
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn fast_wire_remove(&self, vlan: u16, mac: MacAddr) -> Result<(), Error> {
        let k = FdbKey::new(vlan, mac).to_bytes();
        delete_idempotent(&self.skel.maps.fast_wire, &k, "delete", "fast_wire")
    }

    /// Port `port`'s fast-path counters, summed over CPUs.
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::OutOfRange`] beyond [`MAX_PORT_STATS`].
    pub fn port_stats(&self, port: PortId) -> Result<PortCnt, Error> {
        let k = check_port(port)?;
        let per_cpu = self
            .skel
            .maps
            .port_stats
            .lookup_percpu(&k, MapFlags::ANY)
            .map_err(map_err("lookup", "port_stats"))?
            .unwrap_or_default();
        let mut sum = PortCnt::default();
        for v in per_cpu.iter().filter_map(|b| PortCnt::from_bytes(b)) {
            sum.add(&v);
        }
        Ok(sum)
    }

    /// Zeroes port `port`'s fast-path counters (a new port on a reused id).
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::OutOfRange`].
    pub fn reset_port_stats(&self, port: PortId) -> Result<(), Error> {
        let k = check_port(port)?;
        let cpus = libbpf_rs::num_possible_cpus().map_err(map_err("count CPUs", "port_stats"))?;
        let zero = vec![vec![0u8; size_of::<PortCnt>()]; cpus];
        self.skel
            .maps
            .port_stats
            .update_percpu(&k, &zero, MapFlags::ANY)
            .map_err(map_err("update", "port_stats"))
    }

    /// Sets what `ifindex` is to the programs ([`DevVal::parent`], [`DevVal::port`]).
    ///
    /// # Errors
    /// [`Error::Map`] (e.g. `devs` full), [`Error::OutOfRange`].
    pub fn set_device(&self, ifindex: u32, dev: DevVal) -> Result<(), Error> {
        check_ifindex(ifindex)?;
        self.skel
            .maps
            .devs
            .update(&ifindex.to_ne_bytes(), &dev.to_bytes(), MapFlags::ANY)
            .map_err(map_err("update", "devs"))
    }

    /// What `ifindex` is to the programs, if set.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn device(&self, ifindex: u32) -> Result<Option<DevVal>, Error> {
        let v = self
            .skel
            .maps
            .devs
            .lookup(&ifindex.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("lookup", "devs"))?;
        Ok(v.as_deref().and_then(DevVal::from_bytes))
    }

    /// Forgets `ifindex`; its frames then pass to the host. Absent is fine.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn remove_device(&self, ifindex: u32) -> Result<(), Error> {
        delete_idempotent(
            &self.skel.maps.devs,
            &ifindex.to_ne_bytes(),
            "delete",
            "devs",
        )
    }

    /// Puts the AF_XDP socket `fd` into `xsks[slot]`. The kernel only delivers to it
    /// frames arriving on the queue the socket is bound to, so use
    /// `slot = xsk_base + queue` of that device.
    ///
    /// # Errors
    /// [`Error::Map`] (`EOPNOTSUPP`/`EINVAL` if `fd` is not a bound AF_XDP socket),
    /// [`Error::OutOfRange`] if `slot >= MAX_XSKS`.
    pub fn set_xsk(&self, slot: u32, fd: BorrowedFd<'_>) -> Result<(), Error> {
        check_slot(slot)?;
        // A BorrowedFd is never negative; the map stores it as a u32.
        let raw = fd.as_raw_fd() as u32;
        self.skel
            .maps
            .xsks
            .update(&slot.to_ne_bytes(), &raw.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("update", "xsks"))
    }

    /// Empties `xsks[slot]`; frames for it then fall back to the host. Empty is fine.
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::OutOfRange`].
    pub fn clear_xsk(&self, slot: u32) -> Result<(), Error> {
        check_slot(slot)?;
        delete_idempotent(&self.skel.maps.xsks, &slot.to_ne_bytes(), "delete", "xsks")
    }

    /// Maps `(vlan, mac)` to switch port `port`; `flags` is `0` or
    /// [`FDB_F_HOST_SUPPRESS`]. Replaces an existing entry.
    ///
    /// # Errors
    /// [`Error::Map`] (`E2BIG` when [`MAX_FDB`] entries exist), [`Error::OutOfRange`]
    /// for a VLAN id above 4095.
    pub fn fdb_insert(
        &self,
        vlan: u16,
        mac: MacAddr,
        port: PortId,
        flags: u32,
    ) -> Result<(), Error> {
        check_vlan(vlan)?;
        self.skel
            .maps
            .fdb
            .update(
                &FdbKey::new(vlan, mac).to_bytes(),
                &FdbVal::new(port, flags).to_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_err("update", "fdb"))
    }

    /// Lists source MAC `mac` on VLAN `vlan` for source-mode copies (spec §3.1);
    /// `flags` is `0` or [`SRC_F_NODST`]. Replaces an existing entry.
    ///
    /// # Errors
    /// [`Error::Map`] (`E2BIG` when [`MAX_SRCS`] entries exist), [`Error::OutOfRange`].
    pub fn source_insert(&self, vlan: u16, mac: MacAddr, flags: u32) -> Result<(), Error> {
        check_vlan(vlan)?;
        self.skel
            .maps
            .srcs
            .update(
                &FdbKey::new(vlan, mac).to_bytes(),
                &flags.to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_err("update", "srcs"))
    }

    /// Unlists source MAC `mac` on VLAN `vlan`; absent is fine.
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::OutOfRange`].
    pub fn source_remove(&self, vlan: u16, mac: MacAddr) -> Result<(), Error> {
        check_vlan(vlan)?;
        delete_idempotent(
            &self.skel.maps.srcs,
            &FdbKey::new(vlan, mac).to_bytes(),
            "delete",
            "srcs",
        )
    }

    /// Marks multicast group `group` as accepted by some endpoint of VLAN `vlan`
    /// (`None`: every group), so tc hands it to the switch.
    ///
    /// # Errors
    /// [`Error::Map`] (`E2BIG` when [`MAX_GROUPS`] entries exist), [`Error::OutOfRange`].
    pub fn group_insert(&self, vlan: u16, group: Option<MacAddr>) -> Result<(), Error> {
        check_vlan(vlan)?;
        self.skel
            .maps
            .groups
            .update(
                &FdbKey::new(vlan, group.unwrap_or(MacAddr::ZERO)).to_bytes(),
                &1u32.to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_err("update", "groups"))
    }

    /// Unmarks a group [`Steering::group_insert`] marked; absent is fine.
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::OutOfRange`].
    pub fn group_remove(&self, vlan: u16, group: Option<MacAddr>) -> Result<(), Error> {
        check_vlan(vlan)?;
        delete_idempotent(
            &self.skel.maps.groups,
            &FdbKey::new(vlan, group.unwrap_or(MacAddr::ZERO)).to_bytes(),
            "delete",
            "groups",
        )
    }

    /// The entry for `(vlan, mac)`, if any.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn fdb_lookup(&self, vlan: u16, mac: MacAddr) -> Result<Option<FdbVal>, Error> {
        let v = self
            .skel
            .maps
            .fdb
            .lookup(&FdbKey::new(vlan, mac).to_bytes(), MapFlags::ANY)
            .map_err(map_err("lookup", "fdb"))?;
        Ok(v.as_deref().and_then(FdbVal::from_bytes))
    }

    /// Removes `(vlan, mac)`. Absent is fine.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn fdb_remove(&self, vlan: u16, mac: MacAddr) -> Result<(), Error> {
        delete_idempotent(
            &self.skel.maps.fdb,
            &FdbKey::new(vlan, mac).to_bytes(),
            "delete",
            "fdb",
        )
    }

    /// Captures the frames the fast path forwards for `port` in directions `dirs`
    /// ([`CAPTURE_IN`] | [`CAPTURE_OUT`]; `0` stops), `snaplen` bytes of each (at most
    /// [`CAPTURE_MAX`]), into the ring buffer [`Steering::capture_ring`] reads. While no
    /// port is captured the programs pay one load for it.
    ///
    /// # Errors
    /// [`Error::Map`], [`Error::OutOfRange`] for a port beyond the map.
    pub fn set_capture(&mut self, port: PortId, dirs: u32, snaplen: u32) -> Result<(), Error> {
        if u32::from(port.0) >= MAX_PORT_STATS {
            return Err(Error::OutOfRange {
                what: "port",
                value: u64::from(port.0),
                max: u64::from(MAX_PORT_STATS - 1),
            });
        }
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&dirs.to_ne_bytes());
        v[4..].copy_from_slice(&snaplen.min(CAPTURE_MAX).to_ne_bytes());
        self.skel
            .maps
            .capture
            .update(&u32::from(port.0).to_ne_bytes(), &v, MapFlags::ANY)
            .map_err(map_err("update", "capture"))?;
        if dirs == 0 {
            self.captured.remove(&port.0);
        } else {
            self.captured.insert(port.0);
        }
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.capture_on = u32::from(!self.captured.is_empty());
        }
        Ok(())
    }

    /// A handle of its own on the fast path's capture ring buffer (records:
    /// [`CaptureRec::parse`]), for a thread that reads it.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn capture_ring(&self) -> Result<libbpf_rs::MapHandle, Error> {
        libbpf_rs::MapHandle::try_from(&self.skel.maps.capture_rb)
            .map_err(map_err("open", "capture_rb"))
    }

    /// How many entries each of the hash maps holds, by map name (`devs`, `fdb`,
    /// `srcs`, `groups`, `fast`, `fast_in`, `fast_wire`): what the switch wrote and has
    /// not removed. A walk of every key: for monitoring, not for the hot path.
    pub fn map_entries(&self) -> [(&'static str, usize); 7] {
        let m = &self.skel.maps;
        let n = |map: &libbpf_rs::Map, max: u32| map.keys().take(max as usize).count();
        [
            ("devs", n(&m.devs, MAX_DEVS)),
            ("fdb", n(&m.fdb, MAX_FDB)),
            ("srcs", n(&m.srcs, MAX_SRCS)),
            ("groups", n(&m.groups, MAX_GROUPS)),
            ("fast", n(&m.fast, MAX_FAST)),
            ("fast_in", n(&m.fast_in, MAX_PORT_STATS)),
            ("fast_wire", n(&m.fast_wire, MAX_PORT_STATS)),
        ]
    }

    /// Every fdb entry (at most [`MAX_FDB`]).
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn fdb_entries(&self) -> Result<Vec<(FdbKey, FdbVal)>, Error> {
        let map = &self.skel.maps.fdb;
        let mut out = Vec::new();
        for key in map.keys().take(MAX_FDB as usize) {
            let Some(v) = map
                .lookup(&key, MapFlags::ANY)
                .map_err(map_err("lookup", "fdb"))?
            else {
                continue; // deleted meanwhile
            };
            if let (Some(k), Some(v)) = (FdbKey::from_bytes(&key), FdbVal::from_bytes(&v)) {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// Removes every fdb entry. Bounded: the keys are collected first (at most
    /// [`MAX_FDB`]), then deleted.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn fdb_clear(&self) -> Result<(), Error> {
        let map = &self.skel.maps.fdb;
        let keys: Vec<Vec<u8>> = map.keys().take(MAX_FDB as usize).collect();
        for key in keys {
            delete_idempotent(map, &key, "delete", "fdb")?;
        }
        Ok(())
    }

    /// The counters, summed over CPUs, indexed by [`Counter::index`].
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn counters(&self) -> Result<[u64; COUNTERS], Error> {
        let map = &self.skel.maps.counters;
        let mut out = [0u64; COUNTERS];
        for (i, slot) in out.iter_mut().enumerate() {
            let key = (i as u32).to_ne_bytes();
            let per_cpu = map
                .lookup_percpu(&key, MapFlags::ANY)
                .map_err(map_err("lookup", "counters"))?
                .unwrap_or_default();
            *slot = per_cpu
                .iter()
                .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
                .map(u64::from_ne_bytes)
                .fold(0u64, u64::wrapping_add);
        }
        Ok(out)
    }

    /// One counter, summed over CPUs.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn counter(&self, c: Counter) -> Result<u64, Error> {
        Ok(self.counters()?[c.index()])
    }

    /// Runs `steer` once on `frame` as if it arrived on interface `ifindex`, receive
    /// queue 0, through `BPF_PROG_TEST_RUN`: nothing is sent or received, but the
    /// maps and counters are the live ones. For tests, and to explain what the
    /// program does with a frame. `ifindex` must exist in the calling thread's
    /// namespace.
    ///
    /// # Errors
    /// [`Error::Interface`] if the kernel refuses the run.
    pub fn test_xdp(&self, frame: &[u8], ifindex: u32) -> Result<XdpTestRun, Error> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex. data = 0: no metadata on input (and `steer` adds none).
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 64];
        let input = libbpf_rs::ProgramInput {
            context_in: Some(&mut ctx),
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let o = self
            .skel
            .progs
            .steer
            .test_run(input)
            .map_err(Self::interface_err("test run of steer", ifindex))?;
        let action = o.return_value;
        let len = o.data.as_ref().map_or(0, |d| d.len());
        let len = len.min(out.len());
        Ok(XdpTestRun {
            action,
            frame: out[..len].to_vec(),
        })
    }

    /// Runs `mirror` once on `frame` as if it arrived on interface `ifindex`, through
    /// `BPF_PROG_TEST_RUN` (see [`Steering::test_xdp`]); returns the tc action
    /// (`TC_ACT_UNSPEC` is `u32::MAX`). A mirror clone is not sent by a test run.
    ///
    /// # Errors
    /// [`Error::Interface`] if the kernel refuses the run.
    pub fn test_tc(&self, frame: &[u8], ifindex: u32) -> Result<u32, Error> {
        // struct __sk_buff up to and including ifindex (offset 40); the rest is zero.
        let mut ctx = [0u8; 48];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let input = libbpf_rs::ProgramInput {
            context_in: Some(&mut ctx),
            data_in: Some(frame),
            ..Default::default()
        };
        let o = self
            .skel
            .progs
            .mirror
            .test_run(input)
            .map_err(Self::interface_err("test run of mirror", ifindex))?;
        Ok(o.return_value)
    }

    /// Sets every counter to zero on every CPU.
    ///
    /// # Errors
    /// [`Error::Map`].
    pub fn reset_counters(&self) -> Result<(), Error> {
        let map = &self.skel.maps.counters;
        let cpus = libbpf_rs::num_possible_cpus().map_err(map_err("count CPUs for", "counters"))?;
        let zeros = vec![vec![0u8; 8]; cpus];
        for i in 0..COUNTERS as u32 {
            map.update_percpu(&i.to_ne_bytes(), &zeros, MapFlags::ANY)
                .map_err(map_err("reset", "counters"))?;
        }
        Ok(())
    }

    fn detach_all(&mut self) {
        let fd = self.skel.progs.steer.as_fd();
        let own = [self.steer_id, self.twin_id];
        for link in std::mem::take(&mut self.xdp) {
            let Ok(idx) = check_ifindex(link.ifindex) else {
                continue;
            };
            link.netns.run(|| {
                let xdp = Xdp::new(fd);
                let Ok(q) = xdp.query(idx, XdpFlags::NONE) else {
                    return;
                };
                if own.contains(&q.drv_prog_id) {
                    let _ = xdp.detach(idx, XdpFlags::DRV_MODE);
                } else if own.contains(&q.skb_prog_id) {
                    let _ = xdp.detach(idx, XdpFlags::SKB_MODE);
                }
            });
        }
        for link in std::mem::take(&mut self.tc) {
            let (fd, id) = self.tc_prog(link.port_in);
            link.netns.run(|| {
                let _ = detach_tc_link(fd, &link, id);
            });
        }
    }
}

enum TcDetachError {
    Bpf(libbpf_rs::Error),
    Netlink(std::io::Error),
}

/// Detaches one tc filter if it still runs program `prog_id`, then destroys the
/// clsact qdisc if we created it and it holds no filter. Runs in the link's netns.
fn detach_tc_link(
    fd: BorrowedFd<'_>,
    link: &TcLink,
    prog_id: u32,
) -> Result<bool, (&'static str, TcDetachError)> {
    let idx = check_ifindex(link.ifindex).map_err(|_| {
        (
            "detach tc ingress",
            TcDetachError::Netlink(std::io::ErrorKind::InvalidInput.into()),
        )
    })?;
    let mut hook = TcHook::new(fd);
    hook.ifindex(idx)
        .attach_point(TC_INGRESS)
        .handle(link.handle)
        .priority(link.priority);
    let detached = match hook.query() {
        Ok(id) if id == prog_id => match hook.detach() {
            Ok(()) => true,
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => false,
            Err(e) => return Err(("detach tc ingress", TcDetachError::Bpf(e))),
        },
        // Gone, or someone else's program now sits at our handle/priority.
        _ => false,
    };
    if link.created_qdisc {
        let left = nl::with_links(|r| r.clsact_filters(link.ifindex))
            .map_err(|e| ("list tc filters", TcDetachError::Netlink(e)))?;
        if left == 0 {
            match destroy_clsact(fd, idx) {
                Ok(()) => {}
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(("destroy clsact qdisc", TcDetachError::Bpf(e))),
            }
        }
    }
    Ok(detached)
}

/// Attaches program `fd` to the clsact ingress hook of `ifindex` in the calling
/// thread's namespace, ahead of the filters already there, creating the qdisc if
/// there is none (and removing it again if the attach fails).
fn attach_tc_ingress(fd: BorrowedFd<'_>, ifindex: u32, port_in: bool) -> Result<TcLink, Error> {
    let idx = check_ifindex(ifindex)?;
    let existed = nl::with_links(|r| r.has_clsact(ifindex)).map_err(|source| Error::Netlink {
        op: "list qdiscs",
        ifname: nl::ifname(ifindex),
        ifindex,
        source,
    })?;
    let iface_err = |op: &'static str| {
        move |source| Error::Interface {
            op,
            ifname: nl::ifname(ifindex),
            ifindex,
            source,
        }
    };
    let mut hook = TcHook::new(fd);
    hook.ifindex(idx).attach_point(TC_INGRESS).replace(false);
    if !existed {
        hook.create().map_err(iface_err("create clsact qdisc"))?;
    }
    match hook.attach() {
        Ok(hook) => Ok(TcLink {
            ifindex,
            port_in,
            handle: hook.get_handle(),
            priority: hook.get_priority(),
            created_qdisc: !existed,
            netns: NetnsRef::current(),
        }),
        Err(source) => {
            if !existed {
                let _ = destroy_clsact(fd, idx);
            }
            Err(iface_err("attach tc ingress")(source))
        }
    }
}

fn destroy_clsact(fd: BorrowedFd<'_>, idx: i32) -> Result<(), libbpf_rs::Error> {
    let mut h = TcHook::new(fd);
    h.ifindex(idx).attach_point(TC_INGRESS | TC_EGRESS);
    h.destroy()
}

impl Drop for Steering {
    /// Detaches everything this instance attached, in the namespace it was attached
    /// in. Best effort: errors are ignored, nothing panics.
    fn drop(&mut self) {
        self.detach_all();
    }
}
