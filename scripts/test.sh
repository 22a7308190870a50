#!/usr/bin/env bash
# The test command (README, .ci/run): every test, then a build of the fuzz targets (running
# them is scripts/fuzz.sh, too long for CI).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked
cargo build --locked --manifest-path fuzz/Cargo.toml --bins
