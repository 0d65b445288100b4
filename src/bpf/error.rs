//! [`Error`]: why loading, attaching or a map update failed.

/// Why a steering operation failed. Every variant names the operation; interface
/// variants also name the interface (name and ifindex), map variants the map.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused for lack of privilege.
    #[error(
        "{op}: permission denied (loading BPF programs and attaching them needs root, or \
         CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON): {source}"
    )]
    PermissionDenied {
        /// What was attempted.
        op: &'static str,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// Opening or loading the object failed (verifier rejection, old kernel, ...).
    #[error("{op}: {source}")]
    Load {
        /// What was attempted.
        op: &'static str,
        /// libbpf's error; the verifier log went to libbpf's print callback (stderr).
        source: libbpf_rs::Error,
    },
    /// The interface already runs an XDP program that this [`Steering`] did not
    /// attach. It is never replaced.
    ///
    /// [`Steering`]: super::Steering
    #[error(
        "{ifname} (ifindex {ifindex}) already carries XDP program id {prog_id} \
         ({mode} mode) that umacvlan did not attach; refusing to replace it \
         (inspect it with `bpftool net show dev {ifname}`)"
    )]
    ForeignXdp {
        /// Interface name (or `ifindex N` if it could not be resolved).
        ifname: String,
        /// Interface index.
        ifindex: u32,
        /// Kernel id of the program already attached.
        prog_id: u32,
        /// The mode it is attached in: `native`, `generic` or `offload`.
        mode: &'static str,
    },
    /// The interface is the parent of another umacvlan switch that is running (its
    /// steering program is attached and held open).
    #[error(
        "{ifname} (ifindex {ifindex}) is already the parent of another running umacvlan \
         switch (its steering program, XDP or tc, id {prog_id}); stop that one first, or use \
         another parent"
    )]
    OtherSwitch {
        /// Interface name (or `ifindex N` if it could not be resolved).
        ifname: String,
        /// Interface index.
        ifindex: u32,
        /// Kernel id of the other switch's program.
        prog_id: u32,
    },
    /// Our program is already attached to the interface in the other XDP mode.
    #[error(
        "{ifname} (ifindex {ifindex}): the steering program is attached in {attached} \
         mode; detach it before attaching in {requested} mode"
    )]
    ModeConflict {
        /// Interface name.
        ifname: String,
        /// Interface index.
        ifindex: u32,
        /// The mode it is attached in.
        attached: &'static str,
        /// The mode asked for.
        requested: &'static str,
    },
    /// An XDP or tc operation on an interface failed.
    #[error("{op} on {ifname} (ifindex {ifindex}): {source}")]
    Interface {
        /// What was attempted (`attach XDP (native)`, `query XDP`, `attach tc ingress`).
        op: &'static str,
        /// Interface name.
        ifname: String,
        /// Interface index.
        ifindex: u32,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// A netlink request about an interface's qdiscs or filters failed.
    #[error("{op} on {ifname} (ifindex {ifindex}): {source}")]
    Netlink {
        /// What was attempted.
        op: &'static str,
        /// Interface name.
        ifname: String,
        /// Interface index.
        ifindex: u32,
        /// The cause.
        source: std::io::Error,
    },
    /// A map update, lookup or delete failed.
    #[error("{op} in map {map}: {source}")]
    Map {
        /// What was attempted.
        op: &'static str,
        /// The map (`xsks`, `devs`, `fdb`, `counters`).
        map: &'static str,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// An argument is outside what the program or the kernel accepts.
    #[error("{what} {value} is out of range (largest {max})")]
    OutOfRange {
        /// Which argument (`ifindex`, `xsk slot`, `vlan`).
        what: &'static str,
        /// The value given.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
}

impl Error {
    /// A load-time error, with EPERM turned into [`Error::PermissionDenied`].
    pub(super) fn load(op: &'static str, source: libbpf_rs::Error) -> Self {
        if source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
            Error::PermissionDenied { op, source }
        } else {
            Error::Load { op, source }
        }
    }

    /// The kernel id of the foreign XDP program, if this is [`Error::ForeignXdp`] or
    /// [`Error::OtherSwitch`].
    pub fn foreign_prog_id(&self) -> Option<u32> {
        match self {
            Error::ForeignXdp { prog_id, .. } | Error::OtherSwitch { prog_id, .. } => {
                Some(*prog_id)
            }
            _ => None,
        }
    }
}
