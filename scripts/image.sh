#!/usr/bin/env bash
# Builds the ords-guard container image: the release binary by cargo on this host, then the
# image (deploy/Containerfile, target `prebuilt`) on a base that needs no registry, and a
# smoke run of `--version` in it. Prints the image reference as its last line.
#   scripts/image.sh                         # localhost/ords-guard:VERSION on the local base
#   BASE=gcr.io/distroless/cc-debian12:nonroot IMAGE=registry.example.com/ords-guard:0.1.0 scripts/image.sh
# Environment:
#   IMAGE   the reference to tag (default localhost/ords-guard:VERSION)
#   BASE    the base image (default: scripts/image-base.sh's, made from this host's Debian)
#   ENGINE  podman or docker (default: podman if installed, else docker)
#   SOURCE  the org.opencontainers.image.source label (default: Cargo.toml's repository)
#   BINARY  an ords-guard binary already built, to package instead of a release build
#           (tests/container.rs passes its test build: CI then needs no second, release
#           compile of every crate, ~8 minutes on 2 cores)
#   CARGO_TARGET_DIR  as for cargo
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container-engine.sh

if [ -n "${BINARY:-}" ]; then
  bin="$BINARY"
else
  cargo build --release --locked --bin ords-guard >&2
  bin="${CARGO_TARGET_DIR:-target}/release/ords-guard"
fi

# `ords-guard 0.1.0 (rev 1a2b3c4d5e6f)`: the labels say what the binary says.
if ! said="$("$bin" --version)"; then
  echo "image.sh: $bin --version failed: the build is broken" >&2
  exit 1
fi
read -r _ version _ revision <<<"$said"
revision="${revision%)}"
source_url="${SOURCE:-$(sed -n 's/^repository *= *"\(.*\)"/\1/p' Cargo.toml | head -1)}"
ref="${IMAGE:-localhost/ords-guard:$version}"
base="${BASE:-$(scripts/image-base.sh | tail -1)}"
old="$($ENGINE image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
# Symbols stripped: the image carries the binary only (release keeps them for profiling).
if ! strip -o "$context/ords-guard" "$bin"; then
  echo "image.sh: strip failed (binutils missing?): the image gets the unstripped binary" >&2
  cp "$bin" "$context/ords-guard"
fi

# --no-cache: buildah 1.28 reuses a cached LABEL layer whatever the build arguments
# it expands (a stale revision label was measured); the layers are metadata and one COPY.
$ENGINE build --quiet --no-cache -f deploy/Containerfile --target prebuilt \
  --build-arg BASE="$base" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg SOURCE="$source_url" \
  -t "$ref" "$context" >&2

# The image starts (and its base's glibc is new enough for the binary), as the image's user.
if ! got="$($ENGINE run --rm --read-only "$ref" --version 2>&1)"; then
  echo "image.sh: $ref does not start: $got" >&2
  echo "image.sh: a binary built on a host with a newer glibc than the base's needs an older build host or BASE from that host" >&2
  exit 1
fi
echo "image.sh: $got; $($ENGINE image inspect --format '{{.Size}}' "$ref") bytes" >&2
# The image this build's tag moved away from, unless a container still uses it.
new="$($ENGINE image inspect --format '{{.Id}}' "$ref")"
if [ -n "$old" ] && [ "$old" != "$new" ]; then $ENGINE rmi "$old" >/dev/null 2>&1 || true; fi
echo "$ref"
