# Shared by the bench scripts (sourced): tools, free ports, the nginx backend. Loopback only.

# Install wrk and nginx when missing (Debian packages).
bench_tools() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v nginx >/dev/null || need+=(nginx-light)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  if [ ${#need[@]} -gt 0 ]; then
    local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# A free loopback port.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_nginx DIR PORT: a one-worker nginx answering 200 on every path, logs off; sets NGINX_PID.
# /nginx_status (stub_status) counts the connections it accepted: `backend_accepts PORT`.
# /introspect answers as an RFC 7662 endpoint that knows no token (`{"active": false}`).
start_nginx() {
  mkdir -p "$1/nginx/logs"
  cat > "$1/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $1/nginx/nginx.pid; error_log $1/nginx/logs/error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 100000; server { listen 127.0.0.1:$2 backlog=4096;
  location = /nginx_status { stub_status; }
  location = /introspect { default_type application/json; return 200 '{"active": false}'; }
  location / { return 200 "backend ok\n"; } } }
CONF
  nginx -p "$1/nginx" -c "$1/nginx/nginx.conf" & NGINX_PID=$!
}

# backend_accepts PORT: connections the nginx backend has accepted so far (one of them is
# this query's own).
backend_accepts() {
  curl -s "http://127.0.0.1:$1/nginx_status" | awk 'NR==3 {print $1}'
}

# start_minimal_guard BIN DIR PROXY ADMIN BACKEND: one ords-guard (`threads: 1`, access log
# off, ES256 keys already in DIR/keys, one privilege on /example/*) in front of BACKEND,
# ready; sets GUARD_PID.
start_minimal_guard() {
  cat > "$2/minimal.yaml" <<CONF
listen: "127.0.0.1:$3"
admin_listen: "127.0.0.1:$4"
threads: 1
upstream: "http://127.0.0.1:$5"
token: {algorithm: ES256, signing_key_file: keys/signing.pem, key_id: bench}
privileges: [{name: example_priv, roles: [example_role], patterns: ["/example/*"]}]
CONF
  RUST_LOG=warn "$1" run --config "$2/minimal.yaml" > "$2/guard.log" 2>&1 & GUARD_PID=$!
  wait_ready "$4"
}

# wait_ready ADMIN_PORT: until an ords-guard answers /readyz (at most 10 s).
wait_ready() {
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "bench: ords-guard on admin port $1 not ready in 10 s" >&2; return 1
}

# The bench client's secret (stored sha256-hashed in the configs the scripts write).
SECRET=bench-secret-0123456789abcdefghijklmnopqrstuv

# bench_token PROXY_PORT: a token for the bench client from that guard's token endpoint.
bench_token() {
  curl -s -u "bench:$SECRET" -d grant_type=client_credentials "http://127.0.0.1:$1/oauth/token" | sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

# token_lua FILE: a wrk script that sends the bench client's token request.
token_lua() {
  cat > "$1" <<EOF
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $(printf 'bench:%s' "$SECRET" | base64 -w0)"
EOF
}
