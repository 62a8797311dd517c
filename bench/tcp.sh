#!/usr/bin/env bash
# TCP bulk transfer through each system, side by side in one run: iperf3, one
# stream from host A (a veth in its own namespace) to host B (another), through
# the switch's namespace, at the default offloads of a veth (TSO, GSO, GRO,
# checksum offload: nothing turned off), as containers would send.
#
#   sudo bench/tcp.sh [DURATION]            # DURATION: seconds per system (10)
#   sudo bench/scenario.sh tcp [DURATION]   # the same
#
# Systems (SYSTEMS, in this order by default): Linux bridge; xsw (fast path:
# known flows redirected in the kernel as skbs); xsw with the fast path off
# (every frame through a user-space worker); xsw on the XDP hook (AF_XDP only);
# no switch (host A's veth straight to host B's, the ceiling). Also known:
# bridge-nft (no rules), xsw-busy, ovs (Open vSwitch, AF_XDP ports).
#
# Per system: Gbit/s received by host B (iperf3), TCP retransmits at the sender,
# the busy CPU time of ALL cores per Gbit transferred (/proc/stat: both iperf3
# ends, the switch, the kernel's softirq work, anything else running), and the
# switch process's own CPU time per Gbit (xsw, OVS).
#
# Environment (optional): DURATION=10, SYSTEMS="...", SWITCH_CPU=1 (xsw's
# worker, OVS's PMD), CLIENT_CPU and SERVER_CPU (pin the iperf3 ends; default:
# not pinned, the scheduler places them as it would any application),
# REBUILD=1, KEEP_LOGS=1, XSWD, XSWCTL, XSW_BENCH.
#
# A VM guest behind a tap port is not among the hosts yet: the guest image
# builder (tests/vm/build-guest.sh) is on another branch.
# The measurement and its helpers run through run_system, unseen by shellcheck.
# shellcheck disable=SC2317
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${1:-${DURATION:-10}}
SYSTEMS=${SYSTEMS:-bridge xsw xsw-nofast xsw-xdp direct}
SIZE=64 # setup_topology's generator frames; no generator runs here
check_whole DURATION "$DURATION" 1 3600
for cpu in ${CLIENT_CPU:-} ${SERVER_CPU:-}; do check_whole "CLIENT_CPU/SERVER_CPU" "$cpu" 0 1023; done
for sys in $SYSTEMS; do [[ -n ${DESC[$sys]:-} ]] || die "unknown system '$sys' in SYSTEMS (known: ${!DESC[*]})"; done
command -v iperf3 >/dev/null || die "iperf3 not found: run deploy/install-deps.sh"
bench_init tcp
# The port-to-port veths, and addresses for the two hosts: host A on the
# generator's veth, host B on the sink's; the no-switch pair on its own subnet.
setup_topology tcp
TCP_SERVER_IP=$DST_IP TCP_DIRECT_SERVER_IP=198.18.1.2
ip -n "$NS_GEN" addr add "$SRC_IP/24" dev "$GEN_IF"
ip -n "$NS_SINK" addr add "$DST_IP/24" dev "$SINK_IF"
ip -n "$NS_GEN" addr add 198.18.1.1/24 dev "$DIRECT_GEN_IF"
ip -n "$NS_SINK" addr add "$TCP_DIRECT_SERVER_IP/24" dev "$DIRECT_SINK_IF"
ip -n "$NS_GEN" link set lo up
ip -n "$NS_SINK" link set lo up
DESC[direct]="no switch: host A -> host B"

declare -A TCP_GBPS TCP_RETR TCP_CPU TCP_SWCPU
TCP_WARN=()

# iperf3_field FILE BLOCK KEY: KEY's number in the "end" summary BLOCK
# (sum_sent or sum_received) of iperf3's JSON.
iperf3_field() {
  awk -v blk="\"$2\"" -v key="\"$3\"" '
    index($0, blk ":") { inblk = 1; next }
    inblk && /}/ { inblk = 0 }
    inblk && index($0, key ":") { sub(/.*:[ \t]*/, ""); sub(/,$/, ""); print; exit }' "$1"
}

# tcp_run NAME: one iperf3 transfer of DURATION seconds through whatever
# forwards between host A and host B now.
tcp_run() {
  local name=$1 base=$TMP/$1.tcp server_ip=$TCP_SERVER_IP server_pid i t0 t1 ticks0 ticks1 err bytes csum0 csum
  local pin_c=() pin_s=()
  # The no-switch path has its own pair of veths and addresses.
  [[ $GEN_IF == "$DIRECT_GEN_IF" ]] && server_ip=$TCP_DIRECT_SERVER_IP
  [[ -n ${CLIENT_CPU:-} ]] && pin_c=(-A "$CLIENT_CPU")
  [[ -n ${SERVER_CPU:-} ]] && pin_s=(-A "$SERVER_CPU")
  note "$name: iperf3 for $DURATION s"
  # One test, then the server exits; timeout bounds it whatever happens.
  ip netns exec "$NS_SINK" timeout $((DURATION + 30)) iperf3 -s -1 -B "$server_ip" "${pin_s[@]}" -J \
    >"$base.server.json" 2>"$base.server.log" &
  server_pid=$!
  PIDS+=("$server_pid")
  for i in $(seq 50); do
    ip netns exec "$NS_SINK" ss -Hltn "sport = :5201" | grep -q . && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  ((i < 50)) || { STATUS[$name]="failed: the iperf3 server did not listen"; stop "$server_pid"; return 0; }
  csum0=$(tcp_csum_errors)
  t0=$(cpu_busy_ticks)
  [[ -n $SW_PID ]] && ticks0=$(proc_cpu_ticks "$SW_PID")
  ip netns exec "$NS_GEN" timeout $((DURATION + 30)) iperf3 -c "$server_ip" -t "$DURATION" "${pin_c[@]}" \
    --connect-timeout 5000 -J >"$base.client.json" 2>"$base.client.log" || true
  t1=$(cpu_busy_ticks)
  [[ -n $SW_PID ]] && ticks1=$(proc_cpu_ticks "$SW_PID")
  reap "$server_pid"
  csum=$(($(tcp_csum_errors) - csum0))
  err=$(sed -n 's/^[[:space:]]*"error":[[:space:]]*"\(.*\)".*/\1/p' "$base.client.json" | head -1)
  TCP_GBPS[$name]=$(iperf3_field "$base.client.json" sum_received bits_per_second)
  TCP_RETR[$name]=$(iperf3_field "$base.client.json" sum_sent retransmits)
  bytes=$(iperf3_field "$base.client.json" sum_received bytes)
  if [[ -n $err ]]; then
    STATUS[$name]="failed: iperf3: $err"
  elif [[ -z ${TCP_GBPS[$name]} || -z $bytes ]]; then
    STATUS[$name]="failed: no result from iperf3: $(tail -1 "$base.client.log")"
  elif [[ $bytes == 0 ]]; then
    STATUS[$name]="failed: host B received nothing"
  else
    STATUS[$name]=ok
    TCP_GBPS[$name]=$(awk -v b="${TCP_GBPS[$name]}" 'BEGIN { printf "%.2f", b / 1e9 }')
    # CPU seconds per Gbit received, in ms: all cores over the whole run, and
    # the switch process alone.
    TCP_CPU[$name]=$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v by="$bytes" \
      'BEGIN { printf "%.0f", (b - a) / hz * 1000 / (by * 8 / 1e9) }')
    TCP_SWCPU[$name]=-
    [[ -n $SW_PID ]] && TCP_SWCPU[$name]=$(awk -v a="$ticks0" -v b="$ticks1" -v hz="$(getconf CLK_TCK)" \
      -v by="$bytes" 'BEGIN { split(a, x, " "); split(b, y, " ")
        printf "%.0f", (y[1] + y[2] - x[1] - x[2]) / hz * 1000 / (by * 8 / 1e9) }')
  fi
  # A switch that forwards a segment whose checksum the sender left to
  # offload (CHECKSUM_PARTIAL) without finishing it delivers a bad checksum.
  if ((csum > 0)); then
    if [[ ${STATUS[$name]} == ok ]]; then
      TCP_WARN+=("${DESC[$name]}: host B dropped $csum segments with bad TCP checksums")
    else
      STATUS[$name]+=" (host B dropped $csum segments with bad TCP checksums: the switch forwarded"
      STATUS[$name]+=" checksums the sender left to offload unfinished)"
    fi
  fi
  note "$name: ${TCP_GBPS[$name]:-?} Gbit/s, ${TCP_RETR[$name]:-?} retransmits"
}

# tcp_csum_errors: TCP segments host B dropped for a bad checksum so far.
tcp_csum_errors() {
  # shellcheck disable=SC2016 # awk's own $ fields
  ip netns exec "$NS_SINK" awk '$1 == "Tcp:" { if (!n) { for (i = 2; i <= NF; i++) if ($i == "InCsumErrors") c = i; n = 1 }
    else { print $c + 0; exit } }' /proc/net/snmp
}

# cpu_busy_ticks: busy clock ticks of all cores so far (/proc/stat, less idle
# and iowait).
cpu_busy_ticks() {
  awk 'NR == 1 { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

for sys in $SYSTEMS; do run_system "$sys" tcp_run; done

echo
echo "scenario tcp: iperf3, one TCP stream host A -> host B (veths), ${DURATION} s per system, default offloads, $NCPU CPUs, kernel $(uname -r)"
printf '%-30s %8s %12s %12s %15s\n' system Gbit/s retransmits "CPU ms/Gbit" "switch ms/Gbit"
for sys in $SYSTEMS; do
  if [[ ${STATUS[$sys]:-} != ok ]]; then
    printf '%-30s %s\n' "${DESC[$sys]}" "${STATUS[$sys]:-not run}"
    continue
  fi
  printf '%-30s %8s %12s %12s %15s\n' "${DESC[$sys]}" "${TCP_GBPS[$sys]}" "${TCP_RETR[$sys]:--}" \
    "${TCP_CPU[$sys]}" "${TCP_SWCPU[$sys]}"
done
cat <<EOF

Gbit/s: TCP payload received by host B (iperf3). retransmits: TCP segments host A sent again.
CPU ms/Gbit: busy time of ALL cores (both iperf3 ends, switch, kernel softirq) per Gbit received.
switch ms/Gbit: the switch process's own user + kernel CPU time per Gbit (xsw, OVS; the
  bridge runs in softirq, not in a process).
EOF
if ((${#TCP_WARN[@]})); then printf 'warning: %s\n' "${TCP_WARN[@]}"; fi
print_xsw_stats "$SYSTEMS"
for sys in $SYSTEMS; do
  [[ ${STATUS[$sys]:-} == ok ]] || exit 1 # the table above says why
done
exit 0
