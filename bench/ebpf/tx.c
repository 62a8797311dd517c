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
/* --src-macs K: the source MAC's low 24 bits and the source IPv4 address
 * cycle over K consecutive values from MAC_LOW_BASE and IP_BASE. */
volatile const __u32 SRC_MACS = 1;
volatile const __u32 MAC_LOW_BASE = 0;
volatile const __u32 IP_BASE = 0; /* host byte order */
/* The template's length in memory (no FCS) and, with IMIX, the mix: frame i
 * of each period of IMIX_PERIOD frames is LEN_BIG if bit i of IMIX_BIG_MASK
 * is set, else LEN_MID if bit i of IMIX_MID_MASK is set, else LEN_SMALL.
 * Userspace builds the template at LEN_BIG; smaller frames are cut from it. */
volatile const __u32 IMIX = 0;
volatile const __u32 IMIX_PERIOD = 1;
volatile const __u32 IMIX_MID_MASK = 0;
volatile const __u32 IMIX_BIG_MASK = 0;
volatile const __u32 LEN_SMALL = 60;
volatile const __u32 LEN_MID = 60;
volatile const __u32 LEN_BIG = 60;
/* The one's-complement sum (not folded) of the template's IPv4 header words
 * other than total length, checksum and source address: with it the header
 * checksum of any variant costs three additions and two folds. */
volatile const __u32 IP_SUM_BASE = 0;
/* The template's first 48 bytes (headers, start of payload), written back
 * before every frame: the page is reused for later frames, and a switch on an
 * skb path may edit frames in place (a VLAN tag pushed into the data moves
 * the MACs into the headroom and overwrites bytes 12-15). Without this, such
 * edits would leak into the generator's next frames. */
volatile const __u64 HEADER_0 = 0;
volatile const __u64 HEADER_1 = 0;
volatile const __u64 HEADER_2 = 0;
volatile const __u64 HEADER_3 = 0;
volatile const __u64 HEADER_4 = 0;
volatile const __u64 HEADER_5 = 0;

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
/* The other fields the variants rewrite (frame offsets). */
#define ETH_SRC_LOW_OFF 9 /* the source MAC's low three bytes */
#define IP_TOT_LEN_OFF 16
#define IP_CSUM_OFF 24
#define IP_SRC_OFF 26
#define UDP_LEN_OFF 38

struct tx_state {
	__u64 sent;     /* frames given XDP_TX: the generator's exact count */
	__u64 next_ps;  /* when the next frame is due, ps after ctl.start_ns */
	__u32 next_flow;
	__u32 next_mac;  /* --src-macs: index of the next frame's address */
	__u32 next_imix; /* --imix: position of the next frame in the period */
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

	{
		__u64 *h = (void *)(long)ctx->data;

		if ((void *)(h + 6) > (void *)(long)ctx->data_end)
			return XDP_DROP;
		h[0] = HEADER_0;
		h[1] = HEADER_1;
		h[2] = HEADER_2;
		h[3] = HEADER_3;
		h[4] = HEADER_4;
		h[5] = HEADER_5;
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

	if (IMIX || SRC_MACS > 1) {
		/* Every field is written absolutely: the page keeps what the last
		 * frame built in it wrote (see above). */
		__u32 len = LEN_BIG;
		__u32 ip = IP_BASE;
		__u32 sum;
		__u8 *p;

		if (IMIX) {
			__u32 i = st->next_imix;

			if ((IMIX_BIG_MASK >> i) & 1)
				len = LEN_BIG;
			else if ((IMIX_MID_MASK >> i) & 1)
				len = LEN_MID;
			else
				len = LEN_SMALL;
			/* The kernel restores data_end before each frame (reset_ctx in
			 * net/bpf/test_run.c; checked on 6.18: a sink sees exactly the
			 * IMIX mean), so the cut is from the full template every time. */
			if (len < LEN_BIG && bpf_xdp_adjust_tail(ctx, (int)len - (int)LEN_BIG))
				return XDP_DROP;
			st->next_imix = i + 1 >= IMIX_PERIOD ? 0 : i + 1;
		}
		p = (void *)(long)ctx->data;
		if ((void *)(p + PAYLOAD_OFF) > (void *)(long)ctx->data_end)
			return XDP_DROP;
		if (SRC_MACS > 1) {
			__u32 k = st->next_mac;
			__u32 mac = MAC_LOW_BASE + k;

			st->next_mac = k + 1 >= SRC_MACS ? 0 : k + 1;
			p[ETH_SRC_LOW_OFF] = mac >> 16;
			p[ETH_SRC_LOW_OFF + 1] = mac >> 8;
			p[ETH_SRC_LOW_OFF + 2] = mac;
			ip += k;
			*(__u16 *)(p + IP_SRC_OFF) = __builtin_bswap16(ip >> 16);
			*(__u16 *)(p + IP_SRC_OFF + 2) = __builtin_bswap16(ip);
		}
		if (IMIX) {
			*(__u16 *)(p + IP_TOT_LEN_OFF) = __builtin_bswap16(len - 14);
			*(__u16 *)(p + UDP_LEN_OFF) = __builtin_bswap16(len - 34);
		}
		sum = IP_SUM_BASE + (len - 14) + (ip >> 16) + (ip & 0xffff);
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		*(__u16 *)(p + IP_CSUM_OFF) = __builtin_bswap16(~sum);
		/* The UDP checksum is 0 ("none") whenever IMIX or SRC_MACS is on. */
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
