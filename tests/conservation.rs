//! Root test: conservation. Floods from the wire and from an endpoint — random sizes,
//! VLAN tags, tag stacks, truncated tags, short frames, unknown unicast, frames above
//! an endpoint's MTU, and broadcast storms beyond the ring sizes — and every frame is
//! accounted for, exactly, per port: what arrived at a port's interface is what the
//! switch received plus what umacvlan counted as lost on the way, what the switch
//! received is what it transmitted plus what it counted as dropped, and what it
//! transmitted is what the receivers' interfaces got (or their kernel counted as
//! dropped). Each flood runs on a dataplane of its own, so its counters start at zero;
//! the persistent interfaces are read before and after.
//!
//! The generator is seeded: the same frames every run. The namespaces are quiet (no
//! IPv6), so nothing but the flood moves a counter.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use common::switch::{add_topo_endpoints, with_switch_then};
use common::topo::{ep_mac, Topo, PARENT_MAC};
use common::{in_ns, require_root};
use umacvlan::bpf::{Counter, Sink, SinkHook, COUNTERS};
use umacvlan::dataplane::{Dataplane, DataplaneConfig, ParentHook, COLLECTOR};
use umacvlan::mode::{DropReason, Mode};
use umacvlan::switch::PortStats;
use umacvlan::xsk::Statistics;

/// The external host's MAC (set by [`Topo`]).
const EXT_MAC: &str = "02:00:00:00:00:e0";
/// e2 takes at most this many bytes of payload: longer frames for it are dropped.
const E2_MTU: u16 = 1000;

/// One interface's counters from `/proc/net/dev`.
#[derive(Clone, Copy, Debug, Default)]
struct Dev {
    rx: u64,
    rx_drop: u64,
    tx: u64,
    tx_drop: u64,
}

impl Dev {
    fn since(self, b: Dev) -> Dev {
        Dev {
            rx: self.rx - b.rx,
            rx_drop: self.rx_drop - b.rx_drop,
            tx: self.tx - b.tx,
            tx_drop: self.tx_drop - b.tx_drop,
        }
    }
}

/// Every interface of namespace `ns`.
fn devs(t: &Topo, ns: &str) -> BTreeMap<String, Dev> {
    let out = t.lab.exec(ns, &["cat", "/proc/net/dev"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            (v.len() >= 12).then(|| {
                (
                    name.to_string(),
                    Dev {
                        rx: v[1],
                        rx_drop: v[3],
                        tx: v[9],
                        tx_drop: v[11],
                    },
                )
            })
        })
        .collect()
}

/// A flood: `count` frames from interface `ifname` in namespace `ns`, source MAC
/// `src`, each of a kind drawn (seeded) from `kinds` (`KIND:ARGS`, see the script).
struct Flood<'a> {
    ns: &'a str,
    ifname: &'a str,
    src: &'a str,
    count: u32,
    seed: u32,
    kinds: &'a [String],
}

/// The generator: builds each frame from its kind and sends it; prints how many of
/// each kind it sent.
/// - `uc,MAC,MIN,MAX`: unicast to MAC, MIN..=MAX bytes (EtherType 0x88b5)
/// - `bc,MIN,MAX`: broadcast
/// - `tag,VID,MAC`: one 802.1Q tag, for a VLAN no network has
/// - `tags3,MAC`: three stacked tags
/// - `trunc,MAC`: a tag announced, the frame ending inside it (16 bytes)
/// - `short,MAC`: 14 to 59 bytes (below the Ethernet minimum; the kernel does not pad)
const GENERATOR: &str = r#"
import socket, sys, random, json
ifname, src, count, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
kinds = sys.argv[5:]
rng = random.Random(seed)
mac = lambda m: bytes.fromhex(m.replace(':', ''))
src = mac(src)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
def build(k):
    a = k.split(',')
    if a[0] == 'uc':
        n = rng.randint(int(a[2]), int(a[3]))
        return mac(a[1]) + src + b'\x88\xb5' + bytes(n - 14)
    if a[0] == 'bc':
        n = rng.randint(int(a[1]), int(a[2]))
        return b'\xff' * 6 + src + b'\x88\xb5' + bytes(n - 14)
    if a[0] == 'tag':
        return mac(a[2]) + src + b'\x81\x00' + int(a[1]).to_bytes(2, 'big') + b'\x88\xb5' + bytes(rng.randint(42, 1400))
    if a[0] == 'tags3':
        t = b'\x88\xa8\x00\x05\x81\x00\x00\x06\x81\x00\x00\x07'
        return mac(a[1]) + src + t + b'\x88\xb5' + bytes(rng.randint(34, 1400))
    if a[0] == 'trunc':
        return mac(a[1]) + src + b'\x81\x00\x00'
    if a[0] == 'short':
        return mac(a[1]) + src + b'\x88\xb5' + bytes(rng.randint(0, 45))
    raise SystemExit('unknown kind ' + k)
sent = {}
for _ in range(count):
    k = rng.choice(kinds)
    f = build(k)
    while True:
        try:
            s.send(f)
            break
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno != 105:  # ENOBUFS: try again
                raise
    sent[k] = sent.get(k, 0) + 1
print(json.dumps(sent))
"#;

/// Sends `f`; returns how many frames of each kind went out.
fn flood(t: &Topo, f: &Flood) -> BTreeMap<String, u64> {
    let (count, seed) = (f.count.to_string(), f.seed.to_string());
    let mut args = vec!["python3", "-c", GENERATOR, f.ifname, f.src, &count, &seed];
    args.extend(f.kinds.iter().map(String::as_str));
    let out = t.lab.exec(f.ns, &args);
    assert!(
        out.status.success(),
        "generator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the generator's counts")
}

/// What the dataplane counted.
#[derive(Clone)]
struct Counted {
    ports: BTreeMap<String, PortStats>,
    sockets: BTreeMap<String, Statistics>,
    kernel: [u64; COUNTERS],
    /// Endpoint name → its host-side veth.
    endpoint_veths: BTreeMap<String, String>,
    /// What each receiver's sink counted: `e1`..`e3` on their `eth0`, `wire` on wpar.
    received: BTreeMap<String, u64>,
    /// The parent carries no XDP program: its tc program gives the verdicts.
    tc_parent: bool,
}

/// Receivers: a count-and-drop tc program on each endpoint's `eth0` and on wpar (the
/// wire's side of the parent), as a container's stack would get the frames.
fn sinks(t: &Topo) -> Vec<(String, Sink)> {
    let mut at: Vec<(String, &str, &str)> = (0..t.eps.len())
        .map(|i| (format!("e{}", i + 1), t.eps[i].as_str(), "eth0"))
        .collect();
    at.push(("wire".into(), t.wire.as_str(), "wpar"));
    at.into_iter()
        .map(|(name, ns, dev)| {
            let ifindex = t.lab.ifindex(ns, dev);
            let sink = in_ns(ns, || Sink::attach(ifindex, SinkHook::TcIngress))
                .unwrap_or_else(|e| panic!("sink on {dev} in {ns}: {e}"));
            (name, sink)
        })
        .collect()
}

fn counted(dp: &Dataplane, sinks: &[(String, Sink)]) -> Counted {
    let mut endpoint_veths = BTreeMap::new();
    for n in ["e1", "e2", "e3"] {
        if let Some(v) = dp.endpoint_veth(n) {
            endpoint_veths.insert(n.to_string(), v.to_string());
        }
    }
    Counted {
        ports: dp.stats().unwrap().into_iter().collect(),
        sockets: dp.socket_stats().unwrap().into_iter().collect(),
        kernel: dp.steering().counters().unwrap(),
        endpoint_veths,
        tc_parent: dp.parent_hook() == ParentHook::Tc,
        received: sinks
            .iter()
            .map(|(n, s)| (n.clone(), s.count().unwrap().frames))
            .collect(),
    }
}

/// Who sends the flood.
#[derive(Clone, Copy, PartialEq)]
enum From {
    Wire,
    E1,
}

/// The interfaces' counters, before and after.
struct Ifaces {
    host: BTreeMap<String, Dev>,
    wire: BTreeMap<String, Dev>,
    eps: Vec<BTreeMap<String, Dev>>,
}

fn ifaces(t: &Topo) -> Ifaces {
    Ifaces {
        host: devs(t, &t.host),
        wire: devs(t, &t.wire),
        eps: t.eps.iter().map(|ns| devs(t, ns)).collect(),
    }
}

/// One line of the account: `what`, and its two sides.
struct Line {
    what: String,
    left: u64,
    right: u64,
}

/// Builds the account of one flood: every equality that must hold.
fn account(
    fast: bool,
    from: From,
    by_kind: &BTreeMap<String, u64>,
    fanout_all: bool,
    c: &Counted,
    before: &Ifaces,
    after: &Ifaces,
) -> Vec<Line> {
    let sent: u64 = by_kind.values().sum();
    // Frames whose VLAN header ends early: the kernel's receive path frees them
    // before any tc hook (`skb_vlan_untag`), uncounted, as for a kernel macvlan.
    let truncated: u64 = by_kind
        .iter()
        .filter(|(k, _)| k.starts_with("trunc,"))
        .map(|(_, n)| n)
        .sum();
    let mut lines = Vec::new();
    let mut eq = |what: String, left: u64, right: u64| lines.push(Line { what, left, right });
    let k = |x: Counter| c.kernel[x.index()];
    let host = |n: &str| {
        let a = after.host.get(n).copied().unwrap_or_default();
        a.since(before.host.get(n).copied().unwrap_or_default())
    };
    let wire = |n: &str| after.wire[n].since(before.wire[n]);
    let ep = |i: usize, n: &str| {
        let a = after.eps[i].get(n).copied().unwrap_or_default();
        a.since(before.eps[i].get(n).copied().unwrap_or_default())
    };
    let port = |n: &str| c.ports.get(n).cloned().unwrap_or_default();
    let slow_rx = |s: &PortStats| s.rx_packets - s.fast.rx_packets;
    let slow_tx = |s: &PortStats| s.tx_packets - s.fast.tx_packets;
    let lost = |x: Statistics| x.rx_losses().iter().map(|(_, n)| n).sum::<u64>();
    // The dataplane's own veth pairs, `umv<N>ma`/`mb` (the mirror: tc clones into
    // `ma`, XDP on `mb`) and `ca`/`cb` (the collector).
    let internal = |suffix: &str| {
        after
            .host
            .keys()
            .find(|n| {
                n.strip_prefix("umv")
                    .and_then(|r| r.strip_suffix(suffix))
                    .is_some_and(|d| d.chars().all(|c| c.is_ascii_digit()))
            })
            .cloned()
            .unwrap_or_default()
    };
    let (mirror, mirror_in) = (internal("ma"), internal("mb"));
    let (collector, collector_in) = (internal("ca"), internal("cb"));
    let endpoint_veths: u64 = if fast {
        0
    } else {
        c.endpoint_veths.values().map(|v| host(v).rx).sum()
    };

    // 1. Into umacvlan's interface: the kernel's veth either delivers or counts.
    match from {
        From::Wire => {
            let w = wire("wpar");
            eq(
                "sent = wpar delivered + wpar dropped".into(),
                sent,
                w.tx + w.tx_drop,
            );
            eq("wpar delivered = par received".into(), w.tx, host("par").rx);
        }
        From::E1 => {
            let e = ep(0, "eth0");
            eq(
                "sent = e1 eth0 delivered + dropped".into(),
                sent,
                e.tx + e.tx_drop,
            );
        }
    }
    // 2. Every frame XDP saw got exactly one verdict.
    let xdp_verdicts = [
        Counter::XdpPass,
        Counter::XdpRedirect,
        Counter::XdpRedirectFail,
        Counter::XdpNotOurs,
        Counter::XdpMalformed,
        Counter::XdpUnboundQueue,
        Counter::XdpTooBig,
        Counter::XdpTagStack,
        Counter::XdpTaggedMiss,
        Counter::XdpFastPass,
    ];
    let xdp_seen = host("par").rx + host(&mirror_in).rx + host(&collector_in).rx + endpoint_veths;
    if c.tc_parent {
        // No XDP on the parent: its tc program gives the same verdicts, and its own
        // (fast, moved to the mirror). It never sees frames the kernel freed first.
        let from_wire_fast = if from == From::Wire {
            k(Counter::TcFast) + k(Counter::TcFastFail)
        } else {
            0
        };
        eq(
            "XDP and parent tc verdicts = frames into par (less truncated tags), the \
             mirror, the collector, the endpoints"
                .into(),
            xdp_verdicts.iter().map(|v| k(*v)).sum::<u64>()
                + k(Counter::TcWireToSwitch)
                + from_wire_fast,
            xdp_seen - if from == From::Wire { truncated } else { 0 },
        );
    } else {
        eq(
            "XDP verdicts = frames into par, the mirror, the collector, the endpoints".into(),
            xdp_verdicts.iter().map(|v| k(*v)).sum(),
            xdp_seen,
        );
    }
    // 3. The tc programs: what an endpoint sent went fast or to the collector.
    if fast && from == From::E1 {
        let e1 = port("e1");
        eq(
            "e1's veth received = fast + fast failed + to the collector + shim failed \
             + truncated tags (the kernel's, before tc)"
                .into(),
            host(&c.endpoint_veths["e1"]).rx,
            e1.fast.rx_packets
                + e1.fast.failed
                + k(Counter::TcToSwitch)
                + k(Counter::TcShimFail)
                + truncated,
        );
        eq(
            "tc fast = e1's fast rx".into(),
            k(Counter::TcFast),
            e1.fast.rx_packets,
        );
        let cl = host(&collector);
        eq(
            "to the collector = its veth delivered + dropped".into(),
            k(Counter::TcToSwitch),
            cl.tx + cl.tx_drop,
        );
    }
    let m = host(&mirror);
    eq(
        "mirrored + moved to the mirror = the mirror veth delivered + dropped".into(),
        k(Counter::TcMirrored) + k(Counter::TcWireToSwitch),
        m.tx + m.tx_drop,
    );
    // 4. Redirected into sockets: received by the switch or lost, counted.
    let all_slow_rx: u64 = c.ports.values().map(slow_rx).sum();
    let collector_rx_drops = c.ports.get(COLLECTOR).map_or(0, PortStats::total_drops);
    let socket_losses: u64 = c.sockets.values().map(|s| lost(*s)).sum();
    eq(
        "XDP redirected = the switch received + sockets lost".into(),
        k(Counter::XdpRedirect),
        all_slow_rx + collector_rx_drops + socket_losses,
    );
    // 5. The switch: every frame it received left or was dropped, counted.
    let ingress = match from {
        From::Wire => "par",
        From::E1 => "e1",
    };
    let inp = port(ingress);
    let egress: Vec<&str> = ["par", "e1", "e2", "e3"]
        .into_iter()
        .filter(|p| *p != ingress)
        .collect();
    let egress_drop = |s: &PortStats| {
        [
            DropReason::MtuExceeded,
            DropReason::TxFull,
            DropReason::NoBuffer,
        ]
        .iter()
        .map(|r| s.dropped(*r))
        .sum::<u64>()
    };
    let ingress_drops = inp.total_drops() - egress_drop(&inp);
    if fanout_all {
        // A broadcast storm: each frame the switch kept goes to every other port.
        for q in &egress {
            let s = port(q);
            eq(
                format!("switch kept from {ingress} = {q} sent + {q} dropped"),
                slow_rx(&inp) - ingress_drops,
                slow_tx(&s) + egress_drop(&s),
            );
        }
    } else {
        // Unicast (or passed to the host): at most one egress each.
        let out: u64 = egress
            .iter()
            .map(|q| slow_tx(&port(q)) + egress_drop(&port(q)))
            .sum();
        eq(
            format!("switch received from {ingress} = sent + dropped"),
            slow_rx(&inp),
            out + ingress_drops,
        );
        let fast_out: u64 = egress.iter().map(|q| port(q).fast.tx_packets).sum();
        eq(
            format!("kernel forwarded from {ingress} = delivered by the fast path"),
            inp.fast.rx_packets,
            fast_out,
        );
    }
    // 6. Out of umacvlan: what it transmitted arrived (or the receiver counted it).
    for (i, q) in ["e1", "e2", "e3"].iter().enumerate() {
        if *q == ingress {
            continue;
        }
        eq(
            format!("{q} transmitted = its eth0 received + dropped"),
            port(q).tx_packets,
            c.received[*q] + ep(i, "eth0").rx_drop,
        );
    }
    if from == From::E1 {
        eq(
            "par transmitted = wpar received + dropped".into(),
            port("par").tx_packets,
            c.received["wire"] + wire("wpar").rx_drop + host("par").tx_drop,
        );
    }
    lines
}

/// Runs `f` against a fresh dataplane (fast path `fast`, the parent steered from
/// `hook`) and checks the account.
fn run(t: &Topo, fast: bool, hook: ParentHook, f: Flood, from: From, fanout_all: bool) -> String {
    let mut cfg = DataplaneConfig::new("par");
    cfg.fastpath = fast;
    cfg.parent_hook = hook;
    let before = ifaces(t);
    let kinds_sent = std::sync::Mutex::new(BTreeMap::new());
    let receivers = std::sync::Mutex::new(Vec::new());
    let (sent, (c, after)) = with_switch_then(
        &t.host,
        cfg,
        |dp| {
            add_topo_endpoints(dp, t, &[Mode::Bridge; 3], |n, c| {
                if n == 2 {
                    c.mtu = Some(E2_MTU);
                }
            })
        },
        || {
            *receivers.lock().unwrap() = sinks(t);
            let sent = flood(t, &f);
            *kinds_sent.lock().unwrap() = sent.clone();
            sent
        },
        |dp| {
            let sent = kinds_sent.lock().unwrap().clone();
            // Frames still in flight: wait until the account balances (or time is up).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let c = counted(dp, &receivers.lock().unwrap());
                let after = ifaces(t);
                let lines = account(fast, from, &sent, fanout_all, &c, &before, &after);
                let settled = lines.iter().all(|l| l.left == l.right);
                if settled || std::time::Instant::now() > deadline {
                    return (c, after);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        },
    )
    .unwrap_or_else(|e| panic!("dataplane: {e}"));
    // A veth parent with the fast path is steered from tc unless told otherwise.
    assert_eq!(
        c.tc_parent,
        hook == ParentHook::Tc || (hook == ParentHook::Auto && fast),
        "the parent's hook ({hook}, fast path {fast})"
    );
    let total: u64 = sent.values().sum();
    let lines = account(fast, from, &sent, fanout_all, &c, &before, &after);
    let mut report = String::new();
    let _ = writeln!(report, "sent {total}: {sent:?}");
    for (name, s) in &c.ports {
        let _ = writeln!(
            report,
            "  {name:<12} rx {:>6} (fast {:>6}) tx {:>6} (fast {:>6}) drops {:?} failed {}",
            s.rx_packets,
            s.fast.rx_packets,
            s.tx_packets,
            s.fast.tx_packets,
            s.drop_reasons().collect::<Vec<_>>(),
            s.fast.failed
        );
    }
    for (name, s) in &c.sockets {
        let _ = writeln!(report, "  socket {name:<6} {:?}", s.rx_losses());
    }
    let nonzero: Vec<(&str, u64)> = Counter::ALL
        .iter()
        .map(|k| (k.name(), c.kernel[k.index()]))
        .filter(|(_, n)| *n > 0)
        .collect();
    let _ = writeln!(report, "  kernel {nonzero:?}");
    let mut bad = false;
    for l in &lines {
        let ok = l.left == l.right;
        bad |= !ok;
        let _ = writeln!(
            report,
            "  {} {}: {} vs {}",
            if ok { "ok " } else { "BAD" },
            l.what,
            l.left,
            l.right
        );
    }
    println!("{report}");
    assert!(!bad, "frames unaccounted for:\n{report}");
    report
}

fn quiet(t: &Topo) {
    let mut all = vec![t.wire.clone(), t.ext.clone(), t.host.clone()];
    all.extend(t.eps.iter().cloned());
    for ns in &all {
        for s in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            t.lab.exec(ns, &["sysctl", "-qw", s]);
        }
    }
}

#[test]
fn every_frame_is_delivered_or_counted() {
    if !require_root("every_frame_is_delivered_or_counted") {
        return;
    }
    let t = Topo::new("umvk", false, 3);
    quiet(&t);
    // The generator sends on wpar itself: off the bridge, nothing else does.
    t.lab.ip(&t.wire, &["link", "set", "wpar", "nomaster"]);
    let (e1, e2, e3) = (ep_mac(1), ep_mac(2), ep_mac(3));
    let unknown = "02:00:00:00:00:77".to_string();
    let wire_unicast = [
        format!("uc,{e1},60,1514"),
        format!("uc,{e2},60,1514"),
        format!("uc,{e3},60,1514"),
        format!("uc,{unknown},60,1514"),
        format!("uc,{PARENT_MAC},60,300"),
        format!("tag,7,{e1}"),
        format!("tags3,{e1}"),
        format!("trunc,{e1}"),
        format!("short,{e2}"),
    ];
    let ep_unicast = [
        format!("uc,{e2},60,1514"),
        format!("uc,{e3},60,1514"),
        format!("uc,{EXT_MAC},60,1514"),
        format!("uc,{unknown},60,1514"),
        format!("short,{e3}"),
        format!("tag,7,{e2}"),
        format!("tags3,{EXT_MAC}"),
        format!("trunc,{e3}"),
    ];
    let storm = ["bc,60,1514".to_string()];
    // (what, sender, seed, kinds, a storm: each frame to every other port)
    let floods: [(&str, From, u32, &[String], bool); 4] = [
        (
            "unicast and odd frames from the wire",
            From::Wire,
            1,
            &wire_unicast,
            false,
        ),
        (
            "a broadcast storm from the wire",
            From::Wire,
            2,
            &storm,
            true,
        ),
        ("unicast from an endpoint", From::E1, 3, &ep_unicast, false),
        (
            "a broadcast storm from an endpoint",
            From::E1,
            4,
            &storm,
            true,
        ),
    ];
    // On a veth parent the fast path steers it from tc (the default); a real NIC's
    // configuration, XDP with the fast path, is run for the wire's floods too.
    for (fast, hook) in [
        (true, ParentHook::Auto),
        (true, ParentHook::Xdp),
        (false, ParentHook::Auto),
    ] {
        for (what, from, seed, kinds, storm) in floods {
            if hook == ParentHook::Xdp && from != From::Wire {
                continue;
            }
            println!("== fast path {fast}, parent hook {hook}: {what}");
            // The generator sends on wpar itself, or on e1's interface.
            let (ns, ifname, src) = match from {
                From::Wire => (t.wire.as_str(), "wpar", EXT_MAC),
                From::E1 => (t.eps[0].as_str(), "eth0", e1.as_str()),
            };
            let f = Flood {
                ns,
                ifname,
                src,
                count: 20_000,
                seed,
                kinds,
            };
            run(&t, fast, hook, f, from, storm);
        }
    }
}
