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

mod scale {
    use super::super::scale::*;

    #[test]
    fn receivers_are_every_endpoint_or_an_evenly_spaced_subset_with_both_ends() {
        assert_eq!(sample(5, 1000), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample(5, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample(1000, 1), vec![999]);
        assert_eq!(sample(10, 0), Vec::<usize>::new());
        let s = sample(1000, 7);
        assert_eq!(s, vec![0, 166, 333, 499, 666, 832, 999]);
        let s = sample(1022, 1000);
        assert_eq!(s.len(), 1000);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "distinct, in order");
        assert_eq!((s[0], s[999]), (0, 1021));
    }

    #[test]
    fn the_marginal_cost_is_the_median_of_the_ten_adds_up_to_the_kth() {
        // A slow first add (the switch's first endpoint) and a slope.
        let adds: Vec<f64> = (1..=100)
            .map(|i| if i == 1 { 5000.0 } else { i as f64 })
            .collect();
        assert_eq!(around(&adds, 0), None);
        assert_eq!(around(&adds, 101), None);
        assert_eq!(around(&adds, 1), Some(5000.0));
        // Adds 1..=10: the slow first one moves the median by half a step only.
        assert_eq!(around(&adds, 10), Some(6.5));
        assert_eq!(around(&adds, 100), Some(95.5));
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(2), "2nd");
        assert_eq!(ordinal(3), "3rd");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(111), "111th");
        assert_eq!(ordinal(1000), "1000th");
        assert_eq!(ordinal(22), "22nd");
        assert_eq!(fmt_us(950.0), "950 µs");
        assert_eq!(fmt_us(16_250.0), "16.25 ms");
        assert_eq!(fmt_us(2_500_000.0), "2.50 s");
        assert_eq!(fmt_rate(999.0), "999");
        assert_eq!(fmt_rate(12_500.0), "12.5 k");
        assert_eq!(fmt_rate(3_362_000.0), "3.362 M");
    }

    #[test]
    fn broadcast_rates_are_over_the_counting_window() {
        let b = Broadcast {
            sent: 2_000_000,
            send_seconds: 2.0,
            window_seconds: 0.5,
            delivered: vec![100_000, 50_000, 150_000],
            stray: 0,
            switch_drops: None,
        };
        assert_eq!(b.offered(), 1_000_000.0);
        assert_eq!(b.total_rate(), 600_000.0);
        assert_eq!(b.per_endpoint(), 200_000.0);
        assert_eq!(b.slowest(), 100_000.0);
        assert_eq!(Broadcast::default().per_endpoint(), 0.0);
    }

    /// A measurement: `n` adds of `us` µs plus `slope` µs per endpoint already
    /// there, every receiver reached, `per` broadcast frames per receiver in 1 s.
    fn m(system: &str, n: usize, round: usize, us: f64, slope: f64, per: u64) -> ScaleMeasurement {
        let add_us: Vec<f64> = (0..n).map(|i| us + slope * i as f64).collect();
        ScaleMeasurement {
            system: system.into(),
            endpoints: n,
            round,
            added: n,
            add_seconds: add_us.iter().sum::<f64>() / 1e6,
            add_us,
            receivers: (0..n).collect(),
            receivers_note: None,
            capacity: Some(Capacity {
                sent: n as u64,
                seconds: 0.01,
                reached: n,
                probed: n,
                misdelivered: 0,
                stray: 0,
            }),
            broadcast: Some(Broadcast {
                sent: 1_000_000,
                send_seconds: 1.0,
                window_seconds: 1.0,
                delivered: vec![per; n],
                stray: 0,
                switch_drops: None,
            }),
            failed: None,
        }
    }

    #[test]
    fn summaries_take_medians_pair_rounds_and_say_what_failed() {
        let cfg = ScaleConfig {
            counts: vec![10, 100],
            systems: vec!["umacvlan".parse().unwrap(), "macvlan".parse().unwrap()],
            rounds: 3,
            ..ScaleConfig::default()
        };
        let mut ms = Vec::new();
        for (round, speed) in [(1, 1.0), (2, 2.0), (3, 1.0)] {
            for n in [10, 100] {
                // Round 2 is twice as fast for both: the paired ratio sees through it.
                ms.push(m(
                    "umacvlan",
                    n,
                    round,
                    20_000.0,
                    10.0,
                    (4000.0 * speed) as u64,
                ));
                ms.push(m(
                    "macvlan",
                    n,
                    round,
                    15_000.0,
                    0.0,
                    (8000.0 * speed) as u64,
                ));
            }
        }
        // umacvlan's round 3 at 100 endpoints failed at the 51st add.
        let bad = ms
            .iter_mut()
            .find(|x| x.system == "umacvlan" && x.endpoints == 100 && x.round == 3)
            .unwrap();
        bad.added = 50;
        bad.add_us.truncate(50);
        bad.capacity = None;
        bad.broadcast = None;
        bad.failed = Some("endpoint 51 of 100: no room".into());
        // umacvlan's flood ran out of frames in two rounds at 10 endpoints.
        for (round, lost) in [(1, 700), (2, 900)] {
            let x = ms
                .iter_mut()
                .find(|x| x.system == "umacvlan" && x.endpoints == 10 && x.round == round)
                .unwrap();
            x.broadcast.as_mut().unwrap().switch_drops =
                Some([("no_buffer".to_string(), lost)].into());
        }
        ms.iter_mut()
            .find(|x| x.system == "umacvlan" && x.endpoints == 10 && x.round == 3)
            .unwrap()
            .broadcast
            .as_mut()
            .unwrap()
            .switch_drops = Some(Default::default());
        let rows = summarize(&cfg, &ms);
        assert_eq!(rows.len(), 4);
        let u100 = rows
            .iter()
            .find(|r| r.system == "umacvlan" && r.endpoints == 100)
            .unwrap();
        assert_eq!((u100.rounds, u100.added), (2, 50));
        // Adds 91..=100 cost 20 000 + 10·(90..=99) µs: median 20 945.
        assert_eq!(
            u100.add_at,
            vec![
                AddAt {
                    nth: 10,
                    us: 20_045.0
                },
                AddAt {
                    nth: 100,
                    us: 20_945.0
                }
            ]
        );
        assert_eq!(u100.add_mean_us, Some(20_495.0));
        assert_eq!(u100.reached, Some(100));
        // Rounds 1 and 2: 4000·100 and 8000·100 frames/s.
        assert_eq!(u100.delivered, Some(600_000.0));
        assert_eq!(u100.per_endpoint, Some(6000.0));
        assert_eq!(u100.slowest, Some(4000.0));
        assert_eq!(u100.paired, Some(0.5));
        assert!(u100.failed.as_deref().unwrap().contains("51 of 100"));
        let mac10 = rows
            .iter()
            .find(|r| r.system == "macvlan" && r.endpoints == 10)
            .unwrap();
        assert_eq!(mac10.paired, Some(1.0));
        assert_eq!(
            mac10.add_at,
            vec![AddAt {
                nth: 10,
                us: 15_000.0
            }]
        );
        assert_eq!(mac10.add_seconds, Some(0.15));

        let t = table(&cfg, &rows);
        assert!(t.contains("| system | from N | 10th | 100th |"), "{t}");
        assert!(
            t.contains("| umacvlan | 100 | 20.05 ms | 20.95 ms |"),
            "{t}"
        );
        assert!(t.contains("| macvlan | 100 | 15.00 ms | 15.00 ms |"), "{t}");
        assert!(
            t.contains("| macvlan | 10 | 10 | 0.15 s | 15.00 ms |"),
            "{t}"
        );
        assert!(t.contains("| umacvlan | 100 | 100 of 100 | 0 |"), "{t}");
        assert!(
            t.contains(
                "| umacvlan | 100 | 1.000 M | 600.0 k | 6.0 k | 4.0 k | 100 of 100 | 0.50 |"
            ),
            "{t}"
        );
        assert!(
            t.contains("* umacvlan at N = 100: failed: endpoint 51 of 100: no room"),
            "{t}"
        );
        assert!(
            t.contains("* umacvlan at N = 10: no_buffer 700\n"),
            "a reason missing from a round counts as zero there: {t}"
        );
        assert!(!t.contains("* macvlan at N = 10: no_buffer"), "{t}");
        let line = progress_line(&ms[0]);
        assert!(
            line.contains("reached 10/10") && line.contains("delivered 40.0 k/s"),
            "{line}"
        );

        let j = json(&cfg, &ms, &super::super::report::Machine::here());
        assert_eq!(j["benchmark"], "rfc2889");
        assert_eq!(j["measurements"].as_array().unwrap().len(), 12);
        assert_eq!(j["summary"].as_array().unwrap().len(), 4);
        assert_eq!(j["summary"][0]["add_at"][0]["nth"], 10);
        assert_eq!(j["config"]["counts"][1], 100);
        assert_eq!(j["measurements"][0]["broadcast"]["delivered"][0], 4000);
    }

    #[test]
    fn a_sampled_run_says_so_and_a_system_that_added_nothing_gets_dashes() {
        let cfg = ScaleConfig {
            counts: vec![12],
            systems: vec!["umacvlan:slow".parse().unwrap(), "macvlan".parse().unwrap()],
            rounds: 1,
            ..ScaleConfig::default()
        };
        let mut a = m("macvlan", 12, 1, 1000.0, 0.0, 10);
        a.receivers = vec![0, 11];
        a.receivers_note = Some("2 of 12 endpoints have a receiver (evenly spaced)".into());
        a.broadcast.as_mut().unwrap().delivered = vec![10, 10];
        let c = a.capacity.as_mut().unwrap();
        (c.reached, c.probed) = (2, 2);
        let b = ScaleMeasurement {
            system: "umacvlan:slow".into(),
            endpoints: 12,
            round: 1,
            failed: Some("endpoint 1 of 12: no UMEM room".into()),
            ..ScaleMeasurement::default()
        };
        let rows = summarize(&cfg, &[b, a]);
        let t = table(&cfg, &rows);
        assert!(t.contains("| umacvlan:slow | - | - |"), "{t}");
        assert!(t.contains("| umacvlan:slow | 12 | 0 | - | - |"), "{t}");
        assert!(t.contains("| macvlan | 12 | 2 of 2 | 0 |"), "{t}");
        assert!(t.contains("| 2 of 12 | 1.00 |"), "{t}");
        assert!(
            t.contains("* macvlan at N = 12: 2 of 12 endpoints have a receiver (evenly spaced)"),
            "{t}"
        );
        assert_eq!(rows[0].paired, None);
    }

    #[test]
    fn scale_configurations_are_checked() {
        assert!(ScaleConfig::default().check().is_ok());
        assert_eq!(ScaleConfig::default().milestones(), vec![10, 100, 1000]);
        let c = ScaleConfig {
            counts: vec![1000, 10, 100],
            ..ScaleConfig::default()
        };
        assert_eq!(c.milestones(), vec![10, 100, 1000], "ascending");
        for (cfg, says) in [
            (
                ScaleConfig {
                    counts: vec![],
                    ..ScaleConfig::default()
                },
                "nothing to measure",
            ),
            (
                ScaleConfig {
                    counts: vec![70_000],
                    ..ScaleConfig::default()
                },
                "outside 1..=65536",
            ),
            (
                ScaleConfig {
                    systems: vec!["ovs".parse().unwrap()],
                    ..ScaleConfig::default()
                },
                "not ovs",
            ),
            (
                ScaleConfig {
                    namespaces: 0,
                    ..ScaleConfig::default()
                },
                "at least 1",
            ),
            (
                ScaleConfig {
                    capacity_rate: f64::NAN,
                    ..ScaleConfig::default()
                },
                "positive number",
            ),
        ] {
            let e = cfg.check().unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
