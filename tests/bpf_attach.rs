//! Root tests of the steering programs on real interfaces: XDP and tc attach/detach
//! (exclusive XDP, qdisc ownership, cleanup on drop from another thread), removing
//! the leftovers of a switch process killed with SIGKILL (and nothing else), then
//! frames through a veth parent with the counters, and into AF_XDP sockets.
//!
//! Every interface lives in a network namespace `umvb<pid>-<seq>-<tag>` of a
//! `common::Lab`, removed on drop (also on panic); namespaces of dead earlier runs are
//! removed first.
//! Tests run on a thread that entered the namespace: libbpf and netlink act on the
//! calling thread's namespace. Not root: skipped with a message, except under
//! `CI=true`, where that is a failure. Every wait is bounded (3 s; 20 s for the
//! killed helper process to come up).

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{in_ns, require_root, run, Lab};
use libbpf_rs::{libbpf_sys, Program, TcHook, Xdp, XdpFlags, TC_INGRESS};
use umacvlan::bpf::{Counter, DevVal, Error, Steering, XdpMode, COUNTERS, FDB_F_HOST_SUPPRESS};
use umacvlan::port::PortId;
use umacvlan::wire::MacAddr;

const PREFIX: &str = "umvb";
const WAIT: Duration = Duration::from_secs(3);

/// The namespace `umvb<pid>-<seq>-<tag>` of a lab of its own (lo up, IPv6 off: no
/// spontaneous multicast), deleted on drop with everything in it.
struct Netns {
    lab: Lab,
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let mut lab = Lab::new(PREFIX);
        let name = lab.quiet_ns(tag);
        Netns { lab, name }
    }

    fn ip(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.lab.ip(&self.name, args).stdout).into_owned()
    }

    fn tc(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&run("tc", &a).stdout).into_owned()
    }

    /// A veth pair, both ends up; returns their ifindexes.
    fn veth(&self, a: &str, b: &str) -> (u32, u32) {
        self.lab.veth(&self.name, a, b);
        (self.ifindex(a), self.ifindex(b))
    }

    fn ifindex(&self, dev: &str) -> u32 {
        self.lab.ifindex(&self.name, dev)
    }

    /// The XDP program the kernel reports on `dev`: (`xdp`|`xdpgeneric`, id).
    fn xdp(&self, dev: &str) -> Option<(String, u32)> {
        let s = self.ip(&["-d", "link", "show", "dev", dev]);
        let mode = s
            .split_whitespace()
            .find(|w| *w == "xdp" || *w == "xdpgeneric" || *w == "xdpoffload")?
            .to_string();
        let mut words = s.split_whitespace();
        words.find(|w| *w == "prog/xdp")?;
        words.next().filter(|w| *w == "id")?;
        let id = words.next()?.parse().ok()?;
        Some((mode, id))
    }

    fn has_clsact(&self, dev: &str) -> bool {
        self.tc(&["qdisc", "show", "dev", dev]).contains("clsact")
    }

    /// Ids of the BPF programs in tc filters on `dev` ingress.
    fn tc_ingress_ids(&self, dev: &str) -> Vec<u32> {
        let s = self.tc(&["filter", "show", "dev", dev, "ingress"]);
        let mut ids = Vec::new();
        let mut words = s.split_whitespace().peekable();
        while let Some(w) = words.next() {
            if w == "id" {
                if let Some(id) = words.peek().and_then(|n| n.parse().ok()) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// Runs `f` on a thread inside this namespace.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        in_ns(&self.name, f)
    }
}

#[test]
fn xdp_attach_is_exclusive_and_detach_is_clean() {
    if !require_root("xdp_attach_is_exclusive_and_detach_is_clean") {
        return;
    }
    let ns = Netns::new("xdp");
    let (par, ext) = ns.veth("par", "ext");
    ns.run(|| {
        let mut first = Steering::load().expect("load");
        let mut second = Steering::load().expect("load a second instance");
        assert_ne!(first.xdp_prog_id(), second.xdp_prog_id());

        first
            .attach_xdp(par, XdpMode::Native)
            .expect("native attach");
        assert_eq!(ns.xdp("par"), Some(("xdp".into(), first.xdp_prog_id())));
        first
            .attach_xdp(par, XdpMode::Native)
            .expect("attaching again is a no-op");
        assert!(matches!(
            first.attach_xdp(par, XdpMode::Generic),
            Err(Error::ModeConflict { .. })
        ));

        // A program someone else attached is refused, named, and left alone.
        for mode in [XdpMode::Native, XdpMode::Generic] {
            let err = second
                .attach_xdp(par, mode)
                .expect_err("foreign XDP refused");
            assert_eq!(err.foreign_prog_id(), Some(first.xdp_prog_id()), "{err}");
            let msg = err.to_string();
            // Another live switch's program is called that, not "not attached by us".
            assert!(
                matches!(err, Error::OtherSwitch { .. })
                    && msg.contains("another running umacvlan switch"),
                "{msg}"
            );
            assert!(msg.contains("par"), "names the interface: {msg}");
            assert!(
                msg.contains(&first.xdp_prog_id().to_string()),
                "names the program id: {msg}"
            );
        }
        assert!(!second.detach_xdp(par).unwrap(), "not ours to detach");
        assert_eq!(ns.xdp("par"), Some(("xdp".into(), first.xdp_prog_id())));

        assert!(first.detach_xdp(par).unwrap());
        assert_eq!(ns.xdp("par"), None);
        assert!(!first.detach_xdp(par).unwrap());
        assert!(first.xdp_attached().is_empty());

        // Generic mode, and the second instance may now take the interface.
        second.attach_xdp(par, XdpMode::Generic).expect("generic");
        assert_eq!(
            ns.xdp("par"),
            Some(("xdpgeneric".into(), second.xdp_prog_id()))
        );
        second
            .attach_xdp(ext, XdpMode::Native)
            .expect("native on ext");
        assert_eq!(second.xdp_attached().len(), 2);
        drop(second);
        assert_eq!(ns.xdp("par"), None, "drop detaches");
        assert_eq!(ns.xdp("ext"), None, "drop detaches");

        // Bad ifindexes are errors, not panics.
        assert!(matches!(
            first.attach_xdp(0, XdpMode::Native),
            Err(Error::OutOfRange { .. })
        ));
        let err = first
            .attach_xdp(99_999, XdpMode::Native)
            .expect_err("no such device");
        assert!(err.to_string().contains("99999"), "{err}");
    });
}

#[test]
fn tc_attach_detach_and_qdisc_ownership() {
    if !require_root("tc_attach_detach_and_qdisc_ownership") {
        return;
    }
    let ns = Netns::new("tc");
    let (par, ext) = ns.veth("par", "ext");
    ns.run(|| {
        let mut st = Steering::load().expect("load");
        let id = st.tc_prog_id();

        // No qdisc before: ours is created, and removed again on detach.
        assert!(!ns.has_clsact("par"));
        st.attach_tc_ingress(par).expect("tc attach");
        st.attach_tc_ingress(par).expect("again: no-op");
        assert!(ns.has_clsact("par"));
        assert_eq!(ns.tc_ingress_ids("par"), vec![id]);
        assert_eq!(st.tc_attached(), vec![par]);
        assert!(st.detach_tc(par).unwrap());
        assert!(ns.tc_ingress_ids("par").is_empty());
        assert!(!ns.has_clsact("par"), "the qdisc we created is gone");
        assert!(!st.detach_tc(par).unwrap());

        // A clsact that was there stays.
        ns.tc(&["qdisc", "add", "dev", "ext", "clsact"]);
        st.attach_tc_ingress(ext)
            .expect("tc attach on existing clsact");
        assert_eq!(ns.tc_ingress_ids("ext"), vec![id]);
        assert!(st.detach_tc(ext).unwrap());
        assert!(ns.has_clsact("ext"), "not ours to remove");
        assert!(ns.tc_ingress_ids("ext").is_empty());

        // Our qdisc, but someone else added a filter to it: the qdisc stays.
        st.attach_tc_ingress(par).expect("tc attach");
        let mut other = Steering::load().expect("load a second instance");
        other.attach_tc_ingress(par).expect("a second filter");
        let mut ids = ns.tc_ingress_ids("par");
        ids.sort();
        assert_eq!(ids, vec![id, other.tc_prog_id()]);
        // Both filters see a broadcast: neither ends the classification for a frame
        // that is not its business (neither knows `par` here).
        let (base, other_base) = (st.counters().unwrap(), other.counters().unwrap());
        send(ext, &[frame(MacAddr::BROADCAST, EXT, None, 1)]);
        wait_counters(&st, &base, &[(Counter::TcNotOurs, 1)]);
        wait_counters(&other, &other_base, &[(Counter::TcNotOurs, 1)]);
        assert!(st.detach_tc(par).unwrap());
        assert!(ns.has_clsact("par"), "still in use by another filter");
        assert_eq!(ns.tc_ingress_ids("par"), vec![other.tc_prog_id()]);
        drop(other);
        assert!(ns.has_clsact("par"), "the other instance did not create it");
        assert!(ns.tc_ingress_ids("par").is_empty());
        ns.tc(&["qdisc", "del", "dev", "par", "clsact"]);

        // Drop removes filter and qdisc, also inside async code (the loader's own
        // netlink runtime must not nest in the caller's).
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            st.attach_tc_ingress(par)
                .expect("tc attach from async code");
            drop(st);
        });
        assert!(!ns.has_clsact("par"));
    });
}

#[test]
fn drop_on_another_thread_detaches_in_the_right_namespace() {
    if !require_root("drop_on_another_thread_detaches_in_the_right_namespace") {
        return;
    }
    let ns = Netns::new("drop");
    let (par, _) = ns.veth("par", "ext");
    let st = ns.run(|| {
        let mut st = Steering::load().expect("load");
        st.attach_xdp(par, XdpMode::Native).expect("xdp");
        st.attach_tc_ingress(par).expect("tc");
        st
    });
    assert!(ns.xdp("par").is_some() && ns.has_clsact("par"));
    // Dropped here, in the test's own namespace: cleanup goes back into `ns`.
    drop(st);
    assert_eq!(ns.xdp("par"), None);
    assert!(!ns.has_clsact("par"));
}

/// Loads a minimal program that is not ours: type `ty`, name `name`, and it returns
/// `ret` (`mov r0, ret; exit`). Only the returned fd holds it.
fn load_foreign(ty: libbpf_sys::bpf_prog_type, name: &str, ret: i32) -> OwnedFd {
    let insns = [
        libbpf_sys::bpf_insn {
            code: 0xb7, // BPF_ALU64 | BPF_MOV | BPF_K, into r0
            imm: ret,
            ..Default::default()
        },
        libbpf_sys::bpf_insn {
            code: 0x95, // BPF_JMP | BPF_EXIT
            ..Default::default()
        },
    ];
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: the name and license are NUL-terminated, `insns` holds `insns.len()`
    // instructions, no options; all outlive the call. A non-negative result is a new
    // fd that nothing else owns.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            ty,
            name.as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            std::ptr::null_mut(),
        )
    };
    assert!(
        fd >= 0,
        "load the foreign program: {}",
        std::io::Error::from_raw_os_error(-fd)
    );
    // SAFETY: see above.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

const KILLED_NS: &str = "UMV_KILLED_SWITCH_NS";
const KILLED_DEVS: &str = "UMV_KILLED_SWITCH_DEVS";
const READY: &str = "UMV-KILLED-SWITCH-READY ";

/// Not a test of its own: the process [`killed_switch`] starts, and kills with
/// SIGKILL once it is ready. In namespace `$UMV_KILLED_SWITCH_NS` it loads the
/// programs, attaches XDP and tc to the first ifindex of `$UMV_KILLED_SWITCH_DEVS` and
/// tc to the second, reports the program ids on stderr and waits (bounded) to be
/// killed. Without the variables it does nothing.
#[test]
#[ignore = "a helper process of leftovers_of_a_killed_switch_are_removed_and_nothing_else"]
fn killed_switch_helper() {
    let (Ok(ns), Ok(devs)) = (std::env::var(KILLED_NS), std::env::var(KILLED_DEVS)) else {
        return;
    };
    let devs: Vec<u32> = devs.split(',').map(|d| d.parse().unwrap()).collect();
    in_ns(&ns, || {
        let mut st = Steering::load().expect("load");
        st.attach_xdp(devs[0], XdpMode::Native).expect("xdp");
        st.attach_tc_ingress(devs[0]).expect("tc");
        st.attach_tc_ingress(devs[1]).expect("tc");
        eprintln!("{READY}{} {}", st.xdp_prog_id(), st.tc_prog_id());
        // Killed long before; should the test be gone, `st` cleans up on drop.
        std::thread::sleep(Duration::from_secs(60));
    });
}

/// Runs [`killed_switch_helper`] in a process of its own and kills it with SIGKILL
/// once it has attached: XDP + tc on `par`, tc on `ext`. Returns the (XDP, tc)
/// program ids it left behind.
fn killed_switch(ns: &Netns, par: u32, ext: u32) -> (u32, u32) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed_switch_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILLED_NS, &ns.name)
        .env(KILLED_DEVS, format!("{par},{ext}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the helper process");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let ready = line.starts_with(READY);
            if tx.send(line).is_err() || ready {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    let ids = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => match line.strip_prefix(READY) {
                Some(ids) => break ids.to_string(),
                None => log.push(line),
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the helper process did not attach:\n{}", log.join("\n"));
            }
        }
    };
    // SIGKILL: no destructor runs, the programs stay attached.
    child.kill().expect("kill -9 the helper");
    child.wait().expect("reap the helper");
    let mut ids = ids.split_whitespace().map(|i| i.parse().unwrap());
    (ids.next().unwrap(), ids.next().unwrap())
}

#[test]
fn leftovers_of_a_killed_switch_are_removed_and_nothing_else() {
    if !require_root("leftovers_of_a_killed_switch_are_removed_and_nothing_else") {
        return;
    }
    let ns = Netns::new("left");
    let (par, ext) = ns.veth("par", "ext");

    // An XDP program with another name, held by nobody: not ours, it stays.
    ns.run(|| {
        let mut st = Steering::load().expect("load");
        let other = load_foreign(libbpf_sys::BPF_PROG_TYPE_XDP, "other", 2);
        Xdp::new(other.as_fd())
            .attach(par as i32, XdpFlags::DRV_MODE)
            .expect("attach a foreign XDP program");
        let other_id = Program::id_from_fd(other.as_fd()).unwrap();
        drop(other); // only the attachment holds it now, as after a crash
        assert!(st.remove_leftovers(par).expect("remove").is_empty());
        assert_eq!(ns.xdp("par"), Some(("xdp".into(), other_id)));
        let err = st
            .attach_xdp(par, XdpMode::Native)
            .expect_err("still foreign");
        assert_eq!(err.foreign_prog_id(), Some(other_id), "{err}");
    });
    ns.ip(&["link", "set", "dev", "par", "xdp", "off"]);
    assert_eq!(ns.xdp("par"), None);

    // A running switch holds its programs open: nothing of it is a leftover.
    ns.run(|| {
        let mut live = Steering::load().expect("load");
        live.attach_xdp(par, XdpMode::Native).expect("xdp");
        live.attach_tc_ingress(par).expect("tc");
        let mut st = Steering::load().expect("load a second instance");
        assert!(st.remove_leftovers(par).expect("remove").is_empty());
        assert_eq!(ns.xdp("par"), Some(("xdp".into(), live.xdp_prog_id())));
        assert_eq!(ns.tc_ingress_ids("par"), vec![live.tc_prog_id()]);
        assert!(st.attach_xdp(par, XdpMode::Native).is_err());
        drop(live);
    });
    assert_eq!(ns.xdp("par"), None);
    assert!(!ns.has_clsact("par"));

    // A switch killed with SIGKILL: XDP + tc (and the clsact it created) on par, tc
    // on ext, all still there and held by nobody.
    let (xdp_id, tc_id) = killed_switch(&ns, par, ext);
    assert_eq!(ns.xdp("par"), Some(("xdp".into(), xdp_id)));
    assert_eq!(ns.tc_ingress_ids("par"), vec![tc_id]);
    assert_eq!(ns.tc_ingress_ids("ext"), vec![tc_id]);
    ns.run(|| {
        // Someone else's tc program, held by nobody either, joins par's clsact.
        let other = load_foreign(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, "other", -1);
        let mut hook = TcHook::new(other.as_fd());
        hook.ifindex(par as i32).attach_point(TC_INGRESS);
        hook.attach().expect("attach a foreign tc program");
        let other_id = Program::id_from_fd(other.as_fd()).unwrap();
        drop(other);

        let mut st = Steering::load().expect("load");
        let removed = st.remove_leftovers(par).expect("remove on par");
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(
            removed[0].contains("XDP program steer")
                && removed[0].contains(&format!("id {xdp_id}"))
                && removed[0].contains("par"),
            "{removed:?}"
        );
        assert!(
            removed[1].contains("mirror") && removed[1].contains(&format!("id {tc_id}")),
            "{removed:?}"
        );
        assert_eq!(ns.xdp("par"), None);
        assert_eq!(
            ns.tc_ingress_ids("par"),
            vec![other_id],
            "the other filter stays"
        );
        assert!(ns.has_clsact("par"), "still used by the other filter");

        let removed = st.remove_leftovers(ext).expect("remove on ext");
        assert_eq!(
            removed.len(),
            2,
            "filter and the emptied qdisc: {removed:?}"
        );
        assert!(removed[1].contains("clsact"), "{removed:?}");
        assert!(ns.tc_ingress_ids("ext").is_empty());
        assert!(!ns.has_clsact("ext"));
        assert!(st.remove_leftovers(par).expect("again").is_empty());

        // The parent can be taken again, and our own programs are not leftovers.
        st.attach_xdp(par, XdpMode::Native)
            .expect("attach after the cleanup");
        st.attach_tc_ingress(par).expect("tc after the cleanup");
        assert!(st.remove_leftovers(par).expect("own").is_empty());
        assert_eq!(ns.xdp("par"), Some(("xdp".into(), st.xdp_prog_id())));
        let mut ids = ns.tc_ingress_ids("par");
        ids.sort();
        let mut want = vec![other_id, st.tc_prog_id()];
        want.sort();
        assert_eq!(ids, want);
        drop(st);
        assert_eq!(ns.xdp("par"), None);
        assert_eq!(ns.tc_ingress_ids("par"), vec![other_id]);
    });
}

/// Sends `frames` out of `ifindex` through an AF_PACKET socket (calling thread's netns).
fn send(ifindex: u32, frames: &[Vec<u8>]) {
    // SAFETY: socket(2) with constant arguments; the result is checked below and
    // owned by `fd` from then on.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(
        raw >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    for f in frames {
        // SAFETY: `f` and `sll` are valid for the lengths given for the whole call.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            f.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const EXT: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xee]);
const UNKNOWN: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x77]);

fn frame(dst: MacAddr, src: MacAddr, tag: Option<u16>, seq: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    if let Some(vid) = tag {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    // A local experimental EtherType, so no stack on the way reacts to it.
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.push(seq);
    f.resize(60, 0x5a);
    f
}

/// Waits (bounded) until the counters moved by exactly `want` since `base`.
fn wait_counters(st: &Steering, base: &[u64; COUNTERS], want: &[(Counter, u64)]) {
    let mut expected = [0u64; COUNTERS];
    for (c, n) in want {
        expected[c.index()] += n;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let now = st.counters().expect("counters");
        let delta: [u64; COUNTERS] = std::array::from_fn(|i| now[i] - base[i]);
        if delta == expected {
            return;
        }
        if Instant::now() > deadline {
            let show = |d: &[u64; COUNTERS]| {
                Counter::ALL
                    .iter()
                    .filter(|c| d[c.index()] != 0)
                    .map(|c| format!("{}={}", c.name(), d[c.index()]))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            panic!(
                "counters: got [{}], want [{}]",
                show(&delta),
                show(&expected)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A parent veth `par` (its peer `ext` is "the wire") with XDP and tc, and a mirror
/// veth `mir` whose peer `mirp` is a ROLE_PORT.
struct Rig {
    par: u32,
    ext: u32,
    mirp: u32,
}

const PARENT_BASE: u32 = 0;
const MIRROR_BASE: u32 = 64;

fn rig(ns: &Netns) -> Rig {
    let (par, ext) = ns.veth("par", "ext");
    let (mir, mirp) = ns.veth("mir", "mirp");
    let _ = mir;
    Rig { par, ext, mirp }
}

fn setup(st: &mut Steering, r: &Rig, ns: &Netns, mode: XdpMode) {
    let mir = ns.ifindex("mir");
    st.set_device(r.par, DevVal::parent(PARENT_BASE, 1, mir, false))
        .unwrap();
    st.set_device(r.mirp, DevVal::port(MIRROR_BASE, 1)).unwrap();
    st.fdb_insert(0, A, PortId(3), 0).unwrap();
    st.fdb_insert(0, B, PortId(4), FDB_F_HOST_SUPPRESS).unwrap();
    st.attach_xdp(r.par, mode).unwrap();
    // Always native on the mirror peer: generic XDP skips frames that a BPF
    // redirect injected (skb_is_redirected), which every mirrored clone is.
    st.attach_xdp(r.mirp, XdpMode::Native).unwrap();
    st.attach_tc_ingress(r.par).unwrap();
}

/// What the host stack delivers on `ifindex` for our test EtherType: an AF_PACKET
/// socket bound to that protocol (not ETH_P_ALL), so it sees frames only after tc
/// ingress and only with `skb->protocol` intact.
struct HostRx {
    fd: OwnedFd,
}

const TEST_ETHERTYPE: u16 = 0x88b5;

impl HostRx {
    fn bind(ifindex: u32) -> HostRx {
        let proto = TEST_ETHERTYPE.to_be();
        // SAFETY: socket(2) with constant arguments; checked, then owned.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(
            raw >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fresh descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is valid for the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: `tv` is valid for the length given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(rc, 0, "SO_RCVTIMEO");
        HostRx { fd }
    }

    /// Sequence numbers of the test frames received, until `last` arrives (bounded).
    fn until(&self, last: u8) -> Vec<u8> {
        let mut seqs = Vec::new();
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline && seqs.last() != Some(&last) {
            // SAFETY: `buf` is valid for its length for the whole call.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 15 {
                continue; // timeout (or a runt): look at the deadline again
            }
            assert_eq!(
                u16::from_be_bytes([buf[12], buf[13]]),
                TEST_ETHERTYPE,
                "the host sees the frame untagged (tag in skb metadata), type intact"
            );
            seqs.push(buf[14]);
        }
        seqs
    }
}

#[test]
fn steering_counts_real_frames() {
    if !require_root("steering_counts_real_frames") {
        return;
    }
    let ns = Netns::new("frames");
    let r = rig(&ns);
    ns.run(|| {
        let mut st = Steering::load().expect("load");
        setup(&mut st, &r, &ns, XdpMode::Native);
        let host = HostRx::bind(r.par);
        let base = st.counters().unwrap();

        // Known unicast, but no socket yet: falls back to the host.
        send(r.ext, &[frame(A, EXT, None, 1), frame(A, EXT, None, 2)]);
        wait_counters(&st, &base, &[(Counter::XdpRedirectFail, 2)]);
        assert_eq!(host.until(2), vec![1, 2]);
        let base = st.counters().unwrap();

        // Unknown unicast: the host.
        send(r.ext, &[frame(UNKNOWN, EXT, None, 3)]);
        wait_counters(&st, &base, &[(Counter::XdpPass, 1)]);
        assert_eq!(host.until(3), vec![3]);
        let base = st.counters().unwrap();

        // Broadcast from the wire: host, plus a clone through the mirror veth into
        // mirp's XDP (ROLE_PORT; no socket there either).
        send(r.ext, &[frame(MacAddr::BROADCAST, EXT, None, 4)]);
        let mirrored = [
            (Counter::XdpPass, 1),
            (Counter::TcMirrored, 1),
            (Counter::XdpRedirectFail, 1),
        ];
        wait_counters(&st, &base, &mirrored);
        assert_eq!(host.until(4), vec![4]);
        let base = st.counters().unwrap();

        // A private endpoint's broadcast reflected back (W9): mirrored, and the host
        // must not see it; the next broadcast shows it did not just arrive late.
        send(r.ext, &[frame(MacAddr::BROADCAST, B, None, 5)]);
        let suppressed = [
            (Counter::XdpPass, 1),
            (Counter::TcMirrored, 1),
            (Counter::TcSuppressed, 1),
            (Counter::XdpRedirectFail, 1),
        ];
        wait_counters(&st, &base, &suppressed);
        send(r.ext, &[frame(MacAddr::BROADCAST, EXT, None, 6)]);
        assert_eq!(host.until(6), vec![6], "W9: the host never sees 5");
        let base = st.counters().unwrap();

        // Tagged broadcasts: the stack has moved the tag out of the frame before tc;
        // the mirror puts it back for the clone only. The host still gets the frame
        // with its protocol intact, and suppression is per VLAN.
        send(
            r.ext,
            &[
                frame(MacAddr::BROADCAST, EXT, Some(42), 7),
                frame(MacAddr::BROADCAST, B, Some(42), 8),
            ],
        );
        let twice: Vec<_> = mirrored.iter().map(|&(c, n)| (c, 2 * n)).collect();
        wait_counters(&st, &base, &twice);
        assert_eq!(host.until(8), vec![7, 8], "B is flagged on VLAN 0 only");
        st.fdb_insert(42, B, PortId(4), FDB_F_HOST_SUPPRESS)
            .unwrap();
        let base = st.counters().unwrap();
        send(
            r.ext,
            &[
                frame(MacAddr::BROADCAST, B, Some(42), 9),
                frame(MacAddr::BROADCAST, EXT, Some(42), 10),
            ],
        );
        let mut want: Vec<_> = twice.clone();
        want.push((Counter::TcSuppressed, 1));
        wait_counters(&st, &base, &want);
        assert_eq!(host.until(10), vec![10]);
    });
}

/// The smallest AF_XDP receiver (copy mode, rx only), to see where frames land.
/// Test-only: the product's sockets live in `src/xsk`.
mod xsk {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const FRAMES: u32 = 64;
    const FRAME_SIZE: u32 = 4096;
    const RING: u32 = 64;

    /// One mmap'd region, unmapped on drop.
    struct Map {
        ptr: *mut u8,
        len: usize,
    }

    impl Map {
        fn new(fd: Option<BorrowedFd<'_>>, len: usize, offset: i64) -> Map {
            let (flags, raw) = match fd {
                Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd.as_raw_fd()),
                None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
            };
            // SAFETY: a fresh mapping at a kernel-chosen address; the result is
            // checked and owned by the returned `Map`.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    raw,
                    offset,
                )
            };
            assert_ne!(
                ptr,
                libc::MAP_FAILED,
                "mmap: {}",
                std::io::Error::last_os_error()
            );
            Map {
                ptr: ptr.cast(),
                len,
            }
        }

        fn at<T>(&self, off: u64) -> *mut T {
            assert!(off as usize + std::mem::size_of::<T>() <= self.len);
            // SAFETY: in bounds, checked above.
            unsafe { self.ptr.add(off as usize).cast() }
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped once.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }

    pub struct Rx {
        rx: Map,
        _fill: Map,
        umem: Map,
        off: libc::xdp_mmap_offsets,
        cons: u32,
        fd: OwnedFd,
    }

    fn sockopt<T>(fd: &OwnedFd, name: i32, v: &T) {
        // SAFETY: `v` is valid for size_of::<T>() bytes during the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                name,
                (v as *const T).cast(),
                std::mem::size_of::<T>() as u32,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt {name}: {}",
            std::io::Error::last_os_error()
        );
    }

    impl Rx {
        /// Binds to (`ifindex`, queue 0) in copy mode with every frame in the fill ring.
        pub fn bind(ifindex: u32) -> Rx {
            // SAFETY: socket(2) with constant arguments; checked, then owned.
            let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW, 0) };
            assert!(
                raw >= 0,
                "AF_XDP socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: fresh descriptor owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let umem = Map::new(None, (FRAMES * FRAME_SIZE) as usize, 0);
            let reg = libc::xdp_umem_reg {
                addr: umem.ptr as u64,
                len: umem.len as u64,
                chunk_size: FRAME_SIZE,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            sockopt(&fd, libc::XDP_UMEM_REG, &reg);
            sockopt(&fd, libc::XDP_UMEM_FILL_RING, &RING);
            sockopt(&fd, libc::XDP_UMEM_COMPLETION_RING, &RING);
            sockopt(&fd, libc::XDP_RX_RING, &RING);
            // SAFETY: plain old data; all-zero is valid.
            let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as u32;
            // SAFETY: `off` is valid for `len` bytes; the kernel writes at most that.
            let rc = unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_XDP,
                    libc::XDP_MMAP_OFFSETS,
                    (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0, "XDP_MMAP_OFFSETS");
            let fill = Map::new(
                Some(fd.as_fd()),
                (off.fr.desc + u64::from(RING) * 8) as usize,
                libc::XDP_UMEM_PGOFF_FILL_RING as i64,
            );
            let rx = Map::new(
                Some(fd.as_fd()),
                (off.rx.desc + u64::from(RING) * std::mem::size_of::<libc::xdp_desc>() as u64)
                    as usize,
                libc::XDP_PGOFF_RX_RING,
            );
            for i in 0..RING {
                // SAFETY: slot `i` < RING is inside the fill ring's descriptor array.
                unsafe {
                    *fill.at::<u64>(off.fr.desc + u64::from(i) * 8) = u64::from(i * FRAME_SIZE)
                };
            }
            // SAFETY: the producer word is a u32 in the shared ring, accessed atomically
            // as the kernel does.
            let prod = unsafe { &*fill.at::<AtomicU32>(off.fr.producer) };
            prod.store(RING, Ordering::Release);

            // SAFETY: plain old data; all-zero is valid.
            let mut sxdp: libc::sockaddr_xdp = unsafe { std::mem::zeroed() };
            sxdp.sxdp_family = libc::AF_XDP as u16;
            sxdp.sxdp_flags = libc::XDP_COPY;
            sxdp.sxdp_ifindex = ifindex;
            sxdp.sxdp_queue_id = 0;
            // SAFETY: `sxdp` is valid for the length given.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sxdp as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as u32,
                )
            };
            assert_eq!(rc, 0, "bind AF_XDP: {}", std::io::Error::last_os_error());
            Rx {
                rx,
                _fill: fill,
                umem,
                off,
                cons: 0,
                fd,
            }
        }

        pub fn fd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }

        /// Up to `n` frames received within the bounded wait.
        pub fn recv(&mut self, n: usize) -> Vec<Vec<u8>> {
            let mut got = Vec::new();
            let deadline = Instant::now() + WAIT;
            // SAFETY: producer/consumer words of the shared rx ring, used atomically.
            let prod = unsafe { &*self.rx.at::<AtomicU32>(self.off.rx.producer) };
            // SAFETY: as above.
            let cons = unsafe { &*self.rx.at::<AtomicU32>(self.off.rx.consumer) };
            while got.len() < n && Instant::now() < deadline {
                let p = prod.load(Ordering::Acquire);
                while self.cons != p {
                    let slot = u64::from(self.cons & (RING - 1));
                    // SAFETY: `slot` < RING is inside the rx descriptor array, which
                    // the kernel filled before publishing `p`.
                    let d = unsafe {
                        std::ptr::read(self.rx.at::<libc::xdp_desc>(
                            self.off.rx.desc + slot * std::mem::size_of::<libc::xdp_desc>() as u64,
                        ))
                    };
                    let start = d.addr as usize;
                    assert!(start + d.len as usize <= self.umem.len);
                    // SAFETY: in the UMEM, checked above; the kernel is done with it.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(self.umem.ptr.add(start), d.len as usize)
                    };
                    got.push(bytes.to_vec());
                    self.cons = self.cons.wrapping_add(1);
                }
                cons.store(self.cons, Ordering::Release);
                if got.len() < n {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            got
        }
    }
}

#[test]
fn redirect_into_af_xdp_sockets_native() {
    if require_root("redirect_into_af_xdp_sockets_native") {
        redirect_into_af_xdp_sockets(XdpMode::Native, "xskn");
    }
}

#[test]
fn redirect_into_af_xdp_sockets_generic() {
    if require_root("redirect_into_af_xdp_sockets_generic") {
        redirect_into_af_xdp_sockets(XdpMode::Generic, "xskg");
    }
}

/// Frames land in (copy-mode) AF_XDP sockets with their VLAN tags.
fn redirect_into_af_xdp_sockets(mode: XdpMode, tag: &str) {
    let ns = Netns::new(tag);
    let r = rig(&ns);
    ns.run(|| {
        let mut st = Steering::load().expect("load");
        setup(&mut st, &r, &ns, mode);
        let mut parent_rx = xsk::Rx::bind(r.par);
        let mut mirror_rx = xsk::Rx::bind(r.mirp);
        st.set_xsk(PARENT_BASE, parent_rx.fd()).expect("xsk parent");
        st.set_xsk(MIRROR_BASE, mirror_rx.fd()).expect("xsk mirror");
        let base = st.counters().unwrap();

        // Known unicast: into the parent's socket.
        let uni = frame(A, EXT, None, 1);
        send(r.ext, std::slice::from_ref(&uni));
        let got = parent_rx.recv(1);
        assert_eq!(got.len(), 1, "unicast reached the parent's socket");
        assert_eq!(got[0], uni, "frame bytes intact");
        wait_counters(&st, &base, &[(Counter::XdpRedirect, 1)]);
        let base = st.counters().unwrap();

        // Broadcast: the clone arrives in the mirror port's socket.
        let bc = frame(MacAddr::BROADCAST, EXT, None, 2);
        send(r.ext, std::slice::from_ref(&bc));
        let got = mirror_rx.recv(1);
        assert_eq!(got.len(), 1, "broadcast clone reached the mirror socket");
        assert_eq!(got[0], bc);
        wait_counters(
            &st,
            &base,
            &[
                (Counter::XdpPass, 1),
                (Counter::TcMirrored, 1),
                (Counter::XdpRedirect, 1),
            ],
        );

        // Tagged broadcast: tc sees the tag out of band (skb->vlan_tci); check what
        // the mirror socket gets.
        let tagged = frame(MacAddr::BROADCAST, EXT, Some(42), 3);
        send(r.ext, std::slice::from_ref(&tagged));
        let got = mirror_rx.recv(1);
        assert_eq!(
            got.len(),
            1,
            "tagged broadcast clone reached the mirror socket"
        );
        assert_eq!(got[0], tagged, "the VLAN tag survives the mirror path");

        // Tagged unicast to a MAC known on that VLAN: parent socket.
        st.fdb_insert(42, A, PortId(8), 0).unwrap();
        let tuni = frame(A, EXT, Some(42), 4);
        send(r.ext, std::slice::from_ref(&tuni));
        let got = parent_rx.recv(1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0], tuni);

        // Socket gone: back to the host.
        st.clear_xsk(PARENT_BASE).unwrap();
        let base = st.counters().unwrap();
        send(r.ext, &[frame(A, EXT, None, 5)]);
        wait_counters(&st, &base, &[(Counter::XdpRedirectFail, 1)]);
        drop(st);
        drop(parent_rx);
        drop(mirror_rx);
    });
}

/// The kernel's `fdb` map holds 65 536 entries over every VLAN id; the next is refused
/// with an error naming the map, and every entry goes again.
#[test]
fn the_fdb_map_holds_65536_entries_and_refuses_the_next_by_name() {
    if !require_root("the_fdb_map_holds_65536_entries_and_refuses_the_next_by_name") {
        return;
    }
    let st = Steering::load().expect("load");
    let mac = |i: u32| {
        MacAddr::new([
            2,
            0,
            (i >> 24) as u8,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ])
    };
    let vlan = |i: u32| (i % 4094 + 1) as u16;
    let max = umacvlan::bpf::MAX_FDB;
    for i in 0..max {
        st.fdb_insert(vlan(i), mac(i), PortId((i % 1000) as u16 + 2), 0)
            .unwrap_or_else(|e| panic!("entry {i}: {e}"));
    }
    let entries = |st: &Steering| {
        st.map_entries()
            .iter()
            .find(|(m, _)| *m == "fdb")
            .map(|(_, n)| *n)
    };
    assert_eq!(entries(&st), Some(max as usize));
    let e = st
        .fdb_insert(0, mac(max), PortId(2), 0)
        .expect_err("one more than the map holds");
    assert!(
        matches!(e, Error::Map { map: "fdb", .. }) && e.to_string().contains("fdb"),
        "{e}"
    );
    // Replacing an existing entry still works when full.
    st.fdb_insert(vlan(7), mac(7), PortId(3), 0).unwrap();
    for i in 0..max {
        st.fdb_remove(vlan(i), mac(i)).unwrap();
    }
    assert_eq!(entries(&st), Some(0));
}
