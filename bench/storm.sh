#!/usr/bin/env bash
# Storm control under a storm (issue 10, item 1): one guest floods broadcasts
# at full speed with the in-kernel generator (xsw-bench gen), while
#   - a quiet tenant-mate counts the broadcasts it receives, and a
#     tenant-mate pings another (latency),
#   - a pair in another tenant runs TCP (iperf3) and ping (latency),
# in three runs side by side: no storm, storm with storm control at its
# defaults, storm with storm control off. As root:
#
#   bench/storm.sh [SECONDS]        # default 5 s per run
#
# Uses target/release/{xswd,xswctl,xsw-bench} (XSW_BIN_DIR to change). Creates
# its own namespaces (xstm-*) and removes them.
set -euo pipefail
SECS=${1:-5}
BIN=${XSW_BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
P=xstm
SW=$P-sw
DIR=$(mktemp -d /tmp/xsw-storm.XXXXXX)
XSWD_PID=
cleanup() {
  [ -n "$XSWD_PID" ] && kill "$XSWD_PID" 2>/dev/null && wait "$XSWD_PID" 2>/dev/null || true
  for ns in $SW $P-s $P-m1 $P-m2 $P-q $P-a1 $P-a2; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
ctl() { "$BIN/xswctl" --socket "$DIR/sock" "$@"; }

ip netns add $SW
i=0
for h in s m1 m2 a1 a2 q; do
  i=$((i + 1))
  ip netns add $P-$h
  ip link add $P$h type veth peer name e0 netns $P-$h
  ip link set $P$h netns $SW
  ip -n $P-$h link set e0 address 02:5a:00:00:00:0$i up
  ip -n $P-$h link set lo up
  ip -n $P-$h addr add 198.18.250.$i/24 dev e0
  ip -n $SW link set $P$h up
done
# The generator's frames reach the switch port only if its veth peer has
# GRO on or an XDP program (see bench/README.md).
ip netns exec $SW ethtool -K ${P}s gro on >/dev/null
cat > "$DIR/xsw.toml" <<EOF
[[tenant]]
name = "b"

[[port]]
name = "${P}s"
[[port]]
name = "${P}m1"
[[port]]
name = "${P}m2"
[[port]]
name = "${P}q"
[[port]]
name = "${P}a1"
tenant = "b"
[[port]]
name = "${P}a2"
tenant = "b"
EOF
ip netns exec $SW "$BIN/xswd" --socket "$DIR/sock" --config "$DIR/xsw.toml" >"$DIR/xswd.log" 2>&1 &
XSWD_PID=$!
for _ in $(seq 50); do ctl status >/dev/null 2>&1 && break; sleep 0.2; done
ip netns exec $P-m1 ping -c 3 -i 0.2 -q 198.18.250.3 >/dev/null
ip netns exec $P-a1 ping -c 3 -i 0.2 -q 198.18.250.5 >/dev/null
ip netns exec $P-a2 iperf3 -s -D -1 >/dev/null 2>&1 || true

rx_packets() { ip netns exec "$1" cat /sys/class/net/e0/statistics/rx_packets; }
run() { # run LABEL STORM(0|1)
  local label=$1 storm=$2 gen=
  ip netns exec $P-a2 iperf3 -s -D -1 >/dev/null 2>&1
  sleep 0.3
  local before after drops0 drops1
  before=$(rx_packets $P-q)
  drops0=$(ctl --json stats | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(p["drops"].get("storm_broadcast",0) for p in d["ports"]))')
  if [ "$storm" = 1 ]; then
    ip netns exec $P-s "$BIN/xsw-bench" gen --engine afxdp --iface e0 --dst-mac ff:ff:ff:ff:ff:ff \
      --src-mac 02:5a:00:00:00:01 --duration $((SECS + 2)) --json >"$DIR/gen.json" 2>"$DIR/gen.err" &
    gen=$!
    sleep 1
    [ -n "${STORM_DEBUG:-}" ] && ip netns exec $P-q timeout 2 tcpdump -i e0 -c 5 -e -n udp >&2 2>&1 || true
  fi
  ip netns exec $P-m1 ping -c $((SECS * 50)) -i 0.02 -q 198.18.250.3 >"$DIR/mate-ping" 2>&1 &
  local mate_ping=$!
  ip netns exec $P-a1 ping -c $((SECS * 50)) -i 0.02 -q 198.18.250.5 >"$DIR/other-ping" 2>&1 &
  local other_ping=$!
  local t0 t1
  t0=$(date +%s.%N)
  ip netns exec $P-a1 iperf3 -c 198.18.250.5 -t "$SECS" -J >"$DIR/iperf.json" 2>&1 || true
  wait $mate_ping $other_ping || true
  t1=$(date +%s.%N)
  after=$(rx_packets $P-q)
  drops1=$(ctl --json stats | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(p["drops"].get("storm_broadcast",0) for p in d["ports"]))')
  [ -n "$gen" ] && wait $gen || true
  [ -n "${STORM_DEBUG:-}" ] && ctl stats >&2
  local gen_rate=0
  [ "$storm" = 1 ] && gen_rate=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["frames_per_sec"]))' "$DIR/gen.json" 2>/dev/null || echo "?")
  python3 - "$label" "$gen_rate" "$before" "$after" "$t0" "$t1" "$drops0" "$drops1" "$DIR" <<'PY'
import json, re, sys
label, gen, before, after, t0, t1, d0, d1, d = sys.argv[1:]
secs = float(t1) - float(t0)
bcast = (int(after) - int(before)) / secs
def ping(path):
    text = open(path).read()
    loss = re.search(r"(\d+)% packet loss", text)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", text)
    return (loss.group(1) if loss else "?") + "%", (rtt.group(2) if rtt else "?"), (rtt.group(3) if rtt else "?")
try:
    gbit = json.load(open(d + "/iperf.json"))["end"]["sum_received"]["bits_per_second"] / 1e9
except Exception:
    gbit = float("nan")
ml, ma, mx = ping(d + "/mate-ping")
ol, oa, ox = ping(d + "/other-ping")
print(f"| {label} | {gen} | {bcast:,.0f} | {int(d1) - int(d0):,} | {ma} / {mx} ms, {ml} lost | {gbit:.1f} | {oa} / {ox} ms, {ol} lost |")
PY
}
echo "| run | storm sent (frames/s) | broadcasts a tenant-mate received per s | storm_broadcast drops | tenant-mate ping avg / max | other tenant TCP Gbit/s | other tenant ping avg / max |"
echo "|---|---:|---:|---:|---|---:|---|"
run "no storm" 0
run "storm, storm control on (defaults)" 1
ctl storm set --broadcast 0 --multicast 0 --unknown-unicast 0 >/dev/null
run "storm, storm control off" 1
