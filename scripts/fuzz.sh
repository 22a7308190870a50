#!/usr/bin/env bash
# Run every fuzz target for a bounded time (default 600 s each), from its committed seed
# corpus. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain the
# sanitizer flags are allowed with RUSTC_BOOTSTRAP=1.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-600}; shift || true
TARGETS=("$@"); [ ${#TARGETS[@]} -gt 0 ] || TARGETS=(path_decision pattern jwt token_endpoint config request_head chunked_body jwks json_pointer token_answer h2_frames introspection_answer)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
for t in "${TARGETS[@]}"; do
  # New inputs go to fuzz/corpus-run (ignored); the committed seeds stay as they are.
  mkdir -p "fuzz/corpus-run/$t" "fuzz/artifacts/$t"
  echo "== $t ($SECONDS_EACH s)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "fuzz/corpus-run/$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*panicked)|Done [0-9]+ runs" || true
done
