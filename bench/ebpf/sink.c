/* Sink: counts frames and bytes per CPU and drops them, so the measurement
 * sees what reached the interface, not what the host stack could digest. */
#include "bench_bpf.h"

struct counters {
	__u64 frames;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} SINK_COUNTERS SEC(".maps");

SEC("xdp")
int xsw_bench_sink(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct counters *c = bpf_map_lookup_elem(&SINK_COUNTERS, &key);

	if (c) {
		/* Per-CPU slot: plain increments are safe, no atomics needed. */
		c->frames++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
