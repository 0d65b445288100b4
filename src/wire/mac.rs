//! [`MacAddr`]: a 48-bit IEEE 802 MAC address.

use core::fmt;
use core::str::FromStr;

/// A 48-bit Ethernet MAC address, stored in transmission order.
///
/// Parses and prints the colon form `02:42:ac:11:00:02` (a dash or no separator is
/// also accepted on input, as `ip link` and Docker accept them).
///
/// # Examples
/// ```
/// use umacvlan::wire::MacAddr;
/// let m: MacAddr = "02:42:ac:11:00:02".parse().unwrap();
/// assert!(m.is_local_admin() && m.is_unicast());
/// assert_eq!(m.to_string(), "02:42:ac:11:00:02");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MacParseError {
    /// Not six groups of two hex digits.
    #[error("expected six two-digit hex groups such as 02:42:ac:11:00:02")]
    Format,
    /// A group holds something other than hex digits.
    #[error("'{0}' is not a hex digit")]
    Digit(char),
}

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`, never a valid station address.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address from its six bytes.
    pub const fn new(b: [u8; 6]) -> Self {
        MacAddr(b)
    }

    /// The six bytes in transmission order.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The group bit (I/G) of the first octet is set: broadcast or multicast.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Exactly `ff:ff:ff:ff:ff:ff`.
    pub const fn is_broadcast(&self) -> bool {
        u64::from_be_bytes([
            0, 0, self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5],
        ]) == 0xffff_ffff_ffff
    }

    /// An individual (station) address: the group bit is clear.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// The U/L bit is set: the address was assigned locally, not by a vendor.
    pub const fn is_local_admin(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// All six bytes are zero.
    pub const fn is_zero(&self) -> bool {
        self.to_u64() == 0
    }

    /// A station address a port may own: unicast and not all zeros.
    pub const fn is_valid_station(&self) -> bool {
        self.is_unicast() && !self.is_zero()
    }

    /// The address as the low 48 bits of a `u64` (big-endian order).
    pub const fn to_u64(&self) -> u64 {
        u64::from_be_bytes([
            0, 0, self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5],
        ])
    }

    /// The inverse of [`MacAddr::to_u64`]; bits above 48 are ignored.
    pub const fn from_u64(v: u64) -> Self {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// A locally administered unicast address built from six arbitrary bytes: the
    /// group bit is cleared and the U/L bit set, as the kernel's `eth_random_addr` does.
    pub const fn local_from_bytes(mut b: [u8; 6]) -> Self {
        b[0] = (b[0] & 0xfe) | 0x02;
        MacAddr(b)
    }

    /// A random locally administered unicast address, from the operating system's
    /// random source. This is what an endpoint created without an address gets
    /// (spec §5, `eth_hw_addr_random`).
    ///
    /// # Errors
    /// Fails only if the system random source is unavailable.
    pub fn random_local() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b)?;
        Ok(Self::local_from_bytes(b))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn hex(c: u8) -> Result<u8, MacParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(MacParseError::Digit(c as char)),
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        let (stride, sep) = match s.len() {
            17 => (3, Some(s[2])),
            12 => (2, None),
            _ => return Err(MacParseError::Format),
        };
        if let Some(sep) = sep {
            if sep != b':' && sep != b'-' {
                return Err(MacParseError::Format);
            }
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            let at = i * stride;
            if let Some(sep) = sep {
                if i > 0 && s[at - 1] != sep {
                    return Err(MacParseError::Format);
                }
            }
            *o = hex(s[at])? << 4 | hex(s[at + 1])?;
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for s in [
            "02:42:ac:11:00:02",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "01:80:c2:00:00:01",
        ] {
            let m: MacAddr = s.parse().unwrap();
            assert_eq!(m.to_string(), s);
        }
        assert_eq!(
            "02-42-AC-11-00-02".parse::<MacAddr>().unwrap(),
            "02:42:ac:11:00:02".parse().unwrap()
        );
        assert_eq!(
            "0242ac110002".parse::<MacAddr>().unwrap(),
            MacAddr([2, 0x42, 0xac, 0x11, 0, 2])
        );
    }

    #[test]
    fn parse_rejects_garbage() {
        for s in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "02:42:ac:11:00:0g",
            "02:42-ac:11:00:02",
            "02.42.ac.11.00.02",
            "2:42:ac:11:00:02x",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s:?} parsed");
        }
        assert_eq!(
            "02:42:ac:11:00:0g".parse::<MacAddr>(),
            Err(MacParseError::Digit('g'))
        );
    }

    #[test]
    fn predicates() {
        let b = MacAddr::BROADCAST;
        assert!(b.is_broadcast() && b.is_multicast() && !b.is_unicast());
        let m: MacAddr = "01:00:5e:00:00:01".parse().unwrap();
        assert!(m.is_multicast() && !m.is_broadcast());
        let u: MacAddr = "00:16:3e:00:00:01".parse().unwrap();
        assert!(u.is_unicast() && !u.is_local_admin() && u.is_valid_station());
        assert!(!MacAddr::ZERO.is_valid_station());
        assert_eq!(MacAddr::from_u64(u.to_u64()), u);
    }

    #[test]
    fn random_local_is_local_unicast_and_varies() {
        let a = MacAddr::random_local().unwrap();
        let b = MacAddr::random_local().unwrap();
        assert!(a.is_local_admin() && a.is_unicast());
        assert_ne!(a, b, "two random addresses collided (p = 2^-46)");
        assert!(MacAddr::local_from_bytes([0xff; 6]).is_valid_station());
    }
}
