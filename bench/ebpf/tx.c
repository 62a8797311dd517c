/* Generator program for BPF_PROG_RUN in live-frames mode: every frame the
 * kernel builds from the template is sent out of the ctx's ingress device.
 * In live mode the kernel turns XDP_TX into a redirect to that same device,
 * i.e. the device's ndo_xdp_xmit, which for a veth hands it to the peer.
 *
 * Frames that must not go out (count reached, stop requested, not yet due
 * under --rate) get XDP_DROP, which in live mode only recycles the page: a
 * BPF_PROG_RUN call cannot be cut short cheaply (each call costs tens of ms
 * of set-up and teardown), so limits and pacing live here, per frame.
 *
 * Userspace runs this from two threads pinned to ONE CPU (see gen.rs): each
 * batch runs with bottom halves disabled, so runs never overlap and the
 * plain, non-atomic updates of TX_STATE below are safe. */
#include "bench_bpf.h"

/* Set by the loader before load; the verifier sees them as constants, so the
 * features that are off cost nothing per frame. */
volatile const __u32 FLOWS = 1;
volatile const __u16 BASE_SRC_PORT = 9;
volatile const __u64 LIMIT = 0;       /* frames to send; 0 = no limit */
volatile const __u64 INTERVAL_PS = 0; /* picoseconds between frames; 0 = unpaced */
volatile const __u32 STAMP = 0;       /* write seq + send time into each payload */

/* After a stall (the generator preempted), at most this many frames go out
 * back to back to catch up; older debt is forgiven so a stall does not turn
 * into a long full-speed burst. */
#define MAX_BURST 64

/* Ethernet (14) + IPv4 without options (20): where the UDP source port sits
 * in the template that userspace builds. */
#define UDP_SRC_PORT_OFF 34
/* + UDP (8): where the payload starts. With STAMP, the payload begins with
 * the frame's sequence number and its send time (CLOCK_MONOTONIC ns), both
 * 64-bit big-endian; `xsw-bench sink --measure` reads them (see sink_measure.c). */
#define PAYLOAD_OFF 42

struct tx_state {
	__u64 sent;     /* frames given XDP_TX: the generator's exact count */
	__u64 next_ps;  /* when the next frame is due, ps after ctl.start_ns */
	__u32 next_flow;
	__u32 pad;
};

/* Written by userspace only; kept apart from tx_state so that writing it
 * cannot overwrite the counters the program is updating. */
struct tx_ctl {
	__u64 start_ns; /* CLOCK_MONOTONIC (= bpf_ktime_get_ns) at start */
	__u32 stop;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tx_state);
} TX_STATE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tx_ctl);
} TX_CTL SEC(".maps");

SEC("xdp")
int xsw_bench_tx(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct tx_state *st = bpf_map_lookup_elem(&TX_STATE, &key);
	struct tx_ctl *ctl = bpf_map_lookup_elem(&TX_CTL, &key);

	if (!st || !ctl || ctl->stop)
		return XDP_DROP;
	if (LIMIT && st->sent >= LIMIT)
		return XDP_DROP;

	if (INTERVAL_PS) {
		__u64 now = bpf_ktime_get_ns();
		__u64 now_ps = now > ctl->start_ns ? (now - ctl->start_ns) * 1000 : 0;

		if (now_ps < st->next_ps)
			return XDP_DROP;
		if (now_ps - st->next_ps > MAX_BURST * INTERVAL_PS)
			st->next_ps = now_ps - MAX_BURST * INTERVAL_PS;
		st->next_ps += INTERVAL_PS;
	}

	if (FLOWS > 1) {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		__u16 *sport = data + UDP_SRC_PORT_OFF;
		__u32 f = st->next_flow;

		if ((void *)(sport + 1) > data_end)
			return XDP_DROP;
		st->next_flow = f + 1 >= FLOWS ? 0 : f + 1;
		/* The page keeps what the last run wrote (the kernel restores only
		 * the frame pointers between runs), so set the port absolutely. The
		 * template's UDP checksum is 0 ("none") whenever FLOWS > 1. */
		*sport = __builtin_bswap16((__u16)(BASE_SRC_PORT + f));
	}

	if (STAMP) {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		__u64 *p = data + PAYLOAD_OFF;

		if ((void *)(p + 2) > data_end)
			return XDP_DROP;
		/* The sequence number is the exact count of frames sent before this
		 * one (tx_state is only touched from one CPU, see above), so the
		 * sink sees 0, 1, 2, ... with no gaps unless frames were lost. The
		 * template's UDP checksum is 0 ("none") whenever STAMP is set. */
		p[0] = __builtin_bswap64(st->sent);
		p[1] = __builtin_bswap64(bpf_ktime_get_ns());
	}

	st->sent++;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
