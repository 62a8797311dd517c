# shellcheck shell=bash
# Shared parts of the benchmark scripts (bench/scenario.sh, bench/rfc2544.sh):
# checks, binaries, namespaces and clean-up, the systems under comparison, and
# one measurement. Sourced, not run.
#
# Traffic stays inside the namespaces created here: 198.18.0.0/15 addresses
# and 02:b5:* (locally administered) MACs. Every run stops by itself, and the
# EXIT trap removes namespaces and processes, also on error or Ctrl-C.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }
note() { echo "== $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
BENCH=${XSW_BENCH:-$BIN/xsw-bench} XSWD=${XSWD:-$BIN/xswd} XSWCTL=${XSWCTL:-$BIN/xswctl}
GEN_CPU=${GEN_CPU:-0}
SWITCH_CPU=${SWITCH_CPU:-1}
WARMUP=1
# The veth sink counts in generic XDP, where the receiving namespace's stack
# takes a frame, so every way into it is counted alike: a frame handed
# straight to the sink veth's receive (bpf_redirect_peer, xsw's fast path into
# a container's veth) never meets a native XDP program. GRO on the sink veth
# gives it NAPI, which XDP-redirected frames (the bare XDP forwarder) need.
# Generic XDP leaves out frames a tc program redirected into the sink veth
# with a plain bpf_redirect (the kernel skips XDP for redirected skbs): xsw
# builds that do that (before bpf_redirect_peer) need SINK_XDP_MODE=native,
# which counts in the veth's driver instead and so misses peer redirects.
SINK_XDP_MODE=${SINK_XDP_MODE:-generic}
TAG=$$
NAMESPACES=()
PIDS=()
TMP=""

check_whole() { # check_whole NAME VALUE MIN MAX
  [[ $2 =~ ^[0-9]+$ ]] && (($2 >= $3 && $2 <= $4)) || die "$1 must be a whole number, $3..$4 (got '$2')"
}

cleanup() {
  local rc=$? pid ns
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    # xswd gets a few seconds to detach cleanly; then it is killed.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [[ -n $TMP ]]; then
    if ((rc != 0)) || [[ ${KEEP_LOGS:-0} == 1 ]]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}

# reap PID: wait for a process we started and forget it, so the clean-up never
# signals a PID the system may since have given to someone else.
reap() {
  wait "$1" 2>/dev/null || true
  local p keep=()
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# stop PID: SIGTERM, up to 5 s to exit, then SIGKILL.
stop() {
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then
    note "warning: process $1 did not exit within 5 s of SIGTERM; killing it"
    kill -KILL "$1" 2>/dev/null || true
  fi
  reap "$1"
}

# bench_init NAME: root and tools, a scratch directory, the clean-up trap, the
# binaries (built when missing), and a warning when the machine is busy.
bench_init() {
  ((EUID == 0)) || die "run as root: it creates network namespaces and attaches XDP programs (sudo $0)"
  local tool
  for tool in ip bridge ethtool awk sed nft; do
    command -v "$tool" >/dev/null || die "$tool not found: run deploy/install-deps.sh"
  done
  NCPU=$(nproc)
  ((GEN_CPU < NCPU && SWITCH_CPU < NCPU)) || die "GEN_CPU/SWITCH_CPU must be below the number of CPUs ($NCPU)"
  ((GEN_CPU != SWITCH_CPU)) || note "warning: GEN_CPU = SWITCH_CPU: generator and switch share one core"
  TMP=$(mktemp -d "/tmp/xsw-$1.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  command -v cargo >/dev/null || [[ -x $BENCH && -x $XSWD ]] ||
    die "cargo not found and $BENCH or $XSWD missing: install Rust (https://rustup.rs)"
  if [[ ! -x $BENCH || ! -x $XSWD || ! -x $XSWCTL || ${REBUILD:-0} == 1 ]]; then
    note "building (cargo build --release -p xsw-bench -p xsw)"
    (cd "$ROOT" && cargo build --release -p xsw-bench -p xsw) >"$TMP/build.log" 2>&1 ||
      { tail -20 "$TMP/build.log" >&2; die "the build failed (log above)"; }
  fi

  local busy
  busy=$(busy_cores)
  if awk -v b="$busy" 'BEGIN { exit !(b > 0.2) }'; then
    note "warning: $busy of $NCPU cores are busy with other work before the start: numbers will be low and noisy"
  fi
}

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

# netns NAME: a namespace removed on exit, without IPv6 (its router and
# neighbour solicitations would be extra frames).
netns() {
  ip netns add "$1"
  NAMESPACES+=("$1")
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# veth NS_A IF_A MAC_A NS_B IF_B MAC_B [QUEUES]: a veth pair, both ends up.
veth() {
  local q=()
  [[ -n ${7:-} ]] && q=(numtxqueues "$7" numrxqueues "$7")
  ip link add "$2" netns "$1" address "$3" "${q[@]}" type veth peer name "$5" netns "$4" address "$6" "${q[@]}"
  ip -n "$1" link set "$2" up
  ip -n "$4" link set "$5" up
}

wait_xdp() { # wait_xdp NS IFACE: until an XDP program is on IFACE (max 5 s)
  for _ in $(seq 50); do
    ip -n "$1" link show "$2" | grep -q ' xdp' && return 0
    sleep 0.1
  done
  return 1
}

json_num() { # json_num FILE KEY: the first number stored under KEY
  sed -n "s/.*\"$2\":\(-\{0,1\}[0-9.e+]*\).*/\1/p" "$1" | head -1
}

# ---------------------------------------------------------------------------
# A scenario sets these before it runs systems:
#   NS_GEN NS_SW NS_SINK   namespaces of generator, switch, sink
#   GEN_IF                 the generator's veth; its peer SW_IN is the switch's ingress port
#   SW_IN SW_OUT           the two ports in NS_SW
#   SINK_KIND SINK_IF      "xdp" (sink on veth SINK_IF in NS_SINK, peer of SW_OUT) or
#                          "tap" (tap-sink holding tap SINK_IF = SW_OUT, like a VM;
#                          then NS_SINK = NS_SW)
#   DIRECT_GEN_IF DIRECT_SINK_IF DIRECT_SINK_NS   the no-switch path (gen straight to a sink)
#   SRC_MAC DST_MAC DST_IP  the test flow (DST_MAC = the sink's MAC)
#   GEN_ARGS (array)       extra gen flags (--flows, --src-macs, --imix, --src-ip ...)
#   GEN_CPUS               generator cores, one generator per core (default GEN_CPU)
#   XSW_WORKERS            xswd workers (default SWITCH_CPU)
#   XSW_EXTRA              TOML appended to xswd's config (tenants, ACLs, guards)
#   XSW_PORT_EXTRA_IN      TOML lines appended to the ingress [[port]] table
#   NFT_RULES              file of nft rules loaded for "bridge" (empty: none)
# ---------------------------------------------------------------------------

# One measurement's results, by run name.
declare -A FPS CPUNS OFFERED STATUS SWUSER SWSYS GBPS
declare -A LAT LSTATUS # LAT[name]="fps lost loss_pct reordered p50 p90 p99 p99_9 max" (ns)
SW_PID="" # the switch process of the running system, for its CPU time

proc_cpu_ticks() { # proc_cpu_ticks PID: "utime stime" in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat" 2>/dev/null || echo "0 0"
}

start_sink() { # start_sink OUT_BASE DURATION [--measure]: PID in SINK_PID
  local base=$1 dur=$2
  shift 2
  if [[ $SINK_KIND == tap ]]; then
    # Not pinned: on two cores the guest's reader shares a core with someone
    # either way, and the scheduler places it best.
    ip netns exec "$NS_SINK" "$BENCH" tap-sink --tap "$SINK_IF" --duration "$dur" --warmup $WARMUP \
      "$@" --json >"$base.sink.json" 2>"$base.sink.log" &
  else
    [[ $SINK_XDP_MODE != generic ]] || ip netns exec "$NS_SINK" ethtool -K "$SINK_IF" gro on >/dev/null
    ip netns exec "$NS_SINK" "$BENCH" sink --iface "$SINK_IF" --duration "$dur" --warmup $WARMUP \
      --xdp-mode "$SINK_XDP_MODE" "$@" --json >"$base.sink.json" 2>"$base.sink.log" &
  fi
  SINK_PID=$!
  PIDS+=("$SINK_PID")
  if [[ $SINK_KIND == tap ]]; then
    # tap-sink opens the tap; give it the moment a VM needs to attach.
    for _ in $(seq 50); do
      grep -q . "$base.sink.log" 2>/dev/null && return 0
      kill -0 "$SINK_PID" 2>/dev/null || return 1
      sleep 0.1
    done
    return 0
  fi
  wait_xdp "$NS_SINK" "$SINK_IF"
}

# run_gens OUT_BASE EXTRA_ARGS...: one generator per core of GEN_CPUS, on
# GEN_IF, longer than the sink runs (they are stopped once it is done).
# PIDs in GEN_PIDS.
run_gens() {
  local base=$1 cpu i=0
  shift
  GEN_PIDS=()
  for cpu in ${GEN_CPUS:-$GEN_CPU}; do
    ip netns exec "$NS_GEN" "$BENCH" gen --iface "$GEN_IF" --duration 3600 --cpu "$cpu" \
      --src-mac "$SRC_MAC" --dst-mac "$DST_MAC" --dst-ip "$DST_IP" "${GEN_ARGS[@]}" "$@" \
      --json >"$base.gen$i.json" 2>"$base.gen$i.log" &
    GEN_PIDS+=($!)
    PIDS+=($!)
    i=$((i + 1))
  done
}

stop_gens() {
  local pid
  for pid in "${GEN_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${GEN_PIDS[@]}"; do reap "$pid"; done
}

gen_sum() { # gen_sum OUT_BASE KEY: the sum of KEY over the generators' JSON
  local f v sum=0
  for f in "$1".gen*.json; do
    v=$(json_num "$f" "$2")
    [[ -n $v ]] || return 1
    sum=$(awk -v a="$sum" -v b="$v" 'BEGIN { print a + b }')
  done
  echo "$sum"
}

# measure NAME [DURATION] [GEN_ARGS...]: frames/s flat out (or at the rate in
# the extra gen args) through whatever forwards SW_IN -> SW_OUT now.
measure() {
  local name=$1 dur=${2:-$DURATION} base=$TMP/$1 t0 t1
  shift 2 || shift $#
  note "$name: measuring $dur s (+${WARMUP} s warm-up)"
  if ! start_sink "$base" $((dur + WARMUP)); then
    kill -TERM "$SINK_PID" 2>/dev/null || true
    reap "$SINK_PID"
    STATUS[$name]="failed: the sink did not start: $(tail -1 "$base.sink.log")"
    return 0
  fi
  run_gens "$base" "$@"
  # The switch process's CPU time over the measured window only.
  if [[ -n $SW_PID ]]; then
    sleep $WARMUP
    t0=$(proc_cpu_ticks "$SW_PID")
    sleep "$dur"
    t1=$(proc_cpu_ticks "$SW_PID")
  fi
  reap "$SINK_PID"
  stop_gens

  FPS[$name]=$(json_num "$base.sink.json" frames_per_sec)
  CPUNS[$name]=$(json_num "$base.sink.json" cpu_ns_per_frame)
  # On the wire: the frame with its 4-byte FCS (the sink sees it without).
  GBPS[$name]=$(awk -v f="$(json_num "$base.sink.json" frames)" -v b="$(json_num "$base.sink.json" bytes)" \
    -v r="${FPS[$name]:-0}" 'BEGIN { if (f > 0) printf "%.2f", r * (b / f + 4) * 8 / 1e9 }')
  OFFERED[$name]=$(gen_sum "$base" frames_per_sec || true)
  SWUSER[$name]="" SWSYS[$name]=""
  if [[ -n $SW_PID && -n ${FPS[$name]} ]]; then
    read -r "SWUSER[$name]" "SWSYS[$name]" < <(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" \
      -v f="${FPS[$name]}" -v d="$dur" 'BEGIN { split(a, x, " "); split(b, y, " ")
        n = f * d; if (n < 1) n = 1
        printf "%.1f %.1f\n", (y[1] - x[1]) / hz * 1e9 / n, (y[2] - x[2]) / hz * 1e9 / n }')
  fi
  if [[ -z ${FPS[$name]} ]]; then
    STATUS[$name]="failed: no result from the sink: $(tail -1 "$base.sink.log")"
  elif [[ -z ${OFFERED[$name]} ]]; then
    STATUS[$name]="failed: the generator failed: $(tail -1 "$base".gen0.log)"
  elif [[ ${FPS[$name]} == 0 ]]; then
    STATUS[$name]="failed: no frames reached the sink (generator sent ${OFFERED[$name]} frames/s)"
  else
    STATUS[$name]=ok
  fi
  note "$name: ${FPS[$name]:-?} frames/s at the sink, ${OFFERED[$name]:-?} frames/s offered"
}

# latency NAME RATE [DURATION]: stamped frames from ONE generator at RATE,
# measured by the sink: loss, reordering, latency.
latency() {
  local name=$1 rate=$2 dur=${3:-$LAT_DURATION} base=$TMP/$1.lat k v
  ((dur > 0)) || return 0
  note "$name: latency at $rate frames/s for $dur s (+${WARMUP} s warm-up)"
  if ! start_sink "$base" $((dur + WARMUP)) --measure; then
    kill -TERM "$SINK_PID" 2>/dev/null || true
    reap "$SINK_PID"
    LSTATUS[$name]="failed: the measuring sink did not start: $(tail -1 "$base.sink.log")"
    return 0
  fi
  local first=${GEN_CPUS:-$GEN_CPU}
  GEN_CPUS=${first%% *} run_gens "$base" --stamp --rate "$rate"
  reap "$SINK_PID"
  stop_gens
  LAT[$name]=""
  for k in frames_per_sec lost loss_pct reordered p50 p90 p99 p99_9 max; do
    v=$(json_num "$base.sink.json" "$k")
    if [[ -z $v ]]; then
      LSTATUS[$name]="failed: no result from the measuring sink: $(tail -1 "$base.sink.log")"
      return 0
    fi
    LAT[$name]+="$v "
  done
  if [[ $(json_num "$base.sink.json" frames) == 0 ]]; then
    LSTATUS[$name]="failed: no stamped frames reached the sink ($(tail -1 "$base".gen0.log))"
  else
    LSTATUS[$name]=ok
  fi
  v=$(json_num "$base.sink.json" ring_overflow)
  [[ -z $v || $v == 0 ]] || note "warning: $name: the measuring sink's ring overflowed ($v frames): its loss includes them"
}

# ---------------------------------------------------------------------------
# The systems. Each sets up forwarding SW_IN -> SW_OUT, calls "$@" (the
# measurement) with the run name as first argument, and tears down.
# ---------------------------------------------------------------------------
declare -A DESC=(
  [bridge]="Linux bridge"
  [bridge-nft]="Linux bridge + nftables"
  [xsw]="xsw (adaptive)"
  [xsw-busy]="xsw (busy-poll)"
  [xsw-nofast]="xsw, fast path off"
  [xsw-xdp]="xsw, XDP hook (AF_XDP only)"
  [xsw-1w]="xsw, 1 worker"
  [afxdp]="bare AF_XDP forwarder"  # adaptive, like xsw's default
  [ovs]="Open vSwitch (AF_XDP, PMD)"
  [xdp]="bare XDP DEVMAP redirect"
  [direct]="no switch: gen -> sink"
  [direct-tap]="no switch: gen -> tap -> guest"
)

# The no-switch paths: the generator straight into a sink over a veth, and
# (veth-tap) into a tap that a tap-sink reads.
no_switch() { # no_switch NAME GEN_IF SINK_IF SINK_NS SINK_KIND MEASUREMENT...
  local save=("$GEN_IF" "$SINK_IF" "$NS_SINK" "$SINK_KIND") name=$1
  GEN_IF=$2 SINK_IF=$3 NS_SINK=$4 SINK_KIND=$5
  shift 5
  "$@" "$name"
  GEN_IF=${save[0]} SINK_IF=${save[1]} NS_SINK=${save[2]} SINK_KIND=${save[3]}
}
system_direct() { no_switch direct "$DIRECT_GEN_IF" "$DIRECT_SINK_IF" "$DIRECT_SINK_NS" xdp "$@"; }
system_direct-tap() { no_switch direct-tap g-tap g-tap "$NS_GEN" tap "$@"; }

bridge_up() {
  ip -n "$NS_SW" link add br0 type bridge
  ip -n "$NS_SW" link set "$SW_IN" master br0
  ip -n "$NS_SW" link set "$SW_OUT" master br0
  ip -n "$NS_SW" link set br0 up
  # Known unicast, like the static entry xsw gets.
  ip netns exec "$NS_SW" bridge fdb add "$DST_MAC" dev "$SW_OUT" master static
  # The generator's XDP frames are only accepted by a veth whose peer runs
  # NAPI: with no XDP program on SW_IN, GRO switches NAPI on.
  ip netns exec "$NS_SW" ethtool -K "$SW_IN" gro on >/dev/null
}

bridge_down() {
  ip netns exec "$NS_SW" ethtool -K "$SW_IN" gro off >/dev/null
  ip -n "$NS_SW" link del br0
}

system_bridge() {
  bridge_up
  "$@" bridge
  bridge_down
}

system_bridge-nft() {
  bridge_up
  if ip netns exec "$NS_SW" nft -f "$NFT_RULES" 2>"$TMP/nft.log"; then
    "$@" bridge-nft
  else
    STATUS[bridge-nft]="failed: nft refused the rules: $(head -3 "$TMP/nft.log")"
  fi
  ip netns exec "$NS_SW" nft flush ruleset
  bridge_down
}

system_xdp() {
  local pid
  ip netns exec "$NS_SW" "$BENCH" fwd --a "$SW_IN" --b "$SW_OUT" --duration 3600 2>"$TMP/xdp.fwd.log" &
  pid=$!
  PIDS+=("$pid")
  if wait_xdp "$NS_SW" "$SW_IN" && wait_xdp "$NS_SW" "$SW_OUT"; then
    "$@" xdp
  else
    STATUS[xdp]="failed: the XDP forwarder did not attach: $(tail -1 "$TMP/xdp.fwd.log")"
  fi
  stop "$pid"
}

system_afxdp() {
  local pid
  ip netns exec "$NS_SW" "$BENCH" afxdp-fwd --a "$SW_IN" --b "$SW_OUT" --cpu "$SWITCH_CPU" --adaptive --duration 3600 \
    2>"$TMP/afxdp.fwd.log" &
  pid=$!
  PIDS+=("$pid")
  if wait_xdp "$NS_SW" "$SW_IN" && wait_xdp "$NS_SW" "$SW_OUT"; then
    SW_PID=$pid
    "$@" afxdp
    SW_PID=""
  else
    STATUS[afxdp]="failed: the AF_XDP forwarder did not start: $(tail -1 "$TMP/afxdp.fwd.log")"
  fi
  stop "$pid"
}

# xsw_run NAME MODE WORKERS MEASUREMENT...: xswd with both ports from its
# config file, as an operator would run it.
wait_xswd() { # wait_xswd PID SOCKET: until xswd answers on SOCKET or exits (max 10 s)
  local pid=$1 sock=$2
  for _ in $(seq 100); do
    [[ -S $sock ]] && "$XSWCTL" --socket "$sock" status >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

xsw_run() {
  local name=$1 mode=$2 workers=$3 pid cfg=$TMP/$1.toml sock=$TMP/$1.sock
  shift 3
  cat >"$cfg" <<EOF
[dataplane]
workers = [$workers]
mode = "$mode"
fdb_capacity = ${XSW_FDB_CAPACITY:-65536}

[fast_path]
enabled = ${XSW_FAST_PATH:-true}

[[port]]
name = "$SW_IN"
hook = "${XSW_HOOK:-auto}"
${XSW_PORT_EXTRA_IN:-}

[[port]]
name = "$SW_OUT"
hook = "${XSW_HOOK:-auto}"

[[fdb]]
mac = "$DST_MAC"
port = "$SW_OUT"
${XSW_FDB_EXTRA:-}
${XSW_EXTRA:-}
EOF
  # As for the bridge: a veth accepts the generator's XDP frames only when
  # its peer runs NAPI, which GRO switches on when no XDP program is attached
  # (the tc hook). Senders with sockets (containers, VMs) need no such thing.
  ip netns exec "$NS_SW" ethtool -K "$SW_IN" gro on >/dev/null
  ip netns exec "$NS_SW" "$XSWD" --socket "$sock" --config "$cfg" 2>"$TMP/$name.xswd.log" &
  pid=$!
  PIDS+=("$pid")
  wait_xswd "$pid" "$sock" || true # the checks below say why it failed
  if ! kill -0 "$pid" 2>/dev/null; then
    STATUS[$name]="failed: xswd exited at start: $(tail -1 "$TMP/$name.xswd.log")"
  elif [[ ! -S $sock ]]; then
    STATUS[$name]="failed: xswd did not create its socket within 10 s: $(tail -1 "$TMP/$name.xswd.log")"
  else
    SW_PID=$pid
    "$@" "$name"
    SW_PID=""
    "$XSWCTL" --socket "$sock" stats >"$TMP/$name.stats" 2>&1 || true
    if [[ ${XSW_EXTRA:-} == *"[[tenant.ingress]]"* ]]; then
      # Which rules decided: shows that the ACL was evaluated, not bypassed.
      echo "ACL rules of tenant default that matched (position, rule, hits):" >>"$TMP/$name.stats"
      "$XSWCTL" --socket "$sock" acl list default 2>&1 |
        awk '/^egress:/ { exit } $1 ~ /^[0-9]+$/ && $NF ~ /^[0-9]+$/ && $NF > 0' >>"$TMP/$name.stats" || true
    fi
    if [[ ${STATUS[$name]:-ok} != ok && ${STATUS[$name]} != *"(xswd log:"* ]]; then
      STATUS[$name]+=" (xswd log: $(tail -1 "$TMP/$name.xswd.log"))"
    fi
  fi
  stop "$pid"
  ip netns exec "$NS_SW" ethtool -K "$SW_IN" gro off >/dev/null
}

system_xsw() { xsw_run xsw adaptive "${XSW_WORKERS:-$SWITCH_CPU}" "$@"; }
system_xsw-nofast() { XSW_FAST_PATH=false xsw_run xsw-nofast adaptive "${XSW_WORKERS:-$SWITCH_CPU}" "$@"; }
system_xsw-xdp() { XSW_HOOK=xdp xsw_run xsw-xdp adaptive "${XSW_WORKERS:-$SWITCH_CPU}" "$@"; }
system_xsw-busy() { xsw_run xsw-busy busy-poll "${XSW_WORKERS:-$SWITCH_CPU}" "$@"; }
system_xsw-1w() { xsw_run xsw-1w adaptive "$SWITCH_CPU" "$@"; }

# Open vSwitch as a user would run it for AF_XDP: the userspace datapath
# (datapath_type=netdev), both ports type=afxdp, the default NORMAL pipeline
# (MAC learning) plus the static entry for the sink's MAC, and one PMD thread
# pinned to SWITCH_CPU. ovsdb-server and ovs-vswitchd run inside NS_SW, with
# their database, sockets, pid files and logs in $TMP/ovs (never the host's
# /var/run/openvswitch), so they see and touch only the switch namespace's
# devices; both are stopped, and the XDP programs removed, before the next
# system runs. OVS_XDP_MODE: native (default: on veths here neither native
# nor generic was faster beyond the noise, and native is what xsw's XDP hook
# and the bare AF_XDP forwarder use) or generic; native-with-zerocopy needs a
# driver with zero-copy, which veths do not have.
OVS_XDP_MODE=${OVS_XDP_MODE:-native}
OVS_DIR="" OVS_WHY=""

ovs_vsctl() { ovs-vsctl --db="unix:$OVS_DIR/db.sock" --timeout=20 "$@"; }
ovs_appctl() { ovs-appctl --timeout=20 -t "$OVS_DIR/ovs-vswitchd.ctl" "$@"; }

# ovs_daemon NAME ARGS...: one OVS daemon in the foreground inside NS_SW (so
# the clean-up trap can stop it by its PID), with every path under OVS_DIR.
ovs_daemon() {
  local name=$1
  shift
  ip netns exec "$NS_SW" env OVS_RUNDIR="$OVS_DIR" OVS_DBDIR="$OVS_DIR" OVS_LOGDIR="$OVS_DIR" \
    OVS_SYSCONFDIR="$OVS_DIR" "$name" "$@" --unixctl="$OVS_DIR/$name.ctl" \
    --pidfile="$OVS_DIR/$name.pid" --log-file="$OVS_DIR/$name.log" 2>>"$OVS_DIR/$name.stderr" &
  OVS_PID=$!
  PIDS+=("$OVS_PID")
}

# ovs_up: both daemons, the bridge and its ports. Sets OVS_DB_PID and
# OVS_SW_PID (empty when not started) and, on failure, OVS_WHY. Not in a
# subshell: the daemons must stay this shell's children.
ovs_up() {
  local mask port err tool
  OVS_DB_PID="" OVS_SW_PID=""
  for tool in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl; do
    command -v "$tool" >/dev/null ||
      { OVS_WHY="$tool not found: Open vSwitch is not installed (deploy/install-deps.sh installs openvswitch-switch)"; return 1; }
  done
  OVS_DIR=$TMP/ovs
  rm -rf "$OVS_DIR"
  mkdir -p "$OVS_DIR"
  ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema >"$OVS_DIR/ovsdb-tool.log" 2>&1 ||
    { OVS_WHY="ovsdb-tool create: $(tail -1 "$OVS_DIR/ovsdb-tool.log")"; return 1; }
  ovs_daemon ovsdb-server "$OVS_DIR/conf.db" --remote="punix:$OVS_DIR/db.sock"
  OVS_DB_PID=$OVS_PID
  for _ in $(seq 100); do
    [[ -S $OVS_DIR/db.sock ]] && break
    kill -0 "$OVS_DB_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ -S $OVS_DIR/db.sock ]] || { OVS_WHY="ovsdb-server did not start: $(tail -1 "$OVS_DIR/ovsdb-server.stderr")"; return 1; }
  mask=$(printf '0x%x' $((1 << SWITCH_CPU)))
  ovs_vsctl --no-wait init -- set Open_vSwitch . other_config:pmd-cpu-mask="$mask" >/dev/null 2>&1 ||
    { OVS_WHY="ovs-vsctl init failed"; return 1; }
  ovs_daemon ovs-vswitchd "unix:$OVS_DIR/db.sock"
  OVS_SW_PID=$OVS_PID
  for _ in $(seq 100); do
    [[ -S $OVS_DIR/ovs-vswitchd.ctl ]] && break
    kill -0 "$OVS_SW_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ -S $OVS_DIR/ovs-vswitchd.ctl ]] ||
    { OVS_WHY="ovs-vswitchd did not start: $(tail -1 "$OVS_DIR/ovs-vswitchd.stderr")"; return 1; }
  ovs_vsctl add-br br0 -- set bridge br0 datapath_type=netdev >"$OVS_DIR/vsctl.log" 2>&1 ||
    { OVS_WHY="add-br: $(tail -1 "$OVS_DIR/vsctl.log")"; return 1; }
  for port in "$SW_IN" "$SW_OUT"; do
    ovs_vsctl add-port br0 "$port" -- set interface "$port" type=afxdp options:xdp-mode="$OVS_XDP_MODE" \
      options:n_rxq=1 >>"$OVS_DIR/vsctl.log" 2>&1 || { OVS_WHY="add-port $port: $(tail -1 "$OVS_DIR/vsctl.log")"; return 1; }
    err=$(ovs_vsctl get interface "$port" error 2>&1 || true)
    if [[ $err != "[]" ]]; then
      OVS_WHY="afxdp port $port: ${err//\"/} ($(grep -E 'ERR|WARN' "$OVS_DIR/ovs-vswitchd.log" | tail -1 | cut -d'|' -f5-))"
      return 1
    fi
    echo "ovs: $port: $(ovs_vsctl get interface "$port" status 2>&1)" >>"$OVS_DIR/vsctl.log"
  done
  # The same static entry for the sink's MAC as the bridge and xsw get.
  ovs_appctl fdb/add br0 "$SW_OUT" 0 "$DST_MAC" >>"$OVS_DIR/vsctl.log" 2>&1 ||
    { OVS_WHY="fdb/add: $(tail -1 "$OVS_DIR/vsctl.log")"; return 1; }
}

# ovs_down: the bridge removed (OVS detaches its XDP programs), both daemons
# stopped, and any XDP program they left on the ports removed.
ovs_down() {
  local port
  if [[ -n $OVS_SW_PID ]] && kill -0 "$OVS_SW_PID" 2>/dev/null; then
    ovs_vsctl --if-exists del-br br0 >/dev/null 2>&1 || true
  fi
  [[ -z $OVS_SW_PID ]] || stop "$OVS_SW_PID"
  [[ -z $OVS_DB_PID ]] || stop "$OVS_DB_PID"
  for port in "$SW_IN" "$SW_OUT"; do
    ip -n "$NS_SW" link set dev "$port" xdp off 2>/dev/null || true
    ip -n "$NS_SW" link set dev "$port" xdpgeneric off 2>/dev/null || true
  done
  if [[ -n $OVS_DIR ]] && pgrep -f "$OVS_DIR/" >/dev/null; then
    note "warning: OVS processes still running after the ovs run: $(pgrep -af "$OVS_DIR/" | tr '\n' ' ')"
  fi
}

system_ovs() {
  # With no native XDP program on SW_IN (generic mode), GRO gives the veth
  # the NAPI that the generator's XDP frames need, as for the bridge.
  ip netns exec "$NS_SW" ethtool -K "$SW_IN" gro on >/dev/null
  if ovs_up; then
    SW_PID=$OVS_SW_PID
    "$@" ovs
    SW_PID=""
  else
    STATUS[ovs]="failed: $OVS_WHY"
  fi
  ovs_down
  ip netns exec "$NS_SW" ethtool -K "$SW_IN" gro off >/dev/null
}

# print_xsw_stats "SYSTEMS": xswctl's counters after each xsw run among them.
print_xsw_stats() {
  local x
  for x in $1; do
    [[ -f $TMP/$x.stats ]] || continue
    echo
    echo "xswctl stats after the ${DESC[$x]} run:"
    cat "$TMP/$x.stats"
  done
}

# run_system SYSTEM MEASUREMENT...: one system, or a "not known" refusal.
run_system() {
  local sys=$1
  shift
  [[ -n ${DESC[$sys]:-} ]] || die "unknown system '$sys' (known: ${!DESC[*]})"
  "system_$sys" "$@"
}

# setup_topology SCENARIO: namespaces, veths and taps of a scenario, and the
# variables above. SIZE and IMIX pick the frames; TMP must exist.
setup_topology() {
  local scenario=$1
  #   [gen]  g-sw ----veth---- sw-g  [switch]  sw-s ----veth---- s-sw  [sink]
  #   [gen]  g-direct --------------veth-------------- s-direct  [sink]
  # veth-tap: sw-s is a tap in [switch], held by tap-sink; a second no-switch
  # path is the generator sending into a tap "g-tap" in [gen] that a tap-sink reads.
  NS_GEN=xswb-gen-$TAG NS_SW=xswb-sw-$TAG NS_SINK=xswb-sink-$TAG
  netns "$NS_GEN"
  netns "$NS_SW"
  netns "$NS_SINK"
  SRC_MAC=02:b5:00:00:01:01 DST_MAC=02:b5:00:00:02:01 DST_IP=198.18.0.2 SRC_IP=198.18.0.1
  GEN_IF=g-sw SW_IN=sw-g SW_OUT=sw-s SINK_IF=s-sw SINK_KIND=xdp
  DIRECT_GEN_IF=g-direct DIRECT_SINK_IF=s-direct DIRECT_SINK_NS=$NS_SINK
  GEN_ARGS=(--size "$SIZE" --src-ip "$SRC_IP")
  [[ ${IMIX:-0} == 1 ]] && GEN_ARGS=(--imix --src-ip "$SRC_IP")
  QUEUES=""
  [[ $scenario == two-workers ]] && QUEUES=2

  veth "$NS_GEN" g-sw $SRC_MAC "$NS_SW" sw-g 02:b5:00:00:03:01 $QUEUES
  veth "$NS_GEN" g-direct 02:b5:00:00:01:02 "$NS_SINK" s-direct $DST_MAC $QUEUES
  if [[ $scenario == veth-tap ]]; then
    ip -n "$NS_SW" tuntap add mode tap name sw-s
    ip -n "$NS_SW" link set sw-s up
    NS_SINK=$NS_SW SINK_IF=sw-s SINK_KIND=tap
    ip -n "$NS_GEN" tuntap add mode tap name g-tap
    ip -n "$NS_GEN" link set g-tap up
  else
    veth "$NS_SW" sw-s 02:b5:00:00:03:02 "$NS_SINK" s-sw $DST_MAC $QUEUES
  fi

  case $scenario in
    acl)
      # Anti-spoofing on the generator's port and 1,000 rules on its tenant: 999
      # that the traffic does not match (varied prefixes, protocols and ports),
      # then the one that allows it; anything else is denied. nftables gets the
      # same list, in the same order, on the bridge's forward hook.
      XSW_PORT_EXTRA_IN=$(printf '[port.antispoof]\nmacs = ["%s"]\nipv4 = ["%s/32"]' $SRC_MAC $SRC_IP)
      NFT_RULES=$TMP/rules.nft
      awk -v src_mac=$SRC_MAC -v src_ip=$SRC_IP -v dst_ip=$DST_IP -v toml="$TMP/acl.toml" -v nft="$NFT_RULES" '
        BEGIN {
          srand(2544)
          print "[[tenant]]\nname = \"default\"\ningress_default = \"deny\"" > toml
          print "table bridge xswbench {\n chain forward_filter {\n  type filter hook forward priority 0; policy drop;" > nft
          printf "  iifname \"sw-g\" ether saddr != %s drop\n  iifname \"sw-g\" ip saddr != %s drop\n", src_mac, src_ip > nft
          for (i = 0; i < 999; i++) {
            len = 16 + int(rand() * 17)            # /16../32 inside 198.19.0.0/16
            a = int(rand() * 256); b = int(rand() * 256)
            # No host bits: xswd, like nft, refuses a prefix that has them.
            if (len >= 24) net = sprintf("198.19.%d.%d/%d", a, b - b % (2 ^ (32 - len)), len)
            else net = sprintf("198.19.%d.0/%d", a - a % (2 ^ (24 - len)), len)
            proto = (rand() < 0.5) ? "udp" : "tcp"
            lo = 1 + int(rand() * 60000); hi = lo + int(rand() * 3)
            port = (hi > lo) ? lo "-" hi : lo
            print "[[tenant.ingress]]\naction = \"deny\"\ndst = \"" net "\"\nproto = \"" proto "\"\ndport = \"" port "\"" > toml
            printf "  ip daddr %s %s dport %s drop\n", net, proto, port > nft
          }
          print "[[tenant.ingress]]\naction = \"allow\"\ndst = \"" dst_ip "/32\"\nproto = \"udp\"\ndport = \"9\"" > toml
          printf "  ip daddr %s udp dport 9 accept\n }\n}\n", dst_ip > nft
        }'
      XSW_EXTRA=$(cat "$TMP/acl.toml")
      ;;
    flows)
      FLOWS=${FLOWS:-100000}
      # Source MACs and IPs count up from here, clear of the sink's MAC and
      # IP and inside 198.18.0.0/15 for up to 100,000 flows.
      SRC_MAC=02:b5:01:00:00:00 SRC_IP=198.18.64.0
      GEN_ARGS=("${GEN_ARGS[@]/#198.18.0.1/$SRC_IP}" --src-macs "$FLOWS")
      # Per worker; room for all the flows' MACs with the usual headroom.
      XSW_FDB_CAPACITY=$((FLOWS * 2 > 65536 ? FLOWS * 2 : 65536))
      ;;
    two-workers)
      GEN_CPUS="$GEN_CPU $SWITCH_CPU"
      XSW_WORKERS="$GEN_CPU, $SWITCH_CPU"
      ;;
  esac
}
