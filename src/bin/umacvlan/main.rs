//! The `umacvlan` command line: the daemon (`run`), its clients (`network`,
//! `endpoint`, `stats`), and `simulate`, which runs the switching core in memory on
//! random traffic and prints the per-port counters.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod capture;
mod cni;
mod config;
mod daemon;
mod demo;
mod docker;
mod doctor;
mod explain;
mod ipam;
mod pcap;
mod server;
mod state;
use crate::config::{Config, NetworkSection, DEFAULT_SOCKET};
use crate::daemon::Daemon;
use serde_json::Value;
use umacvlan::ctl::{self, EndpointAdd, Request, Response};
use umacvlan::dataplane::DataplaneConfig;
use umacvlan::mode::{DropReason, Mode};
use umacvlan::port::{FramePool, MemPool, MemPort};
use umacvlan::switch::Switch;
use umacvlan::topology::{EndpointConfig, ParentConfig, Topology, HOST, UPLINK};
use umacvlan::wire::{emit_header, EtherType, MacAddr};

#[derive(Parser)]
#[command(
    name = "umacvlan",
    version,
    about = "A userspace macvlan: an AF_XDP L2 switch with the kernel macvlan's modes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground until SIGINT or SIGTERM.
    Run {
        /// TOML configuration (see examples/umacvlan.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Control socket (default: the config's, else /run/umacvlan/umacvlan.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Worker threads per parent (default: the config's, else one per receive
        /// queue of the parent, up to the cores the daemon may use).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        workers: Option<u32>,
        /// Where networks, endpoints, MACs and addresses made at run time are kept
        /// across restarts (default: the config's, else /var/lib/umacvlan).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Serve the Docker network driver (`docker network create -d umacvlan`) on
        /// /run/docker/plugins/umacvlan.sock, or on --docker-socket.
        #[arg(long)]
        docker: bool,
        /// The Docker driver's socket: Docker names the driver after the file
        /// (implies --docker).
        #[arg(long)]
        docker_socket: Option<PathBuf>,
        /// On SIGTERM remove every interface, containers' too (by default the
        /// endpoints of containers keep their veth pairs for the next start to take
        /// over, so a restart does not cut them off).
        #[arg(long)]
        cleanup_on_exit: bool,
    },
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// A self-contained tour: builds a netns topology, switches it, pings, cleans up.
    Demo,
    /// Throughput benchmarks: `bench run` (umacvlan against kernel macvlan, a
    /// Docker-style bridge, Open vSwitch AF_XDP and a raw AF_XDP forwarder), `bench
    /// gen` (traffic generator), `bench sink` (counting sink). See BENCHMARKS.md.
    #[command(subcommand)]
    Bench(bench::cli::BenchCmd),
    /// Per-port counters: packets, bytes, drops by reason; FDB size.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Capture a port's frames, from the switch and from the kernel fast path, in both
    /// directions: as pcap (`-w FILE`, `-w -` for `| tcpdump -r -`) or a line each.
    Capture {
        /// The port: an endpoint, a host port's interface, `wire` or a parent's name.
        port: String,
        /// Write pcap to this file (`-`: stdout) instead of a line per frame.
        #[arg(short = 'w', long = "write")]
        write: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(short = 'c', long)]
        count: Option<u64>,
        /// Bytes kept of each frame (1 to 2048, default 2048).
        #[arg(short = 's', long)]
        snaplen: Option<u32>,
        /// Which frames: `in` (the port sent them), `out` (sent to it), `inout`.
        #[arg(short = 'Q', long, value_parser = ["in", "out", "inout"])]
        direction: Option<String>,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// The network, for `wire` when there are several parents.
        #[arg(long)]
        network: Option<String>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// What the switch decides for a frame, and why: the ports it goes to or the drop
    /// reason, the spec's rule (T1–T4, W1–W9), the parties' modes, whether the kernel
    /// fast path takes it, and what a reflecting external switch brings back.
    Explain {
        /// The sender: an endpoint, `wire` (from the parent's network) or `host`.
        from: String,
        /// The destination: an endpoint, a MAC, an endpoint's IP or `broadcast`.
        to: Option<String>,
        /// The source MAC (default: the sender's own).
        #[arg(long)]
        src: Option<String>,
        /// The network, for `wire` and `host` (default: the only one).
        #[arg(long)]
        network: Option<String>,
        /// Explain every frame of this pcap file instead, as sent by FROM.
        #[arg(long, conflicts_with_all = ["to", "src"])]
        pcap: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Preflight, read-only: the kernel, privileges, RLIMIT_MEMLOCK and each PARENT
    /// (native XDP and zero-copy, MTU, programs already there, VLAN offload, MAC filter,
    /// default route); each finding with its fix. Exit status 1 on an error.
    Doctor {
        /// Parent interfaces to check (none: the host only).
        parents: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the switching core in memory on random traffic and print per-port counters.
    Simulate {
        /// Frames to inject.
        #[arg(long, default_value_t = 200_000)]
        frames: u64,
        /// Random seed (the run is deterministic for a seed).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Endpoint modes, comma separated (bridge, vepa, private, source; or passthru alone).
        #[arg(long, default_value = "bridge,bridge,vepa,private")]
        modes: String,
    },
}

/// `--socket PATH`, taken by every client command.
#[derive(clap::Args)]
struct SocketArg {
    /// Control socket of the daemon.
    #[arg(long = "socket", default_value = DEFAULT_SOCKET)]
    path: PathBuf,
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Create a network: a parent interface and a macvlan mode.
    Create {
        /// Network name.
        name: String,
        /// Parent interface.
        #[arg(long)]
        parent: String,
        /// bridge (default) | vepa | private | passthru.
        #[arg(long)]
        mode: Option<String>,
        /// 802.1Q VLAN id (1..4094).
        #[arg(long)]
        vlan: Option<u16>,
        /// IPAM subnet: endpoints added without --ip get the next free address.
        #[arg(long)]
        subnet: Option<String>,
        /// IPAM gateway (never handed out).
        #[arg(long)]
        gateway: Option<String>,
        /// IPAM range within the subnet that addresses are handed out from.
        #[arg(long)]
        ip_range: Option<String>,
        /// An address never handed out, NAME=ADDRESS (repeatable), as Docker's.
        #[arg(long = "aux-address", value_name = "NAME=ADDRESS")]
        aux_address: Vec<String>,
        /// Create interface IFNAME in the daemon's namespace, attached to the network as
        /// a bridge-mode port, so the host can reach its endpoints through it.
        #[arg(long, value_name = "IFNAME")]
        host_port: Option<String>,
        /// Private mode only: every endpoint strictly isolated, also from the host
        /// behind the parent.
        #[arg(long)]
        strict: bool,
        /// The kernel fast path for the network's unicast (`--fastpath` or
        /// `--fastpath=false`; default: the daemon's `[daemon] fastpath`).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        fastpath: Option<bool>,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Remove a network (it must have no endpoints).
    Rm {
        /// Network name.
        name: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// List networks.
    Ls {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// A network and its endpoints, as JSON.
    Inspect {
        /// Network name.
        name: String,
        #[command(flatten)]
        socket: SocketArg,
    },
}

#[derive(Subcommand)]
enum EndpointCmd {
    /// Add an endpoint: a veth pair with one end in a network namespace.
    Add {
        /// Endpoint name.
        name: String,
        /// Its network.
        #[arg(long)]
        network: String,
        /// Target namespace: a name under /run/netns or a path like /proc/PID/ns/net.
        #[arg(long)]
        netns: String,
        /// Interface name inside the namespace (default eth0).
        #[arg(long)]
        ifname: Option<String>,
        /// MAC address (default: random, locally administered).
        #[arg(long)]
        mac: Option<String>,
        /// Address with prefix, e.g. 192.168.32.10/24.
        #[arg(long)]
        ip: Option<String>,
        /// Mode (default: the network's).
        #[arg(long)]
        mode: Option<String>,
        /// MTU of the interface (default: the parent's).
        #[arg(long)]
        mtu: Option<u16>,
        /// Private mode only: strict isolation, also from the host behind the parent.
        #[arg(long)]
        strict: bool,
        /// Source mode only: a source MAC whose frames it gets copies of (repeatable).
        #[arg(long = "source", value_name = "MAC")]
        sources: Vec<String>,
        /// Source mode only: frames from its sources go nowhere else, not even to the
        /// host.
        #[arg(long)]
        nodst: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Remove an endpoint and its interfaces.
    Rm {
        /// Endpoint name.
        name: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// List endpoints.
    Ls {
        #[command(flatten)]
        socket: SocketArg,
    },
}

fn main() {
    // Installed in a CNI plugin directory, the binary is the `umacvlan` CNI plugin.
    if std::env::var_os("CNI_COMMAND").is_some() {
        std::process::exit(cni::main());
    }
    if let Err(e) = dispatch(Cli::parse().cmd) {
        eprintln!("umacvlan: error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    // Logs go to stderr; `RUST_LOG=debug` (or `warn`, ...) sets the level, info by
    // default (warn for the bench, which starts a dataplane per measurement).
    let default = if matches!(cmd, Cmd::Bench(_)) {
        "warn"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: a log file or journal gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    if matches!(
        cmd,
        Cmd::Network(_)
            | Cmd::Endpoint(_)
            | Cmd::Stats { .. }
            | Cmd::Explain { .. }
            | Cmd::Capture { .. }
            | Cmd::Simulate { .. }
    ) {
        // A client whose output is cut short (`umacvlan stats | head -1`) ends
        // quietly, as other tools do, instead of panicking on the broken pipe. Not for
        // the daemon (a client hanging up must not kill it) nor the bench (it must
        // clean up).
        // SAFETY: resetting SIGPIPE to its default action before any other thread
        // exists installs no handler and touches no memory.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cmd {
        Cmd::Doctor { parents, json } => doctor::main(&parents, json),
        Cmd::Simulate {
            frames,
            seed,
            modes,
        } => simulate(frames, seed, &modes),
        Cmd::Run {
            config,
            socket,
            workers,
            state_dir,
            docker,
            docker_socket,
            cleanup_on_exit,
        } => {
            let docker =
                docker_socket.or_else(|| docker.then(|| docker::DEFAULT_PLUGIN_SOCKET.into()));
            run(
                config.as_deref(),
                socket,
                workers,
                state_dir,
                docker,
                cleanup_on_exit,
            )
        }
        Cmd::Demo => Ok(crate::demo::run(&mut std::io::stdout())?),
        Cmd::Bench(c) => bench::cli::main(c),
        Cmd::Capture {
            port,
            write,
            count,
            snaplen,
            direction,
            seconds,
            network,
            socket,
        } => {
            let req = umacvlan::ctl::Capture {
                port,
                network,
                direction,
                snaplen,
                count,
                seconds,
            };
            capture::main(&socket.path, req, write.as_deref())
        }
        Cmd::Explain {
            from,
            to,
            src,
            network,
            pcap,
            json,
            socket,
        } => {
            let x = umacvlan::ctl::Explain {
                from,
                to,
                src,
                network,
                frame: None,
            };
            explain::main(&socket.path, x, pcap.as_deref(), json)
        }
        Cmd::Stats { json, socket } => {
            let v = request(&socket.path, Request::Stats)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_stats(&v);
            }
            Ok(())
        }
        Cmd::Network(n) => match n {
            NetworkCmd::Create {
                name,
                parent,
                mode,
                vlan,
                subnet,
                gateway,
                ip_range,
                aux_address,
                host_port,
                strict,
                fastpath,
                socket,
            } => {
                let sec = NetworkSection {
                    name,
                    parent,
                    mode,
                    vlan,
                    subnet,
                    gateway,
                    ip_range,
                    aux_address,
                    host_port,
                    strict: strict.then_some(true),
                    fastpath,
                    endpoints: vec![],
                };
                print_json(request(&socket.path, Request::NetworkCreate(sec))?)
            }
            NetworkCmd::Rm { name, socket } => {
                request(&socket.path, Request::NetworkRm { name }).map(|_| ())
            }
            NetworkCmd::Ls { socket } => {
                let v = request(&socket.path, Request::NetworkLs)?;
                println!(
                    "{:<20} {:<12} {:<9} {:>5}",
                    "NAME", "PARENT", "MODE", "VLAN"
                );
                for n in v.as_array().into_iter().flatten() {
                    let pending = if n["pending"] == true {
                        "  pending: not restored at start (see the daemon's log)"
                    } else {
                        ""
                    };
                    println!(
                        "{:<20} {:<12} {:<9} {:>5}{pending}",
                        s(&n["name"]),
                        s(&n["parent"]),
                        s(&n["mode"]),
                        match n["vlan"].as_u64() {
                            Some(0) | None => "-".to_string(),
                            Some(v) => v.to_string(),
                        }
                    );
                }
                Ok(())
            }
            NetworkCmd::Inspect { name, socket } => {
                print_json(request(&socket.path, Request::NetworkInspect { name })?)
            }
        },
        Cmd::Endpoint(e) => match e {
            EndpointCmd::Add {
                name,
                network,
                netns,
                ifname,
                mac,
                ip,
                mode,
                mtu,
                strict,
                sources,
                nodst,
                socket,
            } => print_json(request(
                &socket.path,
                Request::EndpointAdd(EndpointAdd {
                    name,
                    network,
                    netns,
                    ifname,
                    mac,
                    ip,
                    mode,
                    container: None,
                    configure_ip: None,
                    mtu,
                    strict: strict.then_some(true),
                    sources,
                    nodst: nodst.then_some(true),
                }),
            )?),
            EndpointCmd::Rm { name, socket } => {
                request(&socket.path, Request::EndpointRm { name }).map(|_| ())
            }
            EndpointCmd::Ls { socket } => {
                let v = request(&socket.path, Request::EndpointLs)?;
                println!(
                    "{:<20} {:<20} {:<9} {:<18} {:<20} {:<12} NETNS",
                    "NAME", "NETWORK", "MODE", "MAC", "IP", "CONTAINER"
                );
                for e in v.as_array().into_iter().flatten() {
                    let container: String = s(&e["container"]).chars().take(12).collect();
                    println!(
                        "{:<20} {:<20} {:<9} {:<18} {:<20} {:<12} {}",
                        s(&e["name"]),
                        s(&e["network"]),
                        s(&e["mode"]),
                        s(&e["mac"]),
                        s(&e["ip"]),
                        container,
                        s(&e["netns"])
                    );
                }
                Ok(())
            }
        },
    }
}

/// A value for a terminal table: strings as they are but with control characters
/// escaped (a name never moves the cursor or colours the terminal), null as `-`.
fn s(v: &Value) -> String {
    v.as_str().map_or_else(
        || {
            if v.is_null() {
                "-".into()
            } else {
                v.to_string()
            }
        },
        |t| {
            t.chars()
                .flat_map(|c| {
                    let esc: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    esc
                })
                .collect()
        },
    )
}

fn print_json(v: Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn print_stats(v: &Value) {
    for p in v.as_array().into_iter().flatten() {
        let k = |c: &str| p["kernel"][c].as_u64().unwrap_or(0);
        println!(
            "parent {}  (fdb entries: {}; {} receive queues bound, {} workers; kernel: redirected {}, no socket on the arrival queue {}, redirect failed {})",
            s(&p["parent"]),
            p["fdb_entries"],
            p["queues"],
            p["workers"],
            k("xdp_redirect"),
            k("xdp_unbound_queue"),
            k("xdp_redirect_fail"),
        );
        println!(
            "  {:<16} {:>10} {:>12} {:>10} {:>12} {:>10} {:>10}  drops",
            "port", "rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "fast_rx", "fast_tx"
        );
        for q in p["ports"].as_array().into_iter().flatten() {
            let drops: Vec<String> = q["drops"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            let n = |k: &str| q[k].as_u64().unwrap_or(0);
            let fast = |k: &str| q["path"]["fast"][k].as_u64().unwrap_or(0);
            println!(
                "  {:<16} {:>10} {:>12} {:>10} {:>12} {:>10} {:>10}  {}",
                s(&q["port"]),
                n("rx_packets"),
                n("rx_bytes"),
                n("tx_packets"),
                n("tx_bytes"),
                fast("rx_packets"),
                fast("tx_packets"),
                drops.join(" ")
            );
        }
    }
}

/// Sends one request; a refusal becomes an error with the daemon's message.
fn request(socket: &Path, req: Request) -> Result<Value> {
    let r: Response = ctl::call(socket, &req).map_err(|e| anyhow!(e))?;
    if r.ok {
        Ok(r.data.unwrap_or(Value::Null))
    } else {
        Err(anyhow!(r
            .error
            .unwrap_or_else(|| "the daemon refused the request".into())))
    }
}

/// The daemon: networks from the config, then control requests until a signal.
fn run(
    config: Option<&Path>,
    socket: Option<PathBuf>,
    workers: Option<u32>,
    state_dir: Option<PathBuf>,
    docker: Option<PathBuf>,
    cleanup_on_exit: bool,
) -> Result<()> {
    let cfg = match config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::parse(&text).map_err(|e| anyhow!("{}: {e}", p.display()))?
        }
        None => Config::default(),
    };
    let sock = socket
        .or_else(|| cfg.socket.clone())
        .unwrap_or_else(|| DEFAULT_SOCKET.into());
    // The state before anything is touched: an unusable file stops the start.
    let state = state::StateFile::new(
        state_dir
            .or_else(|| cfg.state_dir.clone())
            .unwrap_or_else(|| state::DEFAULT_STATE_DIR.into()),
    );
    let saved = state.load()?;
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).context("installing signal handlers")?;
    }
    // The metrics address first: if it cannot be bound, no socket file is left.
    let metrics = match cfg.metrics {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("daemon.metrics: binding {addr}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    let listener = bind_socket(&sock)?;
    let plugin = match docker.or_else(|| cfg.docker.clone()) {
        Some(p) => match bind_socket(&p) {
            Ok(l) => Some((l, p)),
            Err(e) => {
                let _ = std::fs::remove_file(&sock);
                return Err(e.context("the Docker driver's socket"));
            }
        },
        None => None,
    };
    let remove_sockets = || {
        let _ = std::fs::remove_file(&sock);
        if let Some((_, p)) = &plugin {
            let _ = std::fs::remove_file(p);
        }
    };
    let workers = workers.or(cfg.workers);
    let frames = cfg.frames;
    let leave = cfg.multicast_leave;
    let fastpath = cfg.fastpath;
    let parent_hook = cfg.parent_hook;
    let receive_cpus = cfg.receive_cpus.clone();
    let worker_core = cfg.worker_core;
    // The preflight (`umacvlan doctor`) on every parent known now; it logs, never stops.
    let parents = cfg.networks.iter().map(|n| n.parent.as_str());
    doctor::log_at_start(
        parents.chain(saved.networks.iter().map(|n| n.parent.as_str())),
        workers,
        frames,
        parent_hook,
        fastpath,
    );
    let mut daemon = Daemon::new(Box::new(move |p: &str| {
        let mut c = DataplaneConfig::new(p);
        c.workers = workers;
        c.multicast_leave = leave;
        c.fastpath = fastpath;
        c.parent_hook = parent_hook;
        c.receive_cpus = receive_cpus.clone();
        c.worker.core = worker_core;
        if let Some(f) = frames {
            c.frames = f;
        }
        c
    }))
    .with_state(state.clone());
    match daemon.restore(&cfg, &saved) {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e) => {
            daemon.shutdown(false);
            remove_sockets();
            bail!("{e}");
        }
    }
    tracing::info!(
        networks = cfg.networks.len(),
        endpoints = cfg.endpoints.len(),
        restored_networks = saved.networks.len(),
        restored_endpoints = saved.endpoints.iter().filter(|r| !r.from_config).count(),
        state = %state.path().display(),
        socket = %sock.display(),
        "umacvlan running"
    );
    let mut server = server::Server::new(listener, metrics);
    if let Some((l, p)) = &plugin {
        let l = l.try_clone().context("the Docker driver's socket")?;
        docker::spawn(l, server.gate()).context("starting the Docker driver")?;
        tracing::info!(socket = %p.display(), "Docker network driver serving");
    }
    let (mut last_tick, mut last_mc) = (Instant::now(), Instant::now());
    while !term.load(Ordering::Relaxed) {
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            daemon.tick();
        }
        if last_mc.elapsed() >= Duration::from_millis(200) {
            last_mc = Instant::now();
            daemon.sync_multicast();
        }
        server.turn(&mut daemon, Duration::from_millis(20));
    }
    if cleanup_on_exit {
        tracing::info!("stopping: removing endpoints, programs and every interface");
    } else {
        tracing::info!(
            "stopping: removing endpoints, programs and interfaces (containers keep theirs)"
        );
    }
    daemon.shutdown(!cleanup_on_exit);
    remove_sockets();
    Ok(())
}

/// Binds the control socket with mode 0600, refusing to take over a live one.
fn bind_socket(sock: &Path) -> Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if sock.exists() {
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            bail!(
                "another umacvlan daemon is already listening on {}",
                sock.display()
            );
        }
        std::fs::remove_file(sock)
            .with_context(|| format!("removing the stale socket {}", sock.display()))?;
    }
    let l = std::os::unix::net::UnixListener::bind(sock)
        .with_context(|| format!("binding {}", sock.display()))?;
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn simulate(frames: u64, seed: u64, modes: &str) -> Result<()> {
    let modes: Vec<Mode> = modes
        .split(',')
        .map(|m| m.trim().parse::<Mode>())
        .collect::<Result<_, _>>()
        .context("--modes")?;
    if modes.is_empty() {
        bail!("--modes: give at least one endpoint mode");
    }
    let parent_mac: MacAddr = "02:00:00:00:00:fe".parse()?;
    let parent = ParentConfig {
        name: "sim0".into(),
        mac: parent_mac,
        mtu: 1500,
    };
    let mut topo = Topology::new(parent, true)?;
    let ext: MacAddr = "00:11:22:33:44:55".parse()?;
    let mut ports = vec![
        (UPLINK, "uplink".to_string(), ext),
        (HOST, "host".to_string(), parent_mac),
    ];
    for (i, &mode) in modes.iter().enumerate() {
        let name = format!("e{}", i + 1);
        let mut cfg =
            EndpointConfig::new(name.clone(), mode).with_mac(MacAddr([2, 0, 0, 0, 0, i as u8 + 1]));
        if mode == Mode::Source {
            cfg.sources = vec![ext];
        }
        let id = topo
            .add_endpoint(cfg)
            .with_context(|| format!("endpoint {name} ({mode})"))?;
        let mac = topo.endpoint(&name).map(|e| e.mac()).unwrap_or(parent_mac);
        ports.push((id, format!("{name} ({mode})"), mac));
    }
    let mut sw: Switch<MemPort, MemPool> = Switch::new(topo.reader(), MemPool::new(8192, 2048));
    for (id, _, _) in &ports {
        sw.attach(*id, MemPort::new(1024))?;
    }
    let mut rng = Rng(seed.max(1));
    let dsts: Vec<MacAddr> = ports
        .iter()
        .map(|p| p.2)
        .chain([
            MacAddr::BROADCAST,
            "01:00:5e:00:00:01".parse()?,
            "02:99:00:00:00:01".parse()?,
        ])
        .collect();
    let mut buf = [0u8; 128];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < frames {
        for _ in 0..64.min(frames - sent) {
            let (ingress, _, own) = &ports[rng.below(ports.len())];
            // From the uplink, a third of the frames are an endpoint's own, reflected.
            let src = if *ingress == UPLINK && rng.below(3) == 0 {
                ports[rng.below(ports.len())].2
            } else {
                *own
            };
            let dst = dsts[rng.below(dsts.len())];
            let len = 60 + rng.below(68);
            emit_header(&mut buf, dst, src, None, EtherType::IPV4);
            let f = sw
                .pool_mut()
                .alloc_with(&buf[..len])
                .context("frame pool exhausted")?;
            sw.port_mut(*ingress).expect("attached").inject(f);
            sent += 1;
        }
        while sw.poll() > 0 {}
        for (id, _, _) in &ports {
            while let Some(f) = sw.port_mut(*id).expect("attached").pop_tx() {
                sw.pool_mut().free(f);
            }
        }
    }
    let elapsed = start.elapsed();
    println!("umacvlan simulate: {sent} random frames through an in-memory switch (seed {seed}) in {elapsed:.2?}\n");
    println!(
        "{:<16} {:>10} {:>12} {:>10} {:>12} {:>8}  drops by reason",
        "port", "rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "drops"
    );
    for (id, name, _) in &ports {
        let s = sw.stats(*id).expect("attached");
        let reasons: Vec<String> = s.drop_reasons().map(|(r, n)| format!("{r}={n}")).collect();
        println!(
            "{:<16} {:>10} {:>12} {:>10} {:>12} {:>8}  {}",
            name,
            s.rx_packets,
            s.rx_bytes,
            s.tx_packets,
            s.tx_bytes,
            s.total_drops(),
            reasons.join(" ")
        );
    }
    let total_tx: u64 = ports
        .iter()
        .map(|p| sw.stats(p.0).map_or(0, |s| s.tx_packets))
        .sum();
    let loops: u64 = ports
        .iter()
        .map(|p| sw.stats(p.0).map_or(0, |s| s.dropped(DropReason::Loop)))
        .sum();
    println!(
        "\ndelivered {total_tx} copies; {loops} bridge self-sends dropped; fdb entries: {}",
        topo.table().fdb().len()
    );
    let in_use = sw.pool().in_use();
    if in_use != 0 {
        bail!("{in_use} frames leaked");
    }
    println!("all frames returned to the pool: no leak");
    Ok(())
}
