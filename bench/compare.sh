#!/usr/bin/env bash
# Compare two ords-guard binaries (e.g. the previous commit's and this one's release builds)
# on one nginx backend, alternating wrk rounds so noise hits both alike. Loopback only.
#   bench/compare.sh OLD_BIN NEW_BIN      (ROUNDS=3 DURATION=10 CONNS="32")
# Each line: binary, path, client connections, req/s, and the share of requests that made
# the proxy open a new connection to the backend (from nginx's accept counter). The paths:
# public, protected (an ES256 token) and token (the token endpoint minting ES256 tokens for
# a sha256 secret; it makes no backend connections).
set -euo pipefail
OLD=$1; NEW=$2; ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; CONNS=${CONNS:-32}
source "$(dirname "$0")/common.sh"
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
B=$(port); P1=$(port); A1=$(port); P2=$(port); A2=$(port)
start_nginx "$WORK" "$B"
"$NEW" keygen --algorithm ES256 --out "$WORK/keys" >/dev/null
HASH=$(printf '%s' "$SECRET" | "$NEW" hash-secret --scheme sha256)
cfg() { cat > "$WORK/$1.yaml" <<EOF
listen: "127.0.0.1:$2"
admin_listen: "127.0.0.1:$3"
threads: 1
upstream: "http://127.0.0.1:$B"
token: {algorithm: ES256, signing_key_file: keys/signing.pem, key_id: bench}
privileges: [{name: example_priv, roles: [example_role], patterns: ["/example/*"]}]
clients: [{name: Bench, client_id: bench, secrets: ["$HASH"], roles: [example_role]}]
EOF
}
cfg old $P1 $A1; cfg new $P2 $A2
RUST_LOG=warn "$OLD" run --config "$WORK/old.yaml" >/dev/null 2>&1 &
RUST_LOG=warn "$NEW" run --config "$WORK/new.yaml" >/dev/null 2>&1 &
wait_ready "$A1"; wait_ready "$A2"
TOKEN=$(bench_token "$P2")
token_lua "$WORK/token.lua"
# rps CONNS wrk-args...: "req/s new-upstream-connections-per-100-requests"
rps() {
  local c=$1; shift
  local before after out
  before=$(backend_accepts "$B")
  out=$(wrk -t1 -c"$c" -d"${DURATION}s" "$@")
  after=$(backend_accepts "$B")
  awk -v opened=$(( after - before - 1 )) '/^Requests\/sec/ {r=$2} / requests in / {n=$1} END {printf "%s %.2f%%", r, n ? 100*opened/n : 0}' <<<"$out"
}
for r in $(seq $ROUNDS); do
  for c in $CONNS; do
    for v in old new; do
      p=$P1; [ $v = new ] && p=$P2
      echo "$v public $c $(rps "$c" http://127.0.0.1:$p/public/x)"
      echo "$v protected $c $(rps "$c" -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$p/example/1)"
      echo "$v token $c $(rps "$c" -s "$WORK/token.lua" http://127.0.0.1:$p/oauth/token)"
    done
  done
done
