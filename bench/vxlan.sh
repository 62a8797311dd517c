#!/usr/bin/env bash
# VXLAN encapsulation and decapsulation, frames/s with one xsw worker, next to
# the Linux kernel's vxlan device in a bridge doing the same, and to xsw's own
# port-to-port through the workers (fast path off: tunnel traffic never takes
# it), in one run. Usage: sudo bench/vxlan.sh [DURATION]
#
#   [gen] g-a --- a-g [A] a-s --- s-a [sink]        A: the system under test
#                     [A] ul-a ===== ul-b [B]       the underlay, 192.0.2.1 / .2
#   [gen] g-b --- b-g [B]                           B: the kernel's vxlan + bridge
#
#   port-to-port  gen -> g-a -> A (xsw) -> a-s -> sink
#   encap         gen -> g-a -> A (xsw tunnel, or vxlan + bridge) -> ul-a -> sink on ul-b
#                 (the sink counts the encapsulated packets)
#   decap         gen -> g-b -> B (kernel vxlan + bridge encapsulates) -> ul-b -> A
#                 (xsw tunnel, or vxlan + bridge) -> a-s -> sink
#                 (B's kernel is the sender for both systems: "offered" is what it
#                 fed A, and caps both)
#
# Knobs: SIZES="64 1404" (frame size on the wire with FCS: 60- and 1400-byte
# inner frames), DURATION (5), GEN_CPU (0), SWITCH_CPU (1), KEEP_LOGS=1, REBUILD=1.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${1:-${DURATION:-5}}
SIZES=${SIZES:-64 1404}
check_whole DURATION "$DURATION" 1 3600
for s in $SIZES; do check_whole SIZE "$s" 64 1518; done
declare -A FPS CPUNS GBPS OFFERED SWUSER SWSYS STATUS
SW_PID=""
bench_init vxlan

NS_GEN=xswv-gen-$TAG NS_A=xswv-a-$TAG NS_B=xswv-b-$TAG NS_SINKNS=xswv-sink-$TAG
for ns in "$NS_GEN" "$NS_A" "$NS_B" "$NS_SINKNS"; do netns "$ns"; done
SRC_MAC=02:b5:00:00:01:01 DST_MAC=02:b5:00:00:02:01 SRC_IP=198.18.0.1 DST_IP=198.18.0.2
UL_A_MAC=02:b5:00:00:04:01 UL_B_MAC=02:b5:00:00:04:02
veth "$NS_GEN" g-a $SRC_MAC "$NS_A" a-g 02:b5:00:00:03:01
veth "$NS_GEN" g-b 02:b5:00:00:01:02 "$NS_B" b-g 02:b5:00:00:03:02
veth "$NS_A" a-s 02:b5:00:00:03:03 "$NS_SINKNS" s-a $DST_MAC
veth "$NS_A" ul-a $UL_A_MAC "$NS_B" ul-b $UL_B_MAC
ip -n "$NS_A" addr add 192.0.2.1/24 dev ul-a
ip -n "$NS_B" addr add 192.0.2.2/24 dev ul-b
# The sink's XDP program on ul-b drops ARP too: A knows B's MAC beforehand.
ip -n "$NS_A" neigh replace 192.0.2.2 lladdr $UL_B_MAC dev ul-a nud permanent
ip -n "$NS_B" neigh replace 192.0.2.1 lladdr $UL_A_MAC dev ul-b nud permanent
# The generator's XDP frames need NAPI on the receiving veth (see lib.sh).
ip netns exec "$NS_A" ethtool -K a-g gro on >/dev/null
ip netns exec "$NS_B" ethtool -K b-g gro on >/dev/null

# B: the kernel's vxlan in a bridge, the sender of the decapsulation runs.
ip -n "$NS_B" link add vx0 type vxlan id 100 dstport 4789 local 192.0.2.2 remote 192.0.2.1
ip -n "$NS_B" link add br0 type bridge
ip -n "$NS_B" link set vx0 master br0
ip -n "$NS_B" link set b-g master br0
for dev in vx0 br0; do ip -n "$NS_B" link set $dev up; done
ip netns exec "$NS_B" bridge fdb add $DST_MAC dev vx0 master static

# xswd in A with CONFIG; runs MEASUREMENT NAME, then stops it.
xsw_a() {
  local name=$1 config=$2 pid sock=$TMP/$1.sock cfg=$TMP/$1.toml
  shift 2
  printf '[dataplane]\nworkers = [%s]\n\n[fast_path]\nenabled = false\n\n%s\n' "$SWITCH_CPU" "$config" >"$cfg"
  ip netns exec "$NS_A" "$XSWD" --socket "$sock" --config "$cfg" 2>"$TMP/$name.xswd.log" &
  pid=$!
  PIDS+=("$pid")
  if wait_xswd "$pid" "$sock"; then
    SW_PID=$pid
    "$@" "$name"
    SW_PID=""
    "$XSWCTL" --socket "$sock" stats >"$TMP/$name.stats" 2>&1 || true
  else
    STATUS[$name]="failed: xswd did not start: $(tail -1 "$TMP/$name.xswd.log")"
  fi
  stop "$pid"
}

# The kernel's vxlan + bridge in A with PORT; runs MEASUREMENT NAME.
kernel_a() {
  local name=$1 port=$2
  shift 2
  ip -n "$NS_A" link add vx0 type vxlan id 100 dstport 4789 local 192.0.2.1 remote 192.0.2.2
  ip -n "$NS_A" link add br0 type bridge
  ip -n "$NS_A" link set vx0 master br0
  ip -n "$NS_A" link set "$port" master br0
  for dev in vx0 br0; do ip -n "$NS_A" link set $dev up; done
  # Known unicast, as xsw's static entries.
  if [[ $port == a-g ]]; then
    ip netns exec "$NS_A" bridge fdb add $DST_MAC dev vx0 master static
  else
    ip netns exec "$NS_A" bridge fdb add $DST_MAC dev a-s master static
  fi
  "$@" "$name"
  ip -n "$NS_A" link del br0
  ip -n "$NS_A" link del vx0
}

tunnel_conf='[[port]]
name = "t0"
[port.tunnel]
local = "192.0.2.1"
remote = ["192.0.2.2"]
vni = 100'

run() { measure "$1" "$DURATION"; }

declare -a ORDER=()
for size in $SIZES; do
  GEN_ARGS=(--size "$size" --src-ip "$SRC_IP")
  # port-to-port and encap: the generator feeds A.
  NS_SINK=$NS_SINKNS SINK_IF=s-a SINK_KIND=xdp GEN_IF=g-a
  xsw_a "p2p-xsw-$size" "$(printf '[[port]]\nname = "a-g"\n\n[[port]]\nname = "a-s"\n\n[[fdb]]\nmac = "%s"\nport = "a-s"' $DST_MAC)" run
  NS_SINK=$NS_B SINK_IF=ul-b
  xsw_a "encap-xsw-$size" "$(printf '[[port]]\nname = "a-g"\n\n%s\n\n[[fdb]]\nmac = "%s"\nport = "t0"\nremote = "192.0.2.2"' "$tunnel_conf" $DST_MAC)" run
  kernel_a "encap-kernel-$size" a-g run
  # decap: B's kernel encapsulates what the generator sends it.
  NS_SINK=$NS_SINKNS SINK_IF=s-a GEN_IF=g-b
  xsw_a "decap-xsw-$size" "$(printf '[[port]]\nname = "a-s"\n\n%s\n\n[[fdb]]\nmac = "%s"\nport = "a-s"' "$tunnel_conf" $DST_MAC)" run
  kernel_a "decap-kernel-$size" a-s run
  ORDER+=("p2p-xsw-$size" "encap-xsw-$size" "encap-kernel-$size" "decap-xsw-$size" "decap-kernel-$size")
done

echo
echo "VXLAN, one xsw worker on core $SWITCH_CPU, generator on core $GEN_CPU, $DURATION s each ($(uname -r))"
printf '%-20s %12s %12s %10s %14s %14s  %s\n' run frames/s offered Gbit/s "cpu ns/frame" "xswd usr/sys" status
for name in "${ORDER[@]}"; do
  printf '%-20s %12s %12s %10s %14s %14s  %s\n' "$name" "${FPS[$name]:--}" "${OFFERED[$name]:--}" "${GBPS[$name]:--}" \
    "${CPUNS[$name]:--}" "${SWUSER[$name]:--}/${SWSYS[$name]:--}" "${STATUS[$name]:-?}"
done
for name in "${ORDER[@]}"; do
  [[ -f $TMP/$name.stats ]] || continue
  echo
  echo "xswctl stats after $name:"
  cat "$TMP/$name.stats"
done
