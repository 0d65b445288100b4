//! Interfaces and network namespaces, through rtnetlink.
//!
//! A [`Links`] is a netlink connection bound to one network namespace: the kernel
//! fixes a netlink socket's namespace when the socket is created, so [`Links::open_in`]
//! creates it on a short-lived thread that first entered the target namespace, and the
//! connection is then usable from any thread. Requests run on a private
//! current-thread tokio runtime; callers stay synchronous.
//!
//! [`Netns`] names a namespace as users do: a name under `/run/netns` (what
//! `ip netns add` creates) or a path such as `/proc/PID/ns/net`.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVeth};

use crate::wire::MacAddr;

mod tc;
pub use tc::TcFilter;

/// Why a link operation failed. Names the interface and the operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The namespace could not be opened.
    #[error("network namespace '{spec}': {source} (give a name under /run/netns or a path like /proc/PID/ns/net)")]
    Netns {
        /// As given.
        spec: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Entering a namespace failed.
    #[error("cannot enter network namespace '{spec}': {source}")]
    Setns {
        /// As given.
        spec: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The netlink socket could not be created.
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    /// The kernel refused a request.
    #[error("{op} {ifname}: {source}")]
    Netlink {
        /// What was attempted.
        op: &'static str,
        /// The interface.
        ifname: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// No interface of that name.
    #[error("no interface named '{0}' in this namespace")]
    NoSuchLink(String),
    /// A traffic-control request failed.
    #[error("{op} on ifindex {ifindex}: {source}")]
    Tc {
        /// What was attempted.
        op: &'static str,
        /// The interface.
        ifindex: u32,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A device's queue counts could not be read.
    #[error("reading the queues of {ifname}: {source}")]
    Queues {
        /// The interface.
        ifname: String,
        /// The failing call.
        source: crate::sys::SysError,
    },
    /// The name is taken in the target namespace.
    #[error("an interface named '{ifname}' already exists in network namespace '{netns}'")]
    Exists {
        /// The name.
        ifname: String,
        /// The namespace.
        netns: String,
    },
}

/// A link operation's result.
pub type Result<T> = std::result::Result<T, Error>;

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    file: File,
    spec: String,
    /// (device, inode) of the namespace file: what identifies a namespace.
    id: (u64, u64),
}

/// Makes `dir` a mount point with shared propagation, as `ip netns add` does before
/// its first namespace: namespace mounts then reach other mount namespaces, and a
/// later `ip netns add` finds the mount point in place. Without it, that `ip netns add`
/// binds a fresh `/run/netns` over the namespaces mounted before it, which hides them
/// from every `ip netns del` and `umount` (found in a crashed run's leftovers).
fn share_mount_point(dir: &Path) -> std::io::Result<()> {
    use rustix::mount::{mount_bind_recursive, mount_change, MountPropagationFlags};
    let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
    match mount_change(dir, shared) {
        // EINVAL: not a mount point yet.
        Err(rustix::io::Errno::INVAL) => {
            mount_bind_recursive(dir, dir)?;
            mount_change(dir, shared)?;
        }
        r => r?,
    }
    Ok(())
}

impl Netns {
    /// Opens `spec`: a bare name is looked up under `/run/netns`, anything with a `/`
    /// is a path (`/proc/1234/ns/net`, `/var/run/docker/netns/...`).
    ///
    /// # Errors
    /// [`Error::Netns`] if it cannot be opened.
    pub fn open(spec: &str) -> Result<Netns> {
        let path = Self::path_of(spec);
        let err = |source| Error::Netns {
            spec: spec.into(),
            source,
        };
        let file = File::open(&path).map_err(err)?;
        let id = identity(&file).map_err(err)?;
        Ok(Netns {
            file,
            spec: spec.into(),
            id,
        })
    }

    /// Whether `other` is the same namespace.
    pub fn same(&self, other: &Netns) -> bool {
        self.id == other.id
    }

    /// Whether the calling thread is in this namespace.
    pub fn is_current(&self) -> bool {
        File::open("/proc/thread-self/ns/net")
            .and_then(|f| identity(&f))
            .is_ok_and(|id| id == self.id)
    }

    /// Creates a new, empty named namespace `/run/netns/NAME` (what `ip netns add`
    /// does) with its loopback up, and opens it.
    ///
    /// # Errors
    /// [`Error::Netns`] if the name is invalid or taken, or the kernel refuses.
    pub fn create(name: &str) -> Result<Netns> {
        let bad = |m: &str| Error::Netns {
            spec: name.into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string()),
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(bad("a namespace name must be non-empty and contain no '/'"));
        }
        let dir = Path::new("/run/netns");
        std::fs::create_dir_all(dir)
            .and_then(|()| share_mount_point(dir))
            .map_err(|source| Error::Netns {
                spec: name.into(),
                source,
            })?;
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| Error::Netns {
                spec: name.into(),
                source,
            })?;
        let target = path.clone();
        let made = std::thread::spawn(move || -> std::io::Result<()> {
            crate::sys::unshare_netns().map_err(|e| e.error)?;
            rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)?;
            Ok(())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
        if let Err(source) = made {
            let _ = std::fs::remove_file(&path);
            return Err(Error::Netns {
                spec: name.into(),
                source,
            });
        }
        let ns = Netns::open(name)?;
        let links = Links::open_in(&ns)?;
        if let Some(lo) = links.get("lo")? {
            links.set_up(lo.index, "lo", true)?;
        }
        Ok(ns)
    }

    /// Deletes the named namespace `/run/netns/NAME` (what `ip netns del` does). Its
    /// interfaces go when the last process or open handle leaves it.
    ///
    /// # Errors
    /// [`Error::Netns`] if it does not exist or cannot be unmounted.
    pub fn delete(name: &str) -> Result<()> {
        if name.is_empty() || name.contains('/') {
            return Err(Error::Netns {
                spec: name.into(),
                source: std::io::ErrorKind::InvalidInput.into(),
            });
        }
        let path = Path::new("/run/netns").join(name);
        rustix::mount::unmount(&path, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
            Error::Netns {
                spec: name.into(),
                source: e.into(),
            }
        })?;
        std::fs::remove_file(&path).map_err(|source| Error::Netns {
            spec: name.into(),
            source,
        })
    }

    /// The namespace of the calling thread.
    ///
    /// # Errors
    /// [`Error::Netns`] if `/proc/thread-self/ns/net` cannot be opened.
    pub fn current() -> Result<Netns> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// Where `spec` lives on the file system.
    pub fn path_of(spec: &str) -> PathBuf {
        if spec.contains('/') {
            PathBuf::from(spec)
        } else {
            Path::new("/run/netns").join(spec)
        }
    }

    /// As given by the user.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Moves the calling thread into this namespace. Use on a dedicated thread.
    ///
    /// # Errors
    /// [`Error::Setns`].
    pub fn enter(&self) -> Result<()> {
        rustix::thread::move_into_link_name_space(
            self.file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| Error::Setns {
            spec: self.spec.clone(),
            source: e.into(),
        })
    }

    /// Runs `f` inside this namespace and returns its result: right here if the
    /// calling thread is in it, else on a scoped thread that enters it (so `f` may
    /// borrow). The calling thread's namespace is untouched. This is the one way the
    /// crate runs code in another namespace.
    ///
    /// # Errors
    /// [`Error::Setns`] if the namespace cannot be entered.
    ///
    /// # Panics
    /// If `f` panics.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        if self.is_current() {
            return Ok(f());
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

/// A set of network namespaces named `<tag>-<pid>-<name>`, deleted on drop; for demos,
/// examples and benchmarks that build a topology of their own. A set whose process is
/// gone (killed before its drop ran) is removed by the next [`Namespaces::new`] of the
/// same tag.
pub struct Namespaces {
    prefix: String,
    made: Vec<String>,
}

impl Namespaces {
    /// A set named `<tag>-<pid>-*`; first removes sets of the same tag whose process
    /// is gone.
    pub fn new(tag: &str) -> Namespaces {
        if let Ok(dir) = std::fs::read_dir("/run/netns") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let pid = name
                    .strip_prefix(&format!("{tag}-"))
                    .and_then(|r| r.split('-').next())
                    .and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                    let _ = Netns::delete(&name);
                }
            }
        }
        Namespaces {
            prefix: format!("{tag}-{}-", std::process::id()),
            made: Vec::new(),
        }
    }

    /// Creates namespace `name` (prefixed) and returns its full name.
    ///
    /// # Errors
    /// As [`Netns::create`].
    pub fn create(&mut self, name: &str) -> Result<String> {
        let full = format!("{}{name}", self.prefix);
        Netns::create(&full)?;
        self.made.push(full.clone());
        Ok(full)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in self.made.drain(..).rev() {
            let _ = Netns::delete(&n);
        }
    }
}

/// (device, inode) of a namespace file.
fn identity(f: &File) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    f.metadata().map(|m| (m.dev(), m.ino()))
}

/// What the kernel reports about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MAC address (zero if the link has none).
    pub mac: MacAddr,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Link type is loopback.
    pub loopback: bool,
    /// `IFF_PROMISC`: receives every frame.
    pub promisc: bool,
    /// `IFF_ALLMULTI`: receives every multicast group.
    pub allmulti: bool,
    /// Receive queues the device was created with (`IFLA_NUM_RX_QUEUES`): an upper
    /// bound, fixed for its lifetime, of the queues in use ([`queues`]).
    pub num_rx_queues: u32,
    /// Transmit queues the device was created with (`IFLA_NUM_TX_QUEUES`).
    pub num_tx_queues: u32,
    /// The linked device (`IFLA_LINK`: a veth's peer), and whether it is in another
    /// namespace (`IFLA_LINK_NETNSID` present).
    pub link: Option<(u32, bool)>,
}

fn info_of(m: &LinkMessage) -> LinkInfo {
    let mut li = LinkInfo {
        index: m.header.index,
        name: String::new(),
        mac: MacAddr::ZERO,
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        loopback: m.header.flags.contains(LinkFlags::Loopback),
        promisc: m.header.flags.contains(LinkFlags::Promisc),
        allmulti: m.header.flags.contains(LinkFlags::Allmulti),
        num_rx_queues: 1,
        num_tx_queues: 1,
        link: None,
    };
    let elsewhere = m
        .attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::LinkNetNsId(_)));
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => li.name = n.clone(),
            LinkAttribute::Mtu(v) => li.mtu = *v,
            LinkAttribute::NumRxQueues(v) => li.num_rx_queues = (*v).max(1),
            LinkAttribute::NumTxQueues(v) => li.num_tx_queues = (*v).max(1),
            LinkAttribute::Link(v) => li.link = Some((*v, elsewhere)),
            LinkAttribute::Address(b) if b.len() == 6 => {
                li.mac = MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
            }
            _ => {}
        }
    }
    li
}

/// Where [`queues`] read a device's queue counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueSource {
    /// The driver's channels (`ethtool -l`).
    Ethtool,
    /// `/sys/class/net/DEV/queues/{rx,tx}-*`.
    Sysfs,
    /// The counts the device was created with (`IFLA_NUM_{RX,TX}_QUEUES`).
    Netlink,
}

impl std::fmt::Display for QueueSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueueSource::Ethtool => "ethtool channels",
            QueueSource::Sysfs => "sysfs",
            QueueSource::Netlink => "netlink",
        })
    }
}

/// The queues a device uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    /// Receive queues in use: frames arrive on queues `0..rx`.
    pub rx: u32,
    /// Transmit queues in use.
    pub tx: u32,
    /// The most receive queues the device can ever use ([`LinkInfo::num_rx_queues`]).
    pub max_rx: u32,
    /// Where `rx` and `tx` were read.
    pub source: QueueSource,
}

/// The receive and transmit queues `link` uses now, read in the calling thread's
/// network namespace: from the driver's channels (`ethtool -l`: combined plus
/// receive-only, combined plus transmit-only), else, for a driver without channels,
/// from `/sys/class/net/DEV/queues` (only if that sysfs shows this device: same
/// `ifindex` and address), else the counts the device was created with.
///
/// # Errors
/// [`Error::Queues`] if the ioctl fails for another reason than "not supported".
pub fn queues(link: &LinkInfo) -> Result<Queues> {
    let max_rx = link.num_rx_queues;
    let q = |rx: u32, tx: u32, source| Queues {
        rx: rx.clamp(1, max_rx),
        tx: tx.clamp(1, link.num_tx_queues),
        max_rx,
        source,
    };
    let ch = crate::sys::ethtool_channels(&link.name).map_err(|source| Error::Queues {
        ifname: link.name.clone(),
        source,
    })?;
    if let Some(ch) = ch.filter(|c| c.rx_queues() > 0 && c.tx_queues() > 0) {
        return Ok(q(ch.rx_queues(), ch.tx_queues(), QueueSource::Ethtool));
    }
    let dir = Path::new("/sys/class/net").join(&link.name);
    // A thread that entered a namespace still sees the sysfs mounted for another one,
    // where a device of the same name may exist: check it is this device.
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let ours = read("ifindex").trim().parse::<u32>().ok() == Some(link.index)
        && read("address").trim().parse::<MacAddr>().ok() == Some(link.mac);
    if ours {
        let count = |prefix: &str| {
            std::fs::read_dir(dir.join("queues")).map_or(0, |d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                    .count() as u32
            })
        };
        let (rx, tx) = (count("rx-"), count("tx-"));
        if rx > 0 && tx > 0 {
            return Ok(q(rx, tx, QueueSource::Sysfs));
        }
    }
    Ok(q(
        link.num_rx_queues,
        link.num_tx_queues,
        QueueSource::Netlink,
    ))
}

/// A netlink connection bound to one network namespace.
pub struct Links {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

impl Links {
    /// A connection in the calling thread's namespace.
    ///
    /// # Errors
    /// [`Error::Socket`].
    pub fn open() -> Result<Links> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(Error::Socket)?;
        let handle = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(conn);
            Ok::<_, std::io::Error>(handle)
        });
        Ok(Links {
            handle: handle.map_err(Error::Socket)?,
            rt,
        })
    }

    /// A connection whose socket lives in namespace `ns`.
    ///
    /// # Errors
    /// [`Error::Setns`], [`Error::Socket`].
    pub fn open_in(ns: &Netns) -> Result<Links> {
        ns.run(Links::open)?
    }

    fn nl<T>(
        &self,
        op: &'static str,
        ifname: &str,
        f: impl std::future::Future<Output = std::result::Result<T, rtnetlink::Error>>,
    ) -> Result<T> {
        self.rt.block_on(f).map_err(|source| Error::Netlink {
            op,
            ifname: ifname.into(),
            source,
        })
    }

    /// The interface named `name`, if it exists.
    ///
    /// # Errors
    /// [`Error::Netlink`] for anything but "no such device".
    pub fn get(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut req = Box::pin(
            self.handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute(),
        );
        match self.rt.block_on(async { req.try_next().await }) {
            Ok(m) => Ok(m.as_ref().map(info_of)),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(source) => Err(Error::Netlink {
                op: "get link",
                ifname: name.into(),
                source,
            }),
        }
    }

    /// The interface of index `index`, if it exists.
    ///
    /// # Errors
    /// [`Error::Netlink`] for anything but "no such device".
    pub fn get_index(&self, index: u32) -> Result<Option<LinkInfo>> {
        let mut req = Box::pin(self.handle.link().get().match_index(index).execute());
        match self.rt.block_on(async { req.try_next().await }) {
            Ok(m) => Ok(m.as_ref().map(info_of)),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(source) => Err(Error::Netlink {
                op: "get link",
                ifname: format!("#{index}"),
                source,
            }),
        }
    }

    /// The interface named `name`.
    ///
    /// # Errors
    /// [`Error::NoSuchLink`].
    pub fn require(&self, name: &str) -> Result<LinkInfo> {
        self.get(name)?
            .ok_or_else(|| Error::NoSuchLink(name.into()))
    }

    /// Every interface.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn list(&self) -> Result<Vec<LinkInfo>> {
        let req = self.handle.link().get().execute();
        self.nl("list links", "*", async {
            req.map_ok(|m| info_of(&m)).try_collect::<Vec<_>>().await
        })
    }

    /// Creates a veth pair `name` ↔ `peer` in this namespace (one queue each).
    ///
    /// # Errors
    /// [`Error::Netlink`] (e.g. the name exists).
    pub fn add_veth(&self, name: &str, peer: &str) -> Result<()> {
        self.add_veth_mq(name, peer, 1)
    }

    /// Creates a veth pair `name` ↔ `peer` with `queues` receive and transmit queues
    /// on each end (one AF_XDP socket per queue, one queue per worker).
    ///
    /// # Errors
    /// [`Error::Netlink`] (e.g. the name exists).
    pub fn add_veth_mq(&self, name: &str, peer: &str, queues: u32) -> Result<()> {
        use netlink_packet_route::link::{InfoData, InfoVeth};
        let q = |b: rtnetlink::LinkMessageBuilder<LinkUnspec>| {
            b.append_extra_attribute(LinkAttribute::NumTxQueues(queues))
                .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
        };
        let peer_msg = q(LinkUnspec::new_with_name(peer)).build();
        let msg = LinkVeth::new(name, peer)
            .append_extra_attribute(LinkAttribute::NumTxQueues(queues))
            .append_extra_attribute(LinkAttribute::NumRxQueues(queues))
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.nl("create veth", name, self.handle.link().add(msg).execute())
    }

    /// Creates a Linux bridge `name` (STP off).
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn add_bridge(&self, name: &str) -> Result<()> {
        let req = self
            .handle
            .link()
            .add(rtnetlink::LinkBridge::new(name).build());
        self.nl("create bridge", name, req.execute())
    }

    /// Creates a kernel macvlan `name` on the parent `parent_index` in `mode`
    /// (the kernel's own macvlan: the benchmark's and the parity tests' reference).
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn add_macvlan(
        &self,
        name: &str,
        parent_index: u32,
        mode: crate::mode::Mode,
    ) -> Result<()> {
        use netlink_packet_route::link::MacVlanMode;
        let m = match mode {
            crate::mode::Mode::Bridge => MacVlanMode::Bridge,
            crate::mode::Mode::Vepa => MacVlanMode::Vepa,
            crate::mode::Mode::Private => MacVlanMode::Private,
            crate::mode::Mode::Passthru => MacVlanMode::Passthrough,
            crate::mode::Mode::Source => MacVlanMode::Source,
        };
        let req = self
            .handle
            .link()
            .add(rtnetlink::LinkMacVlan::new(name, parent_index, m).build());
        self.nl("create macvlan", name, req.execute())
    }

    /// Makes interface `index` a port of bridge `controller`.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn set_controller(&self, index: u32, ifname: &str, controller: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .controller(controller)
            .build();
        self.nl(
            "attach to bridge",
            ifname,
            self.handle.link().set(msg).execute(),
        )
    }

    /// Moves interface `index` into namespace `ns`.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn move_to(&self, index: u32, ifname: &str, ns: &Netns) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(ns.file.as_raw_fd())
            .build();
        self.nl(
            "move to namespace",
            ifname,
            self.handle.link().set(msg).execute(),
        )
    }

    /// Renames interface `index` (it must be down).
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn rename(&self, index: u32, new_name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .name(new_name.to_string())
            .build();
        self.nl("rename", new_name, self.handle.link().set(msg).execute())
    }

    /// Sets interface `index`'s MAC address.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn set_mac(&self, index: u32, ifname: &str, mac: MacAddr) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.octets().to_vec())
            .build();
        self.nl("set MAC", ifname, self.handle.link().set(msg).execute())
    }

    /// Adds `mac` to interface `index`'s unicast address filter, as `bridge fdb add MAC
    /// dev IF self` does (`ndo_fdb_add`; for a plain NIC the kernel's `dev_uc_add`), so
    /// the NIC hands frames for it to XDP, as a kernel macvlan makes its lower device
    /// do. A device without a filter turns promiscuous; one already there is no error.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn uc_add(&self, index: u32, ifname: &str, mac: MacAddr) -> Result<()> {
        use netlink_packet_route::neighbour::NeighbourFlags;
        let req = self
            .handle
            .neighbours()
            .add_bridge(index, &mac.octets())
            .flags(NeighbourFlags::Own)
            .replace();
        self.nl("add to the unicast filter", ifname, req.execute())
    }

    /// Removes `mac` from interface `index`'s unicast address filter again
    /// ([`Links::uc_add`]); one not there is no error.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn uc_del(&self, index: u32, ifname: &str, mac: MacAddr) -> Result<()> {
        use netlink_packet_route::neighbour::{
            NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        };
        use netlink_packet_route::AddressFamily;
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.flags = NeighbourFlags::Own;
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.octets().to_vec()));
        match self.rt.block_on(self.handle.neighbours().del(m).execute()) {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => Ok(()),
            Err(source) => Err(Error::Netlink {
                op: "remove from the unicast filter",
                ifname: ifname.into(),
                source,
            }),
        }
    }

    /// Sets interface `index`'s MTU.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn set_mtu(&self, index: u32, ifname: &str, mtu: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.nl("set MTU", ifname, self.handle.link().set(msg).execute())
    }

    /// Brings interface `index` up or down.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn set_up(&self, index: u32, ifname: &str, up: bool) -> Result<()> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.nl(
            if up { "set up" } else { "set down" },
            ifname,
            self.handle.link().set(msg).execute(),
        )
    }

    /// Adds address `addr/prefix` to interface `index`.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn add_addr(&self, index: u32, ifname: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        let req = self.handle.address().add(index, addr, prefix);
        self.nl("add address", ifname, req.execute())
    }

    /// The addresses of interface `index`.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn addrs(&self, index: u32, ifname: &str) -> Result<Vec<IpCidr>> {
        use netlink_packet_route::address::AddressAttribute;
        let req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        self.nl("list addresses", ifname, async {
            req.map_ok(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(addr) => Some(IpCidr {
                        addr: *addr,
                        prefix: m.header.prefix_len,
                    }),
                    _ => None,
                })
            })
            .try_collect::<Vec<_>>()
            .await
        })
        .map(|v| v.into_iter().flatten().collect())
    }

    /// Adds a route to `dst` out of interface `index`, through `gateway` if given.
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn add_route(
        &self,
        index: u32,
        ifname: &str,
        dst: IpCidr,
        gateway: Option<IpAddr>,
    ) -> Result<()> {
        use rtnetlink::RouteMessageBuilder;
        let msg = match (dst.addr, gateway) {
            (IpAddr::V4(d), gw) => {
                let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .destination_prefix(d, dst.prefix)
                    .output_interface(index);
                if let Some(IpAddr::V4(g)) = gw {
                    b = b.gateway(g);
                }
                b.build()
            }
            (IpAddr::V6(d), gw) => {
                let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .destination_prefix(d, dst.prefix)
                    .output_interface(index);
                if let Some(IpAddr::V6(g)) = gw {
                    b = b.gateway(g);
                }
                b.build()
            }
        };
        self.nl("add route", ifname, self.handle.route().add(msg).execute())
    }

    /// Deletes interface `index` (for a veth, its peer goes too).
    ///
    /// # Errors
    /// [`Error::Netlink`].
    pub fn delete(&self, index: u32, ifname: &str) -> Result<()> {
        self.nl("delete", ifname, self.handle.link().del(index).execute())
    }
}

/// An IP address with its prefix length, parsed from `10.0.0.2/24` or `fd00::2/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// A malformed `ADDRESS/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not ADDRESS/PREFIX, e.g. 192.168.32.10/24 or fd00::10/64")]
pub struct CidrError(pub String);

impl std::str::FromStr for IpCidr {
    type Err = CidrError;
    fn from_str(s: &str) -> std::result::Result<Self, CidrError> {
        let err = || CidrError(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(err)?;
        let addr: IpAddr = a.parse().map_err(|_| err())?;
        let prefix: u8 = p.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(err());
        }
        Ok(IpCidr { addr, prefix })
    }
}

impl std::fmt::Display for IpCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// How an endpoint's interface inside its namespace is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethEndpoint {
    /// Name of the switch-side end, in the switch's namespace.
    pub host_ifname: String,
    /// Target namespace.
    pub netns: String,
    /// Name inside the namespace (default `eth0`).
    pub ifname: String,
    /// MAC inside the namespace.
    pub mac: MacAddr,
    /// MTU of both ends.
    pub mtu: u32,
    /// Addresses inside the namespace.
    pub addrs: Vec<IpCidr>,
    /// Queues on each end (the dataplane uses one per worker).
    pub queues: u32,
}

impl VethEndpoint {
    /// Creates the pair in the caller's namespace (`links`), moves the peer into the
    /// target namespace, renames it, gives it its MAC, MTU and addresses and brings
    /// both ends (and the namespace's `lo`) up. Returns the switch-side ifindex.
    ///
    /// On failure everything created so far is removed again.
    ///
    /// # Errors
    /// Any [`Error`], naming the step.
    pub fn create(&self, links: &Links) -> Result<u32> {
        let ns = Netns::open(&self.netns)?;
        let tmp = format!("{}p", self.host_ifname);
        links.add_veth_mq(&self.host_ifname, &tmp, self.queues.max(1))?;
        let undo = |e: Error| {
            if let Ok(Some(l)) = links.get(&self.host_ifname) {
                let _ = links.delete(l.index, &self.host_ifname);
            }
            e
        };
        let host = links.require(&self.host_ifname).map_err(undo)?;
        let peer = links.require(&tmp).map_err(undo)?;
        (|| {
            links.set_mtu(host.index, &self.host_ifname, self.mtu)?;
            links.set_mtu(peer.index, &tmp, self.mtu)?;
            links.move_to(peer.index, &tmp, &ns)?;
            let inner = Links::open_in(&ns)?;
            let p = inner.require(&tmp)?;
            if inner.get(&self.ifname)?.is_some() {
                return Err(Error::Exists {
                    ifname: self.ifname.clone(),
                    netns: self.netns.clone(),
                });
            }
            inner.rename(p.index, &self.ifname)?;
            inner.set_mac(p.index, &self.ifname, self.mac)?;
            for a in &self.addrs {
                inner.add_addr(p.index, &self.ifname, a.addr, a.prefix)?;
            }
            if let Some(lo) = inner.get("lo")? {
                inner.set_up(lo.index, "lo", true)?;
            }
            inner.set_up(p.index, &self.ifname, true)?;
            links.set_up(host.index, &self.host_ifname, true)
        })()
        .map_err(undo)?;
        Ok(host.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        let c: IpCidr = "192.168.32.10/24".parse().unwrap();
        assert_eq!(c.to_string(), "192.168.32.10/24");
        assert_eq!("fd00::1/64".parse::<IpCidr>().unwrap().prefix, 64);
        for bad in [
            "192.168.32.10",
            "192.168.32.10/33",
            "x/24",
            "fd00::1/129",
            "10.0.0.1/-1",
        ] {
            let e = bad.parse::<IpCidr>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn netns_paths() {
        assert_eq!(Netns::path_of("red"), PathBuf::from("/run/netns/red"));
        assert_eq!(
            Netns::path_of("/proc/1/ns/net"),
            PathBuf::from("/proc/1/ns/net")
        );
        let e = Netns::open("umacvlan-no-such-ns").unwrap_err();
        assert!(e.to_string().contains("/run/netns"), "{e}");
    }
}
