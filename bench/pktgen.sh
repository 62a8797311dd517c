#!/usr/bin/env bash
# The same 64-byte UDP flow as `xsw-bench gen`, sent by the kernel's pktgen,
# for hosts that have it (CONFIG_NET_PKTGEN). Kernel pktgen is not built on
# the project's development machines: there this script says so and stops;
# use `xsw-bench gen` instead (see bench/README.md).
#
#   sudo bench/pktgen.sh IFACE DST_MAC [DURATION_SECS] [RATE_PPS]
#
# Environment: SIZE=64 (frame size on the wire with FCS), CPU=0 (pktgen
# thread), SRC_IP=198.18.0.1, DST_IP=198.18.0.2, SRC_MAC (default: IFACE's).
#
# Pointing pktgen on another host at an xsw host
# ----------------------------------------------
# xsw is an L2 switch: it forwards by destination MAC and has no MAC of its
# own on the data path. So:
#   - Cable (or bridge) the generator's NIC to one xsw port (A) and a sink
#     host's NIC to another xsw port (B).  Only do this on a lab link you own.
#   - DST_MAC is the SINK's MAC (the station behind port B), not a MAC of the
#     xsw host. Make it known unicast on the xsw host, otherwise the first
#     frames are flooded to every port:
#         xswctl fdb add <sink-mac> <port-B>
#   - SRC_MAC is the generator NIC's own (unicast) MAC; xsw learns it on port
#     A. Never use a multicast/broadcast source: xsw drops those.
#   - SIZE counts the 4-byte FCS (RFC 2544); pktgen's pkt_size does not, so
#     this script gives pktgen SIZE - 4.
#   - On the sink host, count with `xsw-bench sink --iface <nic> --duration N`
#     (XDP, so the count is not limited by the host stack). Compare with
#     `xswctl stats` on the xsw host to see where frames were lost.
#   - Turn off Ethernet flow control on all three NICs (`ethtool -A NIC rx off
#     tx off`): pause frames would hide drops by slowing the generator.
#   - For more than one flow (RSS on the xsw host's NIC), widen the UDP source
#     port range below (udp_src_max), like `xsw-bench gen --flows K`.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }

PG=/proc/net/pktgen
if [[ ! -d $PG ]]; then
  modprobe pktgen 2>/dev/null || true
fi
if [[ ! -d $PG ]]; then
  cat >&2 <<'EOF'
kernel pktgen is not available on this host: there is no /proc/net/pktgen and
`modprobe pktgen` did not provide it (the kernel is built without
CONFIG_NET_PKTGEN). Nothing was sent.

Use the project's in-kernel generator instead, which sends the same flow:
    xsw-bench gen --iface IFACE --size 64 --duration 10 --dst-mac DST_MAC
(or bench/port-to-port.sh for the whole bridge / xsw / XDP comparison).
EOF
  exit 2
fi

((EUID == 0)) || die "run as root (pktgen is configured through /proc/net/pktgen)"
(($# >= 2)) || die "usage: $0 IFACE DST_MAC [DURATION_SECS] [RATE_PPS]"
IFACE=$1 DST_MAC=$2 DURATION=${3:-10} RATE=${4:-0}
SIZE=${SIZE:-64} CPU=${CPU:-0}
SRC_IP=${SRC_IP:-198.18.0.1} DST_IP=${DST_IP:-198.18.0.2}

[[ -e /sys/class/net/$IFACE ]] || die "interface $IFACE not found (ip link)"
[[ $DST_MAC =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || die "DST_MAC '$DST_MAC' is not a MAC address"
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 1 && DURATION <= 3600)) || die "DURATION must be 1..3600 seconds"
[[ $RATE =~ ^[0-9]+$ ]] || die "RATE_PPS must be a whole number (0 = as fast as possible)"
[[ $SIZE =~ ^[0-9]+$ ]] && ((SIZE >= 64 && SIZE <= 1518)) || die "SIZE must be 64..1518 (FCS included)"
in_bench_range() { # 198.18.0.0/15, the range set aside for benchmarking (RFC 2544, RFC 5735)
  [[ $1 =~ ^198\.1[89]\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256))
}
in_bench_range "$SRC_IP" && in_bench_range "$DST_IP" ||
  die "SRC_IP and DST_IP must be in 198.18.0.0/15, the benchmarking range, so test traffic cannot be mistaken for real traffic"
# A group address would be flooded to every port of every switch on the way.
(( (0x${DST_MAC:0:2} & 1) == 0 )) || die "DST_MAC $DST_MAC is a multicast/broadcast address: use the sink's unicast MAC"
SRC_MAC=${SRC_MAC:-$(cat "/sys/class/net/$IFACE/address")}
THREAD=$PG/kpktgend_$CPU
[[ -e $THREAD ]] || die "no pktgen thread for CPU $CPU ($THREAD)"

pgset() { # pgset FILE COMMAND: pktgen reports errors in the file's Result line
  echo "$2" >"$1"
  if ! grep -q "Result: OK" "$1" 2>/dev/null && [[ $1 != "$PG/pgctrl" ]]; then
    die "pktgen refused '$2' on $1: $(grep Result: "$1")"
  fi
}

cleanup() {
  echo stop >"$PG/pgctrl" 2>/dev/null || true
  echo rem_device_all >"$THREAD" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pgset "$THREAD" rem_device_all
pgset "$THREAD" "add_device $IFACE"
DEV=$PG/$IFACE
pgset "$DEV" "count 0"             # no count limit: the run is bounded by DURATION below
pgset "$DEV" "pkt_size $((SIZE - 4))"
pgset "$DEV" "clone_skb 1000"      # reuse each skb: measure the path, not skb allocation
pgset "$DEV" "burst 32"
pgset "$DEV" "delay 0"
if ((RATE > 0)); then pgset "$DEV" "ratep $RATE"; fi
pgset "$DEV" "src_mac $SRC_MAC"
pgset "$DEV" "dst_mac $DST_MAC"
pgset "$DEV" "src_min $SRC_IP"
pgset "$DEV" "src_max $SRC_IP"
pgset "$DEV" "dst $DST_IP"
pgset "$DEV" "udp_src_min 1024"
pgset "$DEV" "udp_src_max 1024"
pgset "$DEV" "udp_dst_min 9"
pgset "$DEV" "udp_dst_max 9"

echo "pktgen: $SIZE-byte UDP $SRC_IP:1024 -> $DST_IP:9, $SRC_MAC -> $DST_MAC on $IFACE for $DURATION s"
# "start" blocks until the run ends; it is stopped from here after DURATION.
echo start >"$PG/pgctrl" &
sleep "$DURATION"
echo stop >"$PG/pgctrl"
wait || true
grep -A3 "^Result" "$DEV" || cat "$DEV"
