//! Traffic-control questions over the same netlink connection: whether an interface
//! has a clsact (or legacy ingress) qdisc, whether filters sit on it, which BPF
//! programs its ingress filters run, and deleting exactly one filter (how the leftovers
//! of a killed switch are removed).

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::tc::{
    TcAttribute, TcFilterBpfOption, TcHandle, TcHeader, TcMessage, TcOption,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ECHO, NLM_F_REQUEST,
};

use super::{Error, Links, Result};

fn tc_err(op: &'static str, ifindex: u32) -> impl FnOnce(rtnetlink::Error) -> Error {
    move |e| Error::Tc {
        op,
        ifindex,
        source: std::io::Error::other(e),
    }
}

/// `TC_H_CLSACT` (= `TC_H_INGRESS`) major, the parent of clsact/ingress qdiscs.
const TC_H_CLSACT_MAJOR: u16 = 0xffff;
/// `TC_H_MIN_INGRESS`.
const TC_H_MIN_INGRESS: u16 = 0xfff1;

/// One BPF filter on a clsact hook, as a filter dump lists it: enough to delete
/// exactly this filter again ([`Links::delete_filter`]).
#[derive(Clone, Debug)]
pub struct TcFilter {
    /// Interface, parent hook, filter handle, and `info` = priority << 16 | protocol.
    header: TcHeader,
    /// The filter chain, if the dump named one.
    chain: Option<u32>,
    /// Kernel id of the program the filter runs, if the kernel reported it.
    pub prog_id: Option<u32>,
}

impl TcFilter {
    /// The filter handle.
    pub fn handle(&self) -> u32 {
        self.header.handle.into()
    }

    /// The filter priority (`pref`).
    pub fn priority(&self) -> u16 {
        (self.header.info >> 16) as u16
    }
}

impl Links {
    /// Whether `ifindex` has a clsact (or legacy ingress) qdisc.
    pub fn has_clsact(&self, ifindex: u32) -> Result<bool> {
        self.has_ingress_qdisc(ifindex, &["clsact", "ingress"])
    }

    /// Whether `ifindex` has a qdisc at the clsact/ingress handle whose kind is one
    /// of `kinds`.
    ///
    /// One `RTM_GETQDISC` for that handle, not a dump: the kernel does not filter a
    /// qdisc dump by interface, so a dump would cost every interface of the namespace
    /// (with a thousand endpoints, the dearest part of adding one).
    fn has_ingress_qdisc(&self, ifindex: u32, kinds: &[&str]) -> Result<bool> {
        let mut msg = TcMessage::with_index(ifindex as i32);
        msg.header.parent = TcHandle {
            major: TC_H_CLSACT_MAJOR,
            minor: TC_H_MIN_INGRESS,
        };
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetQueueDiscipline(msg));
        // The kernel sends the qdisc back to the asker only with NLM_F_ECHO (it is a
        // notification otherwise); with the ACK the answer's end is certain.
        req.header.flags = NLM_F_REQUEST | NLM_F_ECHO | NLM_F_ACK;
        let mut handle = self.handle.clone();
        let mut resp = handle
            .request(req)
            .map_err(tc_err("get the ingress qdisc", ifindex))?;
        self.rt.block_on(async {
            let mut found = false;
            while let Some(msg) = resp.next().await {
                match msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewQueueDiscipline(q)) => {
                        found |= q.attributes.iter().any(
                            |a| matches!(a, TcAttribute::Kind(k) if kinds.contains(&k.as_str())),
                        );
                    }
                    NetlinkPayload::Error(e) => {
                        return match e.raw_code() {
                            0 => Ok(found),
                            // No ingress queue yet: no qdisc there.
                            c if c == -libc::ENOENT => Ok(false),
                            c => Err(Error::Tc {
                                op: "get the ingress qdisc",
                                ifindex,
                                source: std::io::Error::from_raw_os_error(-c),
                            }),
                        };
                    }
                    _ => {}
                }
            }
            Ok(found)
        })
    }

    /// How many filters sit on the clsact qdisc of `ifindex`, ingress and egress.
    pub fn clsact_filters(&self, ifindex: u32) -> Result<usize> {
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
                .map_err(tc_err("list tc filters", ifindex))?;
            // A dump lists a chain/priority header entry and one entry per filter
            // instance; any entry at all means the qdisc is in use.
            n += filters.len();
        }
        Ok(n)
    }

    /// The BPF filters on the clsact ingress hook of `ifindex`, every chain. Entries
    /// without a filter handle (the dump's per-priority headers) are not filters.
    pub fn bpf_ingress_filters(&self, ifindex: u32) -> Result<Vec<TcFilter>> {
        let req = self
            .handle
            .traffic_filter(ifindex as i32)
            .get()
            .ingress()
            .execute();
        let msgs: Vec<TcMessage> = self
            .rt
            .block_on(async { req.try_collect().await })
            .map_err(tc_err("list tc ingress filters", ifindex))?;
        Ok(msgs
            .into_iter()
            .filter(|m| {
                m.header.index == ifindex as i32
                    && u32::from(m.header.handle) != 0
                    && m.attributes
                        .iter()
                        .any(|a| matches!(a, TcAttribute::Kind(k) if k == "bpf"))
            })
            .map(|m| TcFilter {
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
    pub fn delete_filter(&self, f: &TcFilter) -> Result<bool> {
        let ifindex = f.header.index as u32;
        let failed = |source| Error::Tc {
            op: "delete a tc filter",
            ifindex,
            source,
        };
        if f.handle() == 0 || f.priority() == 0 {
            return Err(failed(std::io::ErrorKind::InvalidInput.into()));
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
        let mut resp = handle
            .request(req)
            .map_err(tc_err("delete a tc filter", ifindex))?;
        self.rt.block_on(async {
            while let Some(msg) = resp.next().await {
                if let NetlinkPayload::Error(e) = msg.payload {
                    return match e.raw_code() {
                        0 => Ok(true),
                        c if c == -libc::ENOENT => Ok(false),
                        c => Err(failed(std::io::Error::from_raw_os_error(-c))),
                    };
                }
            }
            Ok(true)
        })
    }

    /// Whether `ifindex` has a qdisc of kind `clsact` (not the legacy `ingress`).
    pub fn has_clsact_kind(&self, ifindex: u32) -> Result<bool> {
        self.has_ingress_qdisc(ifindex, &["clsact"])
    }
}
