#!/usr/bin/env bash
# Issue #37: what open, idle keep-alive client connections cost in memory. For each binary
# given (alternating, ROUNDS times): one ords-guard (`threads: 1`) in front of nginx, N
# connections opened, one request answered on each, all held open; prints the guard's RSS
# before and with them. Loopback only, N bounded by `limits.max_connections`.
#   bench/idle_rss.sh BIN [BIN...]      (N=1000 ROUNDS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}; ROUNDS=${ROUNDS:-2}
[ $# -gt 0 ] || { echo "usage: bench/idle_rss.sh BIN [BIN...]" >&2; exit 2; }
source "$(dirname "$0")/common.sh"
WORK=$(mktemp -d)
cleanup() { kill "${GUARD_PID:-}" "${NGINX_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
BACKEND=$(port)
start_nginx "$WORK" "$BACKEND"
"$1" keygen --algorithm ES256 --out "$WORK/keys" >/dev/null
cat > "$WORK/idle.py" <<'PY'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) // 1024
before = rss()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /public/x HTTP/1.1\r\nHost: bench\r\n\r\n")
    got = b""
    while b"backend ok" not in got:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed before the answer")
        got += chunk
    socks.append(s)
print(f"{before} {rss()}")
PY
for r in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    PROXY=$(port); ADMIN=$(port)
    start_minimal_guard "$bin" "$WORK" "$PROXY" "$ADMIN" "$BACKEND"
    read -r before with < <(python3 "$WORK/idle.py" "$PROXY" "$N" "$GUARD_PID")
    echo "round $r $("$bin" --version): RSS ${before} MiB idle, ${with} MiB with $N idle keep-alive connections"
    kill "$GUARD_PID"; wait "$GUARD_PID" 2>/dev/null || true
  done
done
