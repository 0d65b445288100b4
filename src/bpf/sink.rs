//! [`Sink`]: the benchmark's receiver, a BPF program that counts and drops every
//! frame arriving on one interface (`bpf/sink.bpf.c`).

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, Xdp, XdpFlags};

use super::skel::sink::{SinkSkel, SinkSkelBuilder};
use super::{
    attach_tc_ingress, check_ifindex, detach_tc_link, nl, Error, NetnsRef, TcLink, XdpMode,
};

/// Where the [`Sink`] takes frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkHook {
    /// tc clsact ingress: after the interface's normal receive path up to tc, as a
    /// container's stack would get them (the default; the anchors' method).
    TcIngress,
    /// XDP on the interface: before any skb exists.
    Xdp(XdpMode),
    /// Not a sink: tc clsact ingress, every frame redirected to interface `ifindex`
    /// — into its peer's namespace (`peer`, `bpf_redirect_peer`) or out of it — and
    /// counted. The bare kernel forwarding the benchmark measures the switch against.
    Redirect {
        /// The target interface.
        ifindex: u32,
        /// Into its peer rather than out of it.
        peer: bool,
    },
}

/// Frames and bytes a [`Sink`] has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCount {
    /// Frames.
    pub frames: u64,
    /// Bytes of the frames counted (link-layer length, no FCS).
    pub bytes: u64,
    /// Frames dropped without counting: not the flow [`Sink::count_only_udp_port`]
    /// selected.
    pub other: u64,
}

/// A counting, dropping receiver on one interface.
///
/// Each `Sink` loads its own copy of the program (its own counters) and removes
/// itself on drop, in the namespace it was attached in: its own tc filter (and the
/// clsact qdisc if it created it), or its own XDP program. It never replaces or
/// removes anyone else's.
pub struct Sink {
    skel: SinkSkel<'static>,
    ifindex: u32,
    hook: SinkHook,
    /// Kernel id of the program attached.
    prog_id: u32,
    /// The tc attachment, for [`SinkHook::TcIngress`].
    tc: Option<TcLink>,
    netns: NetnsRef,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("ifindex", &self.ifindex)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl Sink {
    /// Loads the sink and attaches it to `ifindex` in the calling thread's namespace:
    /// a tc filter ahead of any already there (creating the clsact qdisc if there is
    /// none), or an XDP program if the interface has none.
    ///
    /// # Errors
    /// [`Error::Load`] or [`Error::PermissionDenied`] if loading fails,
    /// [`Error::Netlink`] if the qdisc query fails, [`Error::Interface`] if attaching
    /// fails (e.g. the interface already carries an XDP program).
    pub fn attach(ifindex: u32, hook: SinkHook) -> Result<Sink, Error> {
        let idx = check_ifindex(ifindex)?;
        // As for `Steering`: the skeleton's object slot must outlive it.
        let slot: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let skel = SinkSkelBuilder::default()
            .open(slot)
            .map_err(|e| Error::load("open BPF object sink", e))?
            .load()
            .map_err(|e| Error::load("load BPF object sink", e))?;
        let iface_err = |op: &'static str| {
            move |source| Error::Interface {
                op,
                ifname: nl::ifname(ifindex),
                ifindex,
                source,
            }
        };
        let (fd, mut tc) = match hook {
            SinkHook::TcIngress => (skel.progs.sink_tc.as_fd(), None),
            SinkHook::Xdp(_) => (skel.progs.sink_xdp.as_fd(), None),
            SinkHook::Redirect { ifindex: to, peer } => {
                for (k, v) in [(0u32, to), (1, u32::from(peer))] {
                    skel.maps
                        .redirect_cfg
                        .update(&k.to_ne_bytes(), &v.to_ne_bytes(), MapFlags::ANY)
                        .map_err(|source| Error::Map {
                            op: "write",
                            map: "redirect_cfg",
                            source,
                        })?;
                }
                (skel.progs.redirect.as_fd(), None)
            }
        };
        let prog_id = libbpf_rs::Program::id_from_fd(fd)
            .map_err(|e| Error::load("query id of program sink", e))?;
        match hook {
            SinkHook::TcIngress | SinkHook::Redirect { .. } => {
                tc = Some(attach_tc_ingress(fd, ifindex, false)?)
            }
            SinkHook::Xdp(mode) => {
                Xdp::new(fd)
                    .attach(idx, mode.flags() | XdpFlags::UPDATE_IF_NOEXIST)
                    .map_err(iface_err("attach sink XDP (is another XDP program there?)"))?;
            }
        }
        Ok(Sink {
            skel,
            ifindex,
            hook,
            prog_id,
            tc,
            netns: NetnsRef::current(),
        })
    }

    /// Counts only untagged IPv4/UDP frames to destination port `port` (the
    /// generator's flow); the rest go to [`SinkCount::other`]. 0 counts everything.
    ///
    /// # Errors
    /// [`Error::Map`] if the setting cannot be written.
    pub fn count_only_udp_port(&self, port: u16) -> Result<(), Error> {
        self.skel
            .maps
            .sink_cfg
            .update(
                &0u32.to_ne_bytes(),
                &u32::from(port).to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(|source| Error::Map {
                op: "write",
                map: "sink_cfg",
                source,
            })
    }

    /// The interface it counts on.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Frames and bytes counted so far (summed over CPUs).
    ///
    /// # Errors
    /// [`Error::Map`] if the counter map cannot be read.
    pub fn count(&self) -> Result<SinkCount, Error> {
        let map = &self.skel.maps.sink_counts;
        let per_cpu = map
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| Error::Map {
                op: "read",
                map: "sink_counts",
                source,
            })?
            .unwrap_or_default();
        let mut c = SinkCount::default();
        for v in per_cpu {
            let word = |i: usize| {
                v.get(i * 8..i * 8 + 8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_ne_bytes)
            };
            c.frames += word(0);
            c.bytes += word(1);
            c.other += word(2);
        }
        Ok(c)
    }
}

impl Drop for Sink {
    /// Detaches, best effort: only what this sink attached.
    fn drop(&mut self) {
        let Ok(idx) = check_ifindex(self.ifindex) else {
            return;
        };
        let prog_id = self.prog_id;
        if let Some(link) = self.tc.take() {
            let fd = match self.hook {
                SinkHook::Redirect { .. } => self.skel.progs.redirect.as_fd(),
                _ => self.skel.progs.sink_tc.as_fd(),
            };
            link.netns.run(|| {
                let _ = detach_tc_link(fd, &link, prog_id);
            });
        }
        if let SinkHook::Xdp(mode) = self.hook {
            let fd = self.skel.progs.sink_xdp.as_fd();
            self.netns.run(|| {
                let xdp = Xdp::new(fd);
                let ours = xdp.query(idx, XdpFlags::NONE).is_ok_and(|q| match mode {
                    XdpMode::Generic => q.skb_prog_id == prog_id,
                    _ => q.drv_prog_id == prog_id,
                });
                if ours {
                    let _ = xdp.detach(idx, mode.flags());
                }
            });
        }
    }
}
