#!/usr/bin/env bash
# Every benchmark, one after the other, with the reports kept: the six
# scenarios, the RFC 2544 searches with their plots, and the pure-pipeline
# micro-benchmarks. About 30 minutes on a 2-core machine.
#
#   sudo bench/run-all.sh
#
# Environment: OUT (default bench/results/DATE) and everything bench/scenario.sh
# and bench/rfc2544.sh take (DURATION, SIZE, GEN_CPU, SWITCH_CPU, ...).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
failed=()

for scenario in port-to-port veth-tap acl flows two-workers tcp; do
  echo "=== scenario $scenario" | tee -a "$OUT/summary.txt"
  if ! RESULTS=$OUT/scenarios.jsonl "$HERE/scenario.sh" "$scenario" 2>"$OUT/$scenario.log" | tee "$OUT/$scenario.txt"; then
    failed+=("$scenario")
  fi
done
echo "=== RFC 2544" | tee -a "$OUT/summary.txt"
OUT=$OUT/rfc2544 "$HERE/rfc2544.sh" 2>"$OUT/rfc2544.log" | tee "$OUT/rfc2544.txt" || failed+=(rfc2544)
echo "=== pure pipeline (criterion)" | tee -a "$OUT/summary.txt"
(cd "$HERE/.." && cargo bench -p xsw --bench pipeline 2>&1) | tee "$OUT/pipeline.txt" | tail -30 || failed+=(pipeline)

echo
echo "reports in $OUT"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]} (see $OUT/<name>.log)"
  exit 1
fi
