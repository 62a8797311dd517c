// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// The layouts the fast-path programs (xsw_fast.c) share with the Rust data
// plane (switch/src/xdp/fast.rs mirrors every struct here with #[repr(C)];
// a unit test there checks the sizes).
#ifndef XSW_FAST_H
#define XSW_FAST_H

#include <linux/types.h>

// port_conf.flags
#define PORT_FAST 1 // install and use flow entries for frames entering here
#define PORT_L3 2   // the decision reads L3/L4 fields: key them too
#define PORT_HOST 4 // the port has host MACs or host IPv4 addresses: look for them

// flow_key.width
#define WIDTH_L2 1
#define WIDTH_L3 2

// flow_key.vlan when the frame has no tag
#define UNTAGGED 0xffff

// flow_entry.expires_ns of an entry that never expires (u64 max)
#define NEVER_EXPIRES 0xffffffffffffffffULL

// flow_entry.action
#define FLOW_REDIRECT 1      // bpf_redirect to the egress device's transmit
#define FLOW_REDIRECT_PEER 2 // bpf_redirect_peer: straight into a veth peer's ingress
#define FLOW_DROP 3          // the pipeline drops these (vid: user space's drop reason)

// flow_entry.tag_op
#define TAG_KEEP 0
#define TAG_INSERT 1
#define TAG_REMOVE 2
#define TAG_REWRITE 3 // new VID, priority bits kept

// The slow path's tag: a frame missing the flow table leaves for the internal
// device with an 802.1Q tag whose VID is the ingress port id.
#define MAX_PORT_ID 4094

// The slow-path device's MTU (port/slow_path.rs): a longer frame that
// misses (a jumbo frame; not a GSO packet, which the kernel segments) would
// be dropped by the device, so it is counted and dropped here.
#define SLOW_PATH_MTU 3000
// The least a GSO segment carries besides its payload: Ethernet, IPv4, UDP.
#define SLOW_PATH_MIN_HEADERS (14 + 20 + 8)

// The most header bytes the port program reads: Ethernet (14), IPv6 (40),
// a TCP header with options (60), rounded up.
#define HEADERS_KEYED 128

// slow_path keys.
#define SLOW_PATH_IFINDEX 0
#define SLOW_PATH_LONGEST 1

// slow_path_drops keys: port id * 2 + one of these.
#define SLOW_PATH_UNAVAILABLE 0 // no internal device yet, or a tag push failed
#define SLOW_PATH_TOO_BIG 1

struct port_conf {
	__u16 port;
	__u8 flags;
	__u8 pad;
};

// The key of the L2 table (flows_l2): everything an L2-width decision reads.
// 16 bytes, so the map hashes and compares a quarter of what the wide key
// costs (hashing the 64-byte key was the largest item in the fast path's
// profile). It is the first 16 bytes of struct flow_key, field for field.
struct flow_key_l2 {
	__u16 port;
	__u16 vlan; // the whole TCI (priority bits too), or UNTAGGED
	__u8 dst[6];
	__u8 src[6];
};

// The key of the L3 table (flows): every field the pipeline's decision may
// read at L3 width; the rest zero. 64 bytes, hashed whole by the map. Its
// first 16 bytes are a struct flow_key_l2 (the program builds both at once).
struct flow_key {
	__u16 port;
	__u16 vlan; // the whole TCI (priority bits too), or UNTAGGED
	__u8 dst[6];
	__u8 src[6];
	__u8 width;
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u16 ethertype; // WIDTH_L3 only: 0x0800 or 0x86dd
	__u16 sport;
	__u16 dport;
	__u16 pad;
	__u8 src_ip[16]; // IPv4 in the first 4 bytes
	__u8 dst_ip[16];
	__u8 pad2[4];
};

_Static_assert(sizeof(struct flow_key_l2) == 16, "flow_key_l2 is 16 bytes");
_Static_assert(__builtin_offsetof(struct flow_key, width) == sizeof(struct flow_key_l2),
	       "flow_key starts with the fields of flow_key_l2");

// Per CPU: the map is a PERCPU_HASH, so the counters need no atomics. The
// decision fields are the same in every CPU's copy (user space writes them all).
struct flow_entry {
	__u64 packets;
	__u64 bytes;
	__u64 generation; // valid while it equals gen[0]
	__u64 expires_ns; // bpf_ktime_get_ns() deadline: the destination MAC's age limit
	__u32 egress_ifindex;
	__u16 egress_port;
	__u8 action;
	__u8 tag_op;
	__u16 vid; // for TAG_INSERT and TAG_REWRITE
	__u16 domain; // user space's: the tenant, for refreshing the source MAC
	__u16 acl[2]; // user space's: the ACL entries that decided, for hit counters
};

#endif
