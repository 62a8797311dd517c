/* Steers every frame of an interface into the AF_XDP socket bound to the
 * frame's receive queue (`xsw-bench afxdp-fwd`). One copy of this program and
 * its map is loaded per interface: with one map shared by two interfaces,
 * both sockets would want key 0 (queue 0) and the second would take every
 * frame of the first. A queue without a socket falls back to the kernel. */
#include "bench_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} XSKS SEC(".maps");

SEC("xdp")
int xsw_bench_xsk_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&XSKS, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
