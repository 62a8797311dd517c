/* Upper bound for a switch between two ports: no lookup, no copy, each frame
 * goes straight to the other port through a DEVMAP_HASH keyed by the ingress
 * ifindex (userspace stores a -> b and b -> a). */
#include "bench_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	/* The kernel's devmap value layout, which aya writes when the kernel
	 * supports per-entry programs (any kernel this runs on). */
	__type(value, struct bpf_devmap_val);
} FWD_PORTS SEC(".maps");

SEC("xdp")
int xsw_bench_redirect(struct xdp_md *ctx)
{
	/* Unknown ingress gives XDP_ABORTED, visible in xdp:xdp_exception,
	 * rather than silently passing frames to the stack. */
	return bpf_redirect_map(&FWD_PORTS, ctx->ingress_ifindex, XDP_ABORTED);
}

char _license[] SEC("license") = "GPL";
