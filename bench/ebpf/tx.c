/* Generator program for BPF_PROG_RUN in live-frames mode: every frame the
 * kernel builds from the template is sent out of the ctx's ingress device.
 * In live mode the kernel turns XDP_TX into a redirect to that same device,
 * i.e. the device's ndo_xdp_xmit, which for a veth hands it to the peer. */
#include "bench_bpf.h"

/* Set by the loader before load; the verifier sees them as constants, so with
 * one flow the rewrite below is dead code and costs nothing per frame. */
volatile const __u32 FLOWS = 1;
volatile const __u16 BASE_SRC_PORT = 9;

/* Not atomic on purpose: the generator runs on one thread, so one CPU. */
__u32 next_flow = 0;

/* Ethernet (14) + IPv4 without options (20): where the UDP source port sits in
 * the template that userspace builds. */
#define UDP_SRC_PORT_OFF 34

SEC("xdp")
int xsw_bench_tx(struct xdp_md *ctx)
{
	if (FLOWS > 1) {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		__u16 *sport = data + UDP_SRC_PORT_OFF;
		__u32 f = next_flow;

		if ((void *)(sport + 1) > data_end)
			return XDP_TX;
		next_flow = f + 1 >= FLOWS ? 0 : f + 1;
		/* The page keeps what the last run wrote (the kernel restores only
		 * the frame pointers between runs), so set the port absolutely. The
		 * template's UDP checksum is 0 ("none") whenever FLOWS > 1. */
		*sport = __builtin_bswap16((__u16)(BASE_SRC_PORT + f));
	}
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
