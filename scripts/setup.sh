#!/usr/bin/env bash
# Installs what building and testing ords-guard need on a bare Debian machine with a Rust
# toolchain. Safe to run again; installs only what is missing.
#   cmake       pingora-core builds zlib-ng through CMake
#   prometheus  the tests start a real Prometheus (and promtool) against the admin port
set -euo pipefail

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

missing=()
command -v cmake >/dev/null || missing+=(cmake)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
