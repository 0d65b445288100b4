//! AF_XDP on a veth pair, as root, in a private network namespace.
//!
//! Each test creates a namespace `umvx<pid>-<seq>-x` (a `common::Lab`) holding a veth
//! pair `xa`–`xb` (IPv6 off, so the kernel sends nothing of its own), runs its body
//! on a thread that entered the namespace with `setns`, and deletes the namespace
//! when done, even if the body panics. Namespaces left behind by earlier runs (whose
//! process is gone) are deleted first. Nothing is attached outside these namespaces.
//!
//! veth supports AF_XDP in copy mode only, so these tests exercise the copy-mode
//! path: the zero-copy attempt fails and the socket falls back.
//!
//! Without root (or the `ip` command) the tests are skipped with a message, except
//! under `CI=true`, where a test that cannot run fails.

mod common;

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{in_ns, require_root_and, Lab};
use umacvlan::port::{Frame, FramePool, Port};
use umacvlan::sys;
use umacvlan::xsk::{BindMode, Umem, XskConfig, XskMode, XskPort, XskSocket, XDP_PACKET_HEADROOM};

const PREFIX: &str = "umvx";
const FRAMES: usize = 1000;
const TIMEOUT: Duration = Duration::from_secs(20);

/// A lab with one namespace `umvx<pid>-<seq>-x` holding a veth pair `xa`–`xb`, both
/// up; returns the lab (which deletes it on drop) and the namespace's name.
fn veth_lab() -> (Lab, String) {
    let mut lab = Lab::new(PREFIX);
    let ns = lab.quiet_ns("x");
    lab.veth(&ns, "xa", "xb");
    (lab, ns)
}

/// `dev`'s received-packet counter, read from this thread's namespace.
fn rx_packets(dev: &str) -> u64 {
    let s = fs::read_to_string("/proc/thread-self/net/dev").expect("read net/dev");
    s.lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == dev).then(|| rest.split_whitespace().nth(1)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{dev} not in /proc/thread-self/net/dev"))
}

/// Test frame `seq`: Ethernet to a unicast MAC nobody has, ethertype 0x88b5 (local
/// experimental), `seq`, then a pattern; 60 to 1514 bytes.
fn frame(seq: usize) -> Vec<u8> {
    let len = 60 + (seq * 37) % 1455;
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0xbb, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x01]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&(seq as u32).to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq + i) as u8;
    }
    f
}

fn seq_of(data: &[u8]) -> usize {
    u32::from_be_bytes([data[14], data[15], data[16], data[17]]) as usize
}

/// Queues frames `*next..FRAMES` through `port` as far as it takes them.
fn send_some(umem: &mut Umem, port: &mut XskPort, batch: &mut Vec<Frame>, next: &mut usize) {
    while *next < FRAMES && batch.len() < 32 {
        let Some(f) = umem.alloc_with(&frame(*next)) else {
            break;
        };
        batch.push(f);
        *next += 1;
    }
    port.transmit(umem, batch);
}

fn index(name: &str) -> u32 {
    sys::if_nametoindex(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn transmit_reaches_the_peer_and_every_frame_completes() {
    if !require_root_and(
        "transmit_reaches_the_peer_and_every_frame_completes",
        &["ip"],
    ) {
        return;
    }
    let (_lab, ns) = veth_lab();
    in_ns(&ns, || {
        let mut umem = Umem::new(4096, 2048).unwrap();
        sys::raise_memlock_limit(umem.len_bytes()).unwrap();
        let xa = index("xa");

        // veth has no zero-copy: an explicit request fails with the reason...
        let zc = XskConfig {
            bind_mode: BindMode::ZeroCopy,
            ..XskConfig::default()
        };
        let e = XskSocket::new(&mut umem, xa, 0, &zc).unwrap_err();
        eprintln!("zero-copy on veth: {e}");
        assert!(e.to_string().contains("xa (ifindex"), "{e}");
        // ...and the default falls back to copy mode.
        let mut port = XskPort::open(&mut umem, xa, 0, &XskConfig::default()).unwrap();
        assert_eq!(port.socket().mode(), XskMode::Copy);
        assert!(port.socket().owns_umem());

        let before = rx_packets("xb");
        let mut next = 0;
        let mut batch = Vec::with_capacity(32);
        let deadline = Instant::now() + TIMEOUT;
        while (next < FRAMES || !batch.is_empty() || port.lent().1 > 0) && Instant::now() < deadline
        {
            port.maintain(&mut umem);
            send_some(&mut umem, &mut port, &mut batch, &mut next);
            if !batch.is_empty() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        batch.drain(..).for_each(|f| umem.free(f));
        assert_eq!(
            port.lent().1,
            0,
            "every transmitted frame came back on the completion ring"
        );
        let mut got = rx_packets("xb") - before;
        while got < FRAMES as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            got = rx_packets("xb") - before;
        }
        assert_eq!(
            got, FRAMES as u64,
            "xb received exactly what xa's socket sent"
        );

        let st = port.statistics().unwrap();
        eprintln!("xa: {:?} {:?}", st, port.counters());
        assert_eq!(st.tx_invalid_descs, 0);
        let a = umem.check_accounting();
        assert_eq!(
            (a.held, a.lent),
            (0, port.lent().0),
            "only the fill ring has frames"
        );
        drop(port);
        assert_eq!(umem.reclaim_closed(), a.lent);
        assert_eq!(umem.in_use(), 0);
    });
}

#[test]
fn receive_through_an_xskmap_on_a_shared_umem() {
    if !require_root_and("receive_through_an_xskmap_on_a_shared_umem", &["ip"]) {
        return;
    }
    let (_lab, ns) = veth_lab();
    in_ns(&ns, || {
        let mut umem = Umem::new(4096, 2048).unwrap();
        sys::raise_memlock_limit(umem.len_bytes()).unwrap();
        let (xa, xb) = (index("xa"), index("xb"));
        let cfg = XskConfig::default();
        let mut a = XskPort::open(&mut umem, xa, 0, &cfg).unwrap();
        let mut b = XskPort::open(&mut umem, xb, 0, &cfg).unwrap();
        assert!(a.socket().owns_umem() && !b.socket().owns_umem());
        assert_eq!(b.socket().mode(), XskMode::Copy);

        let map = bpf::xskmap().expect("create XSKMAP");
        bpf::xskmap_set(map.as_fd(), 0, b.as_fd()).expect("insert socket");
        let prog = bpf::redirect_to_xskmap(map.as_fd()).expect("load XDP program");
        let _link = bpf::attach_xdp(prog.as_fd(), xb).expect("attach XDP to xb");

        let mut seen = vec![false; FRAMES];
        let mut got = 0;
        let mut next = 0;
        let mut batch = Vec::with_capacity(32);
        let mut rx = Vec::with_capacity(64);
        let deadline = Instant::now() + TIMEOUT;
        while got < FRAMES && Instant::now() < deadline {
            a.maintain(&mut umem);
            b.maintain(&mut umem);
            send_some(&mut umem, &mut a, &mut batch, &mut next);
            b.receive(&mut umem, &mut rx, 64);
            if rx.is_empty() {
                b.wait_readable(1).unwrap();
            }
            for f in rx.drain(..) {
                let data = umem.data(&f);
                let seq = seq_of(data);
                assert!(
                    seq < FRAMES && !seen[seq],
                    "frame {seq} unexpected or twice"
                );
                assert_eq!(data, &frame(seq)[..], "frame {seq} intact");
                assert_eq!(
                    f.offset(),
                    XDP_PACKET_HEADROOM,
                    "data after the kernel's headroom"
                );
                seen[seq] = true;
                got += 1;
                umem.free(f);
            }
        }
        batch.drain(..).for_each(|f| umem.free(f));
        rx.drain(..).for_each(|f| umem.free(f));
        let sb = b.statistics().unwrap();
        eprintln!("xb: {sb:?} {:?}; xa: {:?}", b.counters(), a.counters());
        assert_eq!(got, FRAMES, "every frame arrived on xb's socket");
        assert_eq!(
            (sb.rx_dropped, sb.rx_ring_full, sb.rx_fill_ring_empty_descs),
            (0, 0, 0)
        );

        for _ in 0..1000 {
            if a.lent().1 == 0 {
                break;
            }
            a.maintain(&mut umem);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(a.lent().1, 0, "all transmissions completed");
        let acc = umem.check_accounting();
        assert_eq!(acc.held, 0);
        assert_eq!(acc.lent, a.lent().0 + b.lent().0);
        drop((a, b));
        umem.reclaim_closed();
        assert_eq!(
            umem.in_use(),
            0,
            "closing the sockets gave every frame back"
        );
    });
}

/// Just enough raw `bpf(2)` to redirect a device's queue 0 into an XSKMAP (the real
/// loader is `umacvlan::bpf`; this keeps the AF_XDP test independent of it).
mod bpf {
    use super::*;
    use std::io;

    const BPF_MAP_CREATE: i64 = 0;
    const BPF_MAP_UPDATE_ELEM: i64 = 2;
    const BPF_PROG_LOAD: i64 = 5;
    const BPF_LINK_CREATE: i64 = 28;
    const BPF_MAP_TYPE_XSKMAP: u32 = 17;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_XDP: u32 = 37;
    const BPF_FUNC_REDIRECT_MAP: i32 = 51;
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    const XDP_PASS: i32 = 2;
    const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

    /// A `union bpf_attr`, zeroed, written field by field at kernel offsets.
    #[repr(C, align(8))]
    struct Attr([u8; 128]);

    impl Attr {
        fn new() -> Attr {
            Attr([0; 128])
        }
        fn u32(&mut self, off: usize, v: u32) -> &mut Self {
            self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn u64(&mut self, off: usize, v: u64) -> &mut Self {
            self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
            self
        }
    }

    fn bpf(cmd: i64, attr: &mut Attr) -> io::Result<OwnedFd> {
        // SAFETY: `attr` is a 128-byte, zero-padded bpf_attr for `cmd`; every pointer
        // in it points to memory that outlives the call.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the commands passed here (create, load, link) return a new fd that
        // nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }

    pub fn xskmap() -> io::Result<OwnedFd> {
        let mut a = Attr::new();
        a.u32(0, BPF_MAP_TYPE_XSKMAP).u32(4, 4).u32(8, 4).u32(12, 1);
        bpf(BPF_MAP_CREATE, &mut a)
    }

    pub fn xskmap_set(map: BorrowedFd<'_>, key: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
        let val = sock.as_raw_fd() as u32;
        let mut a = Attr::new();
        a.u32(0, map.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64)
            .u64(16, &val as *const u32 as u64);
        // SAFETY: bpf() ran with the command's documented attributes; see `bpf`.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_ELEM,
                a.0.as_mut_ptr(),
                a.0.len(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
        let mut i = [0u8; 8];
        i[0] = code;
        i[1] = (src << 4) | dst;
        i[2..4].copy_from_slice(&off.to_ne_bytes());
        i[4..8].copy_from_slice(&imm.to_ne_bytes());
        i
    }

    /// `return bpf_redirect_map(&map, ctx->rx_queue_index, XDP_PASS);`
    pub fn redirect_to_xskmap(map: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        let prog: Vec<u8> = [
            insn(0x61, 2, 1, 16, 0), // r2 = ctx->rx_queue_index
            insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map.as_raw_fd()), // r1 = &map
            insn(0, 0, 0, 0, 0),
            insn(0xb7, 3, 0, 0, XDP_PASS),              // r3 = XDP_PASS
            insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // call bpf_redirect_map
            insn(0x95, 0, 0, 0, 0),                     // exit
        ]
        .concat();
        let license = b"GPL\0";
        let mut log = vec![0u8; 1 << 16];
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, (prog.len() / 8) as u32)
            .u64(8, prog.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, 1)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64)
            .u32(68, BPF_XDP);
        bpf(BPF_PROG_LOAD, &mut a).map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            io::Error::new(
                e.kind(),
                format!("{e}: {}", String::from_utf8_lossy(&log[..end])),
            )
        })
    }

    /// Attaches `prog` to `ifindex` (native mode, else generic) through a BPF link,
    /// which detaches when dropped.
    pub fn attach_xdp(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
        let mut last = None;
        for flags in [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE] {
            let mut a = Attr::new();
            a.u32(0, prog.as_raw_fd() as u32)
                .u32(4, ifindex)
                .u32(8, BPF_XDP)
                .u32(12, flags);
            match bpf(BPF_LINK_CREATE, &mut a) {
                Ok(fd) => {
                    eprintln!("XDP attached to ifindex {ifindex} with flags {flags:#x}");
                    return Ok(fd);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::Other)))
    }
}
