//! In-process endpoints: ports whose frames are handled by the embedding application.
//!
//! An [`AppHandler`] runs **on the worker thread**, between bursts, and is handed the
//! frames the switch delivered to its endpoint as [`Frame`] handles together with
//! the frame pool: it reads and rewrites them in place (no copy), frees them, or turns
//! them into replies by pushing them to `out`, which the switch receives from the
//! endpoint on its next pass like any other transmitted frame. A handler must not
//! block; it may allocate new frames from the pool.
//!
//! [`Responder`] is a small handler that answers ARP requests and ICMP echo requests
//! for one IPv4 address: enough to ping an application from a container.

use std::net::Ipv4Addr;

use crate::port::{Frame, FramePool, Port};
use crate::wire::ipv4::checksum;
use crate::wire::MacAddr;

/// Application logic behind an in-process endpoint.
pub trait AppHandler<B: FramePool>: Send {
    /// Handles `frames` (every one must be freed or moved to `out`); frames pushed to
    /// `out` are sent into the switch from this endpoint.
    fn handle(&mut self, pool: &mut B, frames: &mut Vec<Frame>, out: &mut Vec<Frame>);
}

impl<B: FramePool, H: AppHandler<B> + ?Sized> AppHandler<B> for Box<H> {
    fn handle(&mut self, pool: &mut B, frames: &mut Vec<Frame>, out: &mut Vec<Frame>) {
        (**self).handle(pool, frames, out)
    }
}

/// A [`Port`] backed by an [`AppHandler`].
pub struct AppPort<H> {
    handler: H,
    pending: Vec<Frame>,
    max_pending: usize,
}

impl<H> AppPort<H> {
    /// A port calling `handler`, holding at most `max_pending` replies not yet taken
    /// by the switch (more are freed).
    pub fn new(handler: H, max_pending: usize) -> Self {
        AppPort {
            handler,
            pending: Vec::with_capacity(max_pending),
            max_pending,
        }
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// Frees the replies not yet taken (before dropping the port).
    pub fn clear<B: FramePool>(&mut self, pool: &mut B) {
        self.pending.drain(..).for_each(|f| pool.free(f));
    }
}

impl<B: FramePool, H: AppHandler<B>> Port<B> for AppPort<H> {
    fn receive(&mut self, _pool: &mut B, out: &mut Vec<Frame>, max: usize) {
        let n = max.min(self.pending.len());
        out.extend(self.pending.drain(..n));
    }

    fn transmit(&mut self, pool: &mut B, frames: &mut Vec<Frame>) {
        let before = self.pending.len();
        self.handler.handle(pool, frames, &mut self.pending);
        debug_assert!(frames.is_empty(), "an AppHandler must consume every frame");
        for f in frames.drain(..) {
            pool.free(f);
        }
        while self.pending.len() > self.max_pending.max(before) {
            let f = self.pending.pop().expect("non-empty");
            pool.free(f);
        }
    }
}

/// Answers ARP and ICMP echo requests for one IPv4 address, rewriting each request
/// into its reply in place.
#[derive(Debug, Clone)]
pub struct Responder {
    mac: MacAddr,
    ip: Ipv4Addr,
    /// ARP requests answered.
    pub arp_replies: u64,
    /// Echo requests answered.
    pub echo_replies: u64,
    /// Frames ignored.
    pub ignored: u64,
}

impl Responder {
    /// A responder owning `mac` and `ip`.
    pub fn new(mac: MacAddr, ip: Ipv4Addr) -> Self {
        Responder {
            mac,
            ip,
            arp_replies: 0,
            echo_replies: 0,
            ignored: 0,
        }
    }

    /// Rewrites `f` into the reply to it; `false` if it is not a request for us.
    pub fn reply_in_place(&mut self, f: &mut [u8]) -> bool {
        if f.len() < 14 {
            return false;
        }
        let ty = u16::from_be_bytes([f[12], f[13]]);
        let me = self.mac.octets();
        let src: [u8; 6] = f[6..12].try_into().expect("6 bytes");
        match ty {
            0x0806 if f.len() >= 42 => {
                let a = &f[14..42];
                // Ethernet/IPv4 request for our address.
                if a[0..8] != [0, 1, 8, 0, 6, 4, 0, 1] || a[24..28] != self.ip.octets() {
                    return false;
                }
                let (sha, spa): ([u8; 6], [u8; 4]) = (
                    a[8..14].try_into().expect("6"),
                    a[14..18].try_into().expect("4"),
                );
                let a = &mut f[14..42];
                a[7] = 2; // reply
                a[8..14].copy_from_slice(&me);
                a[14..18].copy_from_slice(&self.ip.octets());
                a[18..24].copy_from_slice(&sha);
                a[24..28].copy_from_slice(&spa);
                f[0..6].copy_from_slice(&src);
                f[6..12].copy_from_slice(&me);
                self.arp_replies += 1;
                true
            }
            0x0800 if f.len() >= 34 => {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
                if f[14] >> 4 != 4
                    || ihl < 20
                    || f[23] != 1
                    || f[30..34] != self.ip.octets()
                    || f[0..6] != me
                {
                    return false;
                }
                let icmp = 14 + ihl;
                let end = 14 + total;
                if end > f.len() || icmp + 8 > end || f[icmp] != 8 {
                    return false;
                }
                // Swap the IPv4 addresses (the header checksum is unchanged by a swap).
                let (s, d): ([u8; 4], [u8; 4]) = (
                    f[26..30].try_into().expect("4"),
                    f[30..34].try_into().expect("4"),
                );
                f[26..30].copy_from_slice(&d);
                f[30..34].copy_from_slice(&s);
                f[icmp] = 0; // echo reply
                f[icmp + 2..icmp + 4].copy_from_slice(&[0, 0]);
                let sum = checksum(&f[icmp..end]);
                f[icmp + 2..icmp + 4].copy_from_slice(&sum.to_be_bytes());
                f[0..6].copy_from_slice(&src);
                f[6..12].copy_from_slice(&me);
                self.echo_replies += 1;
                true
            }
            _ => false,
        }
    }
}

impl<B: FramePool> AppHandler<B> for Responder {
    fn handle(&mut self, pool: &mut B, frames: &mut Vec<Frame>, out: &mut Vec<Frame>) {
        for mut f in frames.drain(..) {
            if self.reply_in_place(pool.data_mut(&mut f)) {
                out.push(f);
            } else {
                self.ignored += 1;
                pool.free(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::MemPool;

    const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const ME: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x64]);

    fn arp_request(target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&PEER.octets());
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&PEER.octets());
        f.extend_from_slice(&[10, 0, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f.resize(60, 0);
        f
    }

    fn echo_request() -> Vec<u8> {
        use crate::wire::ipv4;
        let mut f = ME.octets().to_vec();
        f.extend_from_slice(&PEER.octets());
        f.extend_from_slice(&[0x08, 0x00]);
        let payload = b"umacvlan!";
        let mut ip = [0u8; ipv4::HEADER_LEN];
        let total = (ipv4::HEADER_LEN + 8 + payload.len()) as u16;
        let (me, peer) = (Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 1));
        ipv4::emit_header(&mut ip, peer, me, ipv4::PROTO_ICMP, total);
        f.extend_from_slice(&ip);
        let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        icmp.extend_from_slice(payload);
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&icmp);
        f
    }

    #[test]
    fn answers_arp_and_echo_and_ignores_the_rest() {
        let mut r = Responder::new(ME, Ipv4Addr::new(10, 0, 0, 100));
        let mut a = arp_request([10, 0, 0, 100]);
        assert!(r.reply_in_place(&mut a));
        assert_eq!(&a[20..22], &[0, 2], "ARP reply");
        assert_eq!(&a[22..28], &ME.octets(), "sender is us");
        assert_eq!(&a[28..32], &[10, 0, 0, 100]);
        assert_eq!(&a[32..38], &PEER.octets(), "target is the asker");
        assert_eq!(&a[38..42], &[10, 0, 0, 1]);
        assert_eq!(&a[0..6], &PEER.octets());

        let mut e = echo_request();
        assert!(r.reply_in_place(&mut e));
        let p = etherparse::SlicedPacket::from_ethernet(&e).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().destination(), [10, 0, 0, 1]);
        assert_eq!(checksum(&e[14..34]), 0, "IPv4 header checksum still valid");
        assert_eq!(checksum(&e[34..]), 0, "ICMP checksum valid");
        assert_eq!(e[34], 0, "echo reply");
        assert_eq!(&e[0..6], &PEER.octets());

        assert!(
            !r.reply_in_place(&mut arp_request([10, 0, 0, 7])),
            "ARP for someone else"
        );
        assert!(!r.reply_in_place(&mut [0u8; 10]), "runt");
        assert_eq!((r.arp_replies, r.echo_replies), (1, 1));
    }

    #[test]
    fn app_port_turns_requests_into_replies_without_copying() {
        let mut pool = MemPool::new(8, 2048);
        let mut port = AppPort::new(Responder::new(ME, Ipv4Addr::new(10, 0, 0, 100)), 4);
        let req = pool.alloc_with(&echo_request()).unwrap();
        let idx = req.idx();
        let junk = pool.alloc_with(&[0u8; 60]).unwrap();
        let mut v = vec![req, junk];
        Port::<MemPool>::transmit(&mut port, &mut pool, &mut v);
        assert!(v.is_empty());
        let mut out = Vec::new();
        Port::<MemPool>::receive(&mut port, &mut pool, &mut out, 32);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].idx(), idx, "the reply is the request's own frame");
        out.into_iter().for_each(|f| pool.free(f));
        assert_eq!(pool.in_use(), 0);
        assert_eq!(port.handler().ignored, 1);
    }
}
