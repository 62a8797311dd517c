#!/usr/bin/env bash
# One benchmark scenario: the same traffic through xsw and through what a user
# would run instead, one after the other in one run, printed side by side.
#
#   sudo bench/scenario.sh SCENARIO [DURATION]    # DURATION: seconds per system (10)
#
# Scenarios (each builds its namespaces, veths and taps, and removes them):
#   port-to-port  veth -> veth, one worker. Systems: bridge, xsw (adaptive,
#                 fast path off, XDP hook, busy-poll), bare AF_XDP forwarder,
#                 Open vSwitch (AF_XDP ports, one PMD), bare XDP redirect, no switch.
#   veth-tap      veth -> tap read by a "guest" process (xsw-bench tap-sink, like
#                 QEMU). Systems: bridge, xsw, bare AF_XDP forwarder, no switch
#                 (veth, for the generator's cost), and the generator writing
#                 straight into a tap (the guest reader's ceiling).
#   acl           one tenant with 1,000 ACL rules and anti-spoofing on the ingress
#                 port. Systems: bridge + nftables with the same 1,000 rules and
#                 anti-spoofing, xsw, bare AF_XDP forwarder (no filtering), no switch.
#   flows         100,000 source MACs/IPs (flows) that the switch must learn.
#                 Systems: bridge, xsw, bare AF_XDP forwarder, no switch.
#   two-workers   two-queue veths, two generators (one per core), xsw with one
#                 worker per core. Systems: bridge, xsw with 1 worker, xsw with 2.
#   tcp           iperf3 between two veth hosts: runs bench/tcp.sh (its own
#                 measurement and report).
#   soak          mixed traffic under control churn for DURATION (600 s): runs
#                 bench/soak.sh (frames lost unexplained, UMEM leaks, RSS growth).
#
# Environment (optional):
#   DURATION=10     seconds measured per system (plus 1 s warm-up)
#   SIZE=64         frame size on the wire incl. FCS (64..1518); IMIX=1 for 7:4:1 IMIX
#   SYSTEMS="..."   subset and order of the systems (defaults above)
#   GEN_CPU=0 SWITCH_CPU=1   cores of the generator and of xsw's worker
#   LAT_DURATION=5  seconds of the latency run per system (0: none)
#   LAT_RATE=N      frames/s of the latency runs (default: half the lowest
#                   frames/s of the systems measured, so none is overloaded)
#   RESULTS=FILE    append one JSON line per result (for xsw-bench plot)
#   REBUILD=1       rebuild the binaries; KEEP_LOGS=1 keep the per-run logs
#   XSWD, XSWCTL, XSW_BENCH   binaries to use instead of target/release/*
# TCP bulk transfer (iperf3 between two hosts) measures otherwise: bench/tcp.sh.
[[ ${1:-} != tcp ]] || exec "$(dirname "${BASH_SOURCE[0]}")/tcp.sh" "${@:2}"
[[ ${1:-} != soak ]] || exec "$(dirname "${BASH_SOURCE[0]}")/soak.sh" "${@:2}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCENARIO=${1:-}
DURATION=${2:-${DURATION:-10}}
SIZE=${SIZE:-64}
LAT_DURATION=${LAT_DURATION:-5}
LAT_RATE=${LAT_RATE:-}
case $SCENARIO in
  port-to-port) DEFAULT_SYSTEMS="bridge xsw xsw-nofast xsw-xdp xsw-busy afxdp ovs xdp direct" ;;
  veth-tap) DEFAULT_SYSTEMS="bridge xsw afxdp direct direct-tap" ;;
  flows) DEFAULT_SYSTEMS="bridge xsw afxdp direct" ;;
  acl) DEFAULT_SYSTEMS="bridge-nft xsw afxdp direct" ;;
  two-workers) DEFAULT_SYSTEMS="bridge xsw-1w xsw direct" ;;
  *) die "usage: $0 port-to-port|veth-tap|acl|flows|two-workers|tcp|soak [DURATION] (got '${SCENARIO}')" ;;
esac
SYSTEMS=${SYSTEMS:-$DEFAULT_SYSTEMS}
check_whole DURATION "$DURATION" 1 3600
check_whole SIZE "$SIZE" 64 1518
[[ $SINK_XDP_MODE == generic || $SINK_XDP_MODE == native ]] || die "SINK_XDP_MODE must be generic or native (got '${SINK_XDP_MODE}')"
check_whole LAT_DURATION "$LAT_DURATION" 0 3600
[[ -z $LAT_RATE ]] || check_whole LAT_RATE "$LAT_RATE" 1 1000000000
for sys in $SYSTEMS; do [[ -n ${DESC[$sys]:-} ]] || die "unknown system '$sys' in SYSTEMS (known: ${!DESC[*]})"; done
bench_init "$SCENARIO"

setup_topology "$SCENARIO"

# --- measurements -----------------------------------------------------------------
# Throughput flat out for every system first; then latency at one rate for
# all: half the lowest frames/s any of them managed, so every system carries
# the same load and none is overloaded.
throughput() { measure "$1" "$DURATION"; }
delay() { latency "$1" "$LAT_RATE" "$LAT_DURATION"; }
for sys in $SYSTEMS; do run_system "$sys" throughput; done
if ((LAT_DURATION > 0)); then
  if [[ -z $LAT_RATE ]]; then
    LAT_RATE=$(for sys in $SYSTEMS; do
      if [[ ${STATUS[$sys]:-} == ok && $sys != direct ]]; then echo "${FPS[$sys]}"; fi
    done | sort -g | head -1)
    LAT_RATE=$(awk -v f="${LAT_RATE:-200000}" 'BEGIN { r = int(f / 2); print (r >= 1 ? r : 1) }')
  fi
  for sys in $SYSTEMS; do run_system "$sys" delay; done
fi

# --- report -----------------------------------------------------------------------
size_label=$SIZE-byte
[[ ${IMIX:-0} == 1 ]] && size_label="IMIX (7:4:1 of 64/594/1518-byte)"
echo
echo "scenario $SCENARIO: $size_label frames, ${DURATION} s per system, generator on CPU ${GEN_CPUS:-$GEN_CPU}, $NCPU CPUs, kernel $(uname -r)"
printf '%-30s %11s %8s %7s %10s %10s %10s %10s\n' system frames/s Gbit/s loss% "CPU ns/fr" "net ns/fr" "user ns/fr" "sys ns/fr"
direct_cpu=""
if [[ ${STATUS[direct]:-} == ok ]]; then direct_cpu=${CPUNS[direct]}; fi
declare -A NET
for sys in $SYSTEMS; do
  if [[ ${STATUS[$sys]:-} != ok ]]; then
    printf '%-30s %s\n' "${DESC[$sys]}" "${STATUS[$sys]:-not run}"
    continue
  fi
  # CPU net of the generator-to-sink path: what that path alone costs per
  # frame (the "no switch" row) times the frames the generator offered.
  NET[$sys]=-
  [[ -n $direct_cpu && $sys != direct* ]] && NET[$sys]=$(awk -v c="${CPUNS[$sys]}" -v d="$direct_cpu" \
    -v o="${OFFERED[$sys]}" -v f="${FPS[$sys]}" 'BEGIN { printf "%.0f", c - d * o / f }')
  printf '%-30s %11.0f %8s %7s %10.0f %10s %10s %10s\n' "${DESC[$sys]}" "${FPS[$sys]}" "${GBPS[$sys]:--}" \
    "$(awk -v o="${OFFERED[$sys]}" -v f="${FPS[$sys]}" 'BEGIN { l = o > 0 ? (1 - f / o) * 100 : 0; printf "%.1f", l < 0 ? 0 : l }')" \
    "${CPUNS[$sys]}" "${NET[$sys]}" "${SWUSER[$sys]:--}" "${SWSYS[$sys]:--}"
  if [[ -n ${RESULTS:-} ]]; then
    printf '{"scenario":"%s","system":"%s","size":%s,"frames_per_sec":%s,"cpu_ns_per_frame":%s,"criterion":"flat out"}\n' \
      "$SCENARIO" "${DESC[$sys]}" "$([[ ${IMIX:-0} == 1 ]] && echo '"imix"' || echo "$SIZE")" "${FPS[$sys]}" \
      "${CPUNS[$sys]}" >>"$RESULTS"
  fi
done
cat <<EOF

frames/s: counted by the sink. loss%: offered by the generator but not delivered.
CPU ns/fr: busy time of ALL cores (generator, switch, kernel softirq) per delivered frame (/proc/stat).
net ns/fr: that minus what the generator-to-sink path alone costs for the frames offered
  (the "no switch" row's CPU per frame x offered / delivered): the cost of the switch.
user/sys ns/fr: the switch process's own user and kernel CPU time per delivered frame
  (xsw, the bare AF_XDP forwarder, OVS; the bridge and XDP run in softirq, not in a process).
EOF

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
for x in xsw xsw-nofast xsw-xdp xsw-busy xsw-1w; do
  [[ ${STATUS[$x]:-} == ok ]] || continue
  line=""
  for base in bridge bridge-nft afxdp ovs xdp xsw-1w; do
    [[ $base != "$x" && ${STATUS[$base]:-} == ok ]] || continue
    line+="  ${DESC[$base]}: $(ratio "${FPS[$x]}" "${FPS[$base]}")x frames/s"
    [[ ${NET[$x]:--} != - && ${NET[$base]:--} != - ]] && line+=", $(ratio "${NET[$x]}" "${NET[$base]}")x net CPU/frame"
    line+=";"
  done
  if [[ -n $line ]]; then echo "${DESC[$x]} against$line"; fi
done

if ((LAT_DURATION > 0)); then
  echo
  echo "latency: stamped frames at ${LAT_RATE:-?} frames/s, ${LAT_DURATION} s per system (one-way, generator -> sink, us)"
  printf '%-30s %10s %8s %7s %9s %8s %8s %8s %8s %9s\n' system frames/s lost loss% reordered p50 p90 p99 p99.9 max
  for sys in $SYSTEMS; do
    if [[ ${LSTATUS[$sys]:-} == ok ]]; then
      # shellcheck disable=SC2086 # word splitting of the stored fields is wanted
      set -- ${LAT[$sys]}
      printf '%-30s %10.0f %8s %7.3f %9s %8.1f %8.1f %8.1f %8.1f %9.1f\n' "${DESC[$sys]}" "$1" "$2" "$3" "$4" \
        "$(awk -v v="$5" 'BEGIN { print v / 1000 }')" "$(awk -v v="$6" 'BEGIN { print v / 1000 }')" \
        "$(awk -v v="$7" 'BEGIN { print v / 1000 }')" "$(awk -v v="$8" 'BEGIN { print v / 1000 }')" \
        "$(awk -v v="$9" 'BEGIN { print v / 1000 }')"
    else
      printf '%-30s %s\n' "${DESC[$sys]}" "${LSTATUS[$sys]:-not run}"
    fi
  done
  echo "lost: frames missing from the received sequence-number range; reordered: frames older than one already seen."
fi

# --- targets ----------------------------------------------------------------------
target() { # target TEXT MEASURED LIMIT le|ge
  local verdict
  verdict=$(awk -v m="$2" -v l="$3" -v op="$4" 'BEGIN { ok = (op == "le") ? m <= l : m >= l; print ok ? "met" : "MISSED" }')
  printf '  %-70s %8s (limit %s) %s\n' "$1" "$2" "$3" "$verdict"
}
targets=()
if [[ $SCENARIO == port-to-port && ${STATUS[xsw]:-} == ok && ${STATUS[afxdp]:-} == ok ]]; then
  targets+=("$(target "xsw frames/s / bare AF_XDP forwarder's" "$(ratio "${FPS[xsw]}" "${FPS[afxdp]}")" 0.90 ge)")
  if [[ ${NET[xsw]:--} != - && ${NET[afxdp]:--} != - ]]; then
    targets+=("$(target "xsw net CPU per frame / bare AF_XDP forwarder's" "$(ratio "${NET[xsw]}" "${NET[afxdp]}")" 1.15 le)")
  fi
fi
if [[ $SCENARIO == port-to-port && ${STATUS[xsw]:-} == ok && ${STATUS[xsw-busy]:-} == ok ]]; then
  targets+=("$(target "xsw adaptive frames/s / busy-poll's" "$(ratio "${FPS[xsw]}" "${FPS[xsw-busy]}")" 0.95 ge)")
fi
if [[ $SCENARIO == acl && ${STATUS[xsw]:-} == ok && -n ${SWUSER[xsw]:-} ]]; then
  targets+=("$(target "xsw user-space ns per frame, anti-spoofing + 1,000 ACL rules" "${SWUSER[xsw]}" 40 le)")
fi
if ((${#targets[@]})); then
  echo
  echo "performance targets (this run):"
  printf '%s\n' "${targets[@]}"
fi
print_xsw_stats "$SYSTEMS"
for sys in $SYSTEMS; do
  [[ ${STATUS[$sys]:-} == ok ]] || exit 1 # the table above says why
  ((LAT_DURATION == 0)) || [[ ${LSTATUS[$sys]:-} == ok ]] || exit 1
done
exit 0
