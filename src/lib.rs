//! # umacvlan — a userspace macvlan
//!
//! umacvlan gives containers and VMs their own MAC address on a physical network, as
//! the kernel's macvlan does, with the kernel's four modes (bridge, VEPA, private,
//! passthru, plus source), but switched in userspace over AF_XDP: per-port counters,
//! a host port that can reach its own children, and control over broadcast.
//!
//! ## Front door
//! [`dataplane::Dataplane`] runs the switch on a real parent interface: XDP steering,
//! AF_XDP sockets, veth endpoints in their namespaces, and in-process endpoints
//! ([`app`]) whose frames your code handles without a copy. `examples/embedded.rs`
//! builds a whole topology and pings an in-process endpoint from a container:
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use umacvlan::app::Responder;
//! use umacvlan::dataplane::{Dataplane, DataplaneConfig, EndpointNet};
//! use umacvlan::mode::Mode;
//! use umacvlan::topology::EndpointConfig;
//!
//! // Root; `eth1` is a parent you own (never the interface you manage the host through).
//! let mut dp = Dataplane::start(DataplaneConfig::new("eth1"))?;
//! dp.add_endpoint(
//!     EndpointConfig::new("web", Mode::Bridge).with_mac("02:42:c0:a8:20:0a".parse()?),
//!     EndpointNet { netns: "web".into(), ifname: "eth0".into(), addrs: vec!["192.168.32.10/24".parse()?], queues: None, adopt: None },
//! )?;
//! let mac = "02:42:c0:a8:20:40".parse()?;
//! dp.add_app_endpoint(EndpointConfig::new("app", Mode::Bridge).with_mac(mac), move || Box::new(Responder::new(mac, Ipv4Addr::new(192, 168, 32, 64))))?;
//! for (port, s) in dp.stats()? {
//!     println!("{port}: rx {} tx {} drops {}", s.rx_packets, s.tx_packets, s.total_drops());
//! }
//! dp.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Layers
//! The library is the switch; the `umacvlan` binary (`src/bin/umacvlan/`: daemon,
//! configuration file, CLI, demo, benchmark harness) is the product built on it.
//! ```text
//!   kernel datapath (feature `kernel`, default)
//!   dataplane  parent + XDP/tc steering (bpf) + AF_XDP sockets (xsk, sys) + veth
//!              endpoints (link) + in-process endpoints (app) + worker threads
//!   link  bpf  xsk  sys      netlink and namespaces; programs and maps; AF_XDP; libc
//!   ─────────────────────────────────────────────────────────────── sans-I/O core
//!   app        in-process endpoints: a handler behind the Port trait
//!   topology   control rules (spec §5); publishes a PortTable per change
//!      │ table::Writer  ──RCU snapshot──▶  table::Reader (one load per burst)
//!   switch     burst loop: receive → classify → decide → stage → transmit
//!      │ mode::decide(ingress, Facts, &PortTable) -> Verdict   (pure)
//!   fastpath   the kernel fast path's entries, compiled from the table by decide
//!   mode       the kernel's forwarding rules T1–T4, W1–W9, §3.1
//!   view       the published port table: ports, endpoints, the FDB snapshot
//!   table      FDB: (VLAN, MAC) → PortId
//!   port       vocabulary: PortId, Mode, DropReason; Port trait, Frame, pools, MemPort
//!   wire       MacAddr, EtherType, VLAN tags: checked zero-copy views
//!   ctl        the control protocol's types and client (beside the stack)
//! ```
//! Each core module imports only the ones below it, and none of them does I/O,
//! spawns a thread or names a kernel module (`tests/layers.rs` fails otherwise): they
//! reach frames only through the [`port::Port`] trait and a [`port::FramePool`], so
//! the whole switching core runs and is tested in memory ([`port::MemPort`],
//! [`port::MemPool`]). Built without default features, the crate is that core and
//! `ctl` alone: no clang, libbpf or netlink (the fuzz targets build it so).
//!
//! ## Frame ownership
//! A frame is a move-only [`port::Frame`] handle to a pool slot. It is in exactly one
//! place at a time; forwarding moves the handle, never the bytes; only a flood copies.
//! Debug builds panic on a leaked or double-freed frame.
//!
//! ## Example: an in-memory switch
//! ```
//! use umacvlan::mode::Mode;
//! use umacvlan::port::{FramePool, MemPool, MemPort};
//! use umacvlan::switch::Switch;
//! use umacvlan::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
//! use umacvlan::wire::{emit_header, EtherType, MacAddr};
//!
//! let parent = ParentConfig { name: "eth1".into(), mac: "02:00:00:00:00:fe".parse()?, mtu: 1500 };
//! let mut topo = Topology::new(parent, true)?;
//! let a = topo.add_endpoint(EndpointConfig::new("a", Mode::Bridge).with_mac("02:00:00:00:00:01".parse()?))?;
//! let b = topo.add_endpoint(EndpointConfig::new("b", Mode::Bridge).with_mac("02:00:00:00:00:02".parse()?))?;
//! let mut sw: Switch<MemPort, MemPool> = Switch::new(topo.reader(), MemPool::new(256, 2048));
//! for id in [UPLINK, HOST, a, b] {
//!     sw.attach(id, MemPort::new(64))?;
//! }
//! let mut buf = [0u8; 60];
//! emit_header(&mut buf, "02:00:00:00:00:02".parse()?, "02:00:00:00:00:01".parse()?, None, EtherType::IPV4);
//! let f = sw.pool_mut().alloc_with(&buf).unwrap();
//! sw.port_mut(a).unwrap().inject(f);
//! sw.poll();
//! let got = sw.port_mut(b).unwrap().pop_tx().expect("bridge mode switches a→b locally");
//! sw.pool_mut().free(got);
//! assert_eq!(sw.stats(b).unwrap().tx_packets, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

// The sans-I/O core, bottom up (tests/layers.rs holds it to this order).
pub mod app;
pub mod fastpath;
pub mod mode;
pub mod port;
pub mod switch;
pub mod table;
pub mod topology;
pub mod view;
pub mod wire;
// The control protocol: types and a client.
pub mod ctl;
// The kernel datapath (feature `kernel`, on by default).
#[cfg(feature = "kernel")]
pub mod bpf;
#[cfg(feature = "kernel")]
pub mod dataplane;
#[cfg(feature = "kernel")]
pub mod link;
#[cfg(feature = "kernel")]
#[allow(unsafe_code)]
pub mod sys;
#[cfg(feature = "kernel")]
#[allow(unsafe_code)]
pub mod xsk;
