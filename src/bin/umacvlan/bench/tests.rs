//! Rootless tests of the bench's pure parts: the frame, option parsing, the
//! zero-loss search, and the summaries.

use std::time::Duration;

use super::gen::FrameSpec;
use super::report::{self, median};
use super::*;

fn mac(s: &str) -> umacvlan::wire::MacAddr {
    s.parse().unwrap()
}

#[test]
fn frames_are_valid_udp_ipv4_of_every_size() {
    for size in [64, 65, 128, 256, 512, 1024, 1517, 1518] {
        let mut spec = FrameSpec::new(mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"));
        spec.size = size;
        let b = spec.bytes().unwrap();
        assert_eq!(
            b.len(),
            size - 4,
            "the FCS is not part of what the kernel gets"
        );
        let p = etherparse::SlicedPacket::from_ethernet(&b).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(
            h.header_checksum,
            h.calc_header_checksum(),
            "IPv4 checksum, size {size}"
        );
        assert_eq!(usize::from(h.total_len), size - 4 - 14);
        let Some(etherparse::TransportSlice::Udp(u)) = &p.transport else {
            panic!("not UDP")
        };
        let uh = u.to_header();
        assert_eq!((uh.source_port, uh.destination_port), (1024, 9));
        let want = uh.calc_checksum_ipv4(&h, u.payload()).unwrap();
        assert_eq!(uh.checksum, want, "UDP checksum, size {size}");
    }
}

#[test]
fn frame_sizes_outside_rfc2544_are_refused() {
    let mut spec = FrameSpec::new(mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"));
    for bad in [0, 63, 1519, 9000] {
        spec.size = bad;
        let e = spec.bytes().unwrap_err().to_string();
        assert!(
            e.contains(&bad.to_string()) && e.contains("64..=1518"),
            "{e}"
        );
    }
}

#[test]
fn systems_parse_with_options_and_refuse_nonsense() {
    let s: System = "umacvlan:generic,budget=256,ring=4096,core=1,sleep=20,napi=1"
        .parse()
        .unwrap();
    assert_eq!(s.kind, SystemKind::Umacvlan);
    assert_eq!(s.tuning.xdp_mode, Some(XdpMode::Generic));
    assert_eq!(s.tuning.socket.tx_budget, Some(256));
    assert_eq!(s.tuning.ring, Some(4096));
    assert_eq!(s.tuning.idle_sleep, Some(Duration::from_micros(20)));
    assert_eq!(s.tuning.napi_core, Some(1));
    assert_eq!(
        "macvlan".parse::<System>().unwrap().kind,
        SystemKind::Macvlan
    );
    for (bad, says) in [
        ("docker", "unknown system"),
        ("macvlan:generic", "takes no options"),
        ("umacvlan:ring=1000", "power of two"),
        ("umacvlan:ring=64", "from 128"),
        ("umacvlan:generic=no", "takes no value"),
        ("umacvlan:budget=lots", "needs a number"),
        ("ovs:budget=64", "unknown option"),
        ("l2fwd:sleep=5", "unknown option"),
    ] {
        let e = bad.parse::<System>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    assert_eq!("ep-wire".parse::<Scenario>().unwrap(), Scenario::EpToWire);
    assert!("ep-ep-ep".parse::<Scenario>().is_err());
}

/// A fake system that loses frames above `capacity` frames/s.
fn fake_trial(capacity: f64) -> impl FnMut(f64) -> Result<Trial, Error> {
    move |rate| {
        let sent = rate as u64;
        let delivered = sent.min(capacity as u64);
        Ok(Trial {
            offered: Some(rate),
            sent,
            delivered,
            seconds: 1.0,
            cpu_ns: Some(0),
            stray: 0,
            unfinished: 0,
        })
    }
}

#[test]
fn zero_loss_search_converges_below_the_capacity() {
    let (best, trials) = zero_loss_search(1_000_000.0, 8, fake_trial(600_000.0)).unwrap();
    assert_eq!(trials.len(), 8);
    assert!(best <= 600_000.0, "{best}");
    // The first trial is at the top, then halving: resolution 1e6 / 2^7.
    assert!(best > 600_000.0 - 1_000_000.0 / 128.0, "{best}");
    assert!(trials.iter().all(|t| t.lossless() == (t.sent <= 600_000)));
}

#[test]
fn a_trial_with_frames_still_in_flight_is_not_lossless() {
    let t = Trial {
        offered: Some(1000.0),
        sent: 1000,
        delivered: 1000,
        seconds: 1.0,
        cpu_ns: None,
        stray: 0,
        unfinished: 3,
    };
    assert!(!t.lossless());
    assert_eq!(t.cpu_per_frame(), None, "no CPU figure without /proc/stat");
    assert!(Trial { unfinished: 0, ..t }.lossless());
    assert!(!Trial {
        unfinished: 0,
        delivered: 999,
        ..t
    }
    .lossless());
}

#[test]
fn zero_loss_search_stops_when_the_top_is_lossless_and_reports_zero_when_nothing_passes() {
    let (best, trials) = zero_loss_search(500_000.0, 6, fake_trial(900_000.0)).unwrap();
    assert_eq!((best, trials.len()), (500_000.0, 1));
    let (best, trials) = zero_loss_search(500_000.0, 4, fake_trial(0.0)).unwrap();
    assert_eq!((best, trials.len()), (0.0, 4));
}

#[test]
fn medians_and_paired_ratios() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    let m = |system: &str, round, delivered| Measurement {
        scenario: Scenario::EpToEp,
        size: 64,
        system: system.into(),
        round,
        max: Trial {
            offered: None,
            sent: delivered,
            delivered,
            seconds: 1.0,
            cpu_ns: Some(delivered * 1000),
            stray: 0,
            unfinished: 0,
        },
        zero_loss: Some(delivered as f64 / 2.0),
        zero_loss_trials: vec![],
        skipped: None,
    };
    // The machine drifts: round 2 is twice as fast for everybody; the paired ratio
    // sees through it.
    let ms = vec![
        m("umacvlan", 1, 800),
        m("macvlan", 1, 1000),
        m("umacvlan", 2, 1600),
        m("macvlan", 2, 2000),
        m("umacvlan", 3, 900),
        m("macvlan", 3, 1000),
    ];
    let r = report::paired_ratios(&ms, Scenario::EpToEp, 64, "umacvlan", "macvlan");
    assert_eq!(r, vec![0.8, 0.8, 0.9]);
    let cfg = BenchConfig {
        scenarios: vec![Scenario::EpToEp],
        sizes: vec![64],
        systems: vec!["umacvlan".parse().unwrap(), "macvlan".parse().unwrap()],
        rounds: 3,
        ..BenchConfig::default()
    };
    let rows = report::summarize(&cfg, &ms);
    assert_eq!(rows.len(), 2);
    let u = &rows[0];
    assert_eq!((u.median, u.min, u.max), (900.0, 800.0, 1600.0));
    assert_eq!(u.paired, Some(0.8));
    assert_eq!(u.cpu_ns_per_frame, Some(1000.0));
    assert_eq!(rows[1].paired, Some(1.0));
    let t = report::table(&rows, Some("macvlan"));
    assert!(
        t.contains("| umacvlan | 0.001 | 0.001–0.002 | 0.80 |"),
        "{t}"
    );
    let sum = report::summary(&cfg, &ms, &rows);
    assert!(sum.contains("| umacvlan | 0.001 (0.80) |"), "{sum}");
    assert!(
        sum.contains("| macvlan | 0.80 |"),
        "umacvlan against macvlan: {sum}"
    );
    let svg = report::svg(&cfg, &rows);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2, "one line per system");
    let j = report::json(&cfg, &ms, &report::Machine::here());
    assert_eq!(j["measurements"].as_array().unwrap().len(), 6);
    assert_eq!(j["summary"][0]["system"], "umacvlan");
}

#[test]
fn a_skipped_competitor_shows_why_and_spoils_no_ratio() {
    let cfg = BenchConfig {
        scenarios: vec![Scenario::EpToEp],
        sizes: vec![64],
        systems: vec!["ovs".parse().unwrap(), "macvlan".parse().unwrap()],
        rounds: 1,
        ..BenchConfig::default()
    };
    let ms = vec![Measurement {
        scenario: Scenario::EpToEp,
        size: 64,
        system: "ovs".into(),
        round: 1,
        max: Trial::default(),
        zero_loss: None,
        zero_loss_trials: vec![],
        skipped: Some("Open vSwitch is not installed".into()),
    }];
    let rows = report::summarize(&cfg, &ms);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].paired, None);
    assert!(
        report::table(&rows, Some("macvlan")).contains("skipped: Open vSwitch is not installed")
    );
}
