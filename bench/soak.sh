#!/usr/bin/env bash
# Soak: mixed traffic (unicast in two tenants, broadcast, a trunk's tagged frames)
# through xswd while ports, ACL rules and static MACs change every second, then a
# report: frames sent and received, drops by reason, frames lost without a counter
# saying why (must be 0), UMEM frames held or stranded at the end (must be 0), and
# xswd's RSS growth. It is tests/soak.rs, run for longer:
#
#   sudo bench/soak.sh [SECONDS]     # 600 by default; CI runs 60 (scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $EUID -eq 0 ]] || { echo "soak: run as root" >&2; exit 1; }
seconds=${1:-600}
cargo build --workspace --all-targets --quiet
XSW_BIN_DIR="$PWD/target/debug" XSW_SOAK_SECS="$seconds" \
  cargo test --quiet -p xsw-integration --test soak -- --nocapture 2>&1 |
  grep -E '^(soak|red|blue|lost|UMEM|xswd RSS|test result)|Error'
