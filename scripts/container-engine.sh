# Sourced by the image scripts: picks the container engine (ENGINE, else podman, else
# docker) and, for podman, the settings this project's machines need (runc, ulimits within
# the hard limit), which scripts/setup.sh writes to .tools/containers.conf. A
# CONTAINERS_CONF set by the caller wins.
if [ -z "${ENGINE:-}" ]; then
  if command -v podman >/dev/null; then ENGINE=podman
  elif command -v docker >/dev/null; then ENGINE=docker
  else
    echo "no container engine: install podman (./scripts/setup.sh does) or docker" >&2
    exit 1
  fi
fi
if [ "$(basename "$ENGINE")" = podman ] && [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$PWD/.tools/containers.conf" ]; then
  export CONTAINERS_CONF="$PWD/.tools/containers.conf"
fi
