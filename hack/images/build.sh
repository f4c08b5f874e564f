#!/usr/bin/env bash
# Builds podvirt's container images with buildah, without any container registry: only
# Debian's mirror (http://deb.debian.org), PyPI and the Go module proxy are reached.
#
#   docker.io/library/debian:12.11-slim  the base, made by mmdebstrap (bookworm, minbase, slim
#                                        like the official image), under the exact name the
#                                        Containerfiles' FROM lines use; not exported
#   localhost/podvirt/pause:3.10         Kubernetes' pause.c from the pinned k8s.io/kubernetes
#                                        module, static, FROM scratch (images/pause.Containerfile)
#   localhost/podvirt/podvirt:0.1.0      images/podvirt.Containerfile (webhook, extender, certs)
#   localhost/podvirt/launcher:0.1.0     images/launcher.Containerfile (libvirt, QEMU, podvirt)
#   localhost/podvirt/tiny-guest:0.1.0   hack/guest/build.sh's kernel and initramfs under /boot
#                                        (images/tiny-guest.Containerfile)
#   localhost/podvirt/tiny-disk:0.1.0    a FROM-scratch containerdisk: one small qcow2 under
#                                        /disk (images/tiny-disk.Containerfile)
#   localhost/podvirt/debian-disk:0.1.0  a Debian 12 guest (systemd, cloud-init, OpenSSH) as a
#                                        containerdisk with its kernel under /boot
#                                        (images/debian-disk.Containerfile)
#
# Each exported image is a docker-archive that `ctr -n k8s.io images import FILE` loads under
# its name; images.txt next to them has one `NAME FILE IMAGE-ID` line per image (FILE relative
# to that directory, IMAGE-ID the digest of the image's config, which containerd and the CRI
# report as the image's id). hack/images/verify.sh imports and runs them in a throwaway
# containerd.
#
# Idempotent: an image is rebuilt only when the hash of its inputs changes (Containerfile, the
# files it copies, the base image's id, the buildah version); rebuilding the base rebuilds
# what is FROM it. Buildah's storage (vfs driver) is private to $PODVIRT_CACHE/images. Behind
# a TLS-intercepting proxy the CA the host's pip uses (PIP_CERT or `cert =` in a pip.conf;
# PODVIRT_BUILD_CA overrides) is bind-mounted read-only into the build steps, never into an
# image (see images/podvirt.Containerfile). Prints the output directory last.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${PODVIRT_CACHE:-$HOME/.cache/podvirt}/images"
out="$cache/out" keys="$cache/keys" logs="$cache/logs" work="$cache/work"
mkdir -p "$out" "$keys" "$logs" "$work"
B=(buildah --root "$cache/storage" --runroot "$cache/runroot" --storage-driver vfs)

K8S_VERSION="$(sed -n 's/^K8S_VERSION="\(.*\)"$/\1/p' "$repo/hack/k8s/build.sh")"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml")"
BASE="docker.io/library/debian:12.11-slim"
PAUSE="localhost/podvirt/pause:3.10"
PODVIRT="localhost/podvirt/podvirt:$VERSION"
LAUNCHER="localhost/podvirt/launcher:$VERSION"
TINY_GUEST="localhost/podvirt/tiny-guest:$VERSION"
TINY_DISK="localhost/podvirt/tiny-disk:$VERSION"
TINY_DISK_LINE="PODVIRT-DATA tiny-disk"
DEBIAN_DISK="localhost/podvirt/debian-disk:$VERSION"
DEBIAN_DISK_SIZE=2G
DEBIAN_DISK_PACKAGES=linux-image-cloud-amd64,systemd-sysv,udev,dbus,cloud-init,openssh-server,ifupdown,isc-dhcp-client,netbase,iproute2,e2fsprogs,sudo
# The base: bookworm with its updates and security suites (as the official image's sources),
# docs, man pages and locales left out by dpkg like the official slim image, which keeps
# derived images slim too; merged /usr set up the way debootstrap does it (the usrmerge package
# would bring perl, 50 MB).
MMDEBSTRAP=(mmdebstrap --variant=minbase --format=tar
  --aptopt='Acquire::Languages "none"' --aptopt='APT::AutoRemove::SuggestsImportant "false"'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/groff/*' --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/linda/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  bookworm)
MIRRORS=("deb http://deb.debian.org/debian bookworm main"
         "deb http://deb.debian.org/debian bookworm-updates main"
         "deb http://deb.debian.org/debian-security bookworm-security main")
PAUSE_CFLAGS=(-Os -Wall -Werror -static)

log() { echo "[build-images $(date +%H:%M:%S)] $*" >&2; }

# What the host needs, by Debian package (Go comes from go.dev, as for hack/k8s/build.sh).
missing=()
for need in buildah:buildah mmdebstrap:mmdebstrap runc:runc gcc:gcc strip:binutils \
            cpio:cpio apt-get:apt go:Go; do
  command -v "${need%%:*}" >/dev/null || missing+=("${need#*:}")
done
command -v gcc >/dev/null && [[ "$(gcc -print-file-name=libc.a)" != /* ]] && missing+=(libc6-dev)
if ((${#missing[@]})); then log "missing on this host: ${missing[*]}"; exit 1; fi

# One build at a time per cache: the keys, archives and manifest are shared.
exec 9>"$cache/.lock"
flock 9

fail() {  # name logfile started: the log's end, then one line saying what failed
  log "$1: the end of $2:"
  tail -n 40 "$2" >&2
  log "$1: FAILED after $((SECONDS - $3))s: $(grep -E '^(Error|E:|error:|ERROR:)' "$2" | tail -1)"
  exit 1
}

sum() { sha256sum | cut -c1-64; }
key_of() { printf '%s\n' "$(buildah --version)" "$@" | sum; }
image_id() { "${B[@]}" images --no-trunc --noheading --format '{{.ID}}' "$1" 2>/dev/null | head -1 || true; }
size() { numfmt --to=iec-i --suffix=B "$(stat -c %s "$1")"; }

cached() {  # name ref key -> 0 when the image and (but for the base) its archive are current
  local name="$1" ref="$2" key="$3"
  [[ "$(cat "$keys/$name" 2>/dev/null)" == "$key" && -n "$(image_id "$ref")" ]] || return 1
  [[ "$name" == base || -s "$out/$name.tar" ]] || return 1
  log "$name: cached ($ref)"
}

build() {  # name ref key containerfile context [buildah build args...]
  local name="$1" ref="$2" key="$3" file="$4" context="$5" t0=$SECONDS
  local logfile="$logs/$name.log"
  shift 5
  log "$name: building $ref"
  "${B[@]}" build --pull=never --network host --layers=false --force-rm --format docker \
      -f "$file" -t "$ref" "$@" "$context" >"$logfile" 2>&1 || fail "$name" "$logfile" "$t0"
  rm -f "$out/$name.tar.tmp"
  "${B[@]}" push --quiet "$ref" "docker-archive:$out/$name.tar.tmp:$ref" >>"$logfile" 2>&1 \
      || fail "$name" "$logfile" "$t0"
  mv "$out/$name.tar.tmp" "$out/$name.tar"
  "${B[@]}" rmi --prune >>"$logfile" 2>&1 || true   # the image this one replaced
  echo "$key" >"$keys/$name"
  log "$name: built in $((SECONDS - t0))s, $(size "$out/$name.tar")"
}

build_base() {
  local key t0=$SECONDS logfile="$logs/base.log" tar="$work/debian.tar" c
  key="$(key_of "${MMDEBSTRAP[@]}" "${MIRRORS[@]}")"
  cached base "$BASE" "$key" && return
  log "base: mmdebstrap bookworm (minbase, slim) -> $BASE"
  rm -f "$tar"
  "${MMDEBSTRAP[@]}" "$tar" "${MIRRORS[@]}" >"$logfile" 2>&1 || fail base "$logfile" "$t0"
  # Device nodes are the runtime's business (as in the official image's empty /dev).
  tar --delete --wildcards -f "$tar" './dev/?*' >>"$logfile" 2>&1 || fail base "$logfile" "$t0"
  c="$("${B[@]}" from scratch 2>>"$logfile")" || fail base "$logfile" "$t0"
  { "${B[@]}" add "$c" "$tar" / \
    && "${B[@]}" config --cmd '["bash"]' --os linux --arch amd64 \
         --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c" \
    && "${B[@]}" commit --rm --format docker "$c" "$BASE" \
    && "${B[@]}" rmi --prune; } >>"$logfile" 2>&1 || fail base "$logfile" "$t0"
  rm -f "$tar"
  echo "$key" >"$keys/base"
  log "base: built in $((SECONDS - t0))s"
}

build_pause() {
  local src mk tag key context="$work/pause" file="$repo/images/pause.Containerfile"
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@${K8S_VERSION}/build/pause/linux/pause.c"
  if [[ ! -f "$src" ]]; then
    log "pause: go mod download k8s.io/kubernetes@${K8S_VERSION}"
    (cd "$repo/hack/k8s" && go mod download k8s.io/kubernetes)
  fi
  mk="$(dirname "$(dirname "$src")")/Makefile"
  tag="$(sed -n 's/^TAG ?= *//p' "$mk")"
  local cflags=("${PAUSE_CFLAGS[@]}" "-DVERSION=v${tag}-k8s-${K8S_VERSION}")
  key="$(key_of "$(sum <"$src")" "$(sum <"$file")" "${cflags[*]}" "$(gcc --version | head -1)")"
  cached pause "$PAUSE" "$key" && return
  rm -rf "$context" && mkdir -p "$context"
  gcc "${cflags[@]}" -o "$context/pause" "$src" && strip "$context/pause"
  build pause "$PAUSE" "$key" "$file" "$context"
}

# The repository-root context of podvirt and launcher: what images/.containerignore lets in
# (its `!` lines), without bytecode.
repo_context_sum() {
  local roots
  mapfile -t roots < <(sed -n 's|^!\(.*\)|\1|p' "$repo/images/.containerignore" | sed 's|/$||')
  (cd "$repo" && find "${roots[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
     | LC_ALL=C sort -z | xargs -0 sha256sum && sha256sum images/.containerignore) | sum
}

pip_ca() {  # the CA bundle the host's pip verifies with, if one is configured
  local ca="${PODVIRT_BUILD_CA:-${PIP_CERT:-}}" conf
  for conf in "${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf" "$HOME/.pip/pip.conf" /etc/pip.conf; do
    [[ -n "$ca" ]] && break
    [[ -r "$conf" ]] && ca="$(sed -n 's/^[[:space:]]*cert[[:space:]]*=[[:space:]]*//p' "$conf" | tail -1)"
  done
  [[ -z "$ca" || -r "$ca" ]] || { log "pip CA $ca is not readable"; exit 1; }
  echo "$ca"
}

build_repo_image() {  # name ref containerfile context-sum base-id [buildah build args...]
  local name="$1" ref="$2" file="$3" key
  key="$(key_of "$4" "$5" "$(sum <"$file")")"
  shift 5
  cached "$name" "$ref" "$key" && return
  build "$name" "$ref" "$key" "$file" "$repo" --ignorefile "$repo/images/.containerignore" "$@"
}

build_tiny_guest() {
  local guest key context="$work/tiny-guest" file="$repo/images/tiny-guest.Containerfile"
  guest="$(bash "$repo/hack/guest/build.sh" 2>"$logs/guest.log" | tail -1)" \
    || fail tiny-guest "$logs/guest.log" "$SECONDS"
  key="$(key_of "$(cat "$guest/vmlinuz" "$guest/initramfs.cpio.gz" | sum)" "$(sum <"$file")")"
  cached tiny-guest "$TINY_GUEST" "$key" && return
  rm -rf "$context" && mkdir -p "$context"
  cp "$guest/vmlinuz" "$guest/initramfs.cpio.gz" "$context/"
  build tiny-guest "$TINY_GUEST" "$key" "$file" "$context"
}

build_tiny_disk() {  # a 16 MiB disk whose first line is $TINY_DISK_LINE, as qcow2
  local key context="$work/tiny-disk" file="$repo/images/tiny-disk.Containerfile"
  key="$(key_of "$(echo "$TINY_DISK_LINE" | sum)" "$(sum <"$file")")"
  cached tiny-disk "$TINY_DISK" "$key" && return
  rm -rf "$context" && mkdir -p "$context"
  echo "$TINY_DISK_LINE" >"$context/disk.raw"
  truncate -s 16M "$context/disk.raw"
  qemu-img convert -q -f raw -O qcow2 "$context/disk.raw" "$context/disk.qcow2"
  rm "$context/disk.raw"
  build tiny-disk "$TINY_DISK" "$key" "$file" "$context"
}

build_debian_disk() {  # mmdebstrap -> ext4 (mkfs.ext4 -d, no mount) -> compressed qcow2
  local key t0=$SECONDS context="$work/debian-disk" file="$repo/images/debian-disk.Containerfile"
  local hook="$here/debian-disk.sh" logfile="$logs/debian-disk.log" rootfs="$work/debian-rootfs"
  key="$(key_of "$DEBIAN_DISK_PACKAGES" "$DEBIAN_DISK_SIZE" "${MIRRORS[@]}" "$(sum <"$hook")" \
                "$(sum <"$file")")"
  cached debian-disk "$DEBIAN_DISK" "$key" && return
  log "debian-disk: mmdebstrap bookworm with systemd, cloud-init, OpenSSH (~2 min)"
  rm -rf "$context" "$rootfs" && mkdir -p "$context"
  mmdebstrap --variant=apt --format=directory --include="$DEBIAN_DISK_PACKAGES" \
      --aptopt='Acquire::Languages "none"' --customize-hook="$hook \"\$1\"" \
      bookworm "$rootfs" "${MIRRORS[@]}" >"$logfile" 2>&1 || fail debian-disk "$logfile" "$t0"
  cp "$rootfs"/boot/vmlinuz-* "$context/vmlinuz"
  cp "$rootfs"/boot/initrd.img-* "$context/initrd.img"
  log "debian-disk: ext4 root filesystem ($DEBIAN_DISK_SIZE) -> compressed qcow2"
  { mkfs.ext4 -q -d "$rootfs" -L rootfs "$context/debian.raw" "$DEBIAN_DISK_SIZE" \
    && qemu-img convert -c -f raw -O qcow2 "$context/debian.raw" "$context/debian.qcow2"; } \
      >>"$logfile" 2>&1 || fail debian-disk "$logfile" "$t0"
  rm -rf "$context/debian.raw" "$rootfs"
  build debian-disk "$DEBIAN_DISK" "$key" "$file" "$context"
}

write_manifest() {  # name=ref...
  local pair name ref
  : >"$out/images.txt.tmp"
  for pair in "$@"; do
    name="${pair%%=*}" ref="${pair#*=}"
    echo "$ref $name.tar $(image_id "$ref")" >>"$out/images.txt.tmp"
  done
  mv "$out/images.txt.tmp" "$out/images.txt"
}

t_all=$SECONDS
build_base
build_pause
base_id="$(image_id "$BASE")"
# The device plugin's gRPC stubs are generated and git-ignored (launcher/deviceplugin/_api/):
# made before the context is hashed, so the hash and both images' launcher/ include them.
bash "$repo/hack/deviceplugin/gen.sh" >"$logs/deviceplugin-gen.log" 2>&1 \
  || fail deviceplugin-gen "$logs/deviceplugin-gen.log" "$SECONDS"
context_sum="$(repo_context_sum)"
ca="$(pip_ca)"
ca_args=()
if [[ -n "$ca" ]]; then
  # Onto /mnt, empty in Debian: no mount point is left in the image (images/podvirt.Containerfile).
  rm -rf "$work/pip-ca" && mkdir -p "$work/pip-ca" && cp -L "$ca" "$work/pip-ca/ca.crt"
  ca_args=(-v "$work/pip-ca:/mnt:ro" --build-arg PIP_CERT=/mnt/ca.crt)
  log "pip in the builds verifies TLS with $ca (bind-mounted read-only, in no image)"
fi
build_repo_image podvirt "$PODVIRT" "$repo/images/podvirt.Containerfile" "$context_sum" "$base_id" "${ca_args[@]}"
build_repo_image launcher "$LAUNCHER" "$repo/images/launcher.Containerfile" "$context_sum" "$base_id" "${ca_args[@]}"
build_tiny_guest
build_tiny_disk
build_debian_disk
write_manifest pause="$PAUSE" podvirt="$PODVIRT" launcher="$LAUNCHER" tiny-guest="$TINY_GUEST" \
  tiny-disk="$TINY_DISK" debian-disk="$DEBIAN_DISK"
log "all images ready in $((SECONDS - t_all))s: $out/images.txt"
echo "$out"
