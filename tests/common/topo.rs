//! The reference topology of spec §4, and the reachability / broadcast measurement.
//!
//! ```text
//!   ext ──veth── [wire: br0] ──veth (hairpin switchable on wpar)── par [host ns, 10.9.0.1]
//!                                    wpar's transmit queue k ═▶ par's receive queue k
//!                                                                   │ macvlan (kernel) or umacvlan
//!                                                       e1, e2, e3 (each its own ns, 10.9.0.11..13)
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::process::{Command, Output};
use std::thread::JoinHandle;

use super::Lab;

/// Parent MAC.
pub const PARENT_MAC: &str = "02:00:00:00:00:fe";
/// Endpoint `i`'s MAC (1-based).
pub fn ep_mac(i: usize) -> String {
    format!("02:00:00:00:00:{i:02x}")
}
/// Endpoint `i`'s address.
pub fn ep_ip(i: usize) -> String {
    format!("10.9.0.{}", 10 + i)
}
/// The host's address (on the parent).
pub const HOST_IP: &str = "10.9.0.1";
/// The external host's address.
pub const EXT_IP: &str = "10.9.0.100";

/// Namespaces of one topology.
pub struct Topo {
    /// The lab owning every namespace.
    pub lab: Lab,
    /// Holds the external switch (br0).
    pub wire: String,
    /// The external host.
    pub ext: String,
    /// The parent's namespace.
    pub host: String,
    /// Endpoint namespaces e1..eN.
    pub eps: Vec<String>,
}

impl Topo {
    /// Builds wire, ext and host (with the parent `par`) and `n` empty endpoint
    /// namespaces. Endpoints are added by the caller (kernel macvlan or umacvlan).
    /// The parent has [`parent_queues`] receive and transmit queues.
    pub fn new(tag: &str, hairpin: bool, n: usize) -> Topo {
        Self::with_queues(tag, hairpin, n, parent_queues())
    }

    /// [`Topo::new`] with `queues` receive and transmit queues on the parent (and on
    /// its peer `wpar`, whose transmit queue k feeds the parent's receive queue k).
    pub fn with_queues(tag: &str, hairpin: bool, n: usize, queues: u32) -> Topo {
        let mut lab = Lab::new(tag);
        let wire = lab.ns("wire");
        let ext = lab.ns("ext");
        let host = lab.ns("host");
        let eps: Vec<String> = (1..=n).map(|i| lab.ns(&format!("e{i}"))).collect();
        lab.ip(
            &wire,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
            ],
        );
        lab.ip(&wire, &["link", "set", "br0", "up"]);
        for (port, peer, ns) in [("wext", "eth0", &ext), ("wpar", "par", &host)] {
            let q = if peer == "par" {
                queues.to_string()
            } else {
                "1".to_string()
            };
            let q = q.as_str();
            lab.ip(
                &wire,
                &[
                    "link",
                    "add",
                    port,
                    "numtxqueues",
                    q,
                    "numrxqueues",
                    q,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    peer,
                    "netns",
                    ns,
                    "numtxqueues",
                    q,
                    "numrxqueues",
                    q,
                ],
            );
            lab.ip(&wire, &["link", "set", port, "master", "br0", "up"]);
        }
        lab.ip(
            &wire,
            &[
                "link",
                "set",
                "wpar",
                "type",
                "bridge_slave",
                "hairpin",
                if hairpin { "on" } else { "off" },
            ],
        );
        lab.ip(
            &ext,
            &["addr", "add", &format!("{EXT_IP}/24"), "dev", "eth0"],
        );
        lab.ip(
            &ext,
            &["link", "set", "eth0", "address", "02:00:00:00:00:e0", "up"],
        );
        lab.ip(&host, &["link", "set", "par", "address", PARENT_MAC, "up"]);
        lab.ip(
            &host,
            &["addr", "add", &format!("{HOST_IP}/24"), "dev", "par"],
        );
        Topo {
            lab,
            wire,
            ext,
            host,
            eps,
        }
    }

    /// Sends everything the wire transmits to the parent on wpar's transmit queue
    /// `k`, hence into the parent's receive queue `k` (XPS: every CPU maps to `k`
    /// alone), whatever the flow hash; `None` restores hashing.
    pub fn steer_to_queue(&self, k: Option<u32>) {
        let cpus = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(32);
        let all = format!("{:x}", (1u64 << cpus) - 1);
        let dir = "/sys/class/net/wpar/queues";
        let out = self.lab.exec(&self.wire, &["ls", dir]);
        let txqs: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|q| q.strip_prefix("tx-")?.parse().ok())
            .collect();
        if txqs.len() < 2 {
            return; // one queue takes everything (and XPS refuses it)
        }
        // Clear first: a CPU mapped to two queues would hash between them.
        let script: String = txqs
            .iter()
            .map(|q| format!("echo 0 > {dir}/tx-{q}/xps_cpus;"))
            .chain(k.map(|k| format!("echo {all} > {dir}/tx-{k}/xps_cpus;")))
            .collect();
        self.lab.exec(&self.wire, &["sh", "-c", &script]);
    }

    /// Frames each receive queue of the parent has handed to XDP so far (`ethtool -S
    /// par`: `rx_queue_K_xdp_packets`; counted while an XDP program is attached).
    pub fn parent_queue_packets(&self) -> Vec<u64> {
        let out = self.lab.exec(&self.host, &["ethtool", "-S", "par"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut per: BTreeMap<u32, u64> = BTreeMap::new();
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once(':') else {
                continue;
            };
            let q = k
                .strip_prefix("rx_queue_")
                .and_then(|r| r.strip_suffix("_xdp_packets"))
                .and_then(|q| q.parse().ok());
            if let (Some(q), Ok(v)) = (q, v.trim().parse()) {
                per.insert(q, v);
            }
        }
        per.into_values().collect()
    }

    /// Adds kernel macvlan endpoints in `modes` (one per endpoint namespace).
    pub fn add_kernel_macvlans(&self, modes: &[&str]) {
        for (i, mode) in modes.iter().enumerate() {
            let n = i + 1;
            let ns = &self.eps[i];
            let tmp = format!("mv{n}");
            self.lab.ip(
                &self.host,
                &[
                    "link", "add", "link", "par", "name", &tmp, "type", "macvlan", "mode", mode,
                ],
            );
            if *mode != "passthru" {
                self.lab
                    .ip(&self.host, &["link", "set", &tmp, "address", &ep_mac(n)]);
            }
            self.lab.ip(&self.host, &["link", "set", &tmp, "netns", ns]);
            self.lab.ip(ns, &["link", "set", &tmp, "name", "eth0"]);
            self.lab.ip(
                ns,
                &["addr", "add", &format!("{}/24", ep_ip(n)), "dev", "eth0"],
            );
            self.lab.ip(ns, &["link", "set", "eth0", "up"]);
        }
    }

    fn all_ns(&self) -> Vec<&String> {
        [&self.wire, &self.ext, &self.host]
            .into_iter()
            .chain(self.eps.iter())
            .collect()
    }

    fn flush_neighbours(&self) {
        for ns in self.all_ns() {
            let _ = self.lab.try_exec(ns, &["ip", "neigh", "flush", "all"]);
        }
    }

    /// Namespace and address of a node name: `host`, `ext` or `e1`..`eN`.
    fn node(&self, name: &str) -> (&str, String) {
        match name {
            "host" => (&self.host, HOST_IP.into()),
            "ext" => (&self.ext, EXT_IP.into()),
            e => {
                let i: usize = e[1..].parse().expect("eN");
                (&self.eps[i - 1], ep_ip(i))
            }
        }
    }

    /// Cold-ARP ping from `a` to `b`: neighbour tables flushed first.
    pub fn ping(&self, a: &str, b: &str) -> bool {
        let (ns, _) = self.node(a);
        let (_, ip) = self.node(b);
        self.ping_ip(ns, &ip)
    }

    /// Cold-ARP ping from namespace `ns` to address `ip`.
    pub fn ping_ip(&self, ns: &str, ip: &str) -> bool {
        self.flush_neighbours();
        self.lab.try_exec(
            ns,
            &["ping", "-q", "-n", "-c", "2", "-i", "0.3", "-W", "1", ip],
        )
    }

    /// Frames `eth0` in namespace `ns` received (`/proc/net/dev`).
    pub fn eth0_rx_packets(&self, ns: &str) -> u64 {
        let out = self.lab.exec(ns, &["cat", "/proc/net/dev"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("eth0:"))
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .expect("eth0 in /proc/net/dev")
    }

    fn echo_counters(&self) -> BTreeMap<String, u64> {
        let mut names = vec!["host".to_string(), "ext".to_string()];
        names.extend((1..=self.eps.len()).map(|i| format!("e{i}")));
        names
            .into_iter()
            .map(|n| {
                let (ns, _) = self.node(&n);
                let out = self.lab.exec(ns, &["cat", "/proc/net/snmp"]);
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                let mut lines = text.lines().filter(|l| l.starts_with("Icmp:"));
                let (head, vals) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
                let idx = head
                    .split_whitespace()
                    .position(|w| w == "InEchos")
                    .expect("InEchos");
                let v = vals
                    .split_whitespace()
                    .nth(idx)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                (n, v)
            })
            .collect()
    }

    /// Sends `count` broadcast echo requests from `from` and returns, per node, how
    /// many echo requests its IP stack received (the sender's own loopback copies
    /// included, so a sender that also gets them back reflected counts twice).
    pub fn broadcast_from(&self, from: &str, count: u32) -> BTreeMap<String, u64> {
        self.flush_neighbours();
        let before = self.echo_counters();
        let (ns, _) = self.node(from);
        let c = count.to_string();
        let _ = self.lab.try_exec(
            ns,
            &[
                "ping",
                "-q",
                "-n",
                "-b",
                "-c",
                &c,
                "-i",
                "0.2",
                "-W",
                "1",
                "10.9.0.255",
            ],
        );
        // ping has seen its replies; a receiver that does not reply may still be
        // counting: take the counters once two reads 100 ms apart agree (at most 3 s).
        let t0 = std::time::Instant::now();
        let mut after = self.echo_counters();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let again = self.echo_counters();
            if again == after || t0.elapsed() > std::time::Duration::from_secs(3) {
                break;
            }
            after = again;
        }
        after
            .into_iter()
            .map(|(k, v)| (k.clone(), v - before[&k]))
            .collect()
    }
}

/// The parent's queue count for the tests: `UMACVLAN_TEST_PARENT_QUEUES` (CI runs
/// the daemon and dataplane tests at 1, 2 and 4), default 2.
pub fn parent_queues() -> u32 {
    std::env::var("UMACVLAN_TEST_PARENT_QUEUES")
        .ok()
        .map(|v| {
            v.parse()
                .ok()
                .filter(|q| (1..=16).contains(q))
                .unwrap_or_else(|| panic!("UMACVLAN_TEST_PARENT_QUEUES={v}: want 1..=16"))
        })
        .unwrap_or(2)
}

/// Starts `count` pings from namespace `ns` to `target`, 20 ms apart, on a thread
/// that returns ping's output (its `-q` summary, e.g. `150 received`).
pub fn ping_in_background(ns: &str, target: &str, count: u32) -> JoinHandle<Output> {
    let (ns, target, count) = (ns.to_string(), target.to_string(), count.to_string());
    std::thread::spawn(move || {
        Command::new("ip")
            .args([
                "netns", "exec", &ns, "ping", "-n", "-q", "-c", &count, "-i", "0.02", "-W", "1",
                &target,
            ])
            .output()
            .unwrap()
    })
}

/// The measured behaviour of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    /// (from, to) → reachable.
    pub pings: BTreeMap<(String, String), bool>,
    /// Node → echo requests received from e1's broadcast.
    pub bcast: BTreeMap<String, u64>,
}

/// Measures the reachability matrix and e1's broadcast receivers.
pub fn measure(t: &Topo) -> Matrix {
    let mut pairs: Vec<(&str, &str)> = vec![
        ("e1", "ext"),
        ("ext", "e1"),
        ("e1", "host"),
        ("host", "e1"),
        ("host", "ext"),
        ("ext", "host"),
    ];
    if t.eps.len() > 1 {
        pairs.extend([
            ("e1", "e2"),
            ("e2", "e1"),
            ("e2", "e3"),
            ("e3", "host"),
            ("host", "e3"),
        ]);
    }
    let pings = pairs
        .into_iter()
        .map(|(a, b)| ((a.to_string(), b.to_string()), t.ping(a, b)))
        .collect();
    Matrix {
        pings,
        bcast: t.broadcast_from("e1", 3),
    }
}

impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((a, b), ok) in &self.pings {
            write!(f, "{a}→{b}:{} ", if *ok { "ok" } else { "--" })?;
        }
        write!(f, "| e1 bcast seen:")?;
        for (n, c) in &self.bcast {
            write!(f, " {n}={c}")?;
        }
        Ok(())
    }
}
