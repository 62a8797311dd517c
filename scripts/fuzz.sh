#!/usr/bin/env bash
# Coverage-guided fuzzing of the frame parser, the whole pipeline, the control protocol
# decoder and the config parser with AFL++ (cargo-afl; works on stable Rust).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Default 60 s per target (what CI runs via scripts/test.sh); give hours on demand.
# First replays the seed corpus and every saved crash (fuzz/regressions/<target>/) through
# the built targets (run outside afl-fuzz, a target reads one input from stdin), then
# fuzzes each target from its corpus. A crash fails the run and is copied to
# fuzz/regressions/<target>/ to be committed as a regression input.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(frame_parse pipeline control_request config_parse)

command -v cargo-afl >/dev/null || cargo install cargo-afl --locked --version 0.18.2
# Builds AFL++ for this rustc once (a no-op when it is there already).
cargo afl config --build >/dev/null 2>&1 || true

echo "== fuzz: building instrumented targets"
cargo afl build --release --quiet
echo "== fuzz: replaying corpus and regressions"
for target in "${targets[@]}"; do
  for input in corpus/"$target"/* regressions/"$target"/*; do
    [[ -f $input ]] || continue
    "target/release/$target" <"$input" >/dev/null 2>&1 || {
      echo "fuzz: $target fails on $input" >&2
      exit 1
    }
  done
done

# AFL asks the kernel to hand crashes to it, not to a core dump helper, and otherwise
# refuses to start; CI machines and shared hosts differ, so say what we accept.
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1
export AFL_NO_UI=1 AFL_QUIET=1
failed=0
for target in "${targets[@]}"; do
  out=$(mktemp -d "/tmp/xsw-fuzz-$target.XXXXXX")
  echo "== fuzz: $target for ${seconds}s"
  cargo afl fuzz -V "$seconds" -i "corpus/$target" -o "$out" "target/release/$target" >"$out.log" 2>&1 || {
    echo "fuzz: afl-fuzz failed for $target; its log:" >&2
    tail -20 "$out.log" >&2
    failed=1
    continue
  }
  stats="$out/default/fuzzer_stats"
  execs=$(awk -F: '/^execs_done/ {gsub(/ /,"",$2); print $2}' "$stats")
  crashes=$(find "$out/default/crashes" -type f -name 'id:*' | wc -l)
  hangs=$(find "$out/default/hangs" -type f -name 'id:*' | wc -l)
  echo "fuzz: $target: $execs executions, $crashes crashes, $hangs hangs"
  if [[ $crashes -gt 0 ]]; then
    mkdir -p "regressions/$target"
    cp "$out"/default/crashes/id:* "regressions/$target/"
    echo "fuzz: $target crashed; inputs saved in fuzz/regressions/$target/" >&2
    failed=1
  fi
  rm -rf "$out" "$out.log"
done
exit $failed
