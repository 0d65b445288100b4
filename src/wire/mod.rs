//! Wire formats: zero-copy, checked views over frame bytes.
//!
//! Nothing here allocates or copies a frame. A view is built with `new_checked`, which
//! verifies that every field its accessors read is inside the buffer; after that the
//! accessors cannot fail. A frame too short for its header is a *runt* and is refused.
//! This is the parser the datapath uses on every frame; `etherparse` is used only by
//! tests, tools and fuzzing to cross-check it.

mod ethernet;
pub mod ipv4;
mod mac;
pub mod shim;

pub use ethernet::{emit_header, EtherType, EthernetFrame, VlanId, VlanTag, HEADER_LEN, TAG_LEN};
pub use mac::{MacAddr, MacParseError};

/// Why bytes are not a usable Ethernet frame. Small and `Copy`: on the datapath it
/// becomes a drop counter, never a `Result` that escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the 14-byte Ethernet header.
    #[error("runt frame: shorter than the 14-byte Ethernet header")]
    Runt,
    /// A VLAN tag is announced but the buffer ends inside it.
    #[error("truncated VLAN tag")]
    TruncatedTag,
    /// More than two stacked VLAN tags.
    #[error("more than two VLAN tags")]
    TooManyTags,
}
