//! IPv4 and UDP, as far as umacvlan writes them: the 20-byte header the traffic
//! generator and the in-process responder's tests build, the UDP checksum, and the
//! Internet checksum (RFC 1071) they and the responder's replies use.

use std::net::Ipv4Addr;

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// The Internet checksum (RFC 1071) of `b`.
pub fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes an IPv4 header without options into `buf[..20]`: don't-fragment, TTL 64,
/// `total_len` bytes in all (header included), protocol `proto`, its checksum filled.
///
/// # Panics
/// If `buf` is shorter than [`HEADER_LEN`].
pub fn emit_header(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, proto: u8, total_len: u16) {
    let ip = &mut buf[..HEADER_LEN];
    ip.fill(0);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total_len.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Writes a UDP header into `udp[..8]` for the datagram `udp` (header and payload)
/// from `src:sport` to `dst:dport`, with its checksum over the pseudo-header.
///
/// # Panics
/// If `udp` is shorter than [`UDP_HEADER_LEN`] or longer than 65 535 bytes.
pub fn emit_udp(udp: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) {
    let len = u16::try_from(udp.len()).expect("a UDP datagram fits in 65535 bytes");
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    // Over the pseudo-header (addresses, protocol, UDP length) and the datagram.
    let mut covered = Vec::with_capacity(12 + udp.len());
    covered.extend_from_slice(&src.octets());
    covered.extend_from_slice(&dst.octets());
    covered.extend_from_slice(&[0, PROTO_UDP]);
    covered.extend_from_slice(&len.to_be_bytes());
    covered.extend_from_slice(udp);
    // 0 means "no checksum" in UDP over IPv4: send its one's-complement twin.
    let c = match checksum(&covered) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_with_its_checksum_sums_to_zero() {
        let mut b = [0u8; 20];
        emit_header(
            &mut b,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            PROTO_UDP,
            60,
        );
        assert_eq!(checksum(&b), 0);
        assert_eq!(
            (b[0], b[9], u16::from_be_bytes([b[2], b[3]])),
            (0x45, 17, 60)
        );
        // RFC 1071's example.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }
}
