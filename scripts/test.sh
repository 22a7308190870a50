#!/usr/bin/env bash
# The test command (README, .ci/run): the book, every test, then a build of the fuzz targets
# (running them is scripts/fuzz.sh, too long for CI).
set -euo pipefail
cd "$(dirname "$0")/.."
# The book builds (a missing chapter file or a bad include fails it); tests/docs.rs checks
# its links and anchors, tests/config_reference.rs its configuration keys.
.tools/mdbook/bin/mdbook build docs
cargo test --locked
# In the tests' target/ (fuzz/Cargo.toml keeps the same dev profile): the dependencies the
# tests compiled are reused, ~3 minutes less than a target/ of its own.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}" cargo build --locked --manifest-path fuzz/Cargo.toml --bins
