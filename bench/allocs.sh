#!/usr/bin/env bash
# Heap allocations per request, counted from outside with uprobes on glibc's malloc, calloc
# and realloc (`perf probe`; needs root or perf_event_paranoid -1): a protected request
# through ords-guard (ES256 token, access log off, then on) and a request through the pingora
# floor (examples/passthrough.rs), and the protected request with tracing at sample_ratio 0
# and 1.0 (SPEC §15; the nginx backend stands in as the collector). Loopback only, bounded in time. Counting, not timing:
# each probe hit traps, so the req/s printed here mean nothing.
#
# Usage: bench/allocs.sh      (DURATION=3; BIN=... counts another build)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3}
source "$(dirname "$0")/common.sh"
bench_tools
command -v perf >/dev/null || { echo "allocs.sh: perf is needed (Debian: linux-perf)" >&2; exit 1; }
LIBC=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
for f in malloc calloc realloc; do
  perf probe -l 2>/dev/null | grep -q "probe_libc:$f " || perf probe -q -x "$LIBC" "$f" >/dev/null
done
cargo build --release --quiet --bin ords-guard --example passthrough
BIN=${BIN:-$PWD/target/release/ords-guard}
FLOOR_BIN=$PWD/target/release/examples/passthrough

WORK=$(mktemp -d); mkdir -p "$WORK/out"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
B=$(port); FLOOR=$(port)
start_nginx "$WORK" "$B"
"$BIN" keygen --algorithm ES256 --out "$WORK/keys" >/dev/null
HASH=$(printf '%s' "$SECRET" | "$BIN" hash-secret --scheme sha256)
guard() { # NAME RUST_LOG [MORE_YAML] -> sets PROXY_NAME / PID_NAME
  local p a; p=$(port); a=$(port)
  cat > "$WORK/$1.yaml" <<Y
listen: "127.0.0.1:$p"
admin_listen: "127.0.0.1:$a"
threads: 1
upstream: "http://127.0.0.1:$B"
token: {issuer: ords-guard, algorithm: ES256, signing_key_file: keys/signing.pem, key_id: bench}
privileges: [{name: example_priv, roles: [example_role], patterns: ["/example/*"]}]
clients: [{name: Bench Client, client_id: bench, secrets: ["$HASH"], roles: [example_role]}]
${3:-}
Y
  RUST_LOG=$2 "$BIN" --log-format json run --config "$WORK/$1.yaml" > "$WORK/out/$1.log" 2>&1 &
  eval "PID_$1=$!; PROXY_$1=$p"
  wait_ready "$a"
}
guard off warn
guard on info
guard trace0 warn "tracing: {otlp_endpoint: \"http://127.0.0.1:$B\", sample_ratio: 0}"
guard trace100 warn "tracing: {otlp_endpoint: \"http://127.0.0.1:$B\", sample_ratio: 1.0}"
"$FLOOR_BIN" "127.0.0.1:$FLOOR" "127.0.0.1:$B" > "$WORK/floor.log" 2>&1 & PID_floor=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$FLOOR/" >/dev/null 2>&1 && break; sleep 0.05; done
TOKEN=$(bench_token "$PROXY_off")

# count NAME PID URL [wrk args]: allocations per request over one wrk run (after a warm-up)
count() {
  local name=$1 pid=$2 url=$3; shift 3
  wrk -t1 -c8 -d1s "$@" "$url" >/dev/null   # warm: connections pooled, caches filled
  perf stat -x, -e probe_libc:malloc,probe_libc:calloc,probe_libc:realloc -o "$WORK/stat" -p "$pid" -- sleep $((DURATION + 1)) &
  local perf_pid=$!
  local out; out=$(wrk -t1 -c8 -d"${DURATION}s" "$@" "$url")
  wait "$perf_pid"
  local n; n=$(awk '/ requests in / {print $1}' <<<"$out")
  awk -F, -v n="$n" -v name="$name" '$3 ~ /probe_libc/ {sub("probe_libc:", "", $3); c[$3]=$1; t+=$1}
    END {printf "| %s | %d | %.1f | %.1f | %.1f | %.1f |\n", name, n, t/n, c["malloc"]/n, c["calloc"]/n, c["realloc"]/n}' "$WORK/stat"
}
echo "| path | requests | allocations per request | malloc | calloc | realloc |"
echo "|---|---|---|---|---|---|"
count "pingora floor (no logic)" "$PID_floor" "http://127.0.0.1:$FLOOR/example/1"
count "ords-guard public" "$PID_off" "http://127.0.0.1:$PROXY_off/public/1"
count "ords-guard protected, log off" "$PID_off" "http://127.0.0.1:$PROXY_off/example/1" -H "Authorization: Bearer $TOKEN"
count "ords-guard protected, log on" "$PID_on" "http://127.0.0.1:$PROXY_on/example/1" -H "Authorization: Bearer $TOKEN"
count "ords-guard protected, tracing at sample_ratio 0" "$PID_trace0" "http://127.0.0.1:$PROXY_trace0/example/1" -H "Authorization: Bearer $TOKEN"
count "ords-guard protected, tracing at sample_ratio 1.0" "$PID_trace100" "http://127.0.0.1:$PROXY_trace100/example/1" -H "Authorization: Bearer $TOKEN"
