#!/usr/bin/env bash
# Runs every xsw test: unit tests, property tests, and the integration tests
# that start the real xswd in network namespaces they create (root needed;
# nothing is skipped). Installs missing build dependencies first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "test: run as root (sudo $0): the integration tests create namespaces, veths, taps and XDP programs" >&2
  exit 1
fi

./deploy/install-deps.sh
echo "== building"
cargo build --workspace --all-targets
# Habits: unsafe blocks carry SAFETY comments, no unwrap/expect outside tests, no
# warnings (workspace lints in Cargo.toml, test allowances in clippy.toml).
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests"
export XSW_BIN_DIR="$PWD/target/debug"
# Two cores: integration tests each run a switch; keep them from starving.
cargo test --workspace -- --test-threads=2
# Coverage-guided fuzzing, briefly (replays the corpus and saved crashes first); run
# scripts/fuzz.sh with more seconds per target for a longer session.
./scripts/fuzz.sh "${XSW_FUZZ_SECONDS:-45}"
