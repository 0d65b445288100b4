// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * umacvlan steering: decides, per frame, whether the switch or the host
 * stack gets it.
 *
 * steer (XDP; its twin steer_twin is the same), on the parent and on every
 * ROLE_PORT veth:
 *   ROLE_PORT    every frame -> the AF_XDP socket of its rx queue.
 *   ROLE_PARENT  multicast/broadcast -> XDP_PASS (the tc program below
 *                mirrors it into the switch); passthru: every unicast ->
 *                switch; else fdb{vid, dst} hit -> switch, miss -> XDP_PASS
 *                (the parent's own MAC and unknown unicast: the host keeps
 *                its networking).
 *
 * mirror (tc, clsact ingress of the parent), multicast/broadcast only:
 *   clone to the mirror veth (its peer is a ROLE_PORT, so the copy lands in
 *   the switch), then drop the original if its source MAC is flagged
 *   FDB_F_HOST_SUPPRESS (spec W9: a reflected private/passthru/source
 *   broadcast never reaches the host stack). Everything else goes on to the
 *   next filter (TC_ACT_UNSPEC), then the host.
 *
 * On a parent without XDP (DEV_F_TC_STEER: a veth, where XDP copies every
 * frame) mirror steers unicast as well: the fast path's into the endpoint, the
 * switch's moved to the mirror veth, the rest to the host.
 *
 * A redirect to a slot without a socket, or from an rx queue the switch has
 * no socket for, falls back to XDP_PASS, counted.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "steer.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, STEER_MAX_XSKS);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_DEVS);
	__type(key, __u32);
	__type(value, struct dev_val);
} devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_FDB);
	__type(key, struct fdb_key);
	__type(value, struct fdb_val);
} fdb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_SRCS);
	__type(key, struct fdb_key);
	__type(value, __u32);
} srcs SEC(".maps");

/*
 * The groups some UP endpoint of the VLAN accepts (its multicast list); MAC
 * 00:00:00:00:00:00 stands for "every group" (an endpoint in ALLMULTI or PROMISC,
 * or one whose membership cannot be observed). Multicast no endpoint accepts is not
 * cloned to the switch: the host has it anyway, and the switch would drop it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_GROUPS);
	__type(key, struct fdb_key);
	__type(value, __u32);
} groups SEC(".maps");

/* The kernel fast path, compiled by userspace (src/fastpath.rs): from an endpoint,
 * (ingress port, destination MAC); from the wire, (VLAN, destination MAC). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_FAST);
	__type(key, struct fast_key);
	__type(value, struct fast_val);
} fast SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct fast_in);
} fast_in SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_PORTS);
	__type(key, struct fdb_key);
	__type(value, struct fast_val);
} fast_wire SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct port_cnt);
} port_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STEER_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct capture_cfg);
} capture SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, STEER_CAPTURE_RING);
} capture_rb SEC(".maps");

/* Non-zero while any port is captured: the fast path's only cost otherwise is this load. */
volatile __u32 capture_on = 0;

/* An 802.1Q / 802.1ad tag after the two MAC addresses. */
struct vlan_tag {
	__be16 tci;
	__be16 proto; /* encapsulated EtherType */
};

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	if (c)
		*c += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline struct port_cnt *port_cnt(__u32 port)
{
	return bpf_map_lookup_elem(&port_stats, &port);
}

/* A frame the fast path forwarded: sent by `in`, delivered to `out`. */
static __always_inline void count_fast(__u32 in, __u32 out, __u64 rx_len, __u64 tx_len)
{
	struct port_cnt *c = port_cnt(in);

	if (c) {
		c->rx_packets += 1;
		c->rx_bytes += rx_len;
	}
	c = port_cnt(out);
	if (c) {
		c->tx_packets += 1;
		c->tx_bytes += tx_len;
	}
	count(CNT_TC_FAST);
}

/* A copy of the frame of `port` into capture_rb, if that port is captured that way. */
static __always_inline void capture_one(struct __sk_buff *skb, __u32 port, __u32 dir)
{
	struct capture_cfg *c = bpf_map_lookup_elem(&capture, &port);

	if (!c || !(c->dirs & dir))
		return;
	struct capture_rec *r = bpf_ringbuf_reserve(&capture_rb, sizeof(*r), 0);

	if (!r) {
		count(CNT_CAPTURE_LOST);
		return;
	}
	__u32 n = skb->len;

	if (n > c->snaplen)
		n = c->snaplen;
	if (n > CAPTURE_MAX)
		n = CAPTURE_MAX;
	r->ts = bpf_ktime_get_ns();
	r->port = port;
	r->dir = dir;
	r->len = skb->len;
	if (n == 0 || bpf_skb_load_bytes(skb, 0, r->data, n))
		n = 0;
	r->caplen = n;
	bpf_ringbuf_submit(r, 0);
}

/* The fast path forwards a frame from `in` to `out`: copies for their captures. */
static __always_inline void capture_fast(struct __sk_buff *skb, __u32 in, __u32 out)
{
	if (!capture_on)
		return;
	capture_one(skb, in, CAPTURE_IN);
	capture_one(skb, out, CAPTURE_OUT);
}

static __always_inline void count_fast_fail(__u32 in, __u32 counter)
{
	struct port_cnt *c = port_cnt(in);

	if (c)
		c->failed += 1;
	count(counter);
}

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	int eq = 1;

	for (int i = 0; i < ETH_ALEN; i++)
		if (a[i] != b[i])
			eq = 0;
	return eq;
}

static __always_inline int is_vlan_proto(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/*
 * To the socket of the arrival queue: AF_XDP redirects only reach a socket bound
 * to it. A queue beyond the device's sockets (the parent got more queues than the
 * switch bound) is counted, never redirected into another device's slots.
 */
static __always_inline int to_socket(const struct dev_val *dev, __u32 queue, __u64 len)
{
	if (queue >= dev->queues) {
		count(CNT_XDP_UNBOUND_QUEUE);
		return XDP_PASS;
	}
	/* The kernel would drop it at the socket, counted under no reason of its own. */
	if (dev->max_len && len > dev->max_len) {
		count(CNT_XDP_TOO_BIG);
		return XDP_DROP;
	}

	int act = bpf_redirect_map(&xsks, dev->xsk_base + queue, XDP_PASS);

	count(act == XDP_REDIRECT ? CNT_XDP_REDIRECT : CNT_XDP_REDIRECT_FAIL);
	return act;
}

/*
 * To the switch, which decides again from the frame itself. (No metadata: some
 * kernels refuse bpf_xdp_adjust_meta to XDP programs, and the switch has no use
 * for the port the fdb named: decide() must see source entries, strict private
 * and the rest anyway.)
 */
static __always_inline int to_switch(struct xdp_md *ctx, const struct dev_val *dev)
{
	return to_socket(dev, ctx->rx_queue_index, ctx->data_end - ctx->data);
}

static __always_inline int steer_frame(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct dev_val *dev = bpf_map_lookup_elem(&devs, &ifindex);

	if (!dev) {
		count(CNT_XDP_NOT_OURS);
		return XDP_PASS;
	}

	if (dev->role == ROLE_PORT)
		return to_socket(dev, ctx->rx_queue_index, ctx->data_end - ctx->data);
	if (dev->role != ROLE_PARENT) {
		count(CNT_XDP_NOT_OURS);
		return XDP_PASS;
	}

	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end) {
		count(CNT_XDP_MALFORMED);
		return XDP_PASS;
	}

	/* Multicast and broadcast: the host gets them; tc mirrors a copy. */
	if (eth->h_dest[0] & 1) {
		count(CNT_XDP_PASS);
		return XDP_PASS;
	}

	__u32 dev_flags = dev->flags;
	struct fdb_key key = {};
	__u32 hdr = sizeof(*eth);
	int inner = 0;

	if (is_vlan_proto(eth->h_proto)) {
		struct vlan_tag *tag = (void *)(eth + 1);

		if ((void *)(tag + 1) > data_end) {
			count(CNT_XDP_MALFORMED);
			return XDP_PASS;
		}
		key.vlan = bpf_ntohs(tag->tci) & 0x0fff;
		hdr += sizeof(*tag);
		/* Two tags (QinQ) the switch handles; a third it does not. */
		if (is_vlan_proto(tag->proto)) {
			inner = 1;
			struct vlan_tag *inner = tag + 1;

			if ((void *)(inner + 1) > data_end) {
				count(CNT_XDP_MALFORMED);
				return XDP_PASS;
			}
			if (is_vlan_proto(inner->proto)) {
				count(CNT_XDP_TAG_STACK);
				return XDP_PASS;
			}
		}
	}

	if (dev_flags & DEV_F_PASSTHRU)
		return to_switch(ctx, dev);

	__builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
	struct fdb_val *hit = bpf_map_lookup_elem(&fdb, &key);

	if (hit && (hit->flags & FDB_F_NOT_DST))
		hit = 0; /* a source-mode endpoint's own MAC: the host's (W4) */
	if (!hit) {
		/* From a source MAC a nodst endpoint lists: consumed by the switch,
		 * which makes the copies (§3.1). Otherwise tc clones it for them. */
		if (dev_flags & DEV_F_SOURCES) {
			struct fdb_key skey = { .vlan = key.vlan };
			__builtin_memcpy(skey.mac, eth->h_source, ETH_ALEN);
			__u32 *sf = bpf_map_lookup_elem(&srcs, &skey);

			if (sf && (*sf & SRC_F_NODST))
				return to_switch(ctx, dev);
		}
		/* The parent's own MAC or unknown unicast (spec W2/W3); tagged, it names a
		 * VLAN and MAC no endpoint has (an unknown VLAN, typically). */
		count(key.vlan ? CNT_XDP_TAGGED_MISS : CNT_XDP_PASS);
		return XDP_PASS;
	}
	/* The fast path into the endpoint (tc, below, redirects it): one tag at most, a
	 * source that is no endpoint's (a reflected frame's fate depends on its sender),
	 * no source-mode lists, and a payload its MTU takes. */
	if (!inner && !(dev_flags & DEV_F_SOURCES)) {
		struct fast_val *fv = bpf_map_lookup_elem(&fast_wire, &key);

		if (fv && (__u64)(data_end - data) - hdr <= fv->mtu) {
			struct fdb_key skey = { .vlan = key.vlan };

			__builtin_memcpy(skey.mac, eth->h_source, ETH_ALEN);
			if (!bpf_map_lookup_elem(&fdb, &skey)) {
				count(CNT_XDP_FAST_PASS);
				return XDP_PASS;
			}
		}
	}
	return to_switch(ctx, dev);
}

SEC("xdp")
int steer(struct xdp_md *ctx)
{
	return steer_frame(ctx);
}

/*
 * The same program under a second id. Swapping one for the other on a device
 * (XDP_FLAGS_REPLACE, atomic) makes its driver install the program anew on every
 * receive queue it has now: veth does not run XDP on queues `ethtool -L` added
 * while a program was attached until the program is set again.
 */
SEC("xdp")
int steer_twin(struct xdp_md *ctx)
{
	return steer_frame(ctx);
}

/*
 * Clone the frame to the egress of the mirror veth. A tag the stack already took
 * out of the frame (skb->vlan_tci) would be lost on the way to the peer's XDP and
 * AF_XDP socket, so it is put back inline for the clone and taken out again after:
 * push (the accelerated tag goes inline, a copy stays accelerated), clone, pop
 * (drops the accelerated copy, lifts the inline tag back out).
 */
/*
 * Puts the tag the stack holds outside the frame (skb->vlan_tci) back inline, for a
 * frame going to the mirror veth. Returns 1 if it pushed one, 0 if there was none,
 * -1 (counted) if the push failed: the frame must then not go, never onto the wrong
 * VLAN.
 */
static __always_inline int tag_inline(struct __sk_buff *skb)
{
	if (!skb->vlan_present)
		return 0;
	if (bpf_skb_vlan_push(skb, (__be16)skb->vlan_proto, skb->vlan_tci)) {
		count(CNT_TC_MIRROR_FAIL);
		return -1;
	}
	return 1;
}

static __always_inline void mirror_clone(struct __sk_buff *skb, __u32 ifindex)
{
	int pushed = tag_inline(skb);

	if (pushed < 0)
		return;
	if (bpf_clone_redirect(skb, ifindex, 0) == 0)
		count(CNT_TC_MIRRORED);
	else
		count(CNT_TC_MIRROR_FAIL);
	if (pushed && bpf_skb_vlan_pop(skb))
		count(CNT_TC_MIRROR_FAIL);
}

/*
 * "Not our business": TC_ACT_UNSPEC lets the next filter on the hook run (and the
 * frame continue if there is none). TC_ACT_OK would end the classification, and
 * the kernel puts an auto-prioritised filter like ours ahead of existing ones, so
 * it would silently bypass another agent's filters on the parent.
 */
#define TC_NEXT TC_ACT_UNSPEC

/*
 * Unicast from the wire that XDP passed for the fast path (CNT_XDP_FAST_PASS):
 * into the endpoint's namespace, its tag popped. `src` is (VLAN, source MAC).
 * Returns the tc verdict, or -1 if it is not for the fast path.
 */
static __always_inline int fast_from_wire(struct __sk_buff *skb, const struct fdb_key *src)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	struct fdb_key dkey = { .vlan = src->vlan };
	__u32 hdr = sizeof(*eth);
	int accel = skb->vlan_present, tagged = accel;

	__builtin_memcpy(dkey.mac, eth->h_dest, ETH_ALEN);
	if (is_vlan_proto(eth->h_proto)) {
		struct vlan_tag *tag = (void *)(eth + 1);

		/* A tag inside the accelerated one, or a second inline one: QinQ. */
		if (tagged || (void *)(tag + 1) > data_end || is_vlan_proto(tag->proto))
			return -1;
		tagged = 1;
		hdr += sizeof(*tag);
	}
	struct fast_val *fv = bpf_map_lookup_elem(&fast_wire, &dkey);

	/* Not for the fast path: XDP passed it for a reason its counters name (or the
	 * table changed between the two programs: the host gets it). */
	if (!fv || bpf_map_lookup_elem(&fdb, src) || (!skb->gso_size && skb->len - hdr > fv->mtu))
		return -1;
	__u32 len = skb->len;
	__u32 out = fv->port, ifindex = fv->ifindex;

	if (tagged && bpf_skb_vlan_pop(skb)) {
		count_fast_fail(0, CNT_TC_FAST_FAIL);
		return TC_ACT_SHOT;
	}
	capture_fast(skb, 0, out);
	long r = bpf_redirect_peer(ifindex, 0);

	if (r != TC_ACT_REDIRECT) {
		count_fast_fail(0, CNT_TC_FAST_FAIL);
		return TC_ACT_SHOT;
	}
	/* As the switch counts: the frame as it was on the wire, and as delivered. */
	count_fast(0, out, len + (accel ? 4 : 0), len - (tagged && !accel ? 4 : 0));
	return r;
}

/*
 * A tc-steered parent's unicast for the switch (DEV_F_TC_STEER): moved, not cloned, to
 * the mirror veth, whose peer's XDP puts it into the switch's socket as a frame from
 * the wire. The tag the stack took out of the frame goes back inline first.
 */
static __always_inline int to_mirror(struct __sk_buff *skb, const struct dev_val *dev)
{
	__u32 mirror_ifindex = dev->mirror_ifindex;

	if (!mirror_ifindex) {
		count(CNT_TC_MIRROR_FAIL);
		return TC_NEXT;
	}
	if (tag_inline(skb) < 0)
		return TC_ACT_SHOT;
	count(CNT_TC_WIRE_TO_SWITCH);
	return bpf_redirect(mirror_ifindex, 0);
}

/*
 * What steer_frame does in XDP, for a parent without XDP (DEV_F_TC_STEER), at tc
 * ingress: unicast the fast path delivers goes straight into the endpoint; unicast
 * for the switch (an endpoint's MAC, every unicast in passthru, a nodst source's
 * frame) to the mirror; the rest is the host's. `src` is (VLAN, source MAC). Returns
 * the verdict, or -1 when the host gets the frame (after the source copies the caller
 * makes, if its source is listed).
 */
static __always_inline int steer_unicast(struct __sk_buff *skb, const struct dev_val *dev,
					 const struct fdb_key *src)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 flags = dev->flags;

	if ((void *)(eth + 1) > data_end) {
		count(CNT_XDP_MALFORMED);
		return TC_NEXT;
	}
	/* The outer tag is usually out of the frame (skb->vlan_tci) by now. */
	int tags = skb->vlan_present;

	if (is_vlan_proto(eth->h_proto)) {
		struct vlan_tag *tag = (void *)(eth + 1);

		if ((void *)(tag + 1) > data_end) {
			count(CNT_XDP_MALFORMED);
			return TC_NEXT;
		}
		tags++;
		if (is_vlan_proto(tag->proto)) {
			struct vlan_tag *inner = tag + 1;

			if ((void *)(inner + 1) > data_end) {
				count(CNT_XDP_MALFORMED);
				return TC_NEXT;
			}
			tags += 1 + is_vlan_proto(inner->proto);
		}
	}
	if (tags > 2) {
		count(CNT_XDP_TAG_STACK);
		return TC_NEXT;
	}
	if (flags & DEV_F_PASSTHRU)
		return to_mirror(skb, dev);
	if (!(flags & DEV_F_SOURCES)) {
		int r = fast_from_wire(skb, src);

		if (r >= 0)
			return r; /* declined (-1), it changed nothing */
	}
	struct fdb_key key = { .vlan = src->vlan };

	__builtin_memcpy(key.mac, eth->h_dest, ETH_ALEN);
	struct fdb_val *hit = bpf_map_lookup_elem(&fdb, &key);

	if (hit && !(hit->flags & FDB_F_NOT_DST))
		return to_mirror(skb, dev);
	if (flags & DEV_F_SOURCES) {
		__u32 *sf = bpf_map_lookup_elem(&srcs, src);

		if (sf && (*sf & SRC_F_NODST))
			return to_mirror(skb, dev);
	}
	count(key.vlan ? CNT_XDP_TAGGED_MISS : CNT_XDP_PASS);
	return -1;
}

SEC("tc")
int mirror(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TC_NEXT;
	int multicast = eth->h_dest[0] & 1;

	__u32 ifindex = skb->ifindex;
	struct dev_val *dev = bpf_map_lookup_elem(&devs, &ifindex);

	if (!dev) {
		count(CNT_TC_NOT_OURS);
		return TC_NEXT;
	}

	/*
	 * The source key is taken before the clone: bpf_clone_redirect
	 * invalidates packet pointers. At tc ingress the stack has usually
	 * moved the outer tag into skb->vlan_tci already.
	 */
	struct fdb_key key = {};

	if (skb->vlan_present) {
		key.vlan = skb->vlan_tci & 0x0fff;
	} else if (is_vlan_proto(eth->h_proto)) {
		struct vlan_tag *tag = (void *)(eth + 1);

		if ((void *)(tag + 1) <= data_end)
			key.vlan = bpf_ntohs(tag->tci) & 0x0fff;
	}
	__builtin_memcpy(key.mac, eth->h_source, ETH_ALEN);

	/* A source MAC some source-mode endpoint lists (§3.1): the switch gets the
	 * frame too; with nodst the host does not. Unicast reaching tc was passed by
	 * XDP (for the host): only such a frame is cloned. */
	/* A parent without XDP: the verdict XDP would have counted for multicast. */
	if (multicast && dev->role == ROLE_PARENT && (dev->flags & DEV_F_TC_STEER))
		count(CNT_XDP_PASS);
	if (!multicast && dev->role == ROLE_PARENT && (dev->flags & DEV_F_TC_STEER)) {
		int r = steer_unicast(skb, dev, &key);

		if (r >= 0)
			return r;
		if (!(dev->flags & DEV_F_SOURCES))
			return TC_NEXT;
		/* The host's, and its source may be listed: the copies below. */
	} else if (!multicast && dev->role == ROLE_PARENT &&
		   !(dev->flags & (DEV_F_SOURCES | DEV_F_PASSTHRU))) {
		int r = fast_from_wire(skb, &key);

		if (r >= 0)
			return r;
		return TC_NEXT; /* unicast: XDP already steered it */
	}

	__u32 *sf = (dev->flags & DEV_F_SOURCES) ? bpf_map_lookup_elem(&srcs, &key) : 0;
	__u32 src_flags = sf ? *sf : 0;

	if (!multicast && !sf)
		return TC_NEXT; /* unicast: XDP already steered it */

	struct fdb_val *src = bpf_map_lookup_elem(&fdb, &key);
	int wanted = 1;

	/* A group no endpoint of the VLAN accepts needs the switch only for source
	 * copies or a reflected frame of a private/passthru/source sender (W9, which
	 * skips the filter). Broadcast every endpoint accepts. */
	if (multicast && !sf && !(src && (src->flags & FDB_F_HOST_SUPPRESS))) {
		int bcast = 1;

		for (int i = 0; i < ETH_ALEN; i++)
			if (eth->h_dest[i] != 0xff)
				bcast = 0;
		if (!bcast) {
			struct fdb_key g = { .vlan = key.vlan };

			if (!bpf_map_lookup_elem(&groups, &g)) {
				__builtin_memcpy(g.mac, eth->h_dest, ETH_ALEN);
				wanted = bpf_map_lookup_elem(&groups, &g) != 0;
			}
		}
	}

	__u32 mirror_ifindex = dev->mirror_ifindex;

	if (!wanted)
		count(CNT_TC_UNWANTED);
	else if (mirror_ifindex)
		mirror_clone(skb, mirror_ifindex);
	if (!multicast) {
		count(CNT_TC_SOURCE_COPIED);
		if (src_flags & SRC_F_NODST) {
			count(CNT_TC_SOURCE_CONSUMED);
			return TC_ACT_SHOT;
		}
		return TC_NEXT;
	}
	if (src_flags & SRC_F_NODST) {
		count(CNT_TC_SOURCE_CONSUMED);
		return TC_ACT_SHOT;
	}
	if (src && (src->flags & FDB_F_HOST_SUPPRESS)) {
		count(CNT_TC_SUPPRESSED);
		return TC_ACT_SHOT;
	}
	return TC_NEXT;
}

/*
 * Hands a frame of fast port `dev` to the switch: an 8-byte shim naming the sender
 * (and the tag the kernel held outside the frame) in front, then out of the
 * collector veth, whose peer's XDP puts it into the switch's socket.
 */
static __always_inline int to_collector(struct __sk_buff *skb, const struct dev_val *dev)
{
	struct shim sh = { .magic = SHIM_MAGIC, .port = dev->port };
	__u32 port = dev->port, collector = dev->mirror_ifindex;

	if (skb->vlan_present) {
		sh.tci = skb->vlan_tci;
		sh.tpid = bpf_ntohs(skb->vlan_proto);
	}
	if (!collector || bpf_skb_change_head(skb, sizeof(sh), 0) ||
	    bpf_skb_store_bytes(skb, 0, &sh, sizeof(sh), 0)) {
		count_fast_fail(port, CNT_TC_SHIM_FAIL);
		return TC_ACT_SHOT;
	}
	count(CNT_TC_TO_SWITCH);
	return bpf_redirect(collector, 0);
}

/*
 * port_in (tc, clsact ingress of a fast port: an endpoint's switch-side veth).
 * Untagged unicast from the endpoint's own MAC with a fast entry goes straight to
 * its egress: bpf_redirect_peer into the destination endpoint's namespace, or
 * bpf_redirect to the parent (its network's tag pushed). Everything else goes to
 * the switch through the collector. Two lookups: the sender's fast_in entry (what
 * it is, its class, its default), then its class's entry for the destination.
 */
SEC("tc")
int port_in(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 ifindex = skb->ifindex;
	struct fast_in *fi = bpf_map_lookup_elem(&fast_in, &ifindex);
	struct fast_val *v = 0;
	__u32 in = 0;

	if (fi && (void *)(eth + 1) <= data_end && !(eth->h_dest[0] & 1) && !skb->vlan_present &&
	    !is_vlan_proto(eth->h_proto) && mac_eq(eth->h_source, fi->src) &&
	    !mac_eq(eth->h_dest, fi->src)) {
		struct fast_key k = { .class = fi->class };

		__builtin_memcpy(k.mac, eth->h_dest, ETH_ALEN);
		v = bpf_map_lookup_elem(&fast, &k);
		if (!v)
			v = &fi->dflt;
		in = fi->in_port;
		if ((v->flags & FAST_F_SLOW) || (!skb->gso_size && skb->len - sizeof(*eth) > v->mtu))
			v = 0;
	}
	if (!v) {
		struct dev_val *dev = bpf_map_lookup_elem(&devs, &ifindex);

		if (!dev || dev->role != ROLE_FAST_PORT) {
			count(CNT_TC_NOT_OURS);
			return TC_NEXT;
		}
		return to_collector(skb, dev);
	}

	__u32 len = skb->len, skb_len = len, out = v->port, ifindex_out = v->ifindex;
	long r;

	capture_fast(skb, in, out);
	if (v->flags & FAST_F_WIRE) {
		__u16 vlan = v->vlan;

		if (vlan) {
			if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vlan)) {
				count_fast_fail(in, CNT_TC_FAST_FAIL);
				return TC_ACT_SHOT;
			}
			len += 4;
		}
		r = bpf_redirect(ifindex_out, 0);
	} else {
		r = bpf_redirect_peer(ifindex_out, 0);
	}
	if (r != TC_ACT_REDIRECT) {
		count_fast_fail(in, CNT_TC_FAST_FAIL);
		return TC_ACT_SHOT;
	}
	count_fast(in, out, skb_len, len);
	return r;
}
