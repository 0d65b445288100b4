//! pcap files (the classic format tcpdump and Wireshark read and write): frames with
//! their time and length, read from a file and written to one or to a pipe.

use std::io::{Read, Write};

/// The classic pcap magic, microsecond timestamps.
const MAGIC_US: u32 = 0xa1b2_c3d4;
/// ... nanosecond timestamps.
const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Link type Ethernet.
const LINKTYPE_ETHERNET: u32 = 1;

/// One frame of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When it was seen, in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Its length on the wire (the bytes kept may be fewer: the snap length).
    pub orig_len: u32,
    /// The bytes kept.
    pub data: Vec<u8>,
}

/// Why a pcap file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading failed.
    #[error("reading the capture: {0}")]
    Io(#[from] std::io::Error),
    /// Not a pcap file.
    #[error("not a pcap file (magic {0:#010x}); pcapng is not read: convert it with `tcpdump -r IN -w OUT`")]
    Magic(u32),
    /// A link type other than Ethernet.
    #[error("link type {0}: only Ethernet (1) captures can be explained")]
    LinkType(u32),
    /// The file ends inside a record.
    #[error("the capture ends inside record {0}")]
    Truncated(usize),
}

/// Every record of the pcap file `r`.
///
/// # Errors
/// [`Error`].
pub fn read(mut r: impl Read) -> Result<Vec<Record>, Error> {
    let mut all = Vec::new();
    r.read_to_end(&mut all)?;
    let u32_at = |b: &[u8], at: usize, swap: bool| -> Option<u32> {
        let v = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?);
        Some(if swap { v.swap_bytes() } else { v })
    };
    let magic = u32_at(&all, 0, false).ok_or(Error::Truncated(0))?;
    let (swap, nanos) = match magic {
        MAGIC_US => (false, false),
        MAGIC_NS => (false, true),
        m if m.swap_bytes() == MAGIC_US => (true, false),
        m if m.swap_bytes() == MAGIC_NS => (true, true),
        m => return Err(Error::Magic(m)),
    };
    let link = u32_at(&all, 20, swap).ok_or(Error::Truncated(0))?;
    if link != LINKTYPE_ETHERNET {
        return Err(Error::LinkType(link));
    }
    let mut at = 24;
    let mut out = Vec::new();
    while at < all.len() {
        let n = out.len();
        let field = |i: usize| u32_at(&all, at + 4 * i, swap).ok_or(Error::Truncated(n));
        let (sec, frac, incl, orig) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let data = all
            .get(at + 16..at + 16 + incl as usize)
            .ok_or(Error::Truncated(n))?
            .to_vec();
        let frac_ns = if nanos {
            frac as u64
        } else {
            frac as u64 * 1000
        };
        out.push(Record {
            ts_ns: sec as u64 * 1_000_000_000 + frac_ns,
            orig_len: orig,
            data,
        });
        at += 16 + incl as usize;
    }
    Ok(out)
}

/// Writes a pcap stream (nanosecond timestamps) to `w`, one record at a time.
pub struct Writer<W: Write> {
    w: W,
}

impl<W: Write> Writer<W> {
    /// Writes the file header, with snap length `snaplen`.
    ///
    /// # Errors
    /// Writing fails.
    pub fn new(mut w: W, snaplen: u32) -> std::io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        w.write_all(&h)?;
        w.flush()?;
        Ok(Writer { w })
    }

    /// Writes one record (and flushes: a reader on a pipe sees it now).
    ///
    /// # Errors
    /// Writing fails.
    pub fn write(&mut self, r: &Record) -> std::io::Result<()> {
        let mut h = Vec::with_capacity(16 + r.data.len());
        h.extend_from_slice(&((r.ts_ns / 1_000_000_000) as u32).to_le_bytes());
        h.extend_from_slice(&((r.ts_ns % 1_000_000_000) as u32).to_le_bytes());
        h.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        h.extend_from_slice(&r.orig_len.to_le_bytes());
        h.extend_from_slice(&r.data);
        self.w.write_all(&h)?;
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let recs = vec![
            Record {
                ts_ns: 1_700_000_000_123_456_789,
                orig_len: 60,
                data: vec![0xff; 60],
            },
            Record {
                ts_ns: 1_700_000_001_000_000_001,
                orig_len: 1514,
                data: vec![0xab; 96],
            },
        ];
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, 96).unwrap();
        for r in &recs {
            w.write(r).unwrap();
        }
        assert_eq!(read(&buf[..]).unwrap(), recs);
    }

    #[test]
    fn microseconds_and_swapped_files_read_and_bad_ones_are_named() {
        // A big-endian microsecond file with one 14-byte record.
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC_US.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        for v in [5u32, 7, 14, 14] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[1; 14]);
        let r = read(&b[..]).unwrap();
        assert_eq!(r[0].ts_ns, 5_000_007_000);
        assert_eq!(r[0].data.len(), 14);
        let short = &b[..b.len() - 1];
        assert!(matches!(read(short), Err(Error::Truncated(0))));
        assert!(matches!(
            read(&b"\x0a\x0d\x0d\x0a...."[..]),
            Err(Error::Magic(_))
        ));
    }
}
