// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * umacvlan bench sink: counts every frame and drops it.
 *
 * sink_tc  (tc, clsact ingress): the frame has been through the receiving
 *          interface's normal receive path up to tc, as for a container.
 * sink_xdp (XDP): the cheapest possible receiver, for wire-rate tests.
 *
 * redirect (tc, clsact ingress) is not a sink: the bench's "redirect" system, the
 * bare kernel forwarding the fast path is measured against. Every frame goes to
 * redirect_cfg: [0] the target ifindex, [1] 1 = into its peer's namespace
 * (bpf_redirect_peer), 0 = out of it (bpf_redirect). Counted like a sink.
 *
 * What counts: with sink_cfg[0] = 0, every frame; otherwise only untagged
 * IPv4/UDP frames to that destination port (the benchmark's flow), while
 * everything else (stray control traffic) is counted apart as "other".
 * Every frame is dropped. Per-CPU counters; userspace sums the CPUs.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct sink_count {
	__u64 frames;
	__u64 bytes;
	__u64 other;
};

/* [0]: UDP destination port to count (host order); 0 counts every frame. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sink_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_count);
} sink_counts SEC(".maps");

static __always_inline int wanted(void *data, void *end)
{
	__u32 key = 0;
	__u32 *port = bpf_map_lookup_elem(&sink_cfg, &key);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp;

	if (!port || *port == 0)
		return 1;
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return 0;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return 0;
	return udp->dest == bpf_htons((__u16)*port);
}

static __always_inline void count(void *data, void *end, __u64 len)
{
	__u32 key = 0;
	struct sink_count *c = bpf_map_lookup_elem(&sink_counts, &key);

	if (!c)
		return;
	if (wanted(data, end)) {
		c->frames++;
		c->bytes += len;
	} else {
		c->other++;
	}
}

SEC("tc")
int sink_tc(struct __sk_buff *skb)
{
	/* The headers of every frame counted are in the linear part. */
	bpf_skb_pull_data(skb, sizeof(struct ethhdr) + sizeof(struct iphdr) +
			       sizeof(struct udphdr));
	count((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len);
	return TC_ACT_SHOT;
}

SEC("xdp")
int sink_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	count(data, end, end - data);
	return XDP_DROP;
}

/* [0]: target ifindex; [1]: 1 = bpf_redirect_peer, 0 = bpf_redirect. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} redirect_cfg SEC(".maps");

SEC("tc")
int redirect(struct __sk_buff *skb)
{
	__u32 k0 = 0, k1 = 1;
	__u32 *ifindex = bpf_map_lookup_elem(&redirect_cfg, &k0);
	__u32 *peer = bpf_map_lookup_elem(&redirect_cfg, &k1);

	if (!ifindex || !peer || !*ifindex)
		return TC_ACT_SHOT;
	count((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len);
	return *peer ? bpf_redirect_peer(*ifindex, 0) : bpf_redirect(*ifindex, 0);
}
