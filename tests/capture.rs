//! Root test, through the real daemon: `umacvlan capture` shows a ping between two
//! endpoints — carried by the kernel fast path — request and reply, with their times
//! and lengths, in a pcap file `tcpdump -r` reads and through `-w - | tcpdump -r -`;
//! a broadcast the switch floods is captured too, as the switch's; bad requests are
//! refused by name.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::daemon::{lan_config, refused, DaemonProc, BIN};
use common::require_root_and;
use common::topo::{ep_ip, Topo};

/// Starts `umacvlan capture ARGS` and returns once it is capturing (it says so on
/// stderr).
fn start(d: &DaemonProc, args: &[&str]) -> std::process::Child {
    let mut c = Command::new(BIN)
        .arg("capture")
        .args(args)
        .args(["--socket", d.socket.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(c.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(
        first.contains("capturing on"),
        "capture did not start: {first}"
    );
    // The rest of stderr (the summary) is read at the end.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        eprint!("{rest}");
    });
    c
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_capture_of_a_ping_reads_back_in_tcpdump() {
    if !require_root_and("a_capture_of_a_ping_reads_back_in_tcpdump", &["tcpdump"]) {
        return;
    }
    let t = Topo::new("umvp", false, 2);
    let d = DaemonProc::start(&t.host, "umvp", &lan_config(&t, 2, &[1, 2]));
    let ping = |n: &str| {
        assert!(t.lab.try_exec(
            &t.eps[0],
            &[
                "ping",
                "-q",
                "-n",
                "-c",
                n,
                "-i",
                "0.2",
                "-W",
                "1",
                &ep_ip(2)
            ]
        ))
    };
    // ARP first, so the capture sees the echoes alone.
    ping("1");

    // To a file: two requests out of e1, two replies into it.
    let file = std::env::temp_dir().join(format!("umvp-{}.pcap", std::process::id()));
    let t0 = now();
    let c = start(&d, &["e1", "-w", file.to_str().unwrap(), "-c", "4"]);
    ping("2");
    let out = c.wait_with_output().unwrap();
    let t1 = now();
    assert!(out.status.success(), "capture: {out:?}");
    let read = Command::new("tcpdump")
        .args(["-r", file.to_str().unwrap(), "-nn", "-tt", "-e"])
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let text = String::from_utf8_lossy(&read.stdout).to_string();
    println!("{text}");
    assert!(read.status.success(), "tcpdump -r: {read:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let requests = lines
        .iter()
        .filter(|l| l.contains("ICMP echo request"))
        .count();
    let replies = lines
        .iter()
        .filter(|l| l.contains("ICMP echo reply"))
        .count();
    assert_eq!((requests, replies), (2, 2), "{text}");
    for l in &lines {
        // 98 bytes: Ethernet, IPv4, ICMP, 56 bytes of data.
        assert!(l.contains("length 98"), "{l}");
        let ts: f64 = l.split_whitespace().next().unwrap().parse().unwrap();
        assert!(ts >= t0 && ts <= t1, "time {ts} outside [{t0}, {t1}]: {l}");
    }

    // Through a pipe into tcpdump, the other side's view: e2 gets the request.
    let sock = d.socket.to_str().unwrap().to_string();
    let mut pipe = Command::new("sh")
        .args([
            "-c",
            &format!("{BIN} capture e2 -w - -c 2 -s 64 --socket {sock} | tcpdump -r - -nn"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The capture is on once the daemon lists it in its log; ping until tcpdump ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pipe.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the piped capture did not end"
        );
        ping("1");
    }
    let out = pipe.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(text.contains("ICMP echo request"), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("snapshot length 64"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A broadcast from e1: the switch's (flooded), captured on its way in.
    let c = start(&d, &["e1", "-Q", "in", "-c", "1"]);
    t.lab.exec(
        &t.eps[0],
        &[
            "python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\n\
             s.send(b'\\xff'*6+bytes.fromhex('020000000001')+b'\\x88\\xb5'+bytes(46))\n",
        ],
    );
    let out = c.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{line}");
    assert!(
        line.contains("in  switch 60 bytes 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff 0x88b5"),
        "{line}"
    );

    // Bad requests: named.
    refused(&d.cli(&["capture", "nobody"]), "no port 'nobody'");
    refused(&d.cli(&["capture", "e1", "-s", "9000"]), "snap length 9000");
    d.stop();
}
