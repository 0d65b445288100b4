//! Root-only tests of both programs through `BPF_PROG_TEST_RUN`: every decision of
//! `steer` and `mirror`, with exact counters, no live traffic.
//!
//! They run in a fresh network namespace of a `Lab` (`tests/common/lab.rs`; prefix
//! `umvs<pid>-`, removed on drop, stale ones from dead runs removed first) on a
//! thread that entered it. Not root: skipped with a message, except under `CI=true`,
//! where that is a failure.

mod common;

use std::fs::File;
use std::os::fd::AsFd;

use common::{in_ns, require_root, Lab};
use umacvlan::bpf::{
    is_held_open, Counter, DevVal, Error, FdbVal, Steering, COUNTERS, FDB_F_HOST_SUPPRESS,
    FDB_F_NOT_DST, MAX_XSKS, SRC_F_NODST,
};
use umacvlan::port::PortId;
use umacvlan::wire::MacAddr;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
/// `TC_ACT_UNSPEC` (-1): on to the next filter, then the stack.
const TC_NEXT: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;

const PREFIX: &str = "umvs";

const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const EXT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xee]);
const MCAST: MacAddr = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);

/// A 60-byte frame; `tag` is `(tpid, tci)`.
fn frame(dst: MacAddr, src: MacAddr, tag: Option<(u16, u16)>) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some((tpid, tci)) = tag {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.resize(60, 0x5a);
    f
}

/// What one XDP run did: verdict and counter deltas.
#[derive(Debug)]
struct XdpRun {
    ret: u32,
    delta: [u64; COUNTERS],
}

fn run_xdp(st: &Steering, data: &[u8], ifindex: u32) -> XdpRun {
    let before = st.counters().unwrap();
    let r = st.test_xdp(data, ifindex).expect("test run of steer");
    assert_eq!(r.frame, data, "frame untouched, no metadata in front");
    let after = st.counters().unwrap();
    XdpRun {
        ret: r.action,
        delta: std::array::from_fn(|i| after[i] - before[i]),
    }
}

fn only(c: Counter) -> [u64; COUNTERS] {
    let mut d = [0; COUNTERS];
    d[c.index()] = 1;
    d
}

fn both(a: Counter, b: Counter) -> [u64; COUNTERS] {
    let mut d = only(a);
    d[b.index()] += 1;
    d
}

#[test]
fn steer_decisions() {
    if !require_root("steer_decisions") {
        return;
    }
    let mut lab = Lab::new(PREFIX);
    let ns = lab.quiet_ns("steer");
    in_ns(&ns, || {
        let st = Steering::load().expect("load");
        let lo = 1; // the namespace's loopback: test_run needs a real ingress device

        // Not ours.
        let r = run_xdp(&st, &frame(A, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpNotOurs)));

        st.set_device(lo, DevVal::parent(8, 1, 0, false)).unwrap();
        st.fdb_insert(0, A, PortId(5), 0).unwrap();
        st.fdb_insert(100, B, PortId(6), 0).unwrap();
        st.fdb_insert(200, B, PortId(7), 0).unwrap();

        // fdb hit: to the switch; no socket in slot 8, so XDP_PASS fallback.
        let r = run_xdp(&st, &frame(A, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpRedirectFail)));
        // Unknown unicast and the parent's own MAC: host.
        let r = run_xdp(&st, &frame(EXT, A, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpPass)));
        // A source-mode endpoint's own MAC is not a destination (W4): host.
        let s = MacAddr([0x02, 0, 0, 0, 0, 0x5c]);
        st.fdb_insert(0, s, PortId(9), FDB_F_HOST_SUPPRESS | FDB_F_NOT_DST)
            .unwrap();
        let r = run_xdp(&st, &frame(s, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpPass)));
        // Host-bound unicast from a source a nodst endpoint lists: to the switch,
        // which makes the copies; without nodst tc clones it instead.
        st.source_insert(0, EXT, 0).unwrap();
        let r = run_xdp(&st, &frame(s, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpPass)));
        st.source_insert(0, EXT, SRC_F_NODST).unwrap();
        // Only once the parent says the list has entries is it looked at.
        let r = run_xdp(&st, &frame(s, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpPass)));
        st.set_device(lo, DevVal::parent(8, 1, 0, false).with_sources(true))
            .unwrap();
        let r = run_xdp(&st, &frame(s, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpRedirectFail)));
        st.set_device(lo, DevVal::parent(8, 1, 0, false)).unwrap();
        st.source_remove(0, EXT).unwrap();
        st.fdb_remove(0, s).unwrap();
        // B is known on VLANs 100/200 only.
        let r = run_xdp(&st, &frame(B, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpPass)));
        let r = run_xdp(&st, &frame(B, EXT, Some((0x8100, 0x2000 | 100))), lo);
        assert_eq!(
            (r.ret, r.delta),
            (XDP_PASS, only(Counter::XdpRedirectFail)),
            "802.1Q vid 100 (PCP bits ignored)"
        );
        let r = run_xdp(&st, &frame(B, EXT, Some((0x88a8, 200))), lo);
        assert_eq!(r.delta, only(Counter::XdpRedirectFail), "802.1ad");
        let r = run_xdp(&st, &frame(B, EXT, Some((0x8100, 300))), lo);
        assert_eq!(r.delta, only(Counter::XdpTaggedMiss), "vid 300 misses");
        let r = run_xdp(&st, &frame(A, EXT, Some((0x8100, 100))), lo);
        assert_eq!(r.delta, only(Counter::XdpTaggedMiss), "A is untagged only");
        // QinQ goes by its outer tag; a third tag is more than the switch handles.
        let stacked = |tags: &[u16]| {
            let mut f = frame(B, EXT, None);
            let mut t = Vec::new();
            for (i, vid) in tags.iter().enumerate() {
                t.extend_from_slice(&(if i == 0 { 0x88a8u16 } else { 0x8100 }).to_be_bytes());
                t.extend_from_slice(&vid.to_be_bytes());
            }
            f.splice(12..12, t);
            f
        };
        let r = run_xdp(&st, &stacked(&[100, 5]), lo);
        assert_eq!(r.delta, only(Counter::XdpRedirectFail), "QinQ");
        let r = run_xdp(&st, &stacked(&[100, 5, 6]), lo);
        assert_eq!(
            (r.ret, r.delta),
            (XDP_PASS, only(Counter::XdpTagStack)),
            "three tags"
        );
        // Longer than a UMEM frame holds: counted and dropped, not lost in the socket.
        st.set_device(lo, DevVal::parent(8, 1, 0, false).with_max_len(59))
            .unwrap();
        let r = run_xdp(&st, &frame(A, EXT, None), lo);
        assert_eq!(
            (r.ret, r.delta),
            (XDP_DROP, only(Counter::XdpTooBig)),
            "60 bytes, 59 fit"
        );
        st.set_device(lo, DevVal::parent(8, 1, 0, false).with_max_len(60))
            .unwrap();
        let r = run_xdp(&st, &frame(A, EXT, None), lo);
        assert_eq!(r.delta, only(Counter::XdpRedirectFail), "60 bytes fit");
        st.set_device(lo, DevVal::parent(8, 1, 0, false)).unwrap();
        // Multicast and broadcast: always the host (tc mirrors them), even if known.
        st.fdb_insert(0, MCAST, PortId(9), 0).unwrap();
        for dst in [MacAddr::BROADCAST, MCAST] {
            let r = run_xdp(&st, &frame(dst, EXT, None), lo);
            assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpPass)));
        }
        // A tag announced but cut off.
        let mut short = frame(A, EXT, Some((0x8100, 1)));
        short.truncate(15);
        let r = run_xdp(&st, &short, lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpMalformed)));

        // Passthru: every unicast to the switch.
        st.set_device(lo, DevVal::parent(8, 1, 0, true)).unwrap();
        for dst in [EXT, A] {
            let r = run_xdp(&st, &frame(dst, EXT, None), lo);
            assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpRedirectFail)));
        }
        let r = run_xdp(&st, &frame(MacAddr::BROADCAST, EXT, None), lo);
        assert_eq!(r.delta, only(Counter::XdpPass));

        // A port: everything to its socket, no parsing.
        st.set_device(lo, DevVal::port(3, 1)).unwrap();
        for f in [frame(MacAddr::BROADCAST, EXT, None), short.clone()] {
            let r = run_xdp(&st, &f, lo);
            assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpRedirectFail)));
        }

        // Receive queue 0 without a socket (a device with more queues than the
        // switch bound): counted and passed, never redirected into another slot.
        st.set_device(lo, DevVal::port(3, 0)).unwrap();
        let r = run_xdp(&st, &frame(A, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpUnboundQueue)));
        st.set_device(lo, DevVal::parent(8, 0, 0, false)).unwrap();
        let r = run_xdp(&st, &frame(A, EXT, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpUnboundQueue)));
        // What the host gets anyway is not counted as unbound.
        let r = run_xdp(&st, &frame(EXT, A, None), lo);
        assert_eq!((r.ret, r.delta), (XDP_PASS, only(Counter::XdpPass)));

        // An unknown role is not ours.
        st.set_device(
            lo,
            DevVal {
                role: 77,
                ..DevVal::port(0, 1)
            },
        )
        .unwrap();
        let r = run_xdp(&st, &frame(A, EXT, None), lo);
        assert_eq!(r.delta, only(Counter::XdpNotOurs));

        st.remove_device(lo).unwrap();
        st.remove_device(lo).unwrap(); // idempotent
        let r = run_xdp(&st, &frame(A, EXT, None), lo);
        assert_eq!(r.delta, only(Counter::XdpNotOurs));
    });
}

fn run_tc(st: &Steering, data: &[u8], ifindex: u32) -> (u32, [u64; COUNTERS]) {
    let before = st.counters().unwrap();
    let ret = st.test_tc(data, ifindex).expect("test run of mirror");
    let after = st.counters().unwrap();
    (ret, std::array::from_fn(|i| after[i] - before[i]))
}

#[test]
fn mirror_decisions() {
    if !require_root("mirror_decisions") {
        return;
    }
    let mut lab = Lab::new(PREFIX);
    let ns = lab.quiet_ns("mirror");
    lab.veth(&ns, "par", "ext");
    lab.veth(&ns, "mir", "mirp");
    let par = lab.ifindex(&ns, "par");
    let mir = lab.ifindex(&ns, "mir");
    in_ns(&ns, || {
        let st = Steering::load().expect("load");
        let bc = frame(MacAddr::BROADCAST, EXT, None);

        // Unknown device: untouched.
        assert_eq!(run_tc(&st, &bc, par), (TC_NEXT, only(Counter::TcNotOurs)));

        st.set_device(par, DevVal::parent(0, 1, mir, false))
            .unwrap();
        // Unicast: nothing to do.
        assert_eq!(
            run_tc(&st, &frame(A, EXT, None), par),
            (TC_NEXT, [0; COUNTERS])
        );
        // Broadcast from outside: mirrored, host keeps it (W6). A group no endpoint
        // accepts is not mirrored; one that some endpoint of the VLAN accepts, or any
        // once an endpoint accepts every group, is.
        assert_eq!(run_tc(&st, &bc, par), (TC_NEXT, only(Counter::TcMirrored)));
        let mc = frame(MCAST, EXT, None);
        assert_eq!(run_tc(&st, &mc, par), (TC_NEXT, only(Counter::TcUnwanted)));
        st.group_insert(0, Some(MCAST)).unwrap();
        assert_eq!(run_tc(&st, &mc, par), (TC_NEXT, only(Counter::TcMirrored)));
        let tagged = frame(MCAST, EXT, Some((0x8100, 42)));
        assert_eq!(
            run_tc(&st, &tagged, par),
            (TC_NEXT, only(Counter::TcUnwanted))
        );
        st.group_insert(42, None).unwrap();
        assert_eq!(
            run_tc(&st, &tagged, par),
            (TC_NEXT, only(Counter::TcMirrored))
        );
        st.group_remove(0, Some(MCAST)).unwrap();
        st.group_remove(0, Some(MCAST)).unwrap(); // idempotent
        assert_eq!(run_tc(&st, &mc, par), (TC_NEXT, only(Counter::TcUnwanted)));
        // From a source a source-mode endpoint lists: unicast and unwanted groups
        // are mirrored for its copies; with nodst the host does not keep them.
        st.source_insert(0, EXT, 0).unwrap();
        assert_eq!(
            run_tc(&st, &frame(A, EXT, None), par),
            (TC_NEXT, [0; COUNTERS]),
            "not looked up without DEV_F_SOURCES"
        );
        st.set_device(par, DevVal::parent(0, 1, mir, false).with_sources(true))
            .unwrap();
        assert_eq!(
            run_tc(&st, &frame(A, EXT, None), par),
            (TC_NEXT, both(Counter::TcMirrored, Counter::TcSourceCopied))
        );
        assert_eq!(run_tc(&st, &mc, par), (TC_NEXT, only(Counter::TcMirrored)));
        st.source_insert(0, EXT, SRC_F_NODST).unwrap();
        assert_eq!(
            run_tc(&st, &mc, par),
            (
                TC_ACT_SHOT,
                both(Counter::TcMirrored, Counter::TcSourceConsumed)
            )
        );
        st.source_remove(0, EXT).unwrap();
        st.set_device(par, DevVal::parent(0, 1, mir, false))
            .unwrap();
        st.group_insert(0, None).unwrap();
        // From a bridge/VEPA endpoint (no flag): mirrored, host keeps it (W7/W8).
        st.fdb_insert(0, A, PortId(5), 0).unwrap();
        assert_eq!(
            run_tc(&st, &frame(MacAddr::BROADCAST, A, None), par),
            (TC_NEXT, only(Counter::TcMirrored))
        );
        // From a private/passthru/source endpoint: mirrored, host must not see it (W9).
        st.fdb_insert(0, B, PortId(6), FDB_F_HOST_SUPPRESS).unwrap();
        assert_eq!(
            run_tc(&st, &frame(MacAddr::BROADCAST, B, None), par),
            (
                TC_ACT_SHOT,
                both(Counter::TcMirrored, Counter::TcSuppressed)
            )
        );
        // The suppression is per VLAN: B is flagged untagged only.
        assert_eq!(
            run_tc(&st, &frame(MacAddr::BROADCAST, B, Some((0x8100, 42))), par),
            (TC_NEXT, only(Counter::TcMirrored))
        );
        st.fdb_insert(42, B, PortId(6), FDB_F_HOST_SUPPRESS)
            .unwrap();
        assert_eq!(
            run_tc(&st, &frame(MacAddr::BROADCAST, B, Some((0x8100, 42))), par),
            (
                TC_ACT_SHOT,
                both(Counter::TcMirrored, Counter::TcSuppressed)
            )
        );
        // No mirror configured: no clone, suppression still applies.
        st.set_device(par, DevVal::parent(0, 1, 0, false)).unwrap();
        assert_eq!(run_tc(&st, &bc, par), (TC_NEXT, [0; COUNTERS]));
        assert_eq!(
            run_tc(&st, &frame(MacAddr::BROADCAST, B, None), par),
            (TC_ACT_SHOT, only(Counter::TcSuppressed))
        );
        // A mirror ifindex that does not exist: counted, host still gets it.
        st.set_device(par, DevVal::parent(0, 1, 4000, false))
            .unwrap();
        assert_eq!(
            run_tc(&st, &bc, par),
            (TC_NEXT, only(Counter::TcMirrorFail))
        );
    });
}

#[test]
fn maps_round_trip_and_clear() {
    if !require_root("maps_round_trip_and_clear") {
        return;
    }
    let st = Steering::load().expect("load");
    assert!(st.xdp_prog_id() != 0 && st.tc_prog_id() != 0);
    assert_ne!(st.xdp_prog_id(), st.tc_prog_id());

    st.set_device(7, DevVal::parent(16, 1, 9, true)).unwrap();
    assert_eq!(st.device(7).unwrap(), Some(DevVal::parent(16, 1, 9, true)));
    assert_eq!(st.device(8).unwrap(), None);

    for i in 0..300u16 {
        let mac = MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]);
        st.fdb_insert(i % 5, mac, PortId(i), i as u32 & 1).unwrap();
    }
    let k = MacAddr([2, 0, 0, 0, 0, 17]);
    assert_eq!(
        st.fdb_lookup(2, k).unwrap(),
        Some(FdbVal { port: 17, flags: 1 })
    );
    assert_eq!(st.fdb_lookup(3, k).unwrap(), None);
    st.fdb_remove(2, k).unwrap();
    st.fdb_remove(2, k).unwrap();
    assert_eq!(st.fdb_lookup(2, k).unwrap(), None);
    assert_eq!(st.fdb_entries().unwrap().len(), 299);
    st.fdb_clear().unwrap();
    assert!(st.fdb_entries().unwrap().is_empty());

    assert!(matches!(
        st.fdb_insert(4096, k, PortId(1), 0),
        Err(Error::OutOfRange { what: "vlan", .. })
    ));
    assert!(matches!(
        st.clear_xsk(MAX_XSKS),
        Err(Error::OutOfRange { .. })
    ));
    st.clear_xsk(0).unwrap(); // empty is fine
    assert!(matches!(
        st.set_device(0, DevVal::port(0, 1)),
        Err(Error::OutOfRange {
            what: "ifindex",
            ..
        })
    ));
    // Not an AF_XDP socket: the kernel refuses it.
    let f = File::open("/dev/null").unwrap();
    assert!(matches!(
        st.set_xsk(0, f.as_fd()),
        Err(Error::Map { map: "xsks", .. })
    ));

    st.reset_counters().unwrap();
    assert_eq!(st.counters().unwrap(), [0; COUNTERS]);
}

#[test]
fn a_loaded_program_is_held_open_and_a_dropped_one_is_not() {
    if !require_root("a_loaded_program_is_held_open_and_a_dropped_one_is_not") {
        return;
    }
    let st = Steering::load().expect("load");
    let (xdp, tc) = (st.xdp_prog_id(), st.tc_prog_id());
    assert!(is_held_open(xdp), "this process holds steer");
    assert!(is_held_open(tc), "this process holds mirror");
    drop(st);
    // Nothing attached it: unloaded with its last fd, so nobody holds it. Other tests
    // of this process fork `ip` children, which hold copies of every fd until they
    // exec (close-on-exec), so allow a bounded moment for such a child to go.
    let released = |id| {
        (0..100).any(|_| {
            !is_held_open(id) || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                false
            }
        })
    };
    assert!(released(xdp));
    assert!(released(tc));
}
