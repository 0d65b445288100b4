//! The few rtnetlink questions the loader asks that libbpf cannot answer: an
//! interface's name (for error messages), whether it has a clsact/ingress qdisc,
//! whether filters other than ours sit on it, and which BPF programs its ingress
//! filters run (to remove the leftovers of a killed switch, one filter at a time).
//!
//! A netlink socket belongs to the network namespace of the thread that creates it,
//! like the sockets libbpf opens for XDP and tc calls, so a [`Rtnl`] is opened per
//! operation and never cached. It is opened on a fresh scoped thread, which starts in
//! the caller's namespace but outside any tokio runtime the caller may be in (a
//! nested `block_on` would panic, e.g. when a [`Steering`](super::Steering) is
//! dropped inside async code).

use std::io;

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::tc::{TcAttribute, TcFilterBpfOption, TcHeader, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use rtnetlink::Handle;

/// `TC_H_CLSACT` (= `TC_H_INGRESS`) major, the parent of clsact/ingress qdiscs.
const TC_H_CLSACT_MAJOR: u16 = 0xffff;
/// `TC_H_MIN_INGRESS`.
const TC_H_MIN_INGRESS: u16 = 0xfff1;

/// One BPF filter on a clsact hook, as a filter dump lists it: enough to delete
/// exactly this filter again.
#[derive(Clone, Debug)]
pub(super) struct BpfFilter {
    /// Interface, parent hook, filter handle, and `info` = priority << 16 | protocol.
    header: TcHeader,
    /// The filter chain, if the dump named one.
    chain: Option<u32>,
    /// Kernel id of the program the filter runs, if the kernel reported it.
    pub(super) prog_id: Option<u32>,
}

impl BpfFilter {
    /// The filter handle.
    pub(super) fn handle(&self) -> u32 {
        self.header.handle.into()
    }

    /// The filter priority (`pref`).
    pub(super) fn priority(&self) -> u16 {
        (self.header.info >> 16) as u16
    }
}

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
        self.has_ingress_qdisc(ifindex, &["clsact", "ingress"])
    }

    /// Whether `ifindex` has a qdisc at the clsact/ingress handle whose kind is one
    /// of `kinds`.
    fn has_ingress_qdisc(&self, ifindex: u32, kinds: &[&str]) -> io::Result<bool> {
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
                    .any(|a| matches!(a, TcAttribute::Kind(k) if kinds.contains(&k.as_str())))
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

impl Rtnl {
    /// The BPF filters on the clsact ingress hook of `ifindex`, every chain. Entries
    /// without a filter handle (the dump's per-priority headers) are not filters.
    pub(super) fn bpf_ingress_filters(&self, ifindex: u32) -> io::Result<Vec<BpfFilter>> {
        let req = self
            .handle
            .traffic_filter(ifindex as i32)
            .get()
            .ingress()
            .execute();
        let msgs: Vec<TcMessage> = self
            .rt
            .block_on(async { req.try_collect().await })
            .map_err(other)?;
        Ok(msgs
            .into_iter()
            .filter(|m| {
                m.header.index == ifindex as i32
                    && u32::from(m.header.handle) != 0
                    && m.attributes
                        .iter()
                        .any(|a| matches!(a, TcAttribute::Kind(k) if k == "bpf"))
            })
            .map(|m| BpfFilter {
                chain: m.attributes.iter().find_map(|a| match a {
                    TcAttribute::Chain(c) => Some(*c),
                    _ => None,
                }),
                prog_id: m.attributes.iter().find_map(|a| match a {
                    TcAttribute::Options(opts) => opts.iter().find_map(|o| match o {
                        TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => Some(*id),
                        _ => None,
                    }),
                    _ => None,
                }),
                header: m.header,
            })
            .collect())
    }

    /// Deletes exactly filter `f` (its parent, priority, protocol, chain and handle;
    /// never a whole priority: the handle is never 0). Returns `false` if it was gone.
    pub(super) fn delete_filter(&self, f: &BpfFilter) -> io::Result<bool> {
        if f.handle() == 0 || f.priority() == 0 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let mut attributes = vec![TcAttribute::Kind("bpf".into())];
        if let Some(c) = f.chain {
            attributes.push(TcAttribute::Chain(c));
        }
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelTrafficFilter(
            TcMessage::from_parts(f.header.clone(), attributes),
        ));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut handle = self.handle.clone();
        let mut resp = handle.request(req).map_err(other)?;
        self.rt.block_on(async {
            while let Some(msg) = resp.next().await {
                if let NetlinkPayload::Error(e) = msg.payload {
                    return match e.raw_code() {
                        0 => Ok(true),
                        c if c == -libc::ENOENT => Ok(false),
                        c => Err(io::Error::from_raw_os_error(-c)),
                    };
                }
            }
            Ok(true)
        })
    }

    /// Whether `ifindex` has a qdisc of kind `clsact` (not the legacy `ingress`).
    pub(super) fn has_clsact_kind(&self, ifindex: u32) -> io::Result<bool> {
        self.has_ingress_qdisc(ifindex, &["clsact"])
    }
}

/// The name of `ifindex` for messages: looked up over rtnetlink, or `ifindex N`.
pub(super) fn ifname(ifindex: u32) -> String {
    with_rtnl(|r| r.ifname(ifindex))
        .ok()
        .flatten()
        .unwrap_or_else(|| format!("ifindex {ifindex}"))
}
