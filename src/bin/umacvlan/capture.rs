//! `umacvlan capture`: streams a port's frames from the daemon — what the switch and
//! the kernel fast path receive from it and send to it — as pcap to a file or to
//! stdout (`-w -`, for `tcpdump -r -`), or as one line per frame.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use umacvlan::ctl::{self, Request, Response, CAPTURE_END, CAPTURE_FRAME};

use crate::pcap::{Record, Writer};

/// Where the frames go: a pcap writer or a line printer.
type Sink = Box<dyn FnMut(&Frame) -> std::io::Result<()>>;

/// One frame of the stream.
struct Frame {
    out: bool,
    fast: bool,
    rec: Record,
}

/// Runs the capture `req` against the daemon on `socket`; `write`: a pcap file, `-`
/// for stdout, or `None` for a line per frame.
pub fn main(socket: &Path, req: ctl::Capture, write: Option<&Path>) -> Result<()> {
    let snaplen = req
        .snaplen
        .unwrap_or(umacvlan::dataplane::CaptureConfig::MAX_SNAPLEN);
    let port = req.port.clone();
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the daemon at {}", socket.display()))?;
    s.write_all(&ctl::encode(&Request::Capture(req)))?;
    let mut r = BufReader::new(s);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    let resp: Response =
        serde_json::from_slice(&line).map_err(|e| anyhow!("the daemon's answer: {e}"))?;
    if !resp.ok {
        bail!(resp
            .error
            .unwrap_or_else(|| "the daemon refused the capture".into()));
    }
    let mut sink: Sink = match write {
        Some(p) => {
            let out: Box<dyn Write> = if p == Path::new("-") {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::fs::File::create(p).with_context(|| format!("{}", p.display()))?)
            };
            let mut w = Writer::new(out, snaplen)?;
            Box::new(move |f| w.write(&f.rec))
        }
        None => {
            let mut out = std::io::stdout().lock();
            Box::new(move |f| writeln!(out, "{}", line_of(f)))
        }
    };
    eprintln!("umacvlan: capturing on {port} (snap length {snaplen})");
    loop {
        let mut kind = [0u8; 1];
        if r.read_exact(&mut kind).is_err() {
            bail!("the daemon ended the capture without a word (did it stop?)");
        }
        match kind[0] {
            CAPTURE_FRAME => {
                let mut h = [0u8; 19];
                r.read_exact(&mut h)?;
                let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
                let ts_ns = u64::from_le_bytes(h[3..11].try_into().unwrap());
                let (len, caplen) = (u32_at(11), u32_at(15));
                let mut data = vec![0u8; caplen as usize];
                r.read_exact(&mut data)?;
                let f = Frame {
                    out: h[0] == 1,
                    fast: h[1] == 1,
                    rec: Record {
                        ts_ns,
                        orig_len: len,
                        data,
                    },
                };
                sink(&f)?;
            }
            CAPTURE_END => {
                let mut end = Vec::new();
                r.read_until(b'\n', &mut end)?;
                let v: serde_json::Value = serde_json::from_slice(&end).unwrap_or_default();
                let n = |k: &str| v[k].as_u64().unwrap_or(0);
                let (lost, kernel) = (n("lost"), n("lost_in_kernel"));
                eprintln!(
                    "umacvlan: {} frames captured on {port} ({}){}",
                    n("captured"),
                    v["ended"].as_str().unwrap_or("ended"),
                    if lost + kernel > 0 {
                        format!(
                            "; {lost} lost by the capture and {kernel} by the kernel's ring: it could not keep up"
                        )
                    } else {
                        String::new()
                    }
                );
                return Ok(());
            }
            k => bail!("the daemon sent message {k:#04x} on the capture stream"),
        }
    }
}

/// `17:03:12.123456789 in  switch 98 bytes 02:00:00:00:00:01 > 02:00:00:00:00:02 0x0800`
fn line_of(f: &Frame) -> String {
    let d = &f.rec.data;
    let mac = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let secs = f.rec.ts_ns / 1_000_000_000;
    let header = if d.len() >= 14 {
        format!(
            "{} > {} {:#06x}",
            mac(&d[6..12]),
            mac(&d[0..6]),
            u16::from_be_bytes([d[12], d[13]])
        )
    } else {
        "(runt)".into()
    };
    format!(
        "{:02}:{:02}:{:02}.{:09} {:<3} {:<6} {} bytes {header}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        f.rec.ts_ns % 1_000_000_000,
        if f.out { "out" } else { "in" },
        if f.fast { "kernel" } else { "switch" },
        f.rec.orig_len
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_as_one_line() {
        let mut data = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        data.resize(60, 0);
        let f = Frame {
            out: true,
            fast: true,
            rec: Record {
                ts_ns: 3_723_000_000_042,
                orig_len: 98,
                data,
            },
        };
        assert_eq!(
            line_of(&f),
            "01:02:03.000000042 out kernel 98 bytes 02:00:00:00:00:01 > 02:00:00:00:00:02 0x0800"
        );
    }
}
