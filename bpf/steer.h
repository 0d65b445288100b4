/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * Definitions shared by the steering program (steer.bpf.c) and its Rust
 * loader (src/bpf/types.rs mirrors every struct and constant here, with
 * const-asserted sizes and offsets). Change both together.
 *
 * Every multi-byte field is in host byte order.
 */
#ifndef UMACVLAN_STEER_H
#define UMACVLAN_STEER_H

#include <linux/types.h>

/* Map sizes. */
#define STEER_MAX_XSKS 4096   /* xsks: XSKMAP slots (xsk_base + rx queue) */
#define STEER_MAX_DEVS 1024   /* devs: ifindex -> dev_val */
#define STEER_MAX_FDB 65536   /* fdb: (vlan, mac) -> fdb_val */
#define STEER_MAX_SRCS 4096   /* srcs: (vlan, source mac) -> SRC_F_* */
#define STEER_MAX_GROUPS 16384 /* groups: (vlan, group mac) -> 1; mac 0 = every group */
#define STEER_MAX_FAST 65536  /* fast: (class, dst mac) -> fast_val */
#define STEER_MAX_PORTS 1024  /* port_stats: one slot per switch PortId; fast_in, fast_wire entries */

/* fdb key: VLAN id (0 = untagged or priority-tagged) and MAC address. */
struct fdb_key {
	__u16 vlan;   /* VLAN id of the outermost tag (tci & 0xfff), host order */
	__u8 mac[6];  /* MAC address, transmission order */
};

/* fdb value: which switch port owns the MAC. */
struct fdb_val {
	__u32 port;   /* switch PortId of the endpoint */
	__u32 flags;  /* FDB_F_* */
};

/*
 * The MAC is the source MAC of a private, passthru or source endpoint: a
 * multicast frame arriving on the parent with this source is its own frame
 * reflected by the external switch, and must not reach the host stack
 * (spec W9).
 */
#define FDB_F_HOST_SUPPRESS 1
/*
 * The MAC is a source-mode endpoint's own: frames to it go to the host (spec W4),
 * so XDP treats it as a miss.
 */
#define FDB_F_NOT_DST 2

/*
 * srcs value: a source MAC some UP source-mode endpoint lists (spec §3.1). Frames
 * from it reach the switch (which makes the copies) as well as their normal way;
 * with SRC_F_NODST they are consumed: the switch's copies are all there is.
 */
#define SRC_F_NODST 1

/* devs value: what an interface the program is attached to is. */
struct dev_val {
	__u32 role;            /* ROLE_* */
	__u32 xsk_base;        /* xsks slot of rx queue 0; queue q uses xsk_base + q */
	__u32 mirror_ifindex;  /* parent: veth that gets a clone of multicast; fast port: the collector veth; 0 = none */
	__u32 flags;           /* DEV_F_* */
	__u32 queues;          /* rx queues 0..queues-1 have a socket; a frame on another is counted and passed */
	__u32 max_len;         /* longest frame its sockets' UMEM frames hold; 0 = no limit */
	__u16 port;            /* ROLE_FAST_PORT: the endpoint's switch PortId (the shim's sender) */
	__u8 mac[6];           /* ROLE_FAST_PORT: the endpoint's MAC */
};

#define ROLE_PARENT 1  /* the parent NIC */
#define ROLE_PORT 2    /* an endpoint's host-side veth, or the mirror veth */
/* An endpoint's host-side veth that carries the tc program port_in instead of XDP:
 * frames with an entry in `fast` go straight to their egress, the rest to the
 * collector veth (mirror_ifindex) behind a shim. */
#define ROLE_FAST_PORT 3

#define DEV_F_PASSTHRU 1  /* parent in passthru mode: every unicast goes to the switch */
#define DEV_F_SOURCES 2   /* parent: srcs has entries (a source-mode endpoint is up): look frames up */
/* Parent without XDP (a veth, where native and generic XDP both copy every frame): the
 * tc program steers unicast too, handing what the switch must see to the mirror veth. */
#define DEV_F_TC_STEER 4

/* fast key: a class of senders (fast_in.class) and a destination MAC. */
struct fast_key {
	__u32 class;   /* fast_in.class of the sender */
	__u8 mac[6];   /* destination MAC, transmission order */
	__u16 pad;     /* 0 */
};

/* fast / fast_wire value: where the kernel forwards the frame itself. */
struct fast_val {
	__u32 ifindex;  /* FAST_F_PEER: the egress endpoint's switch-side veth; FAST_F_WIRE: the parent */
	__u16 port;     /* egress PortId (its counters) */
	__u16 vlan;     /* FAST_F_WIRE: tag to push (0 = none) */
	__u16 mtu;      /* longest payload after the Ethernet header; longer (not GSO) goes to the switch */
	__u16 flags;    /* FAST_F_* */
};

/* fast_in value (key: the ingress endpoint's switch-side veth): its class, what it
 * is, and where its unicast goes when `fast` has no entry for the class and MAC. */
struct fast_in {
	__u32 class;          /* senders with the same forwarding share a class */
	__u16 in_port;        /* the ingress PortId (its counters) */
	__u8 src[6];          /* its MAC: frames from another source, or to it, go to the switch */
	struct fast_val dflt; /* every destination without an entry */
};

#define FAST_F_PEER 1  /* bpf_redirect_peer: into the endpoint's namespace */
#define FAST_F_WIRE 2  /* bpf_redirect to the parent's egress */
#define FAST_F_SLOW 4  /* the switch decides (an explicit entry beside a fast default) */

/* port_stats value (per CPU, indexed by PortId): what the fast path forwarded. */
struct port_cnt {
	__u64 rx_packets;  /* frames the port sent that the kernel forwarded */
	__u64 rx_bytes;
	__u64 tx_packets;  /* frames the kernel delivered to the port */
	__u64 tx_bytes;
	__u64 failed;      /* frames the port sent whose redirect or hand-off failed: dropped */
};

/* In front of a frame port_in hands to the switch through the collector veth. */
struct shim {
	__u16 magic;  /* SHIM_MAGIC */
	__u16 port;   /* the sending PortId */
	__u16 tci;    /* the tag the kernel held out of the frame (skb->vlan_tci) */
	__u16 tpid;   /* its TPID; 0 = none */
};

#define SHIM_MAGIC 0x554d

/* Indices into the per-CPU "counters" array. */
enum steer_counter {
	CNT_XDP_PASS = 0,          /* parent: passed to the host on purpose (multicast, fdb miss, short) */
	CNT_XDP_REDIRECT = 1,      /* redirected into an AF_XDP socket */
	CNT_XDP_REDIRECT_FAIL = 2, /* wanted the switch, no socket in the slot: fell back to XDP_PASS */
	CNT_XDP_NOT_OURS = 3,      /* XDP ran on an ifindex missing from devs: XDP_PASS */
	CNT_TC_WIRE_TO_SWITCH = 4, /* tc-steered parent: unicast for the switch, moved to the mirror */
	CNT_XDP_MALFORMED = 5,     /* parent: shorter than its Ethernet/VLAN header: XDP_PASS */
	CNT_TC_MIRRORED = 6,       /* tc: a multicast clone sent to the mirror veth */
	CNT_TC_MIRROR_FAIL = 7,    /* tc: bpf_clone_redirect failed */
	CNT_TC_SUPPRESSED = 8,     /* tc: multicast from a FDB_F_HOST_SUPPRESS source dropped (W9) */
	CNT_TC_NOT_OURS = 9,       /* tc: multicast on an ifindex missing from devs: TC_ACT_OK */
	CNT_XDP_UNBOUND_QUEUE = 10, /* for the switch, but on an rx queue without a socket: XDP_PASS */
	CNT_XDP_TOO_BIG = 11,      /* for the switch, but longer than max_len: XDP_DROP */
	CNT_XDP_TAG_STACK = 12,    /* parent: more than two VLAN tags (unsupported): XDP_PASS */
	CNT_XDP_TAGGED_MISS = 13,  /* parent: tagged unicast for no endpoint of that VLAN: XDP_PASS */
	CNT_TC_SOURCE_COPIED = 14, /* tc: a frame from a listed source MAC cloned to the mirror (§3.1) */
	CNT_TC_SOURCE_CONSUMED = 15, /* tc: ... and dropped for the host (nodst) */
	CNT_TC_UNWANTED = 16,      /* tc: multicast no endpoint accepts: not cloned to the switch */
	CNT_TC_FAST = 17,          /* tc: forwarded by the fast path (endpoint or wire ingress) */
	CNT_TC_FAST_FAIL = 18,     /* tc: a fast-path redirect the helper refused: dropped */
	CNT_TC_TO_SWITCH = 19,     /* tc: from a fast port to the switch, through the collector */
	CNT_TC_SHIM_FAIL = 20,     /* tc: the shim could not be put in front: dropped */
	CNT_XDP_FAST_PASS = 21,    /* parent: passed for the tc fast path into an endpoint */
	CNT_CAPTURE_LOST = 22,     /* tc: a fast-path frame of a captured port found the ring full */
	CNT_MAX = 23,
};

/*
 * umacvlan capture: the fast path copies the frames of captured ports into the
 * capture_rb ring buffer (the switch's own frames are copied by its workers).
 */
#define STEER_CAPTURE_RING (1 << 22) /* bytes of capture_rb */
#define CAPTURE_MAX 2048             /* bytes of a frame a record holds at most */
#define CAPTURE_IN 1                 /* what the port sent (the switch received) */
#define CAPTURE_OUT 2                /* what was delivered to the port */

/* capture[port]: which directions of the port are captured, and how much of each frame. */
struct capture_cfg {
	__u32 dirs;    /* CAPTURE_IN | CAPTURE_OUT; 0 = not captured */
	__u32 snaplen; /* bytes kept, at most CAPTURE_MAX */
};

/* One record of capture_rb. */
struct capture_rec {
	__u64 ts;     /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u32 port;   /* the port */
	__u32 dir;    /* CAPTURE_IN or CAPTURE_OUT */
	__u32 len;    /* the frame's length */
	__u32 caplen; /* bytes of data[] that hold it */
	__u8 data[CAPTURE_MAX];
};

#endif /* UMACVLAN_STEER_H */
