//! The kernel's AF_XDP user ABI (`include/uapi/linux/if_xdp.h`), as the libc crate
//! defines it, with its sizes and field offsets checked at compile time.
//!
//! Every struct here is shared with the kernel through `setsockopt`, `getsockopt`,
//! `bind` or an mmap'd ring, so a layout change is a compile error, not a corrupt ring.

use core::mem::{offset_of, size_of};

use super::Pod;

pub use libc::{
    sockaddr_xdp, xdp_desc, xdp_mmap_offsets, xdp_options, xdp_ring_offset, xdp_statistics,
    xdp_umem_reg,
};
pub use libc::{
    AF_XDP, SOL_XDP, XDP_COPY, XDP_MMAP_OFFSETS, XDP_OPTIONS, XDP_OPTIONS_ZEROCOPY,
    XDP_PGOFF_RX_RING, XDP_PGOFF_TX_RING, XDP_RING_NEED_WAKEUP, XDP_RX_RING, XDP_SHARED_UMEM,
    XDP_STATISTICS, XDP_TX_RING, XDP_UMEM_COMPLETION_RING, XDP_UMEM_FILL_RING,
    XDP_UMEM_PGOFF_COMPLETION_RING, XDP_UMEM_PGOFF_FILL_RING, XDP_UMEM_REG, XDP_USE_NEED_WAKEUP,
    XDP_ZEROCOPY,
};

/// Bytes the kernel keeps in front of every received packet (`XDP_PACKET_HEADROOM`,
/// `include/uapi/linux/bpf.h`). An AF_XDP receive descriptor points this far (plus
/// the UMEM headroom, 0 here) into its chunk unless the XDP program moved the head.
pub const XDP_PACKET_HEADROOM: usize = 256;

// struct sockaddr_xdp { __u16 sxdp_family; __u16 sxdp_flags; __u32 sxdp_ifindex;
//                       __u32 sxdp_queue_id; __u32 sxdp_shared_umem_fd; };
const _: () = {
    assert!(size_of::<sockaddr_xdp>() == 16);
    assert!(offset_of!(sockaddr_xdp, sxdp_family) == 0);
    assert!(offset_of!(sockaddr_xdp, sxdp_flags) == 2);
    assert!(offset_of!(sockaddr_xdp, sxdp_ifindex) == 4);
    assert!(offset_of!(sockaddr_xdp, sxdp_queue_id) == 8);
    assert!(offset_of!(sockaddr_xdp, sxdp_shared_umem_fd) == 12);
};

// struct xdp_ring_offset { __u64 producer, consumer, desc, flags; };
// struct xdp_mmap_offsets { struct xdp_ring_offset rx, tx, fr, cr; };
const _: () = {
    assert!(size_of::<xdp_ring_offset>() == 32);
    assert!(offset_of!(xdp_ring_offset, producer) == 0);
    assert!(offset_of!(xdp_ring_offset, consumer) == 8);
    assert!(offset_of!(xdp_ring_offset, desc) == 16);
    assert!(offset_of!(xdp_ring_offset, flags) == 24);
    assert!(size_of::<xdp_mmap_offsets>() == 128);
    assert!(offset_of!(xdp_mmap_offsets, rx) == 0);
    assert!(offset_of!(xdp_mmap_offsets, tx) == 32);
    assert!(offset_of!(xdp_mmap_offsets, fr) == 64);
    assert!(offset_of!(xdp_mmap_offsets, cr) == 96);
};

// struct xdp_umem_reg { __u64 addr, len; __u32 chunk_size, headroom, flags,
//                       tx_metadata_len; };   (tx_metadata_len: Linux 6.8; was padding)
const _: () = {
    assert!(size_of::<xdp_umem_reg>() == 32);
    assert!(offset_of!(xdp_umem_reg, addr) == 0);
    assert!(offset_of!(xdp_umem_reg, len) == 8);
    assert!(offset_of!(xdp_umem_reg, chunk_size) == 16);
    assert!(offset_of!(xdp_umem_reg, headroom) == 20);
    assert!(offset_of!(xdp_umem_reg, flags) == 24);
    assert!(offset_of!(xdp_umem_reg, tx_metadata_len) == 28);
};

// struct xdp_statistics { __u64 rx_dropped, rx_invalid_descs, tx_invalid_descs,
//                         rx_ring_full, rx_fill_ring_empty_descs, tx_ring_empty_descs; };
const _: () = {
    assert!(size_of::<xdp_statistics>() == 48);
    assert!(offset_of!(xdp_statistics, rx_dropped) == 0);
    assert!(offset_of!(xdp_statistics, rx_invalid_descs) == 8);
    assert!(offset_of!(xdp_statistics, tx_invalid_descs) == 16);
    assert!(offset_of!(xdp_statistics, rx_ring_full) == 24);
    assert!(offset_of!(xdp_statistics, rx_fill_ring_empty_descs) == 32);
    assert!(offset_of!(xdp_statistics, tx_ring_empty_descs) == 40);
};

// struct xdp_options { __u32 flags; };
// struct xdp_desc { __u64 addr; __u32 len; __u32 options; };
const _: () = {
    assert!(size_of::<xdp_options>() == 4);
    assert!(size_of::<xdp_desc>() == 16);
    assert!(offset_of!(xdp_desc, addr) == 0);
    assert!(offset_of!(xdp_desc, len) == 8);
    assert!(offset_of!(xdp_desc, options) == 12);
};

// Constants the rings and bind depend on.
const _: () = {
    assert!(AF_XDP == 44);
    assert!(SOL_XDP == 283);
    assert!(XDP_SHARED_UMEM == 1 && XDP_COPY == 2 && XDP_ZEROCOPY == 4);
    assert!(XDP_USE_NEED_WAKEUP == 8);
    assert!(XDP_RING_NEED_WAKEUP == 1);
    assert!(XDP_PGOFF_TX_RING == 0x8000_0000);
    assert!(XDP_UMEM_PGOFF_FILL_RING == 0x1_0000_0000);
    assert!(XDP_UMEM_PGOFF_COMPLETION_RING == 0x1_8000_0000);
};

// SAFETY: each is a #[repr(C)] struct of unsigned integers whose sizes (asserted
// above) equal the sum of their fields, so there is no padding and every bit pattern
// is a valid value.
unsafe impl Pod for sockaddr_xdp {}
// SAFETY: as above.
unsafe impl Pod for xdp_ring_offset {}
// SAFETY: as above (four xdp_ring_offset, 128 bytes).
unsafe impl Pod for xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl Pod for xdp_umem_reg {}
// SAFETY: as above.
unsafe impl Pod for xdp_statistics {}
// SAFETY: as above.
unsafe impl Pod for xdp_options {}
// SAFETY: as above.
unsafe impl Pod for xdp_desc {}
