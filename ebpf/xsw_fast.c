// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// xsw's fast path: one object per data plane (switch/src/xdp/fast.rs).
//
// xsw_port_ingress (tc, tcx ingress of every tc-hooked port): the port's
// frames as skbs, with the kernel's GSO and checksum state intact.
//   1. host:  frames the host itself must see (host MACs, ARP requests for
//             host IPv4 addresses) go up the stack: TC_ACT_OK.
//   2. fast:  a flow entry for the frame's key (in flows_l2 or flows, by the
//             port's key width) whose generation is current and whose
//             deadline has not passed switches the frame here: tag edit,
//             then bpf_redirect, or bpf_redirect_peer where the egress is a
//             veth whose peer is in another namespace (user space decides).
//   3. slow:  everything else gets an 802.1Q tag naming its ingress port and
//             is redirected to the internal device's transmit. Its peer's XDP
//             program (below) hands it to a worker's AF_XDP socket. The kernel
//             segments a GSO skb on the way (the peer has XDP, so the internal
//             device has no TSO), so the workers only ever see MTU frames.
//
// xsw_slow_path (XDP, on the internal device's peer): pops that tag, puts
// the port id in the 4 bytes of metadata before the frame, and steers the
// frame to the AF_XDP socket of its rx queue (one per worker).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xsw_common.h"
#include "xsw_fast.h"
#define ETH_P_8021Q_ 0x8100
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); // ifindex
	__type(value, struct port_conf);
} ports SEC(".maps");

// Key: ifindex in the low 32 bits, then... kept simple: (ifindex << 48 | MAC)
// would not fit; a struct instead.
struct host_mac_key {
	__u32 ifindex;
	__u8 mac[6];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct host_mac_key);
	__type(value, __u8);
} host_macs SEC(".maps");

struct host_ipv4_key {
	__u32 ifindex;
	__u32 addr; // network byte order
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct host_ipv4_key);
	__type(value, __u8);
} host_ipv4 SEC(".maps");

// Two tables, one per key width, each sized by the loader ([fast_path]
// flows): frames of L3-width ports are looked up here (64-byte key), ...
// No preallocation: an idle switch does not hold a full table of per-CPU values.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key);
	__type(value, struct flow_entry);
} flows SEC(".maps");

// ... frames of L2-width ports here (16-byte key).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 131072);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key_l2);
	__type(value, struct flow_entry);
} flows_l2 SEC(".maps");

// gen[0]: the current generation. Mapped into xswd's memory, so a worker can
// invalidate every entry with one atomic add.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} gen SEC(".maps");

// slow_path[SLOW_PATH_IFINDEX]: ifindex of the internal device frames that
// miss are sent to. slow_path[SLOW_PATH_LONGEST]: the longest frame (from the
// Ethernet header on, untagged) a worker's UMEM frame holds; 0 until the data
// plane sets it, and then only the device's MTU limits.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} slow_path SEC(".maps");

// Per port id and reason (SLOW_PATH_*), per CPU: frames that missed and
// that the slow path could not take.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, (MAX_PORT_ID + 1) * 2);
	__type(key, __u32);
	__type(value, __u64);
} slow_path_drops SEC(".maps");

static __always_inline int is_for_host(struct __sk_buff *skb, struct ethhdr *eth, void *data_end)
{
	struct host_mac_key mk = {.ifindex = skb->ifindex};
	__builtin_memcpy(mk.mac, eth->h_dest, ETH_ALEN);
	if (bpf_map_lookup_elem(&host_macs, &mk))
		return 1;
	if (skb->vlan_present)
		return 0;
	struct host_ipv4_key ik = {.ifindex = skb->ifindex, .addr = arp_request_target(eth, data_end)};
	return ik.addr && bpf_map_lookup_elem(&host_ipv4, &ik) != 0;
}

// Fills the L3/L4 part of the key. Returns 0 when the frame has no key the
// pipeline would install: not IP, IP options, fragments, IPv6 extension
// headers, a missing or cut L4 header. Such frames take the slow path.
// l3_len: the packet's length from the L3 header on (skb->len counts the
// paged part too, which data_end does not reach); gso: it is a GSO packet.
//
// The L4 header must also lie within the IP packet's own length, and that
// length within the packet, as the pipeline's parser requires (packet::ipv4,
// packet::ipv6, packet::l4): it reads nothing past the IP length (Ethernet
// padding), so a frame whose length fields cut the L4 header is one without
// ports, and one whose length runs past the packet is malformed. Keyed from
// the bytes alone, such frames would match the entry of a well-formed flow.
static __always_inline int key_l3(struct flow_key *key, void *l3, void *data_end, __u16 ethertype,
				  __u32 l3_len, int gso)
{
	__u8 proto;
	void *l4;
	__u32 l4_len;
	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > data_end)
			return 0;
		if (ip->version != 4 || ip->ihl != 5)
			return 0;
		// More fragments, or a non-zero offset.
		if (ip->frag_off & bpf_htons(0x3fff))
			return 0;
		__u32 ip_len = bpf_ntohs(ip->tot_len);
		// BIG TCP: a GSO packet over 64 KiB says 0 (the kernel's iph_totlen()).
		if (ip_len == 0 && gso)
			ip_len = l3_len;
		if (ip_len < sizeof(*ip) || ip_len > l3_len)
			return 0;
		l4_len = ip_len - sizeof(*ip);
		proto = ip->protocol;
		__builtin_memcpy(key->src_ip, &ip->saddr, 4);
		__builtin_memcpy(key->dst_ip, &ip->daddr, 4);
		l4 = ip + 1;
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > data_end)
			return 0;
		if (ip6->version != 6)
			return 0;
		l4_len = bpf_ntohs(ip6->payload_len);
		if (l4_len == 0 && gso) // BIG TCP, likewise
			l4_len = l3_len - sizeof(*ip6);
		if (l4_len > l3_len - sizeof(*ip6))
			return 0;
		proto = ip6->nexthdr;
		__builtin_memcpy(key->src_ip, &ip6->saddr, 16);
		__builtin_memcpy(key->dst_ip, &ip6->daddr, 16);
		l4 = ip6 + 1;
	} else {
		return 0;
	}
	key->ethertype = ethertype;
	key->proto = proto;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return 0;
		// The data offset: at least the 20 fixed bytes, within the segment.
		if (tcp->doff < 5 || tcp->doff * 4 > l4_len)
			return 0;
		key->sport = tcp->source;
		key->dport = tcp->dest;
		// The flags byte: FIN..CWR (the pipeline's tcp_flags).
		key->tcp_flags = ((__u8 *)tcp)[13];
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end || l4_len < sizeof(*udp))
			return 0;
		key->sport = udp->source;
		key->dport = udp->dest;
	} else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		// ICMP for IPv4, ICMPv6 for IPv6 only.
		if ((proto == IPPROTO_ICMP) != (ethertype == bpf_htons(ETH_P_IP)))
			return 0;
		__u8 *icmp = l4;
		if ((void *)(icmp + 4) > data_end || l4_len < 4)
			return 0;
		key->icmp_type = icmp[0];
	} else {
		return 0;
	}
	return 1;
}

// Frames a guard of the pipeline reads beyond any flow key (pipeline/guard.rs):
// IPv6 router advertisements and redirects, DHCP (UDP 67/68) and DHCPv6 (UDP
// 546/547). An L2 entry, or an L3 one (which holds ports but not a DHCP
// client's chaddr), would carry a rogue one past the guard, so they always go
// to the slow path. So do IPv6 packets with extension headers, behind which
// the pipeline finds (and guards) an RA that a look at the next header here
// would miss (RFC 7113). Nothing else is touched: the cost is a few loads.
static __always_inline int guarded_by_pipeline(void *l3, void *data_end, __u16 ethertype)
{
	__u8 proto;
	__u8 *l4;
	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > data_end)
			return 0;
		// IP options: rare, and a header length read from the frame would make the
		// L4 pointer a variable offset, which the verifier refuses without
		// CAP_PERFMON (xswd runs with CAP_BPF only): the workers check those frames.
		if (ip->ihl != 5)
			return 1;
		proto = ip->protocol;
		l4 = (__u8 *)(ip + 1);
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > data_end)
			return 0;
		proto = ip6->nexthdr;
		// Hop-by-hop, routing, fragment, destination options.
		if (proto == 0 || proto == 43 || proto == 44 || proto == 60)
			return 1;
		l4 = (__u8 *)(ip6 + 1);
	} else {
		return 0;
	}
	if ((void *)(l4 + 4) > data_end)
		return 0;
	if (proto == IPPROTO_ICMPV6)
		return ethertype == bpf_htons(ETH_P_IPV6) && (l4[0] == 134 || l4[0] == 137);
	if (proto != IPPROTO_UDP)
		return 0;
	__u16 sport = ((__u16)l4[0] << 8) | l4[1];
	__u16 dport = ((__u16)l4[2] << 8) | l4[3];
	return sport == 67 || sport == 68 || sport == 546 || sport == 547 || dport == 67 ||
	       dport == 68 || dport == 546 || dport == 547;
}

// Whether the frames `skb` becomes on its way to a worker are longer than
// the slow path carries: the device's MTU, and the worker's UMEM frame (the
// kernel would drop a longer frame at the AF_XDP socket, where only its
// rx_dropped shows it, not which port it came from or why).
static __always_inline int too_big_for_slow_path(struct __sk_buff *skb)
{
	__u32 key = SLOW_PATH_LONGEST;
	__u32 *configured = bpf_map_lookup_elem(&slow_path, &key);
	__u32 longest = SLOW_PATH_MTU + sizeof(struct ethhdr);
	if (configured && *configured && *configured < longest)
		longest = *configured;
	// A GSO packet is segmented on its way into the internal device (whose
	// peer has XDP, so it has no TSO): each segment is gso_size bytes of
	// payload behind at least an Ethernet, an IPv4 and a UDP header.
	// A tag out of band now is in the frame by then (the slow path's own
	// tag is popped before the socket).
	__u32 tag = skb->vlan_present ? 4 : 0;
	if (skb->gso_size)
		return skb->gso_size + SLOW_PATH_MIN_HEADERS + tag > longest;
	return skb->len + tag > longest;
}

static __always_inline int to_slow_path(struct __sk_buff *skb, __u16 port)
{
	__u32 key = SLOW_PATH_IFINDEX;
	__u32 reason = SLOW_PATH_UNAVAILABLE;
	__u32 frames = 1;
	__u32 *slow = bpf_map_lookup_elem(&slow_path, &key);
	if (too_big_for_slow_path(skb)) {
		reason = SLOW_PATH_TOO_BIG;
		// Count the frames the packet would have been on the wire.
		if (skb->gso_segs > 1)
			frames = skb->gso_segs;
	} else if (slow && *slow && port <= MAX_PORT_ID &&
		   bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q_), port) == 0) {
		return bpf_redirect(*slow, 0);
	}
	__u32 index = (port <= MAX_PORT_ID ? port : 0) * 2 + reason;
	__u64 *drops = bpf_map_lookup_elem(&slow_path_drops, &index);
	if (drops)
		*drops += frames;
	return TC_ACT_SHOT;
}

static __always_inline int apply_tag(struct __sk_buff *skb, struct flow_entry *entry)
{
	switch (entry->tag_op) {
	case TAG_KEEP:
		return 0;
	case TAG_INSERT:
		return bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q_), entry->vid & 0x0fff);
	case TAG_REMOVE:
		return bpf_skb_vlan_pop(skb);
	case TAG_REWRITE: {
		__u16 tci = (skb->vlan_tci & 0xf000) | (entry->vid & 0x0fff);
		if (bpf_skb_vlan_pop(skb))
			return -1;
		return bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q_), tci);
	}
	}
	return -1;
}

SEC("classifier")
int xsw_port_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct port_conf *conf = bpf_map_lookup_elem(&ports, &ifindex);
	if (!conf)
		return TC_ACT_OK; // not (or no longer) a port of this switch

	// The headers are read in place, so they must be in the linear part. A
	// paged skb (a jumbo frame, say) whose linear part is shorter than the
	// longest headers keyed gets them pulled in: one call, only for such
	// skbs; a failure leaves the frame as it was (it then misses).
	// Compared, not subtracted: pointer arithmetic between packet pointers is
	// refused without CAP_PERFMON, and xswd runs with CAP_BPF only. A frame of
	// at least HEADERS_KEYED bytes whose linear part is shorter is paged; a
	// shorter paged frame is left as it is (it misses: exact, only slower).
	if ((void *)(long)skb->data + HEADERS_KEYED > (void *)(long)skb->data_end &&
	    skb->len >= HEADERS_KEYED)
		bpf_skb_pull_data(skb, HEADERS_KEYED);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return to_slow_path(skb, conf->port); // the pipeline counts and drops it
	// Most ports have no host addresses: no lookup for them.
	if ((conf->flags & PORT_HOST) && is_for_host(skb, eth, data_end))
		return TC_ACT_OK;
	if (!(conf->flags & PORT_FAST))
		return to_slow_path(skb, conf->port);

	struct flow_key key = {};
	key.port = conf->port;
	if (skb->vlan_present) {
		// Only 802.1Q tags are keyed; the pipeline reads an 802.1ad outer tag
		// its own way.
		if (skb->vlan_proto != bpf_htons(ETH_P_8021Q_))
			return to_slow_path(skb, conf->port);
		key.vlan = skb->vlan_tci;
	} else {
		key.vlan = UNTAGGED;
	}
	__u16 ethertype = eth->h_proto;
	// A tag still in the data (a second tag): the slow path.
	if (ethertype == bpf_htons(ETH_P_8021Q_) || ethertype == bpf_htons(ETH_P_8021AD))
		return to_slow_path(skb, conf->port);
	if (guarded_by_pipeline(eth + 1, data_end, ethertype))
		return to_slow_path(skb, conf->port);
	__builtin_memcpy(key.dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(key.src, eth->h_source, ETH_ALEN);
	struct flow_entry *entry;
	if (conf->flags & PORT_L3) {
		key.width = WIDTH_L3;
		if (!key_l3(&key, eth + 1, data_end, ethertype, skb->len - sizeof(*eth),
			    skb->gso_size != 0))
			return to_slow_path(skb, conf->port);
		entry = bpf_map_lookup_elem(&flows, &key);
	} else {
		// The map reads the key's first 16 bytes: the struct flow_key_l2.
		entry = bpf_map_lookup_elem(&flows_l2, &key);
	}
	if (!entry)
		return to_slow_path(skb, conf->port);
	__u32 zero = 0;
	__u64 *current = bpf_map_lookup_elem(&gen, &zero);
	if (!current || entry->generation != *current)
		return to_slow_path(skb, conf->port);
	// Entries to a static MAC and drop entries never expire: no clock read
	// (it showed in the profile; the comparison could not fail anyway).
	if (entry->expires_ns != NEVER_EXPIRES && bpf_ktime_get_ns() >= entry->expires_ns)
		return to_slow_path(skb, conf->port);

	// A GSO packet is gso_segs frames on the wire (its bytes: one header).
	__u32 segments = skb->gso_segs;
	entry->packets += segments > 1 ? segments : 1;
	entry->bytes += skb->len;
	__u32 egress = entry->egress_ifindex;
	__u8 action = entry->action;
	if (action == FLOW_DROP)
		return TC_ACT_SHOT;
	// The entry pointer is not used after this: a helper that changes the
	// packet invalidates packet pointers (not map values), but keep it simple.
	if (apply_tag(skb, entry))
		return TC_ACT_SHOT;
	if (action == FLOW_REDIRECT_PEER)
		return bpf_redirect_peer(egress, 0);
	return bpf_redirect(egress, 0);
}

// xdp.frags: the program reads only the linear part (the tag and the MACs,
// always there), so it may see multi-buffer frames, which lets the device
// carry an MTU above a page.
SEC("xdp.frags")
int xsw_slow_path(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) + 4 > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_8021Q_))
		return XDP_DROP; // only xsw_port_ingress sends here
	__u16 tci = bpf_ntohs(*(__be16 *)(eth + 1));
	__u32 port = tci & 0x0fff;

	// Pop the tag: move the MACs over it, then drop its 4 bytes.
	__u8 macs[12];
	__builtin_memcpy(macs, data, 12);
	if (bpf_xdp_adjust_head(ctx, 4))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + 12 > data_end)
		return XDP_DROP;
	__builtin_memcpy(data, macs, 12);

	if (bpf_xdp_adjust_meta(ctx, -4))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	void *meta = (void *)(long)ctx->data_meta;
	if (meta + 4 > data)
		return XDP_DROP;
	*(__u32 *)meta = port;
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_DROP);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
