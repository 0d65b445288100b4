//! Root test, through the real daemon: two networks on one parent on 802.1Q VLANs 10
//! and 20 (Docker's `parent=eth1.10`, without the kernel's 8021q module): the switch
//! pops the tag towards endpoints and pushes it towards the wire, and the networks
//! never see each other's frames. The external host sends and checks tagged frames
//! through raw packet sockets.

mod common;

use common::daemon::DaemonProc;
use common::topo::{ep_ip, ep_mac, Topo};
use common::{require_root, wait_for};

/// Received frames on `eth0` of namespace `ns`.
/// Sends `count` frames from `eth0` in `ns`: dst, src, optional VLAN, EtherType 0x88b5.
fn send(t: &Topo, ns: &str, dst: &str, src: &str, vlan: Option<u16>, count: u32) {
    let tag = vlan.map_or(String::new(), |v| format!("8100{v:04x}"));
    let hex = format!(
        "{}{}{tag}88b5{}",
        dst.replace(':', ""),
        src.replace(':', ""),
        "00".repeat(46)
    );
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\nf=bytes.fromhex('{hex}')\nfor _ in range({count}): s.send(f)\n"
    );
    t.lab.exec(ns, &["python3", "-c", &py]);
}

/// A capture running in a namespace.
struct Capture {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Capture {
    /// The VLAN id of every frame captured (0 = untagged), once the capture has seen
    /// its count or given up (4 s).
    fn finish(mut self) -> Vec<String> {
        use std::io::Read;
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        self.child.wait().unwrap();
        rest.lines().map(str::to_string).collect()
    }
}

/// Starts a capture on `eth0` in `ns` for `count` frames of EtherType 0x88b5 from
/// `src` and returns it once its socket is bound (it says `ready`); `finish` reports
/// the VLAN id each carried (0 = untagged), whether the tag was in the frame or moved
/// to packet metadata by the kernel.
fn capture(ns: &str, src: &str, count: usize) -> Capture {
    let py = format!(
        r#"
import socket, struct, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(('eth0', 0))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
s.settimeout(0.5)
src = bytes.fromhex('{src}')
print('ready', flush=True)
end = time.time() + 4
seen = 0
while time.time() < end and seen < {count}:
    try:
        data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(64))
    except socket.timeout:
        continue
    if data[6:12] != src:
        continue
    vid = None
    if data[12:14] == b'\x81\x00':
        vid = struct.unpack('!H', data[14:16])[0] & 0xfff
        et = data[16:18]
    else:
        et = data[12:14]
        for level, typ, c in anc:
            if level == 263 and typ == 8:
                status, _, _, _, _, tci = struct.unpack('IIIHHH', c[:18])
                if status & 0x10:
                    vid = tci & 0xfff
    if et == b'\x88\xb5' or (vid is not None and data[12:14] == b'\x88\xb5'):
        seen += 1
        print(vid or 0, flush=True)
"#,
        src = src.replace(':', "")
    );
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &py])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert_eq!(first.trim(), "ready", "the capture in {ns} did not start");
    Capture { child, out }
}

/// The switch's counter `key` of `port`, from `umacvlan stats --json`.
fn port_stat(d: &DaemonProc, port: &str, key: &str) -> u64 {
    d.parent_stats()["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .map_or(0, |p| p[key].as_u64().unwrap())
}

/// The kernel-side steering counter `key` of the parent (`stats --json`).
fn kernel_stat(d: &DaemonProc, key: &str) -> u64 {
    d.parent_stats()["kernel"][key].as_u64().unwrap()
}

#[test]
fn vlan_networks_share_a_parent_and_never_see_each_other() {
    if !require_root("vlan_networks_share_a_parent_and_never_see_each_other") {
        return;
    }
    let t = Topo::new("umvv", false, 2);
    let config = format!(
        "[[network]]\nname = 'v10'\nparent = 'par'\nvlan = 10\n\n[[network.endpoint]]\nname = 'e1'\nnetns = '{}'\nmac = '{}'\nip = '{}/24'\n\n\
         [[network]]\nname = 'v20'\nparent = 'par'\nvlan = 20\n\n[[network.endpoint]]\nname = 'e2'\nnetns = '{}'\nmac = '{}'\nip = '{}/24'\n",
        t.eps[0],
        ep_mac(1),
        ep_ip(1),
        t.eps[1],
        ep_mac(2),
        ep_ip(2)
    );
    // XDP sees only tags inside the frame. The Linux bridge keeps a tag in packet
    // metadata when the port supports VLAN transmit offload, so turn that off on the
    // port toward the parent — as a real parent NIC needs `ethtool -K IF rxvlan off`.
    t.lab
        .exec(&t.wire, &["ethtool", "-K", "wpar", "txvlan", "off"]);
    let d = DaemonProc::start(&t.host, "umvv", &config);
    let ext_mac = "02:00:00:00:00:e0";
    let (e1, e2) = (t.eps[0].clone(), t.eps[1].clone());

    // From the wire: a frame tagged 10 for e1 arrives (untagged); tagged 20 for e1 does
    // not (e1 is not on VLAN 20); tagged 20 for e2 arrives.
    let (r1, r2) = (t.eth0_rx_packets(&e1), t.eth0_rx_packets(&e2));
    let passed = kernel_stat(&d, "xdp_tagged_miss");
    send(&t, &t.ext, &ep_mac(1), ext_mac, Some(10), 20);
    send(&t, &t.ext, &ep_mac(1), ext_mac, Some(20), 20);
    send(&t, &t.ext, &ep_mac(2), ext_mac, Some(20), 20);
    send(&t, &t.ext, &ep_mac(2), ext_mac, Some(10), 20);
    // The 40 frames for an endpoint on the wrong VLAN miss the XDP program's FDB and
    // go to the host stack, counted as tagged misses; once they have, and the right 40
    // arrived, nothing is still on its way.
    wait_for("all 80 frames handled", || {
        let (a, b, p) = (
            t.eth0_rx_packets(&e1) - r1,
            t.eth0_rx_packets(&e2) - r2,
            kernel_stat(&d, "xdp_tagged_miss") - passed,
        );
        if a >= 20 && b >= 20 && p >= 40 {
            Ok(())
        } else {
            Err(format!("e1 +{a}, e2 +{b}, passed to the host +{p}"))
        }
    });
    let stats = String::from_utf8_lossy(&d.cli(&["stats"]).stdout).to_string();
    assert_eq!(
        t.eth0_rx_packets(&e1) - r1,
        20,
        "e1 gets exactly its VLAN-10 frames\n{stats}"
    );
    assert_eq!(
        t.eth0_rx_packets(&e2) - r2,
        20,
        "e2 gets exactly its VLAN-20 frames"
    );

    // The tag is popped on the way to the endpoint.
    let cap = capture(&e1, ext_mac, 3);
    send(&t, &t.ext, &ep_mac(1), ext_mac, Some(10), 3);
    let seen = cap.finish();
    assert!(
        !seen.is_empty() && seen.iter().all(|v| v == "0"),
        "e1 must receive untagged frames: {seen:?}"
    );

    // Towards the wire the network's tag is pushed: ext sees e1's frames on VLAN 10 and
    // e2's on VLAN 20.
    let cap = capture(&t.ext, &ep_mac(1), 3);
    let cap2 = capture(&t.ext, &ep_mac(2), 3);
    send(&t, &e1, ext_mac, &ep_mac(1), None, 3);
    send(&t, &e2, ext_mac, &ep_mac(2), None, 3);
    let (v1, v2) = (cap.finish(), cap2.finish());
    assert!(
        !v1.is_empty() && v1.iter().all(|v| v == "10"),
        "e1's frames on the wire must carry VLAN 10: {v1:?}"
    );
    assert!(
        !v2.is_empty() && v2.iter().all(|v| v == "20"),
        "e2's frames on the wire must carry VLAN 20: {v2:?}"
    );

    // Bridge mode switches locally only within a VLAN: e1 → e2's MAC never reaches e2.
    // Once the switch has received all 10 (its e1 rx counter), it has decided them.
    let (r2, from_e1, to_e2) = (
        t.eth0_rx_packets(&e2),
        port_stat(&d, "e1", "rx_packets"),
        port_stat(&d, "e2", "tx_packets"),
    );
    send(&t, &e1, &ep_mac(2), &ep_mac(1), None, 10);
    wait_for("the switch receives e1's 10 frames", || {
        let n = port_stat(&d, "e1", "rx_packets") - from_e1;
        if n >= 10 {
            Ok(())
        } else {
            Err(format!("{n} received"))
        }
    });
    assert_eq!(
        port_stat(&d, "e2", "tx_packets") - to_e2,
        0,
        "the switch sent a frame from VLAN 10 to VLAN 20"
    );
    assert_eq!(
        t.eth0_rx_packets(&e2) - r2,
        0,
        "a frame crossed from VLAN 10 to VLAN 20"
    );
    d.stop();
}

/// Every VLAN id a network: 4 094 networks on one parent (from the config file), an
/// endpoint on the first, a middle and the last, each reached from the wire on its
/// VLAN only and its frames tagged with it; one more network created and removed at
/// run time with all of them in place (timed). A second network on a VLAN taken is
/// refused by name.
#[test]
fn every_vlan_id_can_be_a_network_on_one_parent() {
    if !require_root("every_vlan_id_can_be_a_network_on_one_parent") {
        return;
    }
    let t = Topo::new("umvw", false, 3);
    let on = [1u16, 2047, 4094];
    let mut config = String::new();
    for v in 1..=4094u16 {
        config += &format!("[[network]]\nname = 'v{v}'\nparent = 'par'\nvlan = {v}\n");
        if let Some(i) = on.iter().position(|x| *x == v) {
            config += &format!(
                "[[network.endpoint]]\nname = 'e{}'\nnetns = '{}'\nmac = '{}'\nip = '{}/24'\n",
                i + 1,
                t.eps[i],
                ep_mac(i + 1),
                ep_ip(i + 1)
            );
        }
        config += "\n";
    }
    t.lab
        .exec(&t.wire, &["ethtool", "-K", "wpar", "txvlan", "off"]);
    let t0 = std::time::Instant::now();
    let d = DaemonProc::start(&t.host, "umvw", &config);
    println!("4094 networks up in {:?}", t0.elapsed());
    let ls = String::from_utf8_lossy(&d.cli(&["network", "ls"]).stdout).to_string();
    assert_eq!(ls.lines().count(), 4094 + 1, "a header and 4094 networks");

    // Each endpoint gets the frames tagged with its VLAN, and none tagged otherwise.
    let ext_mac = "02:00:00:00:00:e0";
    let before: Vec<u64> = t.eps.iter().map(|ns| t.eth0_rx_packets(ns)).collect();
    let missed = kernel_stat(&d, "xdp_tagged_miss");
    for (i, v) in on.iter().enumerate() {
        send(&t, &t.ext, &ep_mac(i + 1), ext_mac, Some(*v), 10);
        // The right MAC on a neighbouring VLAN: not this endpoint's.
        send(&t, &t.ext, &ep_mac(i + 1), ext_mac, Some(v % 4094 + 1), 10);
    }
    wait_for("30 frames delivered and 30 passed to the host", || {
        let got: Vec<u64> = t
            .eps
            .iter()
            .zip(&before)
            .map(|(ns, b)| t.eth0_rx_packets(ns) - b)
            .collect();
        let passed = kernel_stat(&d, "xdp_tagged_miss") - missed;
        if got.iter().all(|n| *n >= 10) && passed >= 30 {
            Ok(())
        } else {
            Err(format!("delivered {got:?}, passed {passed}"))
        }
    });
    for (i, ns) in t.eps.iter().enumerate() {
        let n = port_stat(&d, &format!("e{}", i + 1), "tx_packets");
        assert_eq!(n, 10, "e{} gets exactly its VLAN's frames", i + 1);
        assert!(t.eth0_rx_packets(ns) - before[i] >= 10);
    }
    // Towards the wire each endpoint's frames carry its network's tag.
    for (i, v) in on.iter().enumerate() {
        let cap = capture(&t.ext, &ep_mac(i + 1), 3);
        send(&t, &t.eps[i], ext_mac, &ep_mac(i + 1), None, 3);
        let seen = cap.finish();
        assert!(
            !seen.is_empty() && seen.iter().all(|s| *s == v.to_string()),
            "e{}'s frames on the wire must carry VLAN {v}: {seen:?}",
            i + 1
        );
    }
    // At run time, with every VLAN taken: a network on a taken VLAN is refused; one
    // removed and created again takes its place.
    common::daemon::refused(
        &d.cli(&[
            "network", "create", "again", "--parent", "par", "--vlan", "7",
        ]),
        "v7",
    );
    let t0 = std::time::Instant::now();
    common::daemon::ok(&d.cli(&["network", "rm", "v7"]));
    common::daemon::ok(&d.cli(&[
        "network", "create", "again", "--parent", "par", "--vlan", "7",
    ]));
    println!("network rm + create with 4094 networks: {:?}", t0.elapsed());
    d.stop();
}
