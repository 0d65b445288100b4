//! Criterion benchmarks of the switching core, one core, no kernel I/O.
//!
//! * `fdb_lookup/N`: FDB lookups on a snapshot holding N entries (hit ratio 100%).
//! * `decide/*`: one forwarding decision for typical frames (floods in a network of 4
//!   and of 64 endpoints, a quarter of the 64 with an exact multicast filter).
//! * `wakeup_check/*`: the AF_XDP rings' need-wakeup check, with the full fence it
//!   has before its flag load and with a plain acquire load (libbpf's `READ_ONCE`).
//! * `datapath_bridge_64B/B`: 64-byte frames forwarded endpoint→endpoint in bridge
//!   mode between in-memory ports at burst size B. Frame handles move; bytes do not.
//!
//! Run: `cargo bench --bench main` (figures in the README and the issue notes).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use umacvlan::mode::{decide, Facts, Mode};
use umacvlan::port::{FramePool, MemPool, MemPort, PortId};
use umacvlan::switch::Switch;
use umacvlan::table::{rcu, Fdb, FdbKey};
use umacvlan::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
use umacvlan::view::{McFilter, PortTable};
use umacvlan::wire::{emit_header, EtherType, MacAddr};

fn mac(i: u32) -> MacAddr {
    MacAddr::local_from_bytes([
        0,
        0x42,
        (i >> 24) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ])
}

fn fdb_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("fdb_lookup");
    const LOOKUPS: u32 = 1024;
    for n in [1u32, 64, 4096, 65536] {
        let mut fdb = Fdb::new();
        for i in 0..n {
            fdb.insert_static(FdbKey::new(0, mac(i)), PortId((i % 1000) as u16))
                .unwrap();
        }
        let (_w, r) = rcu(fdb);
        // A pseudo-random walk over the keys, precomputed so only the lookup is timed.
        let keys: Vec<FdbKey> = (0..LOOKUPS)
            .map(|i| FdbKey::new(0, mac(i.wrapping_mul(2_654_435_761) % n)))
            .collect();
        g.throughput(Throughput::Elements(LOOKUPS as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &keys, |b, keys| {
            b.iter(|| {
                let snap = r.snapshot();
                let mut hits = 0u32;
                for k in keys {
                    hits += snap.lookup(black_box(*k)).is_some() as u32;
                }
                assert_eq!(hits, LOOKUPS);
                hits
            })
        });
    }
    g.finish();
}

fn topology(eps: u32) -> (Topology, Vec<PortId>) {
    let parent = ParentConfig {
        name: "bench0".into(),
        mac: "02:00:00:00:ff:fe".parse().unwrap(),
        mtu: 1500,
    };
    let mut t = Topology::new(parent, true).unwrap();
    let ids = (0..eps)
        .map(|i| {
            let mode = if i % 4 == 3 { Mode::Vepa } else { Mode::Bridge };
            t.add_endpoint(EndpointConfig::new(format!("e{i}"), mode).with_mac(mac(i)))
                .unwrap()
        })
        .collect();
    (t, ids)
}

fn decide_bench(c: &mut Criterion) {
    let (mut t, ids) = topology(64);
    // A quarter of the endpoints listen to one group only (an exact multicast filter).
    let group: MacAddr = "01:00:5e:00:00:fb".parse().unwrap();
    for i in (0..64).step_by(4) {
        t.set_mc(&format!("e{i}"), McFilter::Groups(Arc::from([group])))
            .unwrap();
    }
    let big: Arc<PortTable> = t.table();
    let (small, small_ids) = topology(4);
    let small: Arc<PortTable> = small.table();
    let ext: MacAddr = "00:11:22:33:44:55".parse().unwrap();
    let other_group: MacAddr = "01:00:5e:00:00:01".parse().unwrap();
    let facts = |dst, src, ethertype| Facts {
        dst,
        src,
        vlan: 0,
        ethertype,
    };
    let (ip, arp, bcast) = (EtherType::IPV4, EtherType::ARP, MacAddr::BROADCAST);
    let cases = [
        (
            "wire_broadcast_w6_4eps",
            &small,
            UPLINK,
            facts(bcast, ext, arp),
        ),
        (
            "bridge_broadcast_t1_4eps",
            &small,
            small_ids[0],
            facts(bcast, mac(0), arp),
        ),
        (
            "bridge_unicast_local",
            &big,
            ids[0],
            facts(mac(1), mac(0), ip),
        ),
        ("wire_unicast_w1", &big, UPLINK, facts(mac(5), ext, ip)),
        ("vepa_unicast_t4", &big, ids[3], facts(mac(1), mac(3), ip)),
        (
            "wire_broadcast_w6_64eps",
            &big,
            UPLINK,
            facts(bcast, ext, arp),
        ),
        (
            "wire_multicast_w6_64eps",
            &big,
            UPLINK,
            facts(other_group, ext, ip),
        ),
        (
            "bridge_broadcast_t1_64eps",
            &big,
            ids[0],
            facts(bcast, mac(0), arp),
        ),
    ];
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    for (name, table, ingress, f) in cases {
        g.bench_function(name, |b| {
            b.iter(|| decide(black_box(ingress), black_box(&f), table))
        });
    }
    g.finish();
}

fn datapath_at<const BURST: usize>(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    let (t, ids) = topology(8);
    let (a, b) = (ids[0], ids[1]);
    let mut sw: Switch<MemPort, MemPool, BURST> = Switch::new(t.reader(), MemPool::new(4096, 2048));
    for id in [UPLINK, HOST].into_iter().chain(ids.iter().copied()) {
        sw.attach(id, MemPort::new(4096)).unwrap();
    }
    let mut buf = [0u8; 64];
    emit_header(&mut buf, mac(1), mac(0), None, EtherType::IPV4);
    for _ in 0..BURST {
        let f = sw.pool_mut().alloc_with(&buf).unwrap();
        sw.port_mut(a).unwrap().inject(f);
    }
    c.throughput(Throughput::Elements(BURST as u64));
    c.bench_function(BenchmarkId::from_parameter(BURST), |bch| {
        bch.iter(|| {
            let n = sw.poll_port(a);
            debug_assert_eq!(n, BURST);
            // Move the handles back to a's receive queue: no bytes are touched.
            for _ in 0..BURST {
                let f = sw.port_mut(b).unwrap().pop_tx().expect("forwarded");
                sw.port_mut(a).unwrap().inject(f);
            }
            n
        })
    });
    assert_eq!(sw.stats(a).unwrap().total_drops(), 0);
    for id in [UPLINK, HOST].into_iter().chain(ids.iter().copied()) {
        let left: Vec<_> = sw.port_mut(id).unwrap().drain_all().collect();
        left.into_iter().for_each(|f| sw.pool_mut().free(f));
    }
    assert_eq!(sw.pool().in_use(), 0);
}

fn datapath(c: &mut Criterion) {
    let mut g = c.benchmark_group("datapath_bridge_64B");
    datapath_at::<1>(&mut g);
    datapath_at::<8>(&mut g);
    datapath_at::<32>(&mut g);
    datapath_at::<64>(&mut g);
    g.finish();
}

/// What `ProdRing::needs_wakeup` costs (the ring's words are plain atomics in shared
/// memory; the ring itself needs a socket, so its two loads are measured here): once
/// per socket per pass for the fill ring, so a worker with a thousand endpoint
/// sockets pays it a thousand times each pass.
fn wakeup_check(c: &mut Criterion) {
    use std::sync::atomic::{fence, AtomicU32, Ordering};
    let (producer, flags) = (AtomicU32::new(0), AtomicU32::new(0));
    let mut g = c.benchmark_group("wakeup_check");
    g.throughput(Throughput::Elements(1));
    // A producer store (the commit) and the flag check, as a refill does them.
    g.bench_function("seqcst_fence", |b| {
        b.iter(|| {
            producer.store(black_box(1), Ordering::Release);
            fence(Ordering::SeqCst);
            flags.load(Ordering::Relaxed) & 1 != 0
        })
    });
    g.bench_function("acquire_load", |b| {
        b.iter(|| {
            producer.store(black_box(1), Ordering::Release);
            flags.load(Ordering::Acquire) & 1 != 0
        })
    });
    g.finish();
}

criterion_group!(benches, fdb_lookup, decide_bench, wakeup_check, datapath);
criterion_main!(benches);
