//! [`Sink`]: the benchmark's receiver, a BPF program that counts and drops every
//! frame arriving on one interface (`bpf/sink.bpf.c`).

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, TcHook, Xdp, TC_EGRESS, TC_INGRESS};

use super::skel::sink::{SinkSkel, SinkSkelBuilder};
use super::{check_ifindex, nl, Error, NetnsRef, XdpMode};

/// Where the [`Sink`] takes frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkHook {
    /// tc clsact ingress: after the interface's normal receive path up to tc, as a
    /// container's stack would get them (the default; the anchors' method).
    TcIngress,
    /// XDP on the interface: before any skb exists.
    Xdp(XdpMode),
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
/// itself on drop, in the namespace it was attached in.
pub struct Sink {
    skel: SinkSkel<'static>,
    ifindex: u32,
    hook: SinkHook,
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
    /// Loads the sink and attaches it to `ifindex` in the calling thread's namespace.
    /// For [`SinkHook::TcIngress`] the interface must not have a clsact qdisc yet
    /// (the sink creates it and removes it again on drop).
    ///
    /// # Errors
    /// [`Error::Load`] or [`Error::PermissionDenied`] if loading fails,
    /// [`Error::Interface`] if attaching fails.
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
        match hook {
            SinkHook::TcIngress => {
                let mut h = TcHook::new(skel.progs.sink_tc.as_fd());
                h.ifindex(idx).attach_point(TC_INGRESS).replace(false);
                h.create().map_err(iface_err("create clsact qdisc"))?;
                if let Err(e) = h.attach() {
                    let _ = h.destroy();
                    return Err(iface_err("attach sink at tc ingress")(e));
                }
            }
            SinkHook::Xdp(mode) => {
                Xdp::new(skel.progs.sink_xdp.as_fd())
                    .attach(idx, mode.flags())
                    .map_err(iface_err("attach sink XDP"))?;
            }
        }
        Ok(Sink {
            skel,
            ifindex,
            hook,
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
    /// Detaches, best effort: removes the clsact qdisc it created, or its XDP program.
    fn drop(&mut self) {
        let Ok(idx) = check_ifindex(self.ifindex) else {
            return;
        };
        let hook = self.hook;
        let (tc_fd, xdp_fd) = (
            self.skel.progs.sink_tc.as_fd(),
            self.skel.progs.sink_xdp.as_fd(),
        );
        self.netns.run(|| match hook {
            SinkHook::TcIngress => {
                // Both hooks: destroying the clsact qdisc itself, not just its
                // ingress filters.
                let mut h = TcHook::new(tc_fd);
                h.ifindex(idx).attach_point(TC_INGRESS | TC_EGRESS);
                let _ = h.destroy();
            }
            SinkHook::Xdp(mode) => {
                let _ = Xdp::new(xdp_fd).detach(idx, mode.flags());
            }
        });
    }
}
