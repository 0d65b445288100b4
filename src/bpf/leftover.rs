//! The leftovers of a switch that did not shut down: after `kill -9` or a crash its
//! XDP program stays attached to the parent and its tc filter to the parent's clsact
//! ingress hook (an attachment keeps a program loaded). [`Steering::remove_leftovers`]
//! finds and removes them.
//!
//! A program is a leftover when it has the name and type of one of ours (`steer` or
//! its twin `steer_twin`, `mirror`), it is not this instance's, and **no process holds it open**: a running
//! switch keeps a file descriptor of each program it loaded, a killed one does not.
//! That is how a second switch started on the same parent still gets
//! [`Error::ForeignXdp`] instead of tearing the first one down. The holders are found
//! through `/proc/<pid>/fdinfo` (`prog_id:` of `bpf-prog` and `bpf_link` fds), so a
//! switch in a PID namespace this process cannot see counts as gone.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use libbpf_rs::{ErrorKind, ProgramHandle, ProgramType, Xdp};

use super::{check_ifindex, destroy_clsact, nl, Error, Steering, XdpMode};

/// A program's name and type, as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    name: OsString,
    ty: ProgramType,
}

/// The identity of loaded program `id`; `None` if it is gone.
fn identity(id: u32) -> Result<Option<Identity>, libbpf_rs::Error> {
    match ProgramHandle::from_prog_id(id) {
        Ok(h) => Ok(Some(Identity {
            name: h.name().to_owned(),
            ty: h.prog_type(),
        })),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`identity`], its error naming the interface the program was found on.
fn inspect(id: u32, ifindex: u32) -> Result<Option<Identity>, Error> {
    identity(id).map_err(|source| Error::Interface {
        op: "inspect a BPF program",
        ifname: nl::ifname(ifindex),
        ifindex,
        source,
    })
}

/// Whether program `id` is named and typed like umacvlan's XDP program (`steer` or
/// its twin), whoever loaded it.
pub(super) fn is_steering_program(id: u32) -> bool {
    identity(id).ok().flatten().is_some_and(|i| {
        i.ty == ProgramType::Xdp && (i.name == super::XDP_PROG || i.name == super::XDP_TWIN_PROG)
    })
}

/// The `prog_id:` line of a `/proc/<pid>/fdinfo/<fd>` file.
fn fdinfo_prog_id(fdinfo: &str) -> Option<u32> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("prog_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether some process (this one included) holds a file descriptor of program `id`,
/// directly or through a BPF link. If `/proc` cannot be read, assume it does.
pub(super) fn held_open(id: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    for p in procs.flatten() {
        let pid = p.file_name();
        if pid.is_empty() || !pid.as_bytes().iter().all(u8::is_ascii_digit) {
            continue;
        }
        let dir = p.path();
        // The process may exit while we look: skip what cannot be read.
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.as_os_str().as_bytes();
            if t != b"anon_inode:bpf-prog" && t != b"anon_inode:bpf_link" {
                continue;
            }
            let info = dir.join("fdinfo").join(fd.file_name());
            if std::fs::read_to_string(info).is_ok_and(|s| fdinfo_prog_id(&s) == Some(id)) {
                return true;
            }
        }
    }
    false
}

impl Steering {
    /// The identity of one of this instance's programs.
    fn own_identity(&self, id: u32, ifindex: u32) -> Result<Identity, Error> {
        let gone = || libbpf_rs::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        identity(id)
            .and_then(|i| i.ok_or_else(gone))
            .map_err(|source| Error::Interface {
                op: "inspect our own BPF program",
                ifname: nl::ifname(ifindex),
                ifindex,
                source,
            })
    }

    /// Program `id`'s identity if it is a leftover of another instance: not ours,
    /// named and typed like one of `ours`, and held open by no process. A program
    /// that vanished meanwhile is not.
    fn leftover(
        &self,
        id: u32,
        ours: &[Identity],
        ifindex: u32,
    ) -> Result<Option<Identity>, Error> {
        if id == 0
            || id == self.steer_id
            || id == self.twin_id
            || id == self.mirror_id
            || id == self.port_in_id
        {
            return Ok(None);
        }
        let found = inspect(id, ifindex)?;
        // The handle is closed again here, before looking for holders.
        Ok(found.filter(|f| ours.contains(f) && !held_open(id)))
    }

    /// Refuses `ifindex` as a parent while another switch runs on it, whichever hook
    /// that switch steers from: [`Error::OtherSwitch`] for a tc ingress filter running
    /// another instance's `mirror` that some process holds open (a switch steering
    /// from tc, [`crate::dataplane::ParentHook::Tc`], has no XDP program to collide
    /// with). With `xdp_free`, for a parent this instance steers from tc, any XDP
    /// program there is refused as [`Steering::attach_xdp`] would refuse it
    /// ([`Error::ForeignXdp`], [`Error::OtherSwitch`]): it would see every frame first.
    ///
    /// Call it after [`remove_leftovers`](Self::remove_leftovers). Unlike the XDP
    /// attach, the check and the tc attach that follows are two steps: two switches
    /// started on one parent in the same instant could both pass it.
    ///
    /// # Errors
    /// As above, and [`Error::Interface`] or [`Error::Netlink`] if a query fails.
    pub fn check_parent_free(&self, ifindex: u32, xdp_free: bool) -> Result<(), Error> {
        let idx = check_ifindex(ifindex)?;
        if xdp_free {
            let st = self.xdp_query(ifindex, idx)?;
            if let Some(e) = self.foreign(ifindex, st) {
                return Err(e);
            }
        }
        let mirror = self.own_identity(self.mirror_id, ifindex)?;
        let filters = nl::with_links(|r| r.bpf_ingress_filters(ifindex))
            .map_err(Self::netlink_err("list tc filters", ifindex))?;
        for id in filters.iter().filter_map(|f| f.prog_id) {
            if id == self.mirror_id {
                continue;
            }
            let found = inspect(id, ifindex)?;
            if found.as_ref() == Some(&mirror) && held_open(id) {
                return Err(Error::OtherSwitch {
                    ifname: nl::ifname(ifindex),
                    ifindex,
                    prog_id: id,
                });
            }
        }
        Ok(())
    }

    /// Removes from `ifindex` what a switch that was killed left there: an XDP
    /// program named like ours (`steer`), in native or generic mode, and tc ingress
    /// filters whose BPF program is named like ours (`mirror`), each only if no
    /// process holds that program open any more (a running switch does; see
    /// [`Error::ForeignXdp`]). If a filter was removed and the clsact qdisc is empty
    /// then, the qdisc goes too: the killed switch created it or nobody uses it.
    ///
    /// Programs with other names, and this instance's own, are never touched. Returns
    /// what was removed, one line each, for the log; empty if there was nothing.
    ///
    /// Call it before [`attach_xdp`](Self::attach_xdp) on a parent after a crash.
    /// Like [`detach_xdp`](Self::detach_xdp), the XDP check and the detach are two
    /// calls.
    ///
    /// # Errors
    /// [`Error::Interface`] if a query or detach fails, [`Error::Netlink`] if the
    /// filter listing or a filter deletion fails, [`Error::OutOfRange`] for a bad
    /// ifindex.
    pub fn remove_leftovers(&mut self, ifindex: u32) -> Result<Vec<String>, Error> {
        let idx = check_ifindex(ifindex)?;
        let mut removed = Vec::new();
        let name = nl::ifname(ifindex);

        let steer = [
            self.own_identity(self.steer_id, ifindex)?,
            self.own_identity(self.twin_id, ifindex)?,
        ];
        let st = self.xdp_query(ifindex, idx)?;
        for (id, mode) in [(st.drv, XdpMode::Native), (st.skb, XdpMode::Generic)] {
            let Some(found) = self.leftover(id, &steer, ifindex)? else {
                continue;
            };
            match Xdp::new(self.skel.progs.steer.as_fd()).detach(idx, mode.flags()) {
                Ok(()) => removed.push(format!(
                    "XDP program {} (id {id}, {mode} mode) on {name}",
                    found.name.to_string_lossy()
                )),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::Interface {
                        op: "detach a leftover XDP program",
                        ifname: name,
                        ifindex,
                        source,
                    })
                }
            }
        }

        let tc_ours = [
            self.own_identity(self.mirror_id, ifindex)?,
            self.own_identity(self.port_in_id, ifindex)?,
        ];
        let filters = nl::with_links(|r| r.bpf_ingress_filters(ifindex))
            .map_err(Self::netlink_err("list tc filters", ifindex))?;
        let mut filters_removed = 0;
        for f in filters {
            let Some(id) = f.prog_id else {
                continue;
            };
            let Some(found) = self.leftover(id, &tc_ours, ifindex)? else {
                continue;
            };
            if nl::with_links(|r| r.delete_filter(&f))
                .map_err(Self::netlink_err("delete a leftover tc filter", ifindex))?
            {
                filters_removed += 1;
                removed.push(format!(
                    "tc ingress filter running {} (id {id}, handle {:#x}, priority {}) on {name}",
                    found.name.to_string_lossy(),
                    f.handle(),
                    f.priority()
                ));
            }
        }
        if filters_removed > 0 {
            let (clsact, left) =
                nl::with_links(|r| Ok((r.has_clsact_kind(ifindex)?, r.clsact_filters(ifindex)?)))
                    .map_err(Self::netlink_err("list tc filters", ifindex))?;
            if clsact && left == 0 {
                match destroy_clsact(self.skel.progs.mirror.as_fd(), idx) {
                    Ok(()) => removed.push(format!("the empty clsact qdisc on {name}")),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(Error::Interface {
                            op: "destroy the leftover clsact qdisc",
                            ifname: name,
                            ifindex,
                            source,
                        })
                    }
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_prog_id_is_parsed() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nprog_type:\t6\n\
                    prog_jited:\t1\nprog_tag:\t3b185187f1855c4c\nmemlock:\t4096\nprog_id:\t42\n";
        assert_eq!(fdinfo_prog_id(prog), Some(42));
        let link = "link_type:\txdp\nlink_id:\t3\nprog_tag:\tabc\nprog_id:\t7\nifindex:\t2\n";
        assert_eq!(fdinfo_prog_id(link), Some(7));
        assert_eq!(fdinfo_prog_id("pos:\t0\nflags:\t02\n"), None);
    }
}
