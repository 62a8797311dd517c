/* Minimal stand-ins for libbpf's bpf_helpers.h: the benchmark programs need only
 * these few definitions, and defining them here keeps the bench build free of a
 * dependency on libbpf-dev being installed. */
#ifndef XSW_BENCH_BPF_H
#define XSW_BENCH_BPF_H

#include <linux/types.h>
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

/* BTF-defined map attributes, encoded the way libbpf and aya read them. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;
static long (*bpf_xdp_adjust_tail)(struct xdp_md *xdp_md, int delta) = (void *)65;

#endif
