#!/usr/bin/env bash
# Port-to-port forwarding benchmark: 64-byte UDP frames/s from one veth port
# to another through (a) the Linux bridge, (b) xsw, (c) a bare XDP DEVMAP
# forwarder (upper bound), and (d) no switch at all (the generator's ceiling).
#
#   sudo bench/port-to-port.sh [DURATION]     # seconds measured per system, default 10
#
# Environment (optional):
#   DURATION=10   seconds measured per system (the first extra second is warm-up)
#   SIZE=64       frame size on the wire, FCS included (64..1518)
#   GEN_CPU=0     core of the generator; the ingress veth's receive work runs there too
#   SWITCH_CPU=1  core given to xsw's one worker
#   ONLY="bridge xsw xdp direct"   subset and order of the systems to run
#   REBUILD=1     run cargo build even when the binaries exist
#   LAT_DURATION=5  seconds of the latency run per system (0 = no latency runs)
#   LAT_RATE=N    frames/s of the latency runs (default: half the bridge's measured
#                 frames/s when the bridge runs first, as in the default ONLY; else 100000)
#   XSWD, XSWCTL, XSW_BENCH   binaries to use instead of target/release/*
#   KEEP_LOGS=1   keep the per-run logs (sink per-second rates, xswd log) and print where
#
# Topology (three network namespaces, created here and removed on exit):
#
#   [gen]  g-sw ----veth---- sw-g  [switch]  sw-s ----veth---- s-sw  [sink]
#   [gen]  g-direct ---------------veth----------------- s-direct  [sink]
#
# Traffic stays inside these namespaces: 198.18.0.0/15 addresses and 02:b5:*
# (locally administered) MACs. Every run stops by itself and the trap removes
# namespaces and processes, also on error or Ctrl-C.
set -euo pipefail

DURATION=${1:-${DURATION:-10}}
SIZE=${SIZE:-64}
GEN_CPU=${GEN_CPU:-0}
SWITCH_CPU=${SWITCH_CPU:-1}
ONLY=${ONLY:-"bridge xsw xdp direct"}
WARMUP=1
LAT_DURATION=${LAT_DURATION:-5}
LAT_RATE=${LAT_RATE:-}

die() { echo "error: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }

[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 1 && DURATION <= 3600)) ||
  die "DURATION must be whole seconds, 1..3600 (got '$DURATION')"
[[ $LAT_DURATION =~ ^[0-9]+$ ]] && ((LAT_DURATION <= 3600)) ||
  die "LAT_DURATION must be whole seconds, 0..3600 (got '$LAT_DURATION')"
[[ -z $LAT_RATE || ($LAT_RATE =~ ^[0-9]+$ && $LAT_RATE -ge 1) ]] ||
  die "LAT_RATE must be a whole number of frames/s, at least 1 (got '$LAT_RATE')"
((EUID == 0)) || die "run as root: it creates network namespaces and attaches XDP programs (sudo $0)"
for tool in ip bridge ethtool awk sed; do
  command -v "$tool" >/dev/null || die "$tool not found: run deploy/install-deps.sh"
done
ncpu=$(nproc)
((GEN_CPU < ncpu && SWITCH_CPU < ncpu)) || die "GEN_CPU/SWITCH_CPU must be below the number of CPUs ($ncpu)"
((GEN_CPU != SWITCH_CPU)) || note "warning: GEN_CPU = SWITCH_CPU: generator and switch share one core"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
BENCH=${XSW_BENCH:-$BIN/xsw-bench} XSWD=${XSWD:-$BIN/xswd} XSWCTL=${XSWCTL:-$BIN/xswctl}

TMP=$(mktemp -d /tmp/xsw-p2p.XXXXXX)
TAG=$$
NS_GEN=xswb-gen-$TAG NS_SW=xswb-sw-$TAG NS_SINK=xswb-sink-$TAG
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    # xswd gets a few seconds to detach cleanly; then it is killed.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for ns in "$NS_GEN" "$NS_SW" "$NS_SINK"; do ip netns del "$ns" 2>/dev/null || true; done
  if ((rc != 0)) || [[ ${KEEP_LOGS:-0} == 1 ]]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# reap PID: wait for a process we started and forget it, so the cleanup never
# signals a PID the system may since have given to someone else.
reap() {
  wait "$1" 2>/dev/null || true
  local p keep=()
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# --- binaries ---------------------------------------------------------------
build() { # build PACKAGE: cargo build, output to a log; returns cargo's status
  note "building $1 (cargo build --release -p $1)"
  (cd "$ROOT" && cargo build --release -p "$1") >"$TMP/build-$1.log" 2>&1
}
command -v cargo >/dev/null || [[ -x $BENCH ]] || die "cargo not found and $BENCH missing: install Rust (https://rustup.rs)"
if [[ ! -x $BENCH || ${REBUILD:-0} == 1 ]]; then
  build xsw-bench || { tail -20 "$TMP/build-xsw-bench.log" >&2; die "building xsw-bench failed (log above)"; }
fi
XSW_SKIP=""
if [[ " $ONLY " == *" xsw "* ]] && [[ ! -x $XSWD || ! -x $XSWCTL || ${REBUILD:-0} == 1 ]]; then
  if ! build xsw; then
    XSW_SKIP="xswd not built: cargo build --release -p xsw failed ($(grep -m1 '^error' "$TMP/build-xsw.log" || echo 'see log'))"
  fi
  [[ -x $XSWD && -x $XSWCTL ]] || XSW_SKIP=${XSW_SKIP:-"xswd/xswctl not found in $BIN after the build"}
fi

# Everything else running on the machine shares the cores and shows up in the
# CPU column, so look for it before starting.
busy_cores() { # busy cores, averaged over one second, from /proc/stat
  local a b
  read -ra a < <(head -1 /proc/stat)
  sleep 1
  read -ra b < <(head -1 /proc/stat)
  awk -v hz="$(getconf CLK_TCK)" -v a="${a[*]:1:8}" -v b="${b[*]:1:8}" 'BEGIN {
    split(a, x); split(b, y); t = 0
    for (i = 1; i <= 8; i++) t += y[i] - x[i]
    printf "%.2f", (t - (y[4] - x[4]) - (y[5] - x[5])) / hz }'
}
busy=$(busy_cores)
if awk -v b="$busy" 'BEGIN { exit !(b > 0.2) }'; then
  note "warning: $busy of $ncpu cores are busy with other work before the start: numbers will be low and noisy"
fi

# --- topology ---------------------------------------------------------------
MAC_G_SW=02:b5:00:00:01:01 MAC_G_DIRECT=02:b5:00:00:01:02
MAC_S_SW=02:b5:00:00:02:01 MAC_S_DIRECT=02:b5:00:00:02:02
MAC_SW_G=02:b5:00:00:03:01 MAC_SW_S=02:b5:00:00:03:02

for ns in "$NS_GEN" "$NS_SW" "$NS_SINK"; do
  ip netns add "$ns"
  # No IPv6: its router and neighbour solicitations would be extra frames.
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add g-sw netns "$NS_GEN" address $MAC_G_SW type veth peer name sw-g netns "$NS_SW" address $MAC_SW_G
ip link add sw-s netns "$NS_SW" address $MAC_SW_S type veth peer name s-sw netns "$NS_SINK" address $MAC_S_SW
ip link add g-direct netns "$NS_GEN" address $MAC_G_DIRECT type veth peer name s-direct netns "$NS_SINK" address $MAC_S_DIRECT
ip -n "$NS_GEN" addr add 198.18.0.1/24 dev g-sw
ip -n "$NS_SINK" addr add 198.18.0.2/24 dev s-sw
ip -n "$NS_GEN" addr add 198.18.1.1/24 dev g-direct
ip -n "$NS_SINK" addr add 198.18.1.2/24 dev s-direct
for l in g-sw g-direct; do ip -n "$NS_GEN" link set "$l" up; done
for l in sw-g sw-s; do ip -n "$NS_SW" link set "$l" up; done
for l in s-sw s-direct; do ip -n "$NS_SINK" link set "$l" up; done

# --- one measurement ----------------------------------------------------------
# Results, by system name.
declare -A FPS CPUNS OFFERED SINKCPU STATUS
declare -A LAT LSTATUS # LAT[name]="fps lost reordered p50 p90 p99 p99_9 max" (ns)
wait_xdp() { # wait_xdp NS IFACE: until an XDP program is on IFACE (max 5 s)
  for _ in $(seq 50); do
    ip -n "$1" link show "$2" | grep -q ' xdp' && return 0
    sleep 0.1
  done
  return 1
}
json_num() { # json_num FILE KEY
  sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"
}

# measure NAME GEN_IF SINK_IF DST_MAC SRC_MAC DST_IP
measure() {
  local name=$1 gen_if=$2 sink_if=$3 dst_mac=$4 src_mac=$5 dst_ip=$6 sink_pid gen_pid
  note "$name: measuring $((DURATION)) s (+${WARMUP} s warm-up)"
  ip netns exec "$NS_SINK" "$BENCH" sink --iface "$sink_if" --duration $((DURATION + WARMUP)) \
    --warmup $WARMUP --json >"$TMP/$name.sink.json" 2>"$TMP/$name.sink.log" &
  sink_pid=$!
  PIDS+=("$sink_pid")
  if ! wait_xdp "$NS_SINK" "$sink_if"; then
    kill -TERM "$sink_pid" 2>/dev/null || true
    reap "$sink_pid"
    STATUS[$name]="failed: the sink did not attach: $(tail -1 "$TMP/$name.sink.log")"
    return 0
  fi
  # Longer than the sink: the generator is stopped by signal once the sink is done.
  ip netns exec "$NS_GEN" "$BENCH" gen --iface "$gen_if" --size "$SIZE" --duration $((DURATION + WARMUP + 30)) \
    --cpu "$GEN_CPU" --src-mac "$src_mac" --dst-mac "$dst_mac" --dst-ip "$dst_ip" \
    --json >"$TMP/$name.gen.json" 2>"$TMP/$name.gen.log" &
  gen_pid=$!
  PIDS+=("$gen_pid")
  reap "$sink_pid"
  kill -INT "$gen_pid" 2>/dev/null || true
  reap "$gen_pid"

  FPS[$name]=$(json_num "$TMP/$name.sink.json" frames_per_sec)
  CPUNS[$name]=$(json_num "$TMP/$name.sink.json" cpu_ns_per_frame)
  OFFERED[$name]=$(json_num "$TMP/$name.gen.json" frames_per_sec)
  # {"0":99.9,"1":0.1} -> "0" when one CPU did (nearly) all, else "0:60% 1:40%"
  SINKCPU[$name]=$(sed -n 's/.*"frames_pct_by_cpu":{\([^}]*\)}.*/\1/p' "$TMP/$name.sink.json" |
    awk -F, '{ for (i = 1; i <= NF; i++) { split($i, kv, ":"); gsub(/"/, "", kv[1])
                 if (kv[2] >= 95) one = kv[1]; out = out sprintf("%s%s:%.0f%%", i > 1 ? " " : "", kv[1], kv[2]) } }
               END { print (one != "" ? one : out) }')
  if [[ -z ${FPS[$name]} ]]; then
    STATUS[$name]="failed: no result from the sink: $(tail -1 "$TMP/$name.sink.log")"
  elif [[ -z ${OFFERED[$name]} ]]; then
    STATUS[$name]="failed: the generator failed: $(tail -1 "$TMP/$name.gen.log")"
  elif [[ ${FPS[$name]} == 0 ]]; then
    STATUS[$name]="failed: no frames reached the sink (generator sent ${OFFERED[$name]} frames/s)"
  else
    STATUS[$name]=ok
  fi
  note "$name: ${FPS[$name]:-?} frames/s at the sink, ${OFFERED[$name]:-?} frames/s offered"
}

# latency NAME GEN_IF SINK_IF DST_MAC SRC_MAC DST_IP: stamped frames at a fixed
# rate (LAT_RATE), measured by `sink --measure`: loss, reordering, latency.
latency() {
  local name=$1 gen_if=$2 sink_if=$3 dst_mac=$4 src_mac=$5 dst_ip=$6 sink_pid gen_pid f k v
  ((LAT_DURATION > 0)) || return 0
  if [[ -z $LAT_RATE ]]; then
    if [[ ${STATUS[bridge]:-} == ok ]]; then
      LAT_RATE=$(awk -v f="${FPS[bridge]}" 'BEGIN { r = int(f / 2); print (r >= 1 ? r : 1) }')
    else
      LAT_RATE=100000
    fi
  fi
  f=$TMP/$name.lat
  note "$name: latency at $LAT_RATE frames/s for $LAT_DURATION s (+${WARMUP} s warm-up)"
  ip netns exec "$NS_SINK" "$BENCH" sink --measure --iface "$sink_if" --duration $((LAT_DURATION + WARMUP)) \
    --warmup $WARMUP --json >"$f.sink.json" 2>"$f.sink.log" &
  sink_pid=$!
  PIDS+=("$sink_pid")
  if ! wait_xdp "$NS_SINK" "$sink_if"; then
    kill -TERM "$sink_pid" 2>/dev/null || true
    reap "$sink_pid"
    LSTATUS[$name]="failed: the measuring sink did not attach: $(tail -1 "$f.sink.log")"
    return 0
  fi
  ip netns exec "$NS_GEN" "$BENCH" gen --stamp --rate "$LAT_RATE" --iface "$gen_if" --size "$SIZE" \
    --duration $((LAT_DURATION + WARMUP + 30)) --cpu "$GEN_CPU" --src-mac "$src_mac" --dst-mac "$dst_mac" \
    --dst-ip "$dst_ip" --json >"$f.gen.json" 2>"$f.gen.log" &
  gen_pid=$!
  PIDS+=("$gen_pid")
  reap "$sink_pid"
  kill -INT "$gen_pid" 2>/dev/null || true
  reap "$gen_pid"
  LAT[$name]=""
  for k in frames_per_sec lost reordered p50 p90 p99 p99_9 max; do
    v=$(json_num "$f.sink.json" "$k")
    if [[ -z $v ]]; then
      LSTATUS[$name]="failed: no result from the measuring sink: $(tail -1 "$f.sink.log")"
      return 0
    fi
    LAT[$name]+="$v "
  done
  if [[ $(json_num "$f.sink.json" frames) == 0 ]]; then
    LSTATUS[$name]="failed: no stamped frames reached the sink ($(tail -1 "$f.gen.log"))"
  else
    LSTATUS[$name]=ok
  fi
  v=$(json_num "$f.sink.json" ring_overflow)
  [[ -z $v || $v == 0 ]] || note "warning: $name: the measuring sink's ring overflowed ($v frames): its loss includes them"
}

# --- the systems --------------------------------------------------------------
run_direct() {
  measure direct g-direct s-direct $MAC_S_DIRECT $MAC_G_DIRECT 198.18.1.2
  latency direct g-direct s-direct $MAC_S_DIRECT $MAC_G_DIRECT 198.18.1.2
}

run_bridge() {
  ip -n "$NS_SW" link add br0 type bridge
  ip -n "$NS_SW" link set sw-g master br0
  ip -n "$NS_SW" link set sw-s master br0
  ip -n "$NS_SW" link set br0 up
  # Known unicast, like the static FDB entry xsw gets.
  ip netns exec "$NS_SW" bridge fdb add $MAC_S_SW dev sw-s master static
  # The generator's XDP frames are only accepted by a veth whose peer runs
  # NAPI: with no XDP program on sw-g, GRO switches NAPI on.
  ip netns exec "$NS_SW" ethtool -K sw-g gro on >/dev/null
  measure bridge g-sw s-sw $MAC_S_SW $MAC_G_SW 198.18.0.2
  latency bridge g-sw s-sw $MAC_S_SW $MAC_G_SW 198.18.0.2
  ip netns exec "$NS_SW" ethtool -K sw-g gro off >/dev/null
  ip -n "$NS_SW" link del br0
}

run_xdp() {
  local pid
  ip netns exec "$NS_SW" "$BENCH" fwd --a sw-g --b sw-s --duration $((DURATION + WARMUP + 60)) \
    2>"$TMP/xdp.fwd.log" &
  pid=$!
  PIDS+=("$pid")
  if wait_xdp "$NS_SW" sw-g && wait_xdp "$NS_SW" sw-s; then
    measure xdp g-sw s-sw $MAC_S_SW $MAC_G_SW 198.18.0.2
    latency xdp g-sw s-sw $MAC_S_SW $MAC_G_SW 198.18.0.2
  else
    STATUS[xdp]="failed: the XDP forwarder did not attach: $(tail -1 "$TMP/xdp.fwd.log")"
  fi
  kill -TERM "$pid" 2>/dev/null || true
  reap "$pid"
}

xswctl() { "$XSWCTL" --socket "$TMP/xsw.sock" "$@"; }

run_xsw() {
  if [[ -n $XSW_SKIP ]]; then
    STATUS[xsw]="skipped: $XSW_SKIP"
    return 0
  fi
  local pid out
  # One worker on the switch core; the ingress veth's receive work (and the
  # XDP program steering frames to the AF_XDP socket) stays on the
  # generator's core, like a NIC interrupt on another core.
  printf '[dataplane]\nworkers = [%s]\n' "$SWITCH_CPU" >"$TMP/xsw.toml"
  ip netns exec "$NS_SW" "$XSWD" --socket "$TMP/xsw.sock" --config "$TMP/xsw.toml" 2>"$TMP/xswd.log" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do
    [[ -S $TMP/xsw.sock ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    STATUS[xsw]="failed: xswd exited at start: $(tail -1 "$TMP/xswd.log")"
  elif [[ ! -S $TMP/xsw.sock ]]; then
    STATUS[xsw]="failed: xswd did not create its socket within 10 s: $(tail -1 "$TMP/xswd.log")"
  elif ! out=$(xswctl port add sw-g 2>&1 && xswctl port add sw-s 2>&1 && xswctl fdb add $MAC_S_SW sw-s 2>&1); then
    STATUS[xsw]="failed: xswctl refused the set-up: $(echo "$out" | tail -1)"
  else
    measure xsw g-sw s-sw $MAC_S_SW $MAC_G_SW 198.18.0.2
    xswctl stats >"$TMP/xsw.stats" 2>&1 || true
    latency xsw g-sw s-sw $MAC_S_SW $MAC_G_SW 198.18.0.2
    if [[ ${STATUS[xsw]} != ok ]]; then
      STATUS[xsw]+=" (xswd log: $(tail -1 "$TMP/xswd.log"))"
    fi
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    note "warning: xswd did not exit within 5 s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  reap "$pid"
}

declare -A DESC=(
  [bridge]="Linux bridge"
  [xsw]="xsw (1 worker on CPU $SWITCH_CPU)"
  [xdp]="bare XDP DEVMAP redirect"
  [direct]="no switch: gen -> sink"
)
for sys in $ONLY; do
  [[ -n ${DESC[$sys]:-} ]] || die "unknown system '$sys' in ONLY (use: bridge xsw xdp direct)"
  "run_$sys"
done

# --- report -------------------------------------------------------------------
echo
echo "port-to-port, $SIZE-byte frames, ${DURATION} s per system, generator on CPU $GEN_CPU, $ncpu CPUs, kernel $(uname -r)"
printf '%-34s %12s %9s %13s %12s  %s\n' system frames/s vs-bridge "CPU ns/frame" "offered/s" "sink rx on CPU"
bridge=${FPS[bridge]:-}
[[ ${STATUS[bridge]:-} == ok ]] || bridge=""
for sys in $ONLY; do
  if [[ ${STATUS[$sys]:-} == ok ]]; then
    ratio=-
    [[ -n $bridge ]] && ratio=$(awk -v a="${FPS[$sys]}" -v b="$bridge" 'BEGIN { printf "%.2f", a / b }')
    printf '%-34s %12.0f %9s %13.0f %12.0f  %s\n' "${DESC[$sys]}" "${FPS[$sys]}" "$ratio" "${CPUNS[$sys]}" \
      "${OFFERED[$sys]}" "${SINKCPU[$sys]}"
  else
    printf '%-34s %s\n' "${DESC[$sys]}" "${STATUS[$sys]:-not run}"
  fi
done
cat <<EOF

frames/s: frames counted by the sink's XDP program, averaged over the measured window.
CPU ns/frame: busy time of ALL cores (generator, switch, kernel softirq) per frame delivered,
  from /proc/stat; subtract the "no switch" row for the cost the switch adds (roughly: the
  generator also burns time on frames the switch could not take).
offered/s: what the generator sent; more than frames/s means the switch dropped the rest.
sink rx on CPU: where the sink's receive work ran, i.e. where the switch handed frames over.
EOF
if ((LAT_DURATION > 0)); then
  echo
  echo "latency: stamped $SIZE-byte frames at ${LAT_RATE:-?} frames/s, ${LAT_DURATION} s per system (one-way, generator XDP -> sink XDP, us)"
  printf '%-34s %10s %8s %9s %8s %8s %8s %8s %9s\n' system frames/s lost reordered p50 p90 p99 p99.9 max
  for sys in $ONLY; do
    if [[ ${LSTATUS[$sys]:-} == ok ]]; then
      # shellcheck disable=SC2086 # word splitting of the stored fields is wanted
      set -- ${LAT[$sys]}
      printf '%-34s %10.0f %8s %9s %8.1f %8.1f %8.1f %8.1f %9.1f\n' "${DESC[$sys]}" "$1" "$2" "$3" \
        "$(awk -v v="$4" 'BEGIN { print v / 1000 }')" "$(awk -v v="$5" 'BEGIN { print v / 1000 }')" \
        "$(awk -v v="$6" 'BEGIN { print v / 1000 }')" "$(awk -v v="$7" 'BEGIN { print v / 1000 }')" \
        "$(awk -v v="$8" 'BEGIN { print v / 1000 }')"
    else
      printf '%-34s %s\n' "${DESC[$sys]}" "${LSTATUS[$sys]:-not run}"
    fi
  done
  echo "lost: frames missing from the received sequence-number range; reordered: frames older than one already seen."
fi
[[ -f $TMP/xsw.stats ]] && { echo; echo "xswctl stats after the xsw run:"; cat "$TMP/xsw.stats"; }
for sys in $ONLY; do
  [[ ${STATUS[$sys]:-} == ok ]] || exit 1 # the table above says why
  ((LAT_DURATION == 0)) || [[ ${LSTATUS[$sys]:-} == ok ]] || exit 1
done
exit 0
