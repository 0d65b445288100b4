//! The vocabulary every layer of the switch speaks: the macvlan [`Mode`] of a port and
//! the [`DropReason`] of a frame. Defined here, at the bottom of the stack, so that the
//! table, the published view and the decision above can all name them.

use core::fmt;
use core::str::FromStr;

/// A macvlan mode (`ip link ... type macvlan mode MODE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Mode {
    /// Sibling endpoints in bridge mode are switched locally; everything else goes to
    /// the wire. Docker's and CNI's default.
    Bridge,
    /// Everything goes to the wire; the external switch may reflect it back. The
    /// kernel's default.
    Vepa,
    /// Like VEPA, but reflected broadcasts reach only their sender.
    Private,
    /// One endpoint owns the parent: it receives all of the parent's unicast.
    Passthru,
    /// Receives copies of frames from a list of source MACs.
    Source,
}

impl Mode {
    /// Every mode, in the kernel's bit order.
    pub const ALL: [Mode; 5] = [
        Mode::Private,
        Mode::Vepa,
        Mode::Bridge,
        Mode::Passthru,
        Mode::Source,
    ];

    /// The name used by iproute2, Docker and CNI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Vepa => "vepa",
            Mode::Private => "private",
            Mode::Passthru => "passthru",
            Mode::Source => "source",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not one of the five.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown macvlan mode '{given}': expected one of bridge, vepa, private, passthru, source{hint}"
)]
pub struct UnknownMode {
    /// What was given.
    pub given: String,
    hint: &'static str,
}

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMode {
                given: s.to_owned(),
                hint: if s.eq_ignore_ascii_case("passthrough") {
                    " (the mode is spelled 'passthru')"
                } else if Mode::ALL.iter().any(|m| m.as_str().eq_ignore_ascii_case(s)) {
                    " (mode names are lower case)"
                } else {
                    ""
                },
            })
    }
}

/// Why the switch dropped a frame. One counter each, per port.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than the 14-byte Ethernet header.
    Runt,
    /// Sent by an endpoint that is down.
    PortDown,
    /// The ingress port is not (or no longer) in the port table.
    UnknownPort,
    /// Tagged with a VLAN no network on this parent uses.
    UnknownVlan,
    /// Unicast for a passthru parent whose endpoint is down (W5).
    PassthruDown,
    /// Matched a source-mode `nodst` entry whose endpoint is down: consumed (§3.1).
    NodstConsumed,
    /// Bridge-mode endpoint sent to its own MAC; it is never looped back.
    Loop,
    /// Blocked by strict private isolation.
    PrivateIsolation,
    /// No port takes it (e.g. unknown unicast with no host port).
    NoDestination,
    /// Larger than the egress port's MTU.
    MtuExceeded,
    /// The egress port's transmit queue was full.
    TxFull,
    /// No free frame for a flood copy.
    NoBuffer,
    /// A VLAN tag is announced but the frame ends inside it.
    TruncatedTag,
    /// More than two stacked VLAN tags.
    TooManyTags,
}

impl DropReason {
    /// Number of reasons (size of a per-port counter array).
    pub const COUNT: usize = 14;
    /// Every reason, in counter-index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::PortDown,
        DropReason::UnknownPort,
        DropReason::UnknownVlan,
        DropReason::PassthruDown,
        DropReason::NodstConsumed,
        DropReason::Loop,
        DropReason::PrivateIsolation,
        DropReason::NoDestination,
        DropReason::MtuExceeded,
        DropReason::TxFull,
        DropReason::NoBuffer,
        DropReason::TruncatedTag,
        DropReason::TooManyTags,
    ];

    /// Counter index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Stable snake_case name, for stats and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::PortDown => "port_down",
            DropReason::UnknownPort => "unknown_port",
            DropReason::UnknownVlan => "unknown_vlan",
            DropReason::PassthruDown => "passthru_down",
            DropReason::NodstConsumed => "nodst_consumed",
            DropReason::Loop => "loop",
            DropReason::PrivateIsolation => "private_isolation",
            DropReason::NoDestination => "no_destination",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::TxFull => "tx_full",
            DropReason::NoBuffer => "no_buffer",
            DropReason::TruncatedTag => "truncated_tag",
            DropReason::TooManyTags => "too_many_tags",
        }
    }
}

impl From<crate::wire::Error> for DropReason {
    /// The drop counter of a frame whose header does not parse.
    fn from(e: crate::wire::Error) -> Self {
        match e {
            crate::wire::Error::Runt => DropReason::Runt,
            crate::wire::Error::TruncatedTag => DropReason::TruncatedTag,
            crate::wire::Error::TooManyTags => DropReason::TooManyTags,
        }
    }
}
