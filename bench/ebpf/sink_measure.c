/* Measuring sink (`xsw-bench sink --measure`): for every stamped frame from
 * `xsw-bench gen --stamp` it reads the sequence number and send time from the
 * UDP payload, takes the receive time (bpf_ktime_get_ns = CLOCK_MONOTONIC,
 * the clock the generator stamped with: both run on this host), and hands
 * the three numbers to userspace through a ring buffer. Userspace builds the
 * latency histogram and the loss/reordering/duplicate counts (measure.rs,
 * stats.rs).
 *
 * Every frame is then dropped. Frames that are not stamped test frames are
 * counted as `other`; frames for which the ring had no room are counted as
 * `overflow` (userspace fell behind: the sink's own ceiling, reported). */
#include "bench_bpf.h"

static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *)130;
#define BPF_RB_NO_WAKEUP 1

/* The UDP destination port of the test flow (network order compared below). */
volatile const __u16 DST_PORT = 9;

/* Ethernet (14) + IPv4 without options (20) + UDP (8). */
#define PAYLOAD_OFF 42
/* After seq and timestamp, gen's template carries this marker (frame.rs). */
#define MAGIC_OFF (PAYLOAD_OFF + 16)
#define MAGIC 0xb55b

struct sample {
	__u64 seq;
	__u64 sent_ns;
	__u64 recv_ns;
};

struct measure_counters {
	__u64 frames;   /* stamped frames seen */
	__u64 overflow; /* stamped frames not passed on: ring full */
	__u64 other;    /* anything else (ARP, unstamped frames) */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} SAMPLES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct measure_counters);
} MEASURE_COUNTERS SEC(".maps");

SEC("xdp")
int xsw_bench_sink_measure(struct xdp_md *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *b = data;
	__u32 key = 0;
	struct measure_counters *c = bpf_map_lookup_elem(&MEASURE_COUNTERS, &key);
	struct sample s;

	if (!c)
		return XDP_DROP;
	if (data + MAGIC_OFF + 2 > data_end)
		goto other;
	/* IPv4 (0x0800), no IP options (0x45), UDP (17), our port, our marker. */
	if (b[12] != 0x08 || b[13] != 0x00 || b[14] != 0x45 || b[23] != 17)
		goto other;
	if (((__u16)b[36] << 8 | b[37]) != DST_PORT)
		goto other;
	if (((__u16)b[MAGIC_OFF] << 8 | b[MAGIC_OFF + 1]) != MAGIC)
		goto other;

	s.seq = __builtin_bswap64(*(__u64 *)(b + PAYLOAD_OFF));
	s.sent_ns = __builtin_bswap64(*(__u64 *)(b + PAYLOAD_OFF + 8));
	s.recv_ns = now;
	c->frames++;
	/* No wakeup: userspace polls, and a wakeup per frame would cost more
	 * than the rest of this program. */
	if (bpf_ringbuf_output(&SAMPLES, &s, sizeof(s), BPF_RB_NO_WAKEUP))
		c->overflow++;
	return XDP_DROP;
other:
	c->other++;
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
