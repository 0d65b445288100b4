//! The collector shim: 8 bytes the kernel's fast-path program (`port_in` in
//! `bpf/steer.bpf.c`) puts in front of a frame it hands to the switch through the
//! collector veth instead of forwarding it itself: which port sent it, and the VLAN
//! tag the kernel held outside the frame's bytes (`skb->vlan_tci`), which the copy
//! into the UMEM would otherwise lose. Fields are in host byte order (`steer.h`).

/// Length of the shim.
pub const SHIM_LEN: usize = 8;
/// Its first two bytes, host order.
pub const SHIM_MAGIC: u16 = 0x554d;

/// A parsed shim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shim {
    /// The sending port's id.
    pub port: u16,
    /// The tag the kernel held out of the frame: (TPID, TCI).
    pub tag: Option<(u16, u16)>,
}

impl Shim {
    /// The shim at the start of `b`; `None` if `b` does not start with one.
    pub fn parse(b: &[u8]) -> Option<Shim> {
        let h = b.get(..SHIM_LEN)?;
        let w = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        if w(0) != SHIM_MAGIC {
            return None;
        }
        let tpid = w(6);
        Some(Shim {
            port: w(2),
            tag: (tpid != 0).then_some((tpid, w(4))),
        })
    }

    /// The shim's bytes (for tests and tools).
    pub fn to_bytes(&self) -> [u8; SHIM_LEN] {
        let mut b = [0u8; SHIM_LEN];
        let (tpid, tci) = self.tag.unwrap_or((0, 0));
        for (i, v) in [SHIM_MAGIC, self.port, tci, tpid].into_iter().enumerate() {
            b[2 * i..2 * i + 2].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shim_round_trips_and_anything_else_is_refused() {
        for s in [
            Shim { port: 7, tag: None },
            Shim {
                port: 1023,
                tag: Some((0x8100, 0x2014)),
            },
        ] {
            assert_eq!(Shim::parse(&s.to_bytes()), Some(s));
        }
        assert_eq!(Shim::parse(&[0u8; 8]), None);
        assert_eq!(
            Shim::parse(&Shim { port: 1, tag: None }.to_bytes()[..7]),
            None
        );
    }
}
