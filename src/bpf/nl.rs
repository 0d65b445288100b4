//! The few rtnetlink questions the loader asks that libbpf cannot answer: an
//! interface's name (for error messages), whether it has a clsact/ingress qdisc, and
//! whether filters other than ours sit on it.
//!
//! A netlink socket belongs to the network namespace of the thread that creates it,
//! like the sockets libbpf opens for XDP and tc calls, so a [`Rtnl`] is opened per
//! operation and never cached. It is opened on a fresh scoped thread, which starts in
//! the caller's namespace but outside any tokio runtime the caller may be in (a
//! nested `block_on` would panic, e.g. when a [`Steering`](super::Steering) is
//! dropped inside async code).

use std::io;

use futures::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::tc::{TcAttribute, TcMessage};
use rtnetlink::Handle;

/// `TC_H_CLSACT` (= `TC_H_INGRESS`) major, the parent of clsact/ingress qdiscs.
const TC_H_CLSACT_MAJOR: u16 = 0xffff;
/// `TC_H_MIN_INGRESS`.
const TC_H_MIN_INGRESS: u16 = 0xfff1;

/// Runs `f` with a fresh connection on a scoped thread (same network namespace as
/// the caller, no tokio context). A panic there becomes an error.
pub(super) fn with_rtnl<R: Send>(f: impl FnOnce(&Rtnl) -> io::Result<R> + Send) -> io::Result<R> {
    std::thread::scope(|s| {
        s.spawn(|| f(&Rtnl::open()?))
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("rtnetlink helper thread panicked")))
    })
}

/// A netlink connection in the calling thread's network namespace.
pub(super) struct Rtnl {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

fn other(e: rtnetlink::Error) -> io::Error {
    io::Error::other(e)
}

impl Rtnl {
    /// Opens a connection in the calling thread's network namespace. Do not call
    /// inside a tokio runtime; use [`with_rtnl`].
    fn open() -> io::Result<Rtnl> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let handle = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(conn);
            Ok::<_, io::Error>(handle)
        })?;
        Ok(Rtnl { rt, handle })
    }

    /// The name of interface `ifindex`, if it exists.
    pub(super) fn ifname(&self, ifindex: u32) -> io::Result<Option<String>> {
        let mut req = self.handle.link().get().match_index(ifindex).execute();
        let msg = self.rt.block_on(async { req.try_next().await });
        match msg {
            Ok(Some(m)) => Ok(m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(other(e)),
        }
    }

    /// Whether `ifindex` has a clsact (or legacy ingress) qdisc.
    pub(super) fn has_clsact(&self, ifindex: u32) -> io::Result<bool> {
        let req = self.handle.qdisc().get().index(ifindex as i32).execute();
        let qdiscs: Vec<TcMessage> = self
            .rt
            .block_on(async { req.try_collect().await })
            .map_err(other)?;
        Ok(qdiscs.iter().any(|q| {
            q.header.index == ifindex as i32
                && q.header.parent.major == TC_H_CLSACT_MAJOR
                && q.header.parent.minor == TC_H_MIN_INGRESS
                && q.attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "clsact" || k == "ingress"))
        }))
    }

    /// How many filters sit on the clsact qdisc of `ifindex`, ingress and egress.
    pub(super) fn clsact_filters(&self, ifindex: u32) -> io::Result<usize> {
        let mut n = 0;
        for egress in [false, true] {
            let mut tf = self.handle.traffic_filter(ifindex as i32);
            let req = if egress {
                tf.get().egress()
            } else {
                tf.get().ingress()
            };
            let filters: Vec<TcMessage> = self
                .rt
                .block_on(async { req.execute().try_collect().await })
                .map_err(other)?;
            // A dump lists a chain/priority header entry and one entry per filter
            // instance; any entry at all means the qdisc is in use.
            n += filters.len();
        }
        Ok(n)
    }
}

/// The name of `ifindex` for messages: looked up over rtnetlink, or `ifindex N`.
pub(super) fn ifname(ifindex: u32) -> String {
    with_rtnl(|r| r.ifname(ifindex))
        .ok()
        .flatten()
        .unwrap_or_else(|| format!("ifindex {ifindex}"))
}
