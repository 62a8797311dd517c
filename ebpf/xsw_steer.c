// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// xsw's XDP program: one instance per switch-owned interface.
//
// Stages, in order (each one either decides or falls through):
//   1. host:  frames the host itself must keep seeing (its own MAC, the
//             solicited-node multicast MACs of its IPv6 addresses, ARP
//             requests for its IPv4 addresses) go to the kernel: XDP_PASS.
//   2. fast:  reserved for the XDP fast path (known unicast flows switched
//             here from a flow table the user-space data plane fills). Not
//             yet present: every frame falls through to stage 3.
//   3. steer: everything else goes to the AF_XDP socket of the frame's rx
//             queue. A queue with no socket (not owned by a worker yet)
//             falls back to the kernel, so the host never loses a frame it
//             would have had without xsw.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xsw_common.h"

// Key: a MAC address in the low 6 bytes of a u64 (byte order as on the
// wire, rest zero). Present means "hand to the kernel".
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
} host_macs SEC(".maps");

// Key: an IPv4 address in network byte order. ARP requests for it are
// handed to the kernel even though they are broadcast.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} host_ipv4 SEC(".maps");

// too_big_config[0]: the longest frame (Ethernet header on) the workers'
// UMEM frames hold; 0 until set. too_big[0], per CPU: frames longer than that,
// dropped here. (At the socket the kernel would drop them all the same, but
// count them only as rx_dropped, with no reason.)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} too_big_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} too_big SEC(".maps");

static __always_inline int is_for_host(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return 0;

	__u64 dst = 0;
	__builtin_memcpy(&dst, eth->h_dest, ETH_ALEN);
	if (bpf_map_lookup_elem(&host_macs, &dst))
		return 1;

	__u32 target = arp_request_target(eth, data_end);
	return target && bpf_map_lookup_elem(&host_ipv4, &target) != 0;
}

// xdp.frags: the program reads only the Ethernet header and an ARP request,
// both in the linear part, so it may see multi-buffer frames: an interface
// with an MTU above a page takes it in native mode. A frame longer than a
// UMEM frame is then counted (too_big) and dropped, not refused at attach.
SEC("xdp.frags")
int xsw_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (is_for_host(data, data_end))
		return XDP_PASS;

	__u32 zero = 0;
	__u32 *longest = bpf_map_lookup_elem(&too_big_config, &zero);
	if (longest && *longest && bpf_xdp_get_buff_len(ctx) > *longest) {
		__u64 *count = bpf_map_lookup_elem(&too_big, &zero);
		if (count)
			*count += 1;
		return XDP_DROP;
	}

	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
