//! Socket setup and the port datapath against the fake kernel of `sys::fake`: no
//! root needed. The test plays the kernel's side of each ring.

use core::ptr::NonNull;
use std::os::fd::{AsRawFd, RawFd};

use super::ring::{ConsRing, ProdRing, RingPtrs};
use super::*;
use crate::port::{Frame, FrameIdx, FramePool, Port};
use crate::sys::fake::{self, Call, FakeKernel, FAKE_RING};
use crate::sys::{
    xdp_desc, xdp_umem_reg, XDP_COPY, XDP_PGOFF_RX_RING, XDP_PGOFF_TX_RING, XDP_RING_NEED_WAKEUP,
    XDP_RX_RING, XDP_SHARED_UMEM, XDP_TX_RING, XDP_UMEM_COMPLETION_RING, XDP_UMEM_FILL_RING,
    XDP_UMEM_PGOFF_COMPLETION_RING, XDP_UMEM_PGOFF_FILL_RING, XDP_UMEM_REG, XDP_USE_NEED_WAKEUP,
    XDP_ZEROCOPY,
};

/// Interface 1 is `lo` in every network namespace, so errors can name it.
const LO: u32 = 1;

fn small() -> XskConfig {
    XskConfig {
        rx_size: 64,
        tx_size: 64,
        fill_size: 64,
        comp_size: 64,
        fill_level: 32,
        fill_batch: 16,
        ..XskConfig::default()
    }
}

/// The kernel's side of one socket's rings, over the fake's mappings.
struct KernelSide {
    fill: ConsRing<u64>,
    comp: ProdRing<u64>,
    rx: ProdRing<xdp_desc>,
    tx: ConsRing<xdp_desc>,
}

impl KernelSide {
    /// Must be dropped before `sock` (which owns the memory).
    fn of(sock: &XskSocket) -> KernelSide {
        let fd = sock.as_fd().as_raw_fd();
        let (rx, tx, fill, comp) = sock.ring_sizes();
        fn ptrs<T: Copy>(fd: RawFd, pgoff: u64, size: u32) -> RingPtrs<T> {
            let r = fake::with(|k| k.ring(fd, pgoff));
            let base = NonNull::new(r.addr as *mut u8).unwrap();
            // SAFETY: the fake mapped `len` bytes at `addr` for the socket, which the
            // test keeps alive longer than this view; we are the only other side.
            unsafe { RingPtrs::new(base, r.len, &FAKE_RING, size).unwrap() }
        }
        // SAFETY: one kernel-side view per ring, opposite the socket's own side.
        unsafe {
            KernelSide {
                fill: ConsRing::from_raw(ptrs(fd, XDP_UMEM_PGOFF_FILL_RING, fill)),
                comp: ProdRing::from_raw(ptrs(fd, XDP_UMEM_PGOFF_COMPLETION_RING, comp)),
                rx: ProdRing::from_raw(ptrs(fd, XDP_PGOFF_RX_RING as u64, rx)),
                tx: ConsRing::from_raw(ptrs(fd, XDP_PGOFF_TX_RING as u64, tx)),
            }
        }
    }

    /// Receives `packets` into frames from the fill ring, as the kernel does: data at
    /// `XDP_PACKET_HEADROOM`. Returns the rx descriptors written.
    fn deliver(&mut self, umem: &mut Umem, packets: &[Vec<u8>]) -> Vec<xdp_desc> {
        let fill = self.fill.peek(packets.len() as u32);
        assert_eq!(fill.len() as usize, packets.len(), "fill ring too short");
        let mut rx = self.rx.reserve(packets.len() as u32);
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let addr = fill.get(i as u32) + XDP_PACKET_HEADROOM as u64;
            umem.kernel_write(addr, p);
            let d = xdp_desc {
                addr,
                len: p.len() as u32,
                options: 0,
            };
            rx.push(d);
            out.push(d);
        }
        fill.release();
        rx.commit();
        out
    }

    /// Transmits everything in the tx ring and completes it. Returns what was sent.
    fn send_all(&mut self, umem: &Umem) -> Vec<Vec<u8>> {
        let tx = self.tx.peek(u32::MAX);
        let mut comp = self.comp.reserve(tx.len());
        assert_eq!(comp.capacity(), tx.len(), "completion ring overflow");
        let mut sent = Vec::new();
        for i in 0..tx.len() {
            let d = tx.get(i);
            sent.push(umem.kernel_read(d.addr, d.len as usize));
            comp.push(d.addr);
        }
        tx.release();
        comp.commit();
        sent
    }

    fn set_need_wakeup(&self, fill: bool, tx: bool) {
        use core::sync::atomic::Ordering::Relaxed;
        let f = |on: bool| if on { XDP_RING_NEED_WAKEUP } else { 0 };
        self.fill.ptrs().flags().store(f(fill), Relaxed);
        self.tx.ptrs().flags().store(f(tx), Relaxed);
    }
}

fn packet(i: usize) -> Vec<u8> {
    let mut p = vec![0u8; 60 + i % 40];
    p[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    p[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    p[12..14].copy_from_slice(&[0x88, 0xb5]);
    p[14..22].copy_from_slice(&(i as u64).to_be_bytes());
    p
}

fn sends(fd: RawFd) -> usize {
    fake::with(|k| k.count(|c| *c == Call::SendTo(fd)))
}

#[test]
fn first_socket_registers_umem_later_ones_share_it_with_own_rings() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(64, 2048).unwrap();
    let a = XskSocket::new(&mut umem, LO, 0, &small()).unwrap();
    assert!(a.owns_umem());
    assert_eq!(
        a.mode(),
        XskMode::Copy,
        "no zero-copy: fell back to copy mode"
    );
    let binds = fake::with(|k| k.binds());
    assert_eq!(binds.len(), 2);
    assert_eq!(binds[0].flags, XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP);
    assert_eq!(binds[1].flags, XDP_COPY | XDP_USE_NEED_WAKEUP);
    assert_eq!(
        fake::with(|k| k.count(|c| matches!(c, Call::Socket(_)))),
        2,
        "the fallback starts from a fresh socket"
    );
    let fa = a.as_fd().as_raw_fd();
    assert_eq!(binds[1].fd, fa);
    assert_eq!((binds[1].ifindex, binds[1].queue), (LO, 0));
    assert_eq!(
        fake::with(|k| k.sockopts(fa)),
        [
            XDP_UMEM_REG,
            XDP_UMEM_FILL_RING,
            XDP_UMEM_COMPLETION_RING,
            XDP_RX_RING,
            XDP_TX_RING
        ]
    );
    let reg = fake::calls()
        .into_iter()
        .find_map(|c| match c {
            Call::SetSockOpt {
                fd,
                name: XDP_UMEM_REG,
                value,
            } if fd == fa => Some(value),
            _ => None,
        })
        .unwrap();
    let mut r: xdp_umem_reg = crate::sys::zeroed();
    crate::sys::as_bytes_mut(&mut r).copy_from_slice(&reg);
    assert_eq!(
        (r.addr, r.len, r.chunk_size, r.headroom, r.flags),
        (umem.base_addr(), 64 * 2048, 2048, 0, 0)
    );

    let b = XskSocket::new(&mut umem, LO, 1, &small()).unwrap();
    let fb = b.as_fd().as_raw_fd();
    assert!(!b.owns_umem());
    assert_eq!(b.mode(), XskMode::Copy, "inherited");
    assert_eq!(
        fake::with(|k| k.sockopts(fb)),
        [
            XDP_UMEM_FILL_RING,
            XDP_UMEM_COMPLETION_RING,
            XDP_RX_RING,
            XDP_TX_RING
        ],
        "own fill and completion rings, no second registration"
    );
    let bind = *fake::with(|k| k.binds()).last().unwrap();
    assert_eq!(
        bind.flags, XDP_SHARED_UMEM,
        "no mode flags with XDP_SHARED_UMEM"
    );
    assert_eq!(bind.shared_fd, fa as u32);
    assert_eq!((bind.ifindex, bind.queue), (LO, 1));
    assert_eq!(umem.sockets(), 2);

    // With the first socket gone, the next shares through the second.
    drop(a);
    let c = XskSocket::new(&mut umem, LO, 2, &small()).unwrap();
    assert_eq!(
        fake::with(|k| k.binds()).last().unwrap().shared_fd,
        fb as u32
    );
    // With none left, the next registers the UMEM again.
    drop((b, c));
    let d = XskSocket::new(&mut umem, LO, 3, &small()).unwrap();
    assert!(d.owns_umem());
    assert_eq!(umem.sockets(), 1);
}

#[test]
fn zero_copy_when_the_driver_can_and_sharers_inherit_it() {
    let _k = fake::install(FakeKernel {
        zerocopy_supported: true,
        ..FakeKernel::default()
    });
    let mut umem = Umem::new(64, 2048).unwrap();
    let a = XskSocket::new(&mut umem, LO, 0, &small()).unwrap();
    assert_eq!(a.mode(), XskMode::ZeroCopy);
    assert_eq!(fake::with(|k| k.binds()).len(), 1);
    let b = XskSocket::new(&mut umem, LO, 1, &small()).unwrap();
    assert_eq!(b.mode(), XskMode::ZeroCopy);
    let copy = XskConfig {
        bind_mode: BindMode::Copy,
        ..small()
    };
    let e = XskSocket::new(&mut umem, LO, 2, &copy).unwrap_err();
    assert!(
        matches!(e, Error::Config(ref s) if s.contains("zero-copy")),
        "{e}"
    );
    drop((a, b));
}

#[test]
fn explicit_zero_copy_does_not_fall_back() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(64, 2048).unwrap();
    let zc = XskConfig {
        bind_mode: BindMode::ZeroCopy,
        ..small()
    };
    let e = XskSocket::new(&mut umem, LO, 0, &zc).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
    let s = e.to_string();
    assert!(s.contains("lo (ifindex 1) queue 0: bind: "), "{s}");
    assert!(s.contains("cannot do zero-copy"), "{s}");
    assert_eq!(fake::with(|k| k.binds()).len(), 1);
    assert_eq!(umem.sockets(), 0);
}

#[test]
fn bind_errors_name_interface_queue_and_call() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(64, 2048).unwrap();
    fake::with(|k| k.bind_errnos.push_back(libc::EBUSY));
    let e = XskSocket::new(&mut umem, LO, 3, &small()).unwrap_err();
    match &e {
        Error::Socket {
            ifname,
            ifindex,
            queue,
            cause,
            ..
        } => {
            assert_eq!((ifname.as_str(), *ifindex, *queue), ("lo", LO, 3));
            assert_eq!(cause.call, "bind");
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(
        e.to_string().contains("already") || e.to_string().contains("another"),
        "{e}"
    );
    assert_eq!(
        fake::with(|k| k.binds()).len(),
        1,
        "EBUSY is not a reason to retry"
    );

    // EINVAL from the zero-copy attempt does fall back.
    fake::with(|k| k.bind_errnos.push_back(libc::EINVAL));
    let s = XskSocket::new(&mut umem, LO, 3, &small()).unwrap();
    assert_eq!(s.mode(), XskMode::Copy);
}

#[test]
fn memlock_failure_says_what_to_do() {
    let _k = fake::install(FakeKernel::default());
    fake::with(|k| k.setsockopt_errnos.push((XDP_UMEM_REG, libc::ENOBUFS)));
    let mut umem = Umem::new(64, 2048).unwrap();
    let e = XskSocket::new(&mut umem, LO, 0, &small()).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("setsockopt(XDP_UMEM_REG)"), "{s}");
    assert!(
        s.contains("RLIMIT_MEMLOCK") && s.contains("CAP_IPC_LOCK"),
        "{s}"
    );
}

#[test]
fn old_kernel_ring_offsets_are_refused() {
    let _k = fake::install(FakeKernel {
        offsets_len: 96,
        ..FakeKernel::default()
    });
    let mut umem = Umem::new(64, 2048).unwrap();
    let e = XskSocket::new(&mut umem, LO, 0, &small()).unwrap_err();
    assert!(
        matches!(e, Error::Kernel { ref what, .. } if what.contains("5.10")),
        "{e}"
    );
}

#[test]
fn configuration_is_validated() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(64, 2048).unwrap();
    for bad in [
        XskConfig {
            rx_size: 100,
            ..small()
        },
        XskConfig {
            fill_level: 128,
            ..small()
        },
        XskConfig {
            fill_batch: 0,
            ..small()
        },
        XskConfig {
            fill_batch: 64,
            ..small()
        },
    ] {
        assert!(matches!(
            XskSocket::new(&mut umem, LO, 0, &bad),
            Err(Error::Config(_))
        ));
    }
    assert!(XskConfig::default().validate().is_ok());
    assert!(fake::calls().is_empty(), "nothing reached the kernel");
}

#[test]
fn copy_mode_datapath_moves_every_frame_and_loses_none() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(256, 2048).unwrap();
    let mut port = XskPort::open(&mut umem, LO, 0, &small()).unwrap();
    let fd = port.as_fd().as_raw_fd();
    let mut k = KernelSide::of(port.socket());

    port.maintain(&mut umem);
    assert_eq!(
        port.lent(),
        (32, 0),
        "filled to fill_level in whole batches"
    );
    assert_eq!(umem.check_accounting().lent, 32);
    assert_eq!(sends(fd), 0, "nothing to transmit, no syscall");

    let packets: Vec<_> = (0..20).map(packet).collect();
    let descs = k.deliver(&mut umem, &packets);
    let mut rx = Vec::with_capacity(32);
    port.receive(&mut umem, &mut rx, 8);
    assert_eq!(rx.len(), 8, "at most max per receive");
    port.receive(&mut umem, &mut rx, 32);
    assert_eq!(rx.len(), 20);
    for ((f, d), p) in rx.iter().zip(&descs).zip(&packets) {
        assert_eq!(umem.addr(f.idx()) + f.offset() as u64, d.addr);
        assert_eq!(f.offset(), XDP_PACKET_HEADROOM);
        assert_eq!(umem.data(f), &p[..]);
    }
    assert_eq!(port.lent(), (12, 0));

    port.maintain(&mut umem);
    assert_eq!(port.lent(), (28, 0), "one more batch of 16");

    // Forward all 20 back out, tagged, as the switch would.
    for f in &mut rx {
        assert!(umem.push_vlan(f, 5));
    }
    let expect: Vec<Vec<u8>> = rx.iter().map(|f| umem.data(f).to_vec()).collect();
    port.transmit(&mut umem, &mut rx);
    assert!(rx.is_empty());
    assert_eq!(port.lent(), (28, 20));
    assert_eq!(sends(fd), 1, "copy mode: one sendto per commit");
    let sent = k.send_all(&umem);
    assert_eq!(sent, expect);

    port.maintain(&mut umem);
    assert_eq!(port.lent(), (28, 0));
    let a = umem.check_accounting();
    assert_eq!((a.free, a.held, a.lent), (256 - 28, 0, 28));
    assert_eq!(sends(fd), 1, "nothing pending, no more sendto");

    fake::with(|k| k.stats.rx_ring_full = 7);
    assert_eq!(port.statistics().unwrap().rx_ring_full, 7);

    drop(k);
    drop(port);
    assert_eq!(
        umem.reclaim_closed(),
        28,
        "the fill ring's frames come back"
    );
    assert_eq!(umem.check_accounting().free, 256);
    assert_eq!(umem.in_use(), 0);
}

#[test]
fn zero_copy_wakes_the_kernel_only_when_asked() {
    let _k = fake::install(FakeKernel {
        zerocopy_supported: true,
        ..FakeKernel::default()
    });
    let mut umem = Umem::new(256, 2048).unwrap();
    let mut port = XskPort::open(&mut umem, LO, 0, &small()).unwrap();
    assert_eq!(port.socket().mode(), XskMode::ZeroCopy);
    let fd = port.as_fd().as_raw_fd();
    let mut k = KernelSide::of(port.socket());
    let recvs = || fake::with(|k| k.count(|c| *c == Call::RecvFrom(fd)));

    port.maintain(&mut umem);
    assert_eq!(recvs(), 0);
    let mut v = vec![umem.alloc_with(&packet(1)).unwrap()];
    port.transmit(&mut umem, &mut v);
    assert_eq!(sends(fd), 0, "flag clear: the driver is already polling");

    k.set_need_wakeup(true, true);
    let mut v = vec![umem.alloc_with(&packet(2)).unwrap()];
    port.transmit(&mut umem, &mut v);
    assert_eq!(sends(fd), 1);
    port.maintain(&mut umem);
    assert_eq!(recvs(), 1, "fill ring asked for a wakeup");
    assert_eq!(port.counters().rx_wakeups, 1);

    k.set_need_wakeup(false, false);
    assert_eq!(k.send_all(&umem).len(), 2);
    port.maintain(&mut umem);
    assert_eq!(port.lent().1, 0);
    drop(k);
    drop(port);
    umem.reclaim_closed();
    assert_eq!(umem.in_use(), 0);
}

#[test]
fn failed_wakeups_are_counted_and_retried() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(256, 2048).unwrap();
    let mut port = XskPort::open(&mut umem, LO, 0, &small()).unwrap();
    let fd = port.as_fd().as_raw_fd();
    let mut k = KernelSide::of(port.socket());

    fake::with(|k| k.sendto_errnos.extend([libc::ENETDOWN, libc::EAGAIN]));
    let mut v: Vec<Frame> = (0..3)
        .map(|i| umem.alloc_with(&packet(i)).unwrap())
        .collect();
    port.transmit(&mut umem, &mut v);
    assert_eq!(sends(fd), 1);
    assert_eq!(port.counters().wakeup_errors, 1);
    assert_eq!(port.counters().last_wakeup_errno, libc::ENETDOWN);
    // Still pending: maintain retries; EAGAIN without progress stops after one call
    // and is not an error.
    port.maintain(&mut umem);
    assert_eq!(sends(fd), 2);
    assert_eq!(port.counters().wakeup_errors, 1);
    port.maintain(&mut umem);
    assert_eq!(sends(fd), 3);
    assert_eq!(k.send_all(&umem).len(), 3);
    port.maintain(&mut umem);
    port.maintain(&mut umem);
    assert_eq!(sends(fd), 3, "nothing pending");
    assert_eq!(port.lent().1, 0);
    drop(k);
    drop(port);
}

#[test]
fn transmit_is_bounded_by_tx_ring_and_completion_ring() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(256, 2048).unwrap();
    let cfg = XskConfig {
        tx_size: 16,
        comp_size: 32,
        ..small()
    };
    let mut port = XskPort::open(&mut umem, LO, 0, &cfg).unwrap();
    let mut k = KernelSide::of(port.socket());
    let mut v: Vec<Frame> = (0..40)
        .map(|i| umem.alloc_with(&packet(i)).unwrap())
        .collect();
    let first = v[0].idx();
    port.transmit(&mut umem, &mut v);
    assert_eq!(v.len(), 24, "16 fit the tx ring");
    assert_eq!(
        v[0].idx(),
        FrameIdx(first.0 + 16),
        "in order, from the front"
    );
    // The kernel takes them off the tx ring but has not completed them yet.
    let t = k.tx.peek(16);
    assert_eq!(t.len(), 16);
    t.release();
    port.transmit(&mut umem, &mut v);
    assert_eq!(v.len(), 8, "16 more: the completion ring can take 32");
    port.transmit(&mut umem, &mut v);
    assert_eq!(v.len(), 8, "full until completions are reclaimed");
    {
        // Complete the first 16 (their addresses, as the kernel would).
        let mut c = k.comp.reserve(16);
        for i in 0..16 {
            c.push(umem.addr(FrameIdx(first.0 + i)) + crate::port::HEADROOM as u64);
        }
        c.commit();
    }
    port.maintain(&mut umem);
    assert_eq!(port.lent().1, 16);
    k.send_all(&umem);
    port.maintain(&mut umem);
    port.transmit(&mut umem, &mut v);
    assert!(v.is_empty());
    k.send_all(&umem);
    port.maintain(&mut umem);
    assert_eq!(umem.check_accounting().held, 0);
    drop(k);
    drop(port);
}

#[test]
fn transmit_stops_before_a_frame_the_kernel_would_drop() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(64, 2048).unwrap();
    let mut port = XskPort::open(&mut umem, LO, 0, &small()).unwrap();
    let mut k = KernelSide::of(port.socket());
    let empty = umem.alloc().unwrap();
    let mut v = vec![umem.alloc_with(&packet(0)).unwrap(), empty];
    v.push(umem.alloc_with(&packet(1)).unwrap());
    port.transmit(&mut umem, &mut v);
    assert_eq!(v.len(), 2, "stopped at the empty frame");
    assert_eq!(port.counters().tx_rejected, 1);
    v.into_iter().for_each(|f| umem.free(f));
    assert_eq!(k.send_all(&umem).len(), 1);
    port.maintain(&mut umem);
    drop(k);
    drop(port);
}

#[test]
fn refill_waits_for_a_whole_batch() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(20, 2048).unwrap();
    let mut port = XskPort::open(&mut umem, LO, 0, &small()).unwrap();
    port.maintain(&mut umem);
    assert_eq!(port.lent().0, 16, "one batch; 4 left is less than a batch");
    assert_eq!(port.counters().refill_skipped, 1);
    assert_eq!(umem.accounting().free, 4);
    drop(port);
}

#[test]
#[should_panic(expected = "different Umem")]
fn a_port_refuses_another_umem() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(64, 2048).unwrap();
    let mut other = Umem::new(64, 2048).unwrap();
    let mut port = XskPort::open(&mut umem, LO, 0, &small()).unwrap();
    port.maintain(&mut other);
}

#[test]
fn wait_readable_polls_for_input() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(64, 2048).unwrap();
    let port = XskPort::open(&mut umem, LO, 0, &small()).unwrap();
    assert!(!port.wait_readable(0).unwrap());
    fake::with(|k| k.poll_revents = libc::POLLIN);
    assert!(port.wait_readable(10).unwrap());
}

#[test]
fn ports_sharing_a_umem_keep_their_frames_apart() {
    let _k = fake::install(FakeKernel::default());
    let mut umem = Umem::new(128, 2048).unwrap();
    let mut a = XskPort::open(&mut umem, LO, 0, &small()).unwrap();
    let mut b = XskPort::open(&mut umem, LO, 1, &small()).unwrap();
    let mut kb = KernelSide::of(b.socket());
    a.maintain(&mut umem);
    b.maintain(&mut umem);
    assert_eq!(umem.check_accounting().lent, 64);
    // A frame arrives on b and is forwarded out of a.
    kb.deliver(&mut umem, &[packet(7)]);
    let mut v = Vec::new();
    b.receive(&mut umem, &mut v, 32);
    a.receive(&mut umem, &mut v, 32);
    assert_eq!(v.len(), 1);
    a.transmit(&mut umem, &mut v);
    assert_eq!(a.lent(), (32, 1));
    // Closing b returns exactly b's frames.
    drop(kb);
    drop(b);
    assert_eq!(umem.reclaim_closed(), 31);
    assert_eq!(umem.check_accounting().lent, 33);
    drop(a);
    umem.reclaim_closed();
    assert_eq!(umem.in_use(), 0);
}

#[test]
fn pool_and_ports_can_move_to_a_worker_thread() {
    fn send<T: Send>() {}
    send::<Umem>();
    send::<XskSocket>();
    send::<XskPort>();
}
