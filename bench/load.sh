#!/usr/bin/env bash
# Whole-proxy load benchmark, on loopback only, bounded in time.
#
# Starts nginx (a fast backend) and ords-guard (`threads: 1`, ES256), then runs wrk
# (1 thread, 32 connections) against, in alternating rounds:
#   direct      the backend alone
#   floor       through a pingora proxy with no logic (examples/passthrough.rs; its
#               upstream keep-alive pool as large as ords-guard's default, 10,000)
#   public      through ords-guard, a path no privilege covers
#   protected   through ords-guard, a protected path with a valid ES256 token
#   protected_issuer  the same with an identity provider's token (ES256 too, so the
#               tokens are the same size; keys from a jwks_file; the IdP is a third ords-guard)
#   protected_limited  the protected path on a guard with a local rate limit per client
#               that never refuses (SPEC §13)
#   protected_shared   the same limit in the shared store: a redis-server on loopback,
#               persistence off (one EVALSHA round trip per request)
#   protected_trace0, protected_trace5, protected_trace100  the protected path on guards
#               with `tracing` at sample_ratio 0, 0.05 and 1.0 (SPEC §15; the nginx backend
#               stands in as the OTLP collector, answering 200 to every export)
#   protected_log  the protected path on a guard with its access log on (the default
#               level, JSON lines to a file), against `protected` whose log is off
#   401         through ords-guard, a protected path without a token
#   egress      a legacy caller's plain GET through an egress-only ords-guard (SPEC §10),
#               which attaches a token it got from the first guard's token endpoint
#   token       the token endpoint (sha256 secret, ES256 signing)
#   token_hs256 the same on a second ords-guard that signs HS256
#   public_256, public_1000  the public path with 256 and 1,000 client connections (on a
#               guard of their own, so its memory does not move the RSS figures below)
#   bounded_1000  the same at 1,000 on a guard with `max_upstream_connections: 32`
#   floor_256, floor_1000  the floor at 256 and 1,000 client connections: what pingora
#               alone keeps of its 32-connection figure on this machine
#   authz_check the main guard's `/authz/forward-auth` (SPEC §14) with the protected path's
#               method, target and token, as Traefik or Caddy ask: the decision alone
#   authz_grpc  Envoy's gRPC Check on the main guard's `authz.grpc_listen`, sent by
#               examples/grpc_check_load.rs (32 concurrent calls over 4 h2 connections)
#   public_h2, protected_h2  the public and protected paths over h2c (h2load, 32
#               connections, one stream each: the same concurrency as wrk's), SPEC §17
#   protected_h2_m8  the protected path over h2c, 4 connections of 8 streams each
#   grpc_direct, grpc_through  unary gRPC calls (grpc.health.v1 Check, examples/grpc_backend.rs
#               on one thread) sent by examples/grpc_check_load.rs, 32 concurrent calls over 4
#               h2c connections: to the service, and through a guard (upstream_protocol: h2c)
#               deciding each call on its method path with the token as metadata, SPEC §17
#   nginx_authz nginx (one worker) in front with `auth_request` to the main guard, exactly
#               docs/src/guides/authz-nginx.conf, the protected path with its token: the
#               same request as `protected`, with the CPU of nginx and ords-guard apart
# (every figure also gives the share of requests that opened a new backend connection)
# and prints req/s, p99 latency, the CPU time per request of the process serving it (from
# /proc/PID/stat around each wrk run: nginx's worker for direct), the ratios protected/public and public/direct, and
# ords-guard's RSS (idle, peak under load, and with a 10k-client / 1k-privilege registry,
# with that registry's reload time, and with 10 identity providers of 100 RSA keys each).
#
# Usage: bench/load.sh            (DURATION=10 ROUNDS=2 CONNS=32 by default)
#        ONLY="protected protected_shared" bench/load.sh   runs only those scenarios
#        (ratios whose scenarios did not run print as "-")
#        PER_ROUND=1 bench/load.sh   also prints each round's line (name, req/s, p99 ms,
#        non-2xx, CPU µs/request, new backend connections %), to see the noise
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-32}
ONLY=${ONLY:-}
PER_ROUND=${PER_ROUND:-}

source "$(dirname "$0")/common.sh"
bench_tools
./scripts/setup.sh
cargo build --release --quiet --bin ords-guard --example passthrough --example grpc_check_load --example grpc_backend
BIN=${BIN:-$PWD/target/release/ords-guard}   # BIN=... measures another build
FLOOR_BIN=$PWD/target/release/examples/passthrough
GRPC_LOAD_BIN=$PWD/target/release/examples/grpc_check_load
GRPC_BACKEND_BIN=$PWD/target/release/examples/grpc_backend

WORK=$(mktemp -d)
cleanup() { kill "${CONN_PID:-}" "${BOUND_PID:-}" "${LOG_PID:-}" "${GUARD_PID:-}" "${HS_PID:-}" "${IDP_PID:-}" "${MANY_PID:-}" "${EGRESS_PID:-}" "${LIM_PID:-}" "${SHARED_PID:-}" "${REDIS_PID:-}" "${FLOOR_PID:-}" "${FRONT_PID:-}" "${T0_PID:-}" "${T5_PID:-}" "${T100_PID:-}" "${NGINX_PID:-}" "${GRPC_PID:-}" "${GRPC_BACKEND_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

BACKEND=$(port); PROXY=$(port); ADMIN=$(port); FLOOR=$(port); HS_PROXY=$(port); HS_ADMIN=$(port)
IDP_PROXY=$(port); IDP_ADMIN=$(port); MANY_PROXY=$(port); MANY_ADMIN=$(port)
EGRESS_LISTEN=$(port); EGRESS_ADMIN=$(port)
LIM_PROXY=$(port); LIM_ADMIN=$(port)
SHARED_PROXY=$(port); SHARED_ADMIN=$(port); REDIS_PORT=$(port)
LOG_PROXY=$(port); LOG_ADMIN=$(port)
BOUND_PROXY=$(port); BOUND_ADMIN=$(port); CONN_PROXY=$(port); CONN_ADMIN=$(port)
AUTHZ=$(port); AUTHZ_GRPC=$(port); FRONT=$(port)
T0_PROXY=$(port); T0_ADMIN=$(port); T5_PROXY=$(port); T5_ADMIN=$(port); T100_PROXY=$(port); T100_ADMIN=$(port)
GRPC_BACKEND=$(port); GRPC_PROXY=$(port); GRPC_ADMIN=$(port)

start_nginx "$WORK" "$BACKEND"

"$BIN" keygen --algorithm ES256 --out "$WORK/keys" >/dev/null
HASH=$(printf '%s' "$SECRET" | "$BIN" hash-secret --scheme sha256)
"$BIN" keygen --algorithm HS256 --out "$WORK/hskeys" >/dev/null
"$BIN" keygen --algorithm ES256 --out "$WORK/idpkeys" >/dev/null
"$BIN" keygen --algorithm RS256 --out "$WORK/rsakeys" >/dev/null
write_config() { # $1: extra clients, $2: extra privileges, $3: file, $4 proxy, $5 admin, $6 algorithm, $7 keys dir, $8 token.issuer, $9 issuers
  # (UPSTREAM and PATTERN in the environment: another backend, example_priv's pattern)
  cat > "${3:-$WORK/ords-guard.yaml}" <<EOF
listen: "127.0.0.1:${4:-$PROXY}"
admin_listen: "127.0.0.1:${5:-$ADMIN}"
threads: 1
upstream: "${UPSTREAM:-http://127.0.0.1:$BACKEND}"
token:
  issuer: "${8:-ords-guard}"
  algorithm: ${6:-ES256}
  signing_key_file: ${7:-keys}/signing.pem
  key_id: bench
${9:-}
privileges:
  - name: example_priv
    roles: [example_role]
    patterns: ["${PATTERN:-/example/*}"]
${2}clients:
  - name: Bench Client
    client_id: bench
    secrets: ["$HASH"]
    roles: [example_role]
${1}
EOF
}
# The identity providers first: their keys go into the configs as jwks_files.
# idp ALGORITHM KEYS JWKS_OUT: run an ords-guard as the provider https://idp.bench, save its
# JWK Set, print a token it issued.
idp() {
  write_config "" "" "$WORK/idp.yaml" "$IDP_PROXY" "$IDP_ADMIN" "$1" "$2" https://idp.bench
  RUST_LOG=warn "$BIN" run --config "$WORK/idp.yaml" > "$WORK/idp.log" 2>&1 & IDP_PID=$!
  wait_ready "$IDP_ADMIN"
  curl -sf "http://127.0.0.1:$IDP_PROXY/oauth/jwks" > "$3"
  bench_token "$IDP_PROXY"
  kill "$IDP_PID"; wait "$IDP_PID" 2>/dev/null || true; IDP_PID=
}
IDP_TOKEN=$(idp ES256 idpkeys "$WORK/idp.jwks.json")
idp RS256 rsakeys "$WORK/rsa.jwks.json" >/dev/null
ISSUERS='issuers:
  - name: idp
    issuer: https://idp.bench
    jwks_file: idp.jwks.json
    roles_claim: /roles'
# The main guard also answers checks for a proxy in front (SPEC §14).
MAIN_EXTRA="$ISSUERS
authz:
  listen: \"127.0.0.1:$AUTHZ\"
  grpc_listen: \"127.0.0.1:$AUTHZ_GRPC\""
write_config "" "" "$WORK/ords-guard.yaml" "$PROXY" "$ADMIN" ES256 keys ords-guard "$MAIN_EXTRA"
write_config "" "" "$WORK/hs256.yaml" "$HS_PROXY" "$HS_ADMIN" HS256 hskeys
# The same guard with a local rate limit per client that never refuses (SPEC §13).
write_config "" "" "$WORK/limited.yaml" "$LIM_PROXY" "$LIM_ADMIN" ES256 keys ords-guard 'rate_limits:
  - name: bench
    by: client
    rate: 1000000000
    per: second'
RUST_LOG=warn "$BIN" run --config "$WORK/limited.yaml" > "$WORK/limited.log" 2>&1 & LIM_PID=$!
# And with that limit in Redis (loopback, persistence off).
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning > "$WORK/redis.log" 2>&1 & REDIS_PID=$!
for _ in $(seq 200); do [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && break; sleep 0.05; done
write_config "" "" "$WORK/shared.yaml" "$SHARED_PROXY" "$SHARED_ADMIN" ES256 keys ords-guard "rate_limits:
  - name: bench
    by: client
    rate: 1000000000
    per: second
    store: redis
rate_limit_store:
  url: \"redis://127.0.0.1:$REDIS_PORT/0\""
RUST_LOG=warn "$BIN" run --config "$WORK/shared.yaml" > "$WORK/shared.log" 2>&1 & SHARED_PID=$!
# Access logs off (RUST_LOG=warn), as nginx's are: the benchmark measures the proxy.
RUST_LOG=warn,ords_guard::reload=info "$BIN" run --config "$WORK/ords-guard.yaml" > "$WORK/guard.log" 2>&1 & GUARD_PID=$!
RUST_LOG=warn "$BIN" run --config "$WORK/hs256.yaml" > "$WORK/hs.log" 2>&1 & HS_PID=$!
# The same guard with its access log on, as operators run it.
write_config "" "" "$WORK/logged.yaml" "$LOG_PROXY" "$LOG_ADMIN" ES256 keys ords-guard "$ISSUERS"
RUST_LOG=info "$BIN" --log-format json run --config "$WORK/logged.yaml" > "$WORK/logged.log" 2>&1 & LOG_PID=$!
# Traced guards (SPEC §15), the backend's nginx answering the exports.
for t in "T0 0" "T5 0.05" "T100 1.0"; do
  set -- $t
  proxy_var=${1}_PROXY; admin_var=${1}_ADMIN
  write_config "" "" "$WORK/trace$1.yaml" "${!proxy_var}" "${!admin_var}" ES256 keys ords-guard "$ISSUERS
tracing:
  otlp_endpoint: \"http://127.0.0.1:$BACKEND\"
  sample_ratio: $2"
  RUST_LOG=warn "$BIN" run --config "$WORK/trace$1.yaml" > "$WORK/trace$1.log" 2>&1 &
  printf -v "${1}_PID" '%s' "$!"
done
# A gRPC service, and a guard in front of it: example_priv maps its methods (SPEC §17).
"$GRPC_BACKEND_BIN" "127.0.0.1:$GRPC_BACKEND" > "$WORK/grpc_backend.log" 2>&1 & GRPC_BACKEND_PID=$!
UPSTREAM="http://127.0.0.1:$GRPC_BACKEND" PATTERN="/grpc.health.v1.Health/*" \
  write_config "" "" "$WORK/grpc.yaml" "$GRPC_PROXY" "$GRPC_ADMIN" ES256 keys ords-guard "upstream_protocol: h2c"
RUST_LOG=warn "$BIN" run --config "$WORK/grpc.yaml" > "$WORK/grpc.log" 2>&1 & GRPC_PID=$!
# A legacy backend's bound: at most 32 connections to it (issue #15).
write_config "" "" "$WORK/bounded.yaml" "$BOUND_PROXY" "$BOUND_ADMIN" ES256 keys ords-guard 'limits:
  max_upstream_connections: 32'
RUST_LOG=warn "$BIN" run --config "$WORK/bounded.yaml" > "$WORK/bounded.log" 2>&1 & BOUND_PID=$!
write_config "" "" "$WORK/conns.yaml" "$CONN_PROXY" "$CONN_ADMIN" ES256 keys
RUST_LOG=warn "$BIN" run --config "$WORK/conns.yaml" > "$WORK/conns.log" 2>&1 & CONN_PID=$!
"$FLOOR_BIN" "127.0.0.1:$FLOOR" "127.0.0.1:$BACKEND" 10000 > "$WORK/floor.log" 2>&1 & FLOOR_PID=$!
wait_ready "$ADMIN"; wait_ready "$HS_ADMIN"; wait_ready "$LOG_ADMIN"; wait_ready "$LIM_ADMIN"; wait_ready "$SHARED_ADMIN"; wait_ready "$BOUND_ADMIN"; wait_ready "$CONN_ADMIN"; wait_ready "$T0_ADMIN"; wait_ready "$T5_ADMIN"; wait_ready "$T100_ADMIN"; wait_ready "$GRPC_ADMIN"
# The egress guard: no ingress, one entry calling the backend with the bench client's token.
printf '%s\n' "$SECRET" > "$WORK/egress.secret"
cat > "$WORK/egress.yaml" <<EOF
admin_listen: "127.0.0.1:$EGRESS_ADMIN"
threads: 1
egress:
  - name: bench
    listen: "127.0.0.1:$EGRESS_LISTEN"
    upstream: "http://127.0.0.1:$BACKEND"
    token_url: "http://127.0.0.1:$PROXY/oauth/token"
    client_id: bench
    client_secret_file: egress.secret
EOF
RUST_LOG=warn "$BIN" run --config "$WORK/egress.yaml" > "$WORK/egress.log" 2>&1 & EGRESS_PID=$!
wait_ready "$EGRESS_ADMIN"
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$FLOOR/" >/dev/null 2>&1 && break; sleep 0.05; done
# nginx in front of the backend asking the main guard, with the guide's own location blocks.
mkdir -p "$WORK/front/logs"
{ echo "worker_processes 1; daemon off; pid $WORK/front/nginx.pid; error_log $WORK/front/logs/error.log warn;"
  echo "events { worker_connections 8192; }"
  echo "http { access_log off; keepalive_requests 100000; server { listen 127.0.0.1:$FRONT backlog=4096;"
  sed -e "s/127.0.0.1:9191/127.0.0.1:$AUTHZ/g" -e "s/127.0.0.1:8081/127.0.0.1:$BACKEND/g" docs/src/guides/authz-nginx.conf
  echo "} }"; } > "$WORK/front/nginx.conf"
nginx -p "$WORK/front" -c "$WORK/front/nginx.conf" & FRONT_PID=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$FRONT/public/1" 2>/dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$BACKEND/" >/dev/null
rss() { awk -v k="$1" '$1==k":" {print int($2/1024)}' "/proc/$GUARD_PID/status"; }
IDLE_RSS=$(rss VmRSS)

TOKEN=$(bench_token "$PROXY")
token_lua "$WORK/token.lua"

# The process that serves a scenario, for its CPU time per request.
serving() {
  case $1 in
    direct) pgrep -P "$NGINX_PID" | head -1 ;;   # the nginx worker
    floor|floor_256|floor_1000) echo "$FLOOR_PID" ;;
    protected_log) echo "$LOG_PID" ;;
    protected_limited) echo "$LIM_PID" ;;
    protected_shared) echo "$SHARED_PID" ;;
    protected_trace0) echo "$T0_PID" ;;
    protected_trace5) echo "$T5_PID" ;;
    protected_trace100) echo "$T100_PID" ;;
    egress) echo "$EGRESS_PID" ;;
    grpc_direct) echo "$GRPC_BACKEND_PID" ;;
    grpc_through) echo "$GRPC_PID" ;;
    token_hs256) echo "$HS_PID" ;;
    bounded_1000) echo "$BOUND_PID" ;;
    public_256|public_1000) echo "$CONN_PID" ;;
    nginx_authz) echo "$(pgrep -P "$FRONT_PID" | head -1) $GUARD_PID" ;;   # front worker, then the guard
    *) echo "$GUARD_PID" ;;
  esac
}
# CPU ticks (user + system, every thread) a process has used.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run NAME URL [wrk args...] -> appends "NAME rps p99ms non2xx cpu_us_per_request
# new_backend_connections_per_100_requests cpu_us_of_the_last_serving_process" to results;
# RUN_CONNS=N: N client connections; LOADER=grpc: the gRPC check client instead of wrk
# (URL is HOST:PORT, the args its path and token)
run() {
  local name=$1 url=$2; shift 2
  local out rps p99
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  local pids pid t0=() t1=() n a0 a1 i; read -r -a pids <<<"$(serving "$name")"
  for pid in "${pids[@]}"; do t0+=("$(ticks "$pid")"); done
  a0=$(backend_accepts "$BACKEND")
  if [ "${LOADER:-wrk}" = grpc ]; then
    out=$(GRPC_CALL="${GRPC_CALL:-}" "$GRPC_LOAD_BIN" "$url" "${RUN_CONNS:-$CONNS}" "$DURATION" "$@")
  elif [ "${LOADER:-wrk}" = h2load ]; then
    # h2c with prior knowledge; its summary in wrk's words (h2load gives no percentiles).
    out=$(h2load -c"${RUN_CONNS:-$CONNS}" -m"${STREAMS:-1}" -D"$DURATION" "$@" "$url" | awk -v d="$DURATION" '
      /^finished in/ {v=$4; gsub(",", "", v); rps=v}
      /^requests:/ {n=$6}
      /^status codes:/ {ok=$3}
      END {printf "%d requests in %ss\nRequests/sec: %s\nNon-2xx or 3xx responses: %d\n", n, d, rps, n-ok}')
  else
    out=$(wrk -t1 -c"${RUN_CONNS:-$CONNS}" -d"${DURATION}s" --latency "$@" "$url")
  fi
  for pid in "${pids[@]}"; do t1+=("$(ticks "$pid")"); done
  n=$(awk '/ requests in / {print $1}' <<<"$out"); a1=$(backend_accepts "$BACKEND")
  local d=0 last=0; for i in "${!pids[@]}"; do last=$(( t1[i] - t0[i] )); d=$(( d + last )); done
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  local hz; hz=$(getconf CLK_TCK)
  echo "$name $rps ${p99:-0} ${non2xx:-0} $(awk -v d="$d" -v n="$n" -v hz="$hz" 'BEGIN {printf "%.1f", n ? d / hz * 1e6 / n : 0}') $(awk -v o=$(( a1 - a0 - 1 )) -v n="$n" 'BEGIN {printf "%.2f", n ? 100 * o / n : 0}') $(awk -v d="$last" -v n="$n" -v hz="$hz" 'BEGIN {printf "%.1f", n ? d / hz * 1e6 / n : 0}')" >> "$WORK/results"
}
: > "$WORK/results"
for r in $(seq "$ROUNDS"); do
  run direct "http://127.0.0.1:$BACKEND/example/1"
  run floor "http://127.0.0.1:$FLOOR/example/1"
  # public, protected, protected_log, protected_limited and protected_shared run back to
  # back, their order reversed every round: each ratio between them compares neighbours,
  # and none always follows the same scenario (the machine drifts over a run).
  guarded=(public public_h2 protected protected_h2 protected_h2_m8 protected_trace0 protected_trace5 protected_trace100 authz_check authz_grpc grpc_direct grpc_through nginx_authz protected_log protected_limited protected_shared)
  if (( r % 2 == 0 )); then guarded=(protected_shared protected_limited protected_log nginx_authz grpc_through grpc_direct authz_grpc authz_check protected_trace100 protected_trace5 protected_trace0 protected_h2_m8 protected_h2 protected public_h2 public); fi
  for name in "${guarded[@]}"; do
    case $name in
      public) run public "http://127.0.0.1:$PROXY/public/1" ;;
      protected) run protected "http://127.0.0.1:$PROXY/example/1" -H "Authorization: Bearer $TOKEN" ;;
      public_h2) LOADER=h2load run public_h2 "http://127.0.0.1:$PROXY/public/1" ;;
      protected_h2) LOADER=h2load run protected_h2 "http://127.0.0.1:$PROXY/example/1" -H "authorization: Bearer $TOKEN" ;;
      protected_h2_m8) LOADER=h2load RUN_CONNS=4 STREAMS=8 run protected_h2_m8 "http://127.0.0.1:$PROXY/example/1" -H "authorization: Bearer $TOKEN" ;;
      protected_log) run protected_log "http://127.0.0.1:$LOG_PROXY/example/1" -H "Authorization: Bearer $TOKEN" ;;
      protected_limited) run protected_limited "http://127.0.0.1:$LIM_PROXY/example/1" -H "Authorization: Bearer $TOKEN" ;;
      protected_shared) run protected_shared "http://127.0.0.1:$SHARED_PROXY/example/1" -H "Authorization: Bearer $TOKEN" ;;
      protected_trace0) run protected_trace0 "http://127.0.0.1:$T0_PROXY/example/1" -H "Authorization: Bearer $TOKEN" ;;
      protected_trace5) run protected_trace5 "http://127.0.0.1:$T5_PROXY/example/1" -H "Authorization: Bearer $TOKEN" ;;
      protected_trace100) run protected_trace100 "http://127.0.0.1:$T100_PROXY/example/1" -H "Authorization: Bearer $TOKEN" ;;
      authz_check) run authz_check "http://127.0.0.1:$AUTHZ/authz/forward-auth" -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /example/1" -H "X-Forwarded-Host: api.example.com" -H "Authorization: Bearer $TOKEN" ;;
      authz_grpc) LOADER=grpc run authz_grpc "127.0.0.1:$AUTHZ_GRPC" /example/1 "$TOKEN" ;;
      grpc_direct) GRPC_CALL=health LOADER=grpc run grpc_direct "127.0.0.1:$GRPC_BACKEND" - ;;
      grpc_through) GRPC_CALL=health LOADER=grpc run grpc_through "127.0.0.1:$GRPC_PROXY" - "$TOKEN" ;;
      nginx_authz) run nginx_authz "http://127.0.0.1:$FRONT/example/1" -H "Authorization: Bearer $TOKEN" ;;
    esac
  done
  run protected_issuer "http://127.0.0.1:$PROXY/example/1" -H "Authorization: Bearer $IDP_TOKEN"
  run 401 "http://127.0.0.1:$PROXY/example/1"
  run egress "http://127.0.0.1:$EGRESS_LISTEN/example/1"
  run token "http://127.0.0.1:$PROXY/oauth/token" -s "$WORK/token.lua"
  run token_hs256 "http://127.0.0.1:$HS_PROXY/oauth/token" -s "$WORK/token.lua"
  RUN_CONNS=256 run public_256 "http://127.0.0.1:$CONN_PROXY/public/1"
  RUN_CONNS=1000 run public_1000 "http://127.0.0.1:$CONN_PROXY/public/1"
  RUN_CONNS=1000 run bounded_1000 "http://127.0.0.1:$BOUND_PROXY/public/1"
  RUN_CONNS=256 run floor_256 "http://127.0.0.1:$FLOOR/example/1"
  RUN_CONNS=1000 run floor_1000 "http://127.0.0.1:$FLOOR/example/1"
done
PEAK_RSS=$(rss VmHWM)
CONN_PEAK=$(GUARD_PID=$CONN_PID rss VmHWM); BOUND_PEAK=$(GUARD_PID=$BOUND_PID rss VmHWM)
SHARED_METRICS=$(curl -s "http://127.0.0.1:$SHARED_ADMIN/metrics")
STORE_ERRORS=$(awk '/^ords_guard_rate_limit_store_errors_total/ {print $2}' <<<"$SHARED_METRICS")
STORE_TRIPS=$(awk '/^ords_guard_rate_limit_store_duration_seconds_count/ {print $2}' <<<"$SHARED_METRICS")
STORE_SUM=$(awk '/^ords_guard_rate_limit_store_duration_seconds_sum/ {print $2}' <<<"$SHARED_METRICS")
EGRESS_TOKENS=$(curl -s "http://127.0.0.1:$EGRESS_ADMIN/metrics" | awk '/^ords_guard_egress_token_fetches_total\{egress="bench",result="success"\}/ {print $2}')

# A large registry: 10k clients, 1k privileges; its RSS and reload time.
{ for i in $(seq 1000); do printf '  - name: p%d\n    roles: [r%d]\n    patterns: ["/svc%d/*"]\n' "$i" "$i" "$i"; done; } > "$WORK/privs"
{ for i in $(seq 10000); do printf '  - name: c%d\n    client_id: id%d\n    secrets: ["%s"]\n    roles: [r%d]\n' "$i" "$i" "$HASH" "$(( i % 1000 + 1 ))"; done; } > "$WORK/clients"
write_config "$(cat "$WORK/clients")
" "$(cat "$WORK/privs")
" "$WORK/big.yaml" "$PROXY" "$ADMIN" ES256 keys ords-guard "$MAIN_EXTRA"
mv "$WORK/big.yaml" "$WORK/ords-guard.yaml"   # atomic, as config tools do; the watcher reloads
for _ in $(seq 400); do grep -q '"config reloaded"\|config reloaded' "$WORK/guard.log" && break; sleep 0.05; done
RELOAD_MS=$(grep -o 'elapsed_ms=[0-9.]*' "$WORK/guard.log" | tail -1 | cut -d= -f2)
BIG_RSS=$(rss VmRSS)

# 10 identity providers of 100 RSA-2048 keys each (the provider's key under 100 kids).
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
key = json.load(open(f"{work}/rsa.jwks.json"))["keys"][0]
for i in range(10):
    keys = [dict(key, kid=f"idp{i}-k{j}") for j in range(100)]
    json.dump({"keys": keys}, open(f"{work}/many{i}.jwks.json", "w"))
PY
MANY=$(for i in $(seq 0 9); do printf '  - name: idp%d\n    issuer: https://idp%d.bench\n    jwks_file: many%d.jwks.json\n' "$i" "$i" "$i"; done)
write_config "" "" "$WORK/many.yaml" "$MANY_PROXY" "$MANY_ADMIN" ES256 keys ords-guard "issuers:
$MANY"
RUST_LOG=warn "$BIN" run --config "$WORK/many.yaml" > "$WORK/many.log" 2>&1 & MANY_PID=$!
wait_ready "$MANY_ADMIN"
MANY_KEYS=$(curl -s "http://127.0.0.1:$MANY_ADMIN/metrics" | awk '/^ords_guard_jwks_keys/ {n+=$2} END {print n+0}')
MANY_RSS=$(awk '$1=="VmRSS:" {print int($2/1024)}' "/proc/$MANY_PID/status")

if [ -n "$PER_ROUND" ]; then echo "each round:"; cat "$WORK/results"; echo; fi
awk -v cpeak="$CONN_PEAK" -v bpeak="$BOUND_PEAK" -v idle="$IDLE_RSS" -v peak="$PEAK_RSS" -v big="$BIG_RSS" -v many="$MANY_RSS" -v manykeys="$MANY_KEYS" -v etokens="${EGRESS_TOKENS:-?}" -v serrors="${STORE_ERRORS:-?}" -v strips="${STORE_TRIPS:-0}" -v ssum="${STORE_SUM:-0}" -v reload="${RELOAD_MS:-?}" -v d="$DURATION" -v rounds="$ROUNDS" -v c="$CONNS" '
  function r(a, b) { return (rps[a] > 0 && rps[b] > 0) ? sprintf("%.2f", rps[a] / rps[b]) : "-" }
  { n[$1]++; rps[$1]+=$2; p99[$1]+=$3; bad[$1]+=$4; cpu[$1]+=$5; fresh[$1]+=$6; last[$1]+=$7 }
  END {
    printf "wrk -t1 -c%d -d%ds, %d alternating rounds, ords-guard threads: 1, ES256\n\n", c, d, rounds
    printf "| target | req/s | p99 ms | non-2xx | CPU µs/request (serving process) | new backend connections |\n|---|---|---|---|---|---|\n"
    split("direct floor public public_h2 protected protected_h2 protected_h2_m8 protected_trace0 protected_trace5 protected_trace100 authz_check authz_grpc grpc_direct grpc_through nginx_authz protected_log protected_issuer protected_limited protected_shared 401 egress token token_hs256 public_256 public_1000 bounded_1000 floor_256 floor_1000", order, " ")
    for (i = 1; i <= 28; i++) { k = order[i]; if (!n[k]) continue; printf "| %s | %.0f | %.2f | %d | %.1f | %.2f%% |\n", k, rps[k]/n[k], p99[k]/n[k], bad[k], cpu[k]/n[k], fresh[k]/n[k] }
    printf "\nprotected/public = %s   public/direct = %s   protected/direct = %s   floor/direct = %s   protected/floor = %s\n", r("protected", "public"), r("public", "direct"), r("protected", "direct"), r("floor", "direct"), r("protected", "floor")
    printf "protected_log/protected = %s (access log on / off)\n", r("protected_log", "protected")
    printf "public_h2/public = %s   protected_h2/protected = %s   protected_h2_m8/protected = %s (h2c: 32 connections of one stream; 4 of 8 streams; against HTTP/1.1 at 32 connections)\n", r("public_h2", "public"), r("protected_h2", "protected"), r("protected_h2_m8", "protected")
    printf "protected_trace0/protected = %s   protected_trace5/protected = %s   protected_trace100/protected = %s (tracing at sample_ratio 0, 0.05, 1.0; CPU µs/request: off %.1f, 0: %.1f, 0.05: %.1f, 1.0: %.1f)\n", r("protected_trace0", "protected"), r("protected_trace5", "protected"), r("protected_trace100", "protected"), (n["protected"] ? cpu["protected"]/n["protected"] : 0), (n["protected_trace0"] ? cpu["protected_trace0"]/n["protected_trace0"] : 0), (n["protected_trace5"] ? cpu["protected_trace5"]/n["protected_trace5"] : 0), (n["protected_trace100"] ? cpu["protected_trace100"]/n["protected_trace100"] : 0)
    printf "authz_check/protected = %s   authz_grpc/protected = %s   nginx_authz/protected = %s (the decision alone, over HTTP and gRPC; nginx + auth_request in front)\n", r("authz_check", "protected"), r("authz_grpc", "protected"), r("nginx_authz", "protected")
    printf "grpc_through/grpc_direct = %s (unary gRPC calls through ords-guard, each decided with its token, against the service alone; CPU µs/call: service %.1f, ords-guard %.1f)\n", r("grpc_through", "grpc_direct"), (n["grpc_direct"] ? cpu["grpc_direct"]/n["grpc_direct"] : 0), (n["grpc_through"] ? cpu["grpc_through"]/n["grpc_through"] : 0)
    if (n["nginx_authz"]) printf "nginx_authz CPU µs/request: nginx %.1f + ords-guard %.1f (ords-guard as the proxy: %.1f)\n", (cpu["nginx_authz"] - last["nginx_authz"]) / n["nginx_authz"], last["nginx_authz"] / n["nginx_authz"], (n["protected"] ? cpu["protected"] / n["protected"] : 0)
    printf "public_256/public = %s   public_1000/public = %s   bounded_1000/public = %s (client connections: 256, 1000, 1000 with max_upstream_connections: 32; against %d)\n", r("public_256", "public"), r("public_1000", "public"), r("bounded_1000", "public"), c
    printf "floor_256/floor = %s   floor_1000/floor = %s (pingora with no logic at 256 and 1000 client connections)\n", r("floor_256", "floor"), r("floor_1000", "floor")
    printf "protected_issuer/protected = %s\n", r("protected_issuer", "protected")
    printf "protected_limited/protected = %s (a local rate limit per client that never refuses)\n", r("protected_limited", "protected")
    printf "protected_shared/protected = %s (the same limit in Redis on loopback; %d round trips, mean %.0f us, %s store errors)\n", r("protected_shared", "protected"), strips, (strips > 0 ? ssum / strips * 1e6 : 0), serrors
    printf "egress/public = %s   egress/direct = %s   token requests by the egress guard over the whole run: %s\n", r("egress", "public"), r("egress", "direct"), etokens
    printf "RSS: idle %d MiB, peak under load %d MiB, with 10k clients + 1k privileges %d MiB (reload %s ms)\n", idle, peak, big, reload
    printf "RSS with 10 identity providers, %d keys held: %d MiB\n", manykeys, many
    printf "peak RSS of the guards serving many connections: %d MiB (public_256, public_1000), %d MiB (bounded_1000)\n", cpeak, bpeak
  }' "$WORK/results"
