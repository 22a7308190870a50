#!/usr/bin/env bash
# Issue #10: what an unauthenticated flood costs the forwarding path. Loopback only,
# bounded in time.
#
# One ords-guard (`threads: 1`, ES256, a registry with an argon2id client, access log off)
# in front of nginx. wrk (1 thread, 32 connections) measures the public path for DURATION
# seconds, in alternating rounds, while one of these runs beside it (examples/flood.rs;
# every request a new connection from a random 127.x.y.z source, so no per-address
# throttle applies):
#   none    nothing
#   token   token requests with random unknown client ids, RATE/s, CONC at a time
#   forged  GET of a protected path with distinct forged ES256 tokens, RATE/s, CONC at a time
#           (the real kid and a registered client id: nothing cheap tells them apart)
#   forged_max  the same at FORGED_MAX_RATE/s
#   plain_max   the same requests without a token at FORGED_MAX_RATE/s: what the
#               connections alone cost, so forged_max - plain_max is the signature checks
#   opaque      GET of a protected path with distinct random opaque tokens, RATE/s, each
#               one the identity provider (nginx's /introspect, answering `active: false`)
#               is asked about
#   opaque_max  the same at FORGED_MAX_RATE/s: SPEC §16 bounds the calls to 100 a second
#               and 16 at once, the rest get 503
# Prints req/s and p99 per phase, ratios to `none`, and the guard's peak RSS per phase.
#
# Usage: bench/flood.sh   (DURATION=10 ROUNDS=3 RATE=50 CONC=16 FORGED_MAX_RATE=2000;
#                          BIN=path/to/ords-guard to measure another build;
#                          PHASES="none opaque opaque_max" to run only those)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-50}
CONC=${CONC:-16}
FORGED_MAX_RATE=${FORGED_MAX_RATE:-2000}
PHASES=${PHASES:-none token forged forged_max plain_max opaque opaque_max}

source "$(dirname "$0")/common.sh"
bench_tools
./scripts/setup.sh
cargo build --release --quiet --bin ords-guard --example flood
BIN=${BIN:-$PWD/target/release/ords-guard}
FLOOD=$PWD/target/release/examples/flood

WORK=$(mktemp -d)
cleanup() { kill "${GUARD_PID:-}" "${NGINX_PID:-}" "${FLOOD_PID:-}" "${WATCH_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
BACKEND=$(port); PROXY=$(port); ADMIN=$(port)

start_nginx "$WORK" "$BACKEND"

"$BIN" keygen --algorithm ES256 --out "$WORK/keys" >/dev/null
ARGON=$(printf 'a chosen secret' | "$BIN" hash-secret --scheme argon2id)
cat > "$WORK/ords-guard.yaml" <<EOF
listen: "127.0.0.1:$PROXY"
admin_listen: "127.0.0.1:$ADMIN"
threads: 1
upstream: "http://127.0.0.1:$BACKEND"
token: {algorithm: ES256, signing_key_file: keys/signing.pem, key_id: bench}
privileges: [{name: example_priv, roles: [example_role], patterns: ["/example/*"]}]
clients: [{name: Chosen, client_id: chosen, secrets: ['$ARGON'], roles: [example_role]}]
issuers:
  - name: opaque-as
    issuer: "https://as.example"
    introspection: {url: "http://127.0.0.1:$BACKEND/introspect", client_id: ords-guard, client_secret_file: introspect.secret}
EOF
echo "bench-introspection-secret" > "$WORK/introspect.secret"
RUST_LOG=warn "$BIN" run --config "$WORK/ords-guard.yaml" > "$WORK/guard.log" 2>&1 & GUARD_PID=$!
wait_ready "$ADMIN"
curl -sf "http://127.0.0.1:$PROXY/public" >/dev/null

# Peak RSS of the guard while a phase runs: sampled every 100 ms into $WORK/rss.
watch_rss() { while :; do awk '$1=="VmRSS:" {print int($2/1024)}' "/proc/$GUARD_PID/status"; sleep 0.1; done > "$WORK/rss"; }

: > "$WORK/results"
run() { # NAME [flood args...]
  local name=$1; shift
  case " $PHASES " in *" $name "*) ;; *) return 0 ;; esac
  if [ $# -gt 0 ]; then "$FLOOD" "$@" >> "$WORK/flood.log" & FLOOD_PID=$!; fi
  watch_rss & WATCH_PID=$!
  local out; out=$(wrk -t1 -c32 -d"${DURATION}s" --latency "http://127.0.0.1:$PROXY/public/x")
  kill "$WATCH_PID"; wait "$WATCH_PID" 2>/dev/null || true
  if [ $# -gt 0 ]; then wait "$FLOOD_PID" || true; fi
  local rps p99 peak
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
  peak=$(sort -n "$WORK/rss" | tail -1)
  echo "$name $rps $p99 $peak" >> "$WORK/results"
}
for r in $(seq "$ROUNDS"); do
  run none
  run token token "127.0.0.1:$PROXY" "$RATE" "$CONC" "$DURATION"
  run forged forged "127.0.0.1:$PROXY" "$RATE" "$CONC" "$DURATION" /example/1 bench chosen
  run forged_max forged "127.0.0.1:$PROXY" "$FORGED_MAX_RATE" "$CONC" "$DURATION" /example/1 bench chosen
  run plain_max plain "127.0.0.1:$PROXY" "$FORGED_MAX_RATE" "$CONC" "$DURATION" /example/1 bench
  run opaque opaque "127.0.0.1:$PROXY" "$RATE" "$CONC" "$DURATION" /example/1 bench
  run opaque_max opaque "127.0.0.1:$PROXY" "$FORGED_MAX_RATE" "$CONC" "$DURATION" /example/1 bench
done

echo "$("$BIN" --version), threads: 1; wrk -t1 -c32 -d${DURATION}s on the public path; $ROUNDS alternating rounds"
echo "flood: RATE=$RATE/s CONC=$CONC (forged_max: $FORGED_MAX_RATE/s), random ids and 127.x.y.z sources"
echo
awk '
  { n[$1]++; rps[$1]+=$2; p99[$1]+=$3; if ($4 > peak[$1]) peak[$1]=$4
    if (!($1 in lo) || $2 < lo[$1]) lo[$1]=$2; if ($2 > hi[$1]) hi[$1]=$2 }
  END {
    printf "| flood | public req/s | x none | rounds min-max | p99 ms | x none | peak RSS MiB |\n|---|---|---|---|---|---|---|\n"
    split("none token forged forged_max plain_max opaque opaque_max", order, " ")
    for (i = 1; i <= 7; i++) { k = order[i]; if (!n[k]) continue
      printf "| %s | %.0f | %.2f | %.0f-%.0f | %.2f | %.2f | %d |\n", k, rps[k]/n[k], (rps[k]/n[k])/(rps["none"]/n["none"]), lo[k], hi[k], p99[k]/n[k], (p99[k]/n[k])/(p99["none"]/n["none"]), peak[k] }
  }' "$WORK/results"
echo
cat "$WORK/flood.log"
echo
echo "introspection calls (opaque_max: $ROUNDS x ${DURATION}s; SPEC §16 allows 100 + 100 a second):"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep '^ords_guard_introspections_total'
