//! Per-port counters.

use crate::mode::DropReason;

/// Counters of one port. Receive counters count what the port handed to the switch;
/// transmit counters what the port accepted; drops are charged to the ingress port
/// when the decision dropped the frame, to the egress port when it could not take it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Drops, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Of the counters above, what the kernel fast path forwarded without the
    /// switch (the rest took the AF_XDP path).
    pub fast: FastStats,
}

/// What the kernel fast path forwarded for one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastStats {
    /// Frames the port sent that the kernel forwarded.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the kernel delivered to the port.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames the port sent that the kernel program dropped: a redirect the helper
    /// refused, a tag or shim that could not be added (the daemon reports them as
    /// drop reason `fast_path_failed`).
    pub failed: u64,
}

impl FastStats {
    /// Adds `o`'s counters to these.
    pub fn merge(&mut self, o: &FastStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.failed += o.failed;
    }
}

impl PortStats {
    /// Counts one drop.
    #[inline(always)]
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r.index()] += 1;
    }

    /// Adds `o`'s counters to these (per-worker counters of one port).
    pub fn merge(&mut self, o: &PortStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        self.fast.merge(&o.fast);
    }

    /// Drops for reason `r`.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Non-zero drop counters with their names.
    pub fn drop_reasons(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drops[r.index()]))
            .filter(|(_, n)| *n > 0)
    }
}
