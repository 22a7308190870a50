#!/usr/bin/env bash
# A distroless-style base image made on this machine, for hosts that reach no container
# registry (scripts/image.sh uses it unless BASE names another). It holds what
# gcr.io/distroless/cc-debian12 holds for a Rust binary, taken from this Debian's installed
# packages: glibc and libgcc_s (the binary was linked against exactly these), the Mozilla CA
# set of the `ca-certificates` package, time zones, /etc/passwd and /etc/group with
# `nonroot` (65532), and a world-writable /tmp. No shell, no package manager.
#   scripts/image-base.sh [IMAGE]      # default localhost/ords-guard-base:debianN
# Prints the image reference as its last line. The archive is reproducible: when the tag
# already holds the same content, nothing is imported again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/container-engine.sh

os_version="$(. /etc/os-release && echo "${ID:-debian}${VERSION_ID:-}")"
ref="${1:-localhost/ords-guard-base:$os_version}"
if [ "$(id -u)" -ne 0 ]; then
  echo "image-base: run as root (the base's files must belong to root and /home/nonroot to 65532), or give scripts/image.sh a BASE such as gcr.io/distroless/cc-debian12:nonroot" >&2
  exit 1
fi
packages=(libc6 libgcc-s1 netbase tzdata)
for p in "${packages[@]}" ca-certificates; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "image-base: Debian package $p is not installed (apt-get install $p)" >&2; exit 1; }
done
mozilla=(/usr/share/ca-certificates/mozilla/*.crt)
[ -f "${mozilla[0]}" ] || { echo "image-base: no certificates in /usr/share/ca-certificates/mozilla (apt-get install --reinstall ca-certificates)" >&2; exit 1; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
# Each package's files and symlinks at their packaged paths (Debian 12 ships /lib paths;
# the image keeps them so, as distroless does). Locales, man pages and lintian overrides
# are left out; copyright files are kept.
# (A host path that is a symlink to a directory, such as /lib on a merged-/usr host, is a
# directory in the package: its files are listed on their own.)
{
  dpkg -L "${packages[@]}" | sort -u | while read -r f; do
    case "$f" in
      /usr/share/locale/* | /usr/share/man/* | /usr/share/lintian/* | /usr/share/doc/*/changelog*) continue ;;
    esac
    if { [ -L "$f" ] && [ ! -d "$f" ]; } || { [ -f "$f" ] && [ ! -L "$f" ]; }; then
      echo "${f#/}"
    fi
  done
  echo usr/share/doc/ca-certificates/copyright
} | tar -C / --no-recursion -cf - -T - | tar -C "$root" -xf -
mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot" "$root/var/run"
# The CA bundle from the package's Mozilla set only. The host's own
# /etc/ssl/certs/ca-certificates.crt also holds whatever was added under
# /usr/local/share/ca-certificates (a company's or a sandbox's interception CA), which an
# image must not carry to every cluster it runs in.
cat "${mozilla[@]}" > "$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot"
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
cp /etc/os-release "$root/etc/os-release"

archive="$root.tar"
trap 'rm -rf "$root" "$archive"' EXIT
tar --sort=name --mtime=@0 --numeric-owner --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$root" -cf "$archive" .
digest="$(sha256sum "$archive" | cut -d' ' -f1)"
if [ "$($ENGINE image inspect --format '{{index .Config.Labels "org.ords-guard.base.digest"}}' "$ref" 2>/dev/null)" != "$digest" ]; then
  old="$($ENGINE image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)"
  $ENGINE import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'USER 65532:65532' \
    --change 'WORKDIR /home/nonroot' \
    --change "LABEL org.ords-guard.base.digest=$digest" \
    --message "ords-guard base: libc6 libgcc-s1 netbase tzdata and the Mozilla CA set of $(. /etc/os-release && echo "$PRETTY_NAME")" \
    "$archive" "$ref" >/dev/null
  # The base this one replaces, unless an image still uses it.
  [ -n "$old" ] && $ENGINE rmi "$old" >/dev/null 2>&1 || true
fi
echo "$ref"
