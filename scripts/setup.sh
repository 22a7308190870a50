#!/usr/bin/env bash
# Installs what building ords-guard needs on a bare Debian machine with a Rust toolchain:
# cmake (pingora-core builds zlib-ng through CMake). Safe to run again.
set -euo pipefail

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

if ! command -v cmake >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing cmake (needed by pingora-core)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
