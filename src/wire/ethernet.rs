//! Checked, zero-copy view of an Ethernet II header with up to two VLAN tags.

use super::{Error, MacAddr};

/// An EtherType (or TPID) value, host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: EtherType = EtherType(0x8100);
    /// 802.1ad service VLAN tag (S-tag, QinQ outer tag).
    pub const QINQ: EtherType = EtherType(0x88a8);
    /// 802.3x MAC control (PAUSE). The kernel never floods these to macvlans.
    pub const PAUSE: EtherType = EtherType(0x8808);

    /// Whether this value is a VLAN tag protocol identifier this switch understands.
    pub const fn is_vlan_tpid(self) -> bool {
        self.0 == Self::VLAN.0 || self.0 == Self::QINQ.0
    }
}

/// A 12-bit VLAN identifier, 1..=4094. "No VLAN" is `Option::<VlanId>::None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VlanId(u16);

impl VlanId {
    /// The id if it is in 1..=4094 (0 means "priority tag only" and 4095 is reserved).
    pub const fn new_checked(v: u16) -> Option<VlanId> {
        if v >= 1 && v <= 4094 {
            Some(VlanId(v))
        } else {
            None
        }
    }

    /// The numeric id.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl core::fmt::Display for VlanId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

/// One VLAN tag as found on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    /// Tag protocol identifier: 0x8100 or 0x88a8.
    pub tpid: EtherType,
    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub tci: u16,
}

impl VlanTag {
    /// The 12-bit VLAN id field (0 for a priority-only tag).
    pub const fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag.
pub const TAG_LEN: usize = 4;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const TYPE: usize = 12;
}

/// A view of an Ethernet frame in a byte buffer, checked at construction.
///
/// The buffer is borrowed, never copied. After [`EthernetFrame::new_checked`] succeeds
/// every accessor is infallible: the buffer holds the whole header, tags included.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
    tags: u8,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that `buf` holds an Ethernet header and any VLAN tags it announces.
    ///
    /// # Errors
    /// [`Error::Runt`] when the buffer is shorter than 14 bytes, [`Error::TruncatedTag`]
    /// when a VLAN tag is announced but cut off, [`Error::TooManyTags`] for a third tag.
    pub fn new_checked(buf: T) -> Result<Self, Error> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Runt);
        }
        let mut tags = 0u8;
        let mut at = field::TYPE;
        while EtherType(be16(b, at)).is_vlan_tpid() {
            if tags == 2 {
                return Err(Error::TooManyTags);
            }
            if b.len() < at + TAG_LEN + 2 {
                return Err(Error::TruncatedTag);
            }
            tags += 1;
            at += TAG_LEN;
        }
        Ok(EthernetFrame { buf, tags })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        let b = self.buf.as_ref();
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// Source address.
    pub fn src(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buf.as_ref()[field::SRC]);
        MacAddr(m)
    }

    /// Number of VLAN tags (0, 1 or 2).
    pub fn tag_count(&self) -> usize {
        self.tags as usize
    }

    /// The `i`th VLAN tag, outermost first.
    pub fn tag(&self, i: usize) -> Option<VlanTag> {
        if i >= self.tags as usize {
            return None;
        }
        let b = self.buf.as_ref();
        let at = field::TYPE + i * TAG_LEN;
        Some(VlanTag {
            tpid: EtherType(be16(b, at)),
            tci: be16(b, at + 2),
        })
    }

    /// The outer VLAN id, if the frame carries a tag with a non-zero VID.
    pub fn vlan(&self) -> Option<u16> {
        self.tag(0).map(|t| t.vid()).filter(|&v| v != 0)
    }

    /// The EtherType after all VLAN tags.
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(
            self.buf.as_ref(),
            field::TYPE + self.tags as usize * TAG_LEN,
        ))
    }

    /// Offset of the payload: 14, 18 or 22.
    pub fn payload_offset(&self) -> usize {
        HEADER_LEN + self.tags as usize * TAG_LEN
    }

    /// The payload after the header and tags.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.payload_offset()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Overwrites the destination address.
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&m.0);
    }

    /// Overwrites the source address.
    pub fn set_src(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&m.0);
    }
}

/// Writes an Ethernet header (optionally with one 802.1Q tag) at the start of `out`
/// and returns its length. Used by tests, tools and the traffic generator.
///
/// # Panics
/// If `out` is shorter than the header.
pub fn emit_header(
    out: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    vlan: Option<u16>,
    ty: EtherType,
) -> usize {
    out[field::DST].copy_from_slice(&dst.0);
    out[field::SRC].copy_from_slice(&src.0);
    let mut at = field::TYPE;
    if let Some(vid) = vlan {
        out[at..at + 2].copy_from_slice(&EtherType::VLAN.0.to_be_bytes());
        out[at + 2..at + 4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
        at += TAG_LEN;
    }
    out[at..at + 2].copy_from_slice(&ty.0.to_be_bytes());
    at + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06, 0xaa, 0xbb,
    ];

    #[test]
    fn untagged_fixture() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.tag_count(), 0);
        assert_eq!(f.vlan(), None);
        assert_eq!(f.payload_offset(), 14);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn single_and_double_tags() {
        let mut b = [0u8; 22];
        b[..12].copy_from_slice(&[1, 0, 0x5e, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        b[12..14].copy_from_slice(&[0x81, 0x00]);
        b[14..16].copy_from_slice(&[0x20, 0x0a]); // PCP 1, VID 10
        b[16..18].copy_from_slice(&[0x86, 0xdd]);
        let f = EthernetFrame::new_checked(&b[..18]).unwrap();
        assert_eq!(f.vlan(), Some(10));
        assert_eq!(f.tag(0).unwrap().tci, 0x200a);
        assert_eq!(f.ethertype(), EtherType::IPV6);
        assert_eq!(f.payload_offset(), 18);

        b[12..14].copy_from_slice(&[0x88, 0xa8]);
        b[14..16].copy_from_slice(&[0x00, 0x64]); // S-VID 100
        b[16..18].copy_from_slice(&[0x81, 0x00]);
        b[18..20].copy_from_slice(&[0x00, 0x07]); // C-VID 7
        b[20..22].copy_from_slice(&[0x08, 0x00]);
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(f.tag_count(), 2);
        assert_eq!(f.tag(0).unwrap().tpid, EtherType::QINQ);
        assert_eq!(f.vlan(), Some(100));
        assert_eq!(f.tag(1).unwrap().vid(), 7);
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.payload_offset(), 22);
        assert!(f.payload().is_empty());
    }

    #[test]
    fn runts_and_truncations_rejected() {
        for n in 0..14 {
            assert_eq!(
                EthernetFrame::new_checked(&UNTAGGED[..n]).unwrap_err(),
                Error::Runt
            );
        }
        let mut b = [0u8; 30];
        b[12..14].copy_from_slice(&[0x81, 0x00]);
        for n in 14..18 {
            assert_eq!(
                EthernetFrame::new_checked(&b[..n]).unwrap_err(),
                Error::TruncatedTag
            );
        }
        b[16..18].copy_from_slice(&[0x81, 0x00]);
        b[20..22].copy_from_slice(&[0x88, 0xa8]);
        assert_eq!(
            EthernetFrame::new_checked(&b[..]).unwrap_err(),
            Error::TooManyTags
        );
    }

    #[test]
    fn emit_then_parse() {
        let mut b = [0u8; 64];
        let d = MacAddr([2, 1, 2, 3, 4, 5]);
        let s = MacAddr([2, 9, 8, 7, 6, 5]);
        let n = emit_header(&mut b, d, s, Some(42), EtherType::IPV4);
        assert_eq!(n, 18);
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(
            (f.dst(), f.src(), f.vlan(), f.ethertype()),
            (d, s, Some(42), EtherType::IPV4)
        );
        assert!(VlanId::new_checked(0).is_none() && VlanId::new_checked(4095).is_none());
        assert_eq!(VlanId::new_checked(4094).unwrap().get(), 4094);
    }
}
