#!/usr/bin/env bash
# RFC 2544-style throughput and latency, port to port (veth -> switch -> veth):
# for each frame size and system, a binary search for the highest rate the
# system forwards with at most 0.1% loss, then with zero loss; then latency at
# 10%, 50% and 90% of the zero-loss rate. Writes JSON results and two plots.
#
#   sudo bench/rfc2544.sh
#
# Environment (optional):
#   SIZES="64 512 1518"      frame sizes on the wire incl. FCS
#   SYSTEMS="bridge xsw afxdp"  what to measure (see bench/lib.sh for the names;
#                            the bare XDP redirect forwards faster than the measuring
#                            sink can record, so it is left out by default)
#   TRIAL=3                  seconds per trial (plus 1 s warm-up)
#   STEPS=7                  halvings per search (the final step is 1/2^STEPS of the range)
#   LAT_DURATION=3           seconds per latency run
#   OUT=bench/results/rfc2544-DATE   where the JSON and the plots go
#   GEN_CPU=0 SWITCH_CPU=1, REBUILD=1, KEEP_LOGS=1   as in bench/scenario.sh
#
# Loss is counted by sequence number (xsw-bench sink --measure), so a trial's
# loss is exact; the search assumes loss only grows with the rate, as RFC 2544
# does. The searched range is 0 .. 1.05 x the frames/s measured flat out.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZES=${SIZES:-"64 512 1518"}
SYSTEMS=${SYSTEMS:-"bridge xsw afxdp"}
TRIAL=${TRIAL:-3}
STEPS=${STEPS:-7}
LAT_DURATION=${LAT_DURATION:-3}
OUT=${OUT:-$ROOT/bench/results/rfc2544-$(date +%Y%m%d-%H%M%S)}
check_whole TRIAL "$TRIAL" 1 600
check_whole STEPS "$STEPS" 1 20
check_whole LAT_DURATION "$LAT_DURATION" 1 600
for size in $SIZES; do check_whole "a size in SIZES" "$size" 64 1518; done
for sys in $SYSTEMS; do [[ -n ${DESC[$sys]:-} ]] || die "unknown system '$sys' in SYSTEMS (known: ${!DESC[*]})"; done
bench_init rfc2544
mkdir -p "$OUT"
SIZE=64
setup_topology port-to-port

# trial NAME RATE: stamped frames at RATE; prints the loss in percent.
trial() {
  latency "$1" "$2" "$TRIAL" >/dev/null 2>&1
  if [[ ${LSTATUS[$1]:-} != ok ]]; then
    echo "100"
    return 0
  fi
  # shellcheck disable=SC2086 # LAT holds space-separated numbers
  set -- ${LAT[$1]}
  echo "$3"
}

# search NAME: the two searches and the latency runs for one system and size.
search() {
  local name=$1 run=$1-$SIZE lo hi mid loss step r01 r0 pct rate
  measure "$run" "$TRIAL"
  if [[ ${STATUS[$run]} != ok ]]; then
    note "$name, $SIZE bytes: ${STATUS[$run]}"
    return 0
  fi
  for criterion in 0.1 0; do
    lo=0
    hi=$(awk -v f="${FPS[$run]}" 'BEGIN { printf "%.0f", f * 1.05 }')
    # Zero loss is at most the 0.1% rate: start from there.
    [[ $criterion == 0 ]] && hi=$r01
    for ((step = 0; step < STEPS; step++)); do
      mid=$(((lo + hi) / 2))
      ((mid >= 1)) || break
      loss=$(trial "$run-try" "$mid")
      if awk -v l="$loss" -v c="$criterion" 'BEGIN { exit !(l <= c) }'; then lo=$mid; else hi=$mid; fi
      note "$name, $SIZE bytes, loss <= $criterion%: $mid frames/s -> $loss% loss (range now $lo..$hi)"
    done
    if [[ $criterion == 0.1 ]]; then r01=$lo; else r0=$lo; fi
  done
  printf '{"system":"%s","size":%s,"frames_per_sec":%s,"criterion":"0.1%% loss"}\n' "${DESC[$name]}" "$SIZE" "$r01" \
    >>"$OUT/throughput.jsonl"
  printf '{"system":"%s","size":%s,"frames_per_sec":%s,"criterion":"zero loss"}\n' "${DESC[$name]}" "$SIZE" "$r0" \
    >>"$OUT/throughput.jsonl"
  RESULT_01[$run]=$r01 RESULT_0[$run]=$r0
  for pct in 10 50 90; do
    rate=$((r0 * pct / 100))
    if ((rate < 1)); then
      LATROW[$run-$pct]="no zero-loss rate to take $pct% of"
      continue
    fi
    latency "$run-lat$pct" "$rate" "$LAT_DURATION"
    if [[ ${LSTATUS[$run-lat$pct]} == ok ]]; then
      cp "$TMP/$run-lat$pct.lat.sink.json" "$OUT/latency-$name-$SIZE-$pct.json"
      LATROW[$run-$pct]=${LAT[$run-lat$pct]}
    else
      LATROW[$run-$pct]=${LSTATUS[$run-lat$pct]}
    fi
  done
}

declare -A RESULT_01 RESULT_0 LATROW
for SIZE in $SIZES; do
  GEN_ARGS=(--size "$SIZE" --src-ip "$SRC_IP")
  for sys in $SYSTEMS; do run_system "$sys" search; done
done

echo
echo "RFC 2544-style throughput, port to port, ${TRIAL} s trials, $STEPS steps per search, $NCPU CPUs, kernel $(uname -r)"
printf '%-28s %6s %14s %14s %12s\n' system size "0.1% loss f/s" "0 loss f/s" "0 loss Gb/s"
for SIZE in $SIZES; do
  for sys in $SYSTEMS; do
    run=$sys-$SIZE
    if [[ -z ${RESULT_0[$run]:-} ]]; then
      printf '%-28s %6s %s\n' "${DESC[$sys]}" "$SIZE" "${STATUS[$run]:-not run}"
      continue
    fi
    printf '%-28s %6s %14s %14s %12.2f\n' "${DESC[$sys]}" "$SIZE" "${RESULT_01[$run]}" "${RESULT_0[$run]}" \
      "$(awk -v r="${RESULT_0[$run]}" -v s="$SIZE" 'BEGIN { print r * s * 8 / 1e9 }')"
  done
done
echo
echo "latency at 10/50/90% of the zero-loss rate (one-way, us)"
printf '%-28s %6s %5s %10s %7s %8s %8s %8s %8s %9s\n' system size load frames/s loss% p50 p90 p99 p99.9 max
for SIZE in $SIZES; do
  for sys in $SYSTEMS; do
    for pct in 10 50 90; do
      row=${LATROW[$sys-$SIZE-$pct]:-}
      [[ -n $row ]] || continue
      if [[ $row =~ ^[0-9] ]]; then
        # shellcheck disable=SC2086 # the row holds space-separated numbers
        set -- $row
        printf '%-28s %6s %4s%% %10.0f %7.3f %8.1f %8.1f %8.1f %8.1f %9.1f\n' "${DESC[$sys]}" "$SIZE" "$pct" "$1" "$3" \
          "$(awk -v v="$5" 'BEGIN { print v / 1000 }')" "$(awk -v v="$6" 'BEGIN { print v / 1000 }')" \
          "$(awk -v v="$7" 'BEGIN { print v / 1000 }')" "$(awk -v v="$8" 'BEGIN { print v / 1000 }')" \
          "$(awk -v v="$9" 'BEGIN { print v / 1000 }')"
      else
        printf '%-28s %6s %4s%% %s\n' "${DESC[$sys]}" "$SIZE" "$pct" "$row"
      fi
    done
  done
done

# Pictures: throughput by size; latency distribution at 50% load, smallest size.
plots=()
if [[ -s $OUT/throughput.jsonl ]] &&
  "$BENCH" plot throughput --title "RFC 2544 throughput, port to port ($(uname -r), $NCPU CPUs)" \
    --out "$OUT/throughput.svg" "$OUT/throughput.jsonl" 2>"$TMP/plot.log"; then
  plots+=("$OUT/throughput.svg")
else
  note "warning: no throughput plot: $(tail -1 "$TMP/plot.log" 2>/dev/null)"
fi
first=${SIZES%% *}
inputs=()
for sys in $SYSTEMS; do
  f=$OUT/latency-$sys-$first-50.json
  [[ -f $f ]] && inputs+=("${DESC[$sys]}=$f")
done
if ((${#inputs[@]})) &&
  "$BENCH" plot latency --title "one-way latency, $first-byte frames at 50% of each system's zero-loss rate" \
    --out "$OUT/latency.svg" "${inputs[@]}" 2>"$TMP/plot.log"; then
  plots+=("$OUT/latency.svg")
else
  note "warning: no latency plot: $(tail -1 "$TMP/plot.log" 2>/dev/null)"
fi
echo
echo "results: $OUT/throughput.jsonl, $OUT/latency-*.json${plots[*]:+, plots: ${plots[*]}}"
