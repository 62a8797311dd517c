// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// What xsw's two BPF objects (xsw_steer.c, xsw_fast.c) share: the AF_XDP
// socket map each steers into (one instance per object), and ARP parsing for
// the host stage, which both run before anything else.
#ifndef XSW_COMMON_H
#define XSW_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Rx queues an object's sockets may sit on (XSKMAP key: the rx queue index).
#define MAX_QUEUES 256

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// ARP opcodes; linux/if_arp.h drags in libc headers that do not build for BPF.
#define ARPOP_REQUEST 1

struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

// The target address of an IPv4 ARP request in an untagged frame, in
// network byte order, or 0 when the frame is not one.
static __always_inline __u32 arp_request_target(struct ethhdr *eth, void *data_end)
{
	if (eth->h_proto != bpf_htons(ETH_P_ARP))
		return 0;
	struct arp_ipv4 *arp = (void *)(eth + 1);
	if ((void *)(arp + 1) > data_end)
		return 0;
	if (arp->oper != bpf_htons(ARPOP_REQUEST))
		return 0;
	return arp->tpa;
}

#endif
