#!/usr/bin/env bash
# Issue #37, "measure first": what one request costs the kernel and the allocator's page
# supply, per proxy, against HAProxy in the same run. Each proxy one-threaded in front of
# one nginx; wrk (1 thread) on a public path at CONNS client connections:
#   haproxy   HAProxy 2.x, one thread, keep-alive both ways (`http-reuse always`)
#   floor     pingora with no logic (examples/passthrough.rs)
#   public    ords-guard's public path (threads: 1, access log off)
# For each: req/s, CPU µs per request and minor page faults per request (from /proc, an
# untraced run), then syscalls per request by name (`strace -c -f` attached for a second
# run, which it slows: its req/s are not reported). Loopback only, bounded in time.
#
# Usage: bench/syscalls.sh     (DURATION=5 CONNS="32 1000"; BIN=... measures another build)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
CONNS=${CONNS:-32 1000}
source "$(dirname "$0")/common.sh"
bench_tools
command -v haproxy >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends haproxy >/dev/null; }
command -v strace >/dev/null || { SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends strace >/dev/null; }
cargo build --release --quiet --bin ords-guard --example passthrough
BIN=${BIN:-$PWD/target/release/ords-guard}
FLOOR_BIN=$PWD/target/release/examples/passthrough

WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
BACKEND=$(port); HA=$(port); FLOOR=$(port); PROXY=$(port); ADMIN=$(port)
start_nginx "$WORK" "$BACKEND"

cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend f
  bind 127.0.0.1:$HA
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:$BACKEND maxconn 2000
EOF
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 & HA_PID=$!
"$FLOOR_BIN" "127.0.0.1:$FLOOR" "127.0.0.1:$BACKEND" 10000 > "$WORK/floor.log" 2>&1 & FLOOR_PID=$!
"$BIN" keygen --algorithm ES256 --out "$WORK/keys" >/dev/null
start_minimal_guard "$BIN" "$WORK" "$PROXY" "$ADMIN" "$BACKEND"
for p in $HA $FLOOR; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/public/x" >/dev/null && break; sleep 0.05; done
done

# field N of /proc/PID/stat (10 minflt, 14 utime, 15 stime)
stat_field() { awk -v f="$2" '{print $f}' "/proc/$1/stat"; }
ticks() { echo $(( $(stat_field "$1" 14) + $(stat_field "$1" 15) )); }
HZ=$(getconf CLK_TCK)

echo "$("$BIN" --version), $(haproxy -v | head -1 | cut -d' ' -f1-3); wrk -t1, ${DURATION}s per run"
for c in $CONNS; do
  echo
  echo "== $c client connections"
  printf '| proxy | req/s | CPU µs/request | minor faults/request | syscalls/request | the most frequent (per request) |\n|---|---|---|---|---|---|\n'
  for target in haproxy floor public; do
    case $target in
      haproxy) pid=$HA_PID; url="http://127.0.0.1:$HA/public/x" ;;
      floor) pid=$FLOOR_PID; url="http://127.0.0.1:$FLOOR/public/x" ;;
      public) pid=$GUARD_PID; url="http://127.0.0.1:$PROXY/public/x" ;;
    esac
    t0=$(ticks "$pid"); f0=$(stat_field "$pid" 10)
    out=$(wrk -t1 -c"$c" -d"${DURATION}s" "$url")
    t1=$(ticks "$pid"); f1=$(stat_field "$pid" 10)
    n=$(awk '/ requests in / {print $1}' <<<"$out")
    rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    cpu=$(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
    faults=$(awk -v d=$((f1 - f0)) -v n="$n" 'BEGIN {printf "%.3f", d / n}')
    strace -c -f -q -o "$WORK/strace.$target" -p "$pid" & ST=$!
    sleep 1  # strace attaching to every thread; what it counts before wrk starts is idle
    out=$(wrk -t1 -c"$c" -d"${DURATION}s" "$url")
    kill -INT "$ST"; wait "$ST" 2>/dev/null || true
    n=$(awk '/ requests in / {print $1}' <<<"$out")
    summary=$(awk -v n="$n" '
      $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { calls = $4; name = $NF; total += calls; per[name] = calls / n }
      END {
        printf "%.2f|", total / n
        m = 0; for (k in per) { keys[++m] = k }
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (per[keys[j]] > per[keys[i]]) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
        for (i = 1; i <= m && i <= 5; i++) printf "%s %.2f%s", keys[i], per[keys[i]], (i < 5 && i < m) ? ", " : ""
      }' "$WORK/strace.$target")
    printf '| %s | %s | %s | %s | %s | %s |\n' "$target" "$rps" "$cpu" "$faults" "${summary%%|*}" "${summary#*|}"
  done
done
