#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# Cargo's target directory lives outside the clone (override with CARGO_TARGET_DIR) so a
# machine that ran the suite before rebuilds only what changed; a fresh machine builds
# everything from crates.io. Nothing else needs to be installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hissaback/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== hissaback test suite (target dir: $CARGO_TARGET_DIR)"
cargo test --workspace --locked --no-fail-fast
