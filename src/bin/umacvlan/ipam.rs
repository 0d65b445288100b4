//! Address management of a network: the `subnet`, `ip_range`, `gateway` and
//! `aux_address` of `docker network create`, and the addresses its endpoints hold.
//!
//! An endpoint added without an address gets the lowest free one of the range (the
//! subnet if no range is given); the subnet's own address, its IPv4 broadcast
//! address, the gateway and the auxiliary addresses are never handed out. A
//! requested address must lie in the subnet (as in Docker, it may lie outside
//! `ip_range`, which only bounds what is handed out) and be free.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use umacvlan::link::IpCidr;

/// Why an address cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Every address of the range is taken or reserved.
    #[error("no free address left in {range} ({used} in use); widen ip_range or the subnet, or remove an endpoint")]
    Exhausted {
        /// The range handed out from.
        range: IpCidr,
        /// How many endpoints hold an address of the network.
        used: usize,
    },
    /// The address is not in the network's subnet.
    #[error("{addr} is not in the network's subnet {subnet}")]
    OutsideSubnet {
        /// The address asked for.
        addr: IpAddr,
        /// The subnet.
        subnet: IpCidr,
    },
    /// The prefix differs from the subnet's.
    #[error("{addr}/{prefix}: the network's subnet is {subnet}; give /{} or no prefix", .subnet.prefix)]
    Prefix {
        /// The address asked for.
        addr: IpAddr,
        /// Its prefix.
        prefix: u8,
        /// The subnet.
        subnet: IpCidr,
    },
    /// Another endpoint has it.
    #[error("{addr} is in use by endpoint '{by}'")]
    InUse {
        /// The address.
        addr: IpAddr,
        /// Who holds it.
        by: String,
    },
    /// The gateway, an auxiliary address, or the subnet's network or broadcast address.
    #[error("{addr} is reserved in this network ({why})")]
    Reserved {
        /// The address.
        addr: IpAddr,
        /// Which reservation.
        why: &'static str,
    },
}

/// A network's address plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// The subnet, as a network address and prefix.
    pub subnet: IpCidr,
    /// Where addresses are handed out from (within the subnet).
    pub range: IpCidr,
    /// Never handed out: the gateway and the auxiliary addresses.
    pub reserved: Vec<(IpAddr, &'static str)>,
}

fn bits(a: IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

fn addr(v: u128, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// The first and last address of `c`.
fn span(c: IpCidr) -> (u128, u128) {
    let (v, w) = bits(c.addr);
    let host = u32::from(w - c.prefix.min(w));
    let mask = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    (v & !mask, v | mask)
}

/// `c` with its host bits cleared.
pub fn network_of(c: IpCidr) -> IpCidr {
    let (_, w) = bits(c.addr);
    IpCidr {
        addr: addr(span(c).0, w),
        prefix: c.prefix,
    }
}

impl Pool {
    /// The plan of a subnet, an optional range within it and reserved addresses.
    ///
    /// # Errors
    /// A range or reserved address outside the subnet, or of the other family.
    pub fn new(
        subnet: IpCidr,
        range: Option<IpCidr>,
        reserved: Vec<(IpAddr, &'static str)>,
    ) -> Result<Pool, IpamError> {
        let subnet = network_of(subnet);
        let range = range.map(network_of).unwrap_or(subnet);
        let p = Pool {
            subnet,
            range,
            reserved,
        };
        let (lo, hi) = span(subnet);
        let (rlo, rhi) = span(range);
        if range.addr.is_ipv4() != subnet.addr.is_ipv4() || rlo < lo || rhi > hi {
            return Err(IpamError::OutsideSubnet {
                addr: range.addr,
                subnet,
            });
        }
        for (a, _) in &p.reserved {
            if !p.in_subnet(*a) {
                return Err(IpamError::OutsideSubnet { addr: *a, subnet });
            }
        }
        Ok(p)
    }

    fn in_subnet(&self, a: IpAddr) -> bool {
        let (lo, hi) = span(self.subnet);
        let (v, _) = bits(a);
        a.is_ipv4() == self.subnet.addr.is_ipv4() && (lo..=hi).contains(&v)
    }

    /// Why `a` is never handed out, if it is not.
    fn reservation(&self, a: IpAddr) -> Option<&'static str> {
        let (lo, hi) = span(self.subnet);
        let (v, w) = bits(a);
        if let Some((_, why)) = self.reserved.iter().find(|(r, _)| *r == a) {
            return Some(why);
        }
        // The subnet's own address; for IPv4 below /31 also its broadcast address.
        let small = w == 32 && self.subnet.prefix >= 31;
        if !small && v == lo {
            return Some("the subnet's network address");
        }
        if w == 32 && !small && v == hi {
            return Some("the subnet's broadcast address");
        }
        None
    }

    /// Checks a requested address against the plan and the addresses in use
    /// (`used`: address and holder); returns it with the subnet's prefix.
    ///
    /// # Errors
    /// [`IpamError`].
    pub fn check(&self, want: IpCidr, used: &[(IpAddr, String)]) -> Result<IpCidr, IpamError> {
        if !self.in_subnet(want.addr) {
            return Err(IpamError::OutsideSubnet {
                addr: want.addr,
                subnet: self.subnet,
            });
        }
        if want.prefix != self.subnet.prefix {
            return Err(IpamError::Prefix {
                addr: want.addr,
                prefix: want.prefix,
                subnet: self.subnet,
            });
        }
        if let Some(why) = self.reservation(want.addr) {
            return Err(IpamError::Reserved {
                addr: want.addr,
                why,
            });
        }
        if let Some((_, by)) = used.iter().find(|(a, _)| *a == want.addr) {
            return Err(IpamError::InUse {
                addr: want.addr,
                by: by.clone(),
            });
        }
        Ok(want)
    }

    /// The lowest free address of the range.
    ///
    /// # Errors
    /// [`IpamError::Exhausted`].
    pub fn allocate(&self, used: &[(IpAddr, String)]) -> Result<IpCidr, IpamError> {
        let taken: BTreeSet<u128> = used.iter().map(|(a, _)| bits(*a).0).collect();
        let (lo, hi) = span(self.range);
        let (_, w) = bits(self.range.addr);
        // Walk the range, skipping what is taken; at most one step per holder and
        // reservation beyond the first free address, so a huge IPv6 range is cheap.
        let mut v = lo;
        loop {
            let a = addr(v, w);
            if !taken.contains(&v) && self.reservation(a).is_none() {
                return Ok(IpCidr {
                    addr: a,
                    prefix: self.subnet.prefix,
                });
            }
            if v == hi {
                return Err(IpamError::Exhausted {
                    range: self.range,
                    used: used.len(),
                });
            }
            v += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> IpCidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hands_out_the_lowest_free_address_and_never_a_reserved_one() {
        let p = Pool::new(
            c("10.1.0.0/29"),
            None,
            vec![(ip("10.1.0.1"), "gateway"), (ip("10.1.0.3"), "aux 'nas'")],
        )
        .unwrap();
        let mut used = vec![];
        let mut got = vec![];
        loop {
            match p.allocate(&used) {
                Ok(a) => {
                    assert_eq!(a.prefix, 29);
                    got.push(a.addr.to_string());
                    used.push((a.addr, format!("e{}", used.len())));
                }
                Err(e) => {
                    assert!(matches!(e, IpamError::Exhausted { used: 4, .. }), "{e}");
                    break;
                }
            }
        }
        // .0 network, .1 gateway, .3 aux, .7 broadcast.
        assert_eq!(got, ["10.1.0.2", "10.1.0.4", "10.1.0.5", "10.1.0.6"]);
        // A released address is handed out again.
        used.retain(|(a, _)| *a != ip("10.1.0.4"));
        assert_eq!(p.allocate(&used).unwrap().addr, ip("10.1.0.4"));
    }

    #[test]
    fn a_range_bounds_what_is_handed_out_not_what_may_be_asked_for() {
        let p = Pool::new(c("192.168.5.0/24"), Some(c("192.168.5.128/30")), vec![]).unwrap();
        assert_eq!(p.allocate(&[]).unwrap().to_string(), "192.168.5.128/24");
        assert!(p.check(c("192.168.5.20/24"), &[]).is_ok());
        let used = [(ip("192.168.5.20"), "web".to_string())];
        assert_eq!(
            p.check(c("192.168.5.20/24"), &used)
                .unwrap_err()
                .to_string(),
            "192.168.5.20 is in use by endpoint 'web'"
        );
        assert!(matches!(
            p.check(c("192.168.6.1/24"), &[]),
            Err(IpamError::OutsideSubnet { .. })
        ));
        assert!(matches!(
            p.check(c("192.168.5.9/16"), &[]),
            Err(IpamError::Prefix { .. })
        ));
        assert!(matches!(
            p.check(c("192.168.5.255/24"), &[]),
            Err(IpamError::Reserved { .. })
        ));
        assert!(Pool::new(c("192.168.5.0/24"), Some(c("10.0.0.0/30")), vec![]).is_err());
        assert!(Pool::new(c("192.168.5.0/24"), None, vec![(ip("10.0.0.1"), "gateway")]).is_err());
    }

    #[test]
    fn ipv6_and_tiny_subnets() {
        let p = Pool::new(c("fd00:1::/64"), None, vec![(ip("fd00:1::1"), "gateway")]).unwrap();
        assert_eq!(p.allocate(&[]).unwrap().to_string(), "fd00:1::2/64");
        // A /31 has no network or broadcast address (RFC 3021).
        let p = Pool::new(c("10.9.9.0/31"), None, vec![]).unwrap();
        assert_eq!(p.allocate(&[]).unwrap().addr, ip("10.9.9.0"));
        // Host bits in the subnet are cleared.
        assert_eq!(network_of(c("10.2.3.4/16")).to_string(), "10.2.0.0/16");
    }
}
