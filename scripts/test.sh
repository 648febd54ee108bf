#!/usr/bin/env bash
# Sets up what is missing, then runs every check and test of the workspace:
# formatting, clippy (warnings are errors), unit/integration/doc tests of every crate, the
# examples (built, then run against the local realtime server with WAV input), and the
# docs (rustdoc warnings are errors). `just test` and .ci/run call this.
set -euo pipefail
cd "$(dirname "$0")/.."
export LIVEAGENT_SHARED=${LIVEAGENT_SHARED:-$(cd .. && pwd)/shared}

scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Benches are compiled by clippy --all-targets above but not run here: they are measurements
# (scripts/bench.sh), not tests.
step "cargo clippy with the optional features on (Redis store, OpenTelemetry)"
cargo clippy -p liveagent-store -p liveagent-metrics --all-targets --all-features -- -D warnings

step "cargo test (every crate; examples built)"
cargo test --workspace --lib --bins --tests --examples --no-fail-fast

step "OpenTelemetry export (feature otel)"
cargo test -p liveagent-metrics --features otel --test otel

step "doc tests"
cargo test --workspace --doc

step "examples against the local realtime server"
scripts/run-examples.sh

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo
echo "all checks passed"
