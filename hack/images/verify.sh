#!/usr/bin/env bash
# Checks hack/images/build.sh's output the way a node will use it, in a throwaway containerd
# (private root, state and socket; no CRI plugin): every archive in images.txt imports with
# `ctr -n k8s.io images import` under its name and with its IMAGE-ID as config digest; the
# pause image runs and exits 0 on SIGTERM; the launcher image's static busybox, copied into a
# shared directory (a launcher pod's emptyDir), copies the kernel and initramfs out of the
# FROM-scratch tiny-guest image.
#
#   bash hack/images/verify.sh [OUTPUT-DIR]     (default: the directory build.sh prints)
set -euo pipefail
dir="${1:-${PODVIRT_CACHE:-$HOME/.cache/podvirt}/images/out}"
manifest="$dir/images.txt"
[[ -s "$manifest" ]] || { echo "verify: no $manifest (run hack/images/build.sh)" >&2; exit 1; }
tmp="$(mktemp -d "$(dirname "$dir")/verify.XXXXXX")"
sock="$tmp/containerd.sock"
ctr=(ctr --address "$sock" -n k8s.io)

log() { echo "[verify-images $(date +%H:%M:%S)] $*" >&2; }
die() { log "FAILED: $*"; tail -n 20 "$tmp/containerd.log" >&2 || true; exit 1; }

cleanup() {
  local task
  for task in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
    "${ctr[@]}" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
    "${ctr[@]}" tasks rm -f "$task" >/dev/null 2>&1 || true
  done
  if [[ -n "${containerd_pid:-}" ]]; then kill "$containerd_pid" 2>/dev/null || true; wait "$containerd_pid" 2>/dev/null || true; fi
  awk -v p="$tmp/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount || true
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/config.toml" <<EOF
version = 2
root = "$tmp/root"
state = "$tmp/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
EOF
containerd --config "$tmp/config.toml" >"$tmp/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 50); do [[ -S "$sock" ]] && "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
"${ctr[@]}" version >/dev/null 2>&1 || die "containerd did not start"

ref_of() {  # archive file name -> image name from images.txt
  awk -v f="$1" '$2 == f {print $1}' "$manifest"
}

while read -r name file id; do
  t0=$SECONDS
  "${ctr[@]}" images import "$dir/$file" >"$tmp/import.log" 2>&1 || { cat "$tmp/import.log" >&2; die "import $file"; }
  target="$("${ctr[@]}" images ls | awk -v n="$name" '$1 == n {print $3}')"
  [[ -n "$target" ]] || die "$file did not import as $name: $("${ctr[@]}" images ls -q | tr '\n' ' ')"
  config="$("${ctr[@]}" content get "$target" | python3 -c 'import json, sys; print(json.load(sys.stdin)["config"]["digest"])')"
  [[ "$config" == "$id" ]] || die "$name: config digest $config, images.txt says $id"
  log "$name: imported in $((SECONDS - t0))s ($config)"
done <"$manifest"

pause="$(ref_of pause.tar)" podvirt="$(ref_of podvirt.tar)" launcher="$(ref_of launcher.tar)"
guest="$(ref_of tiny-guest.tar)"
# As the chart runs it: the image's user (10001), a read-only root; imports what the services
# import (Flask, gevent, gunicorn_h1c, granian, the Kubernetes client, cryptography, orjson).
imports="import os, gunicorn_h1c, orjson, podvirt.webhook.app, podvirt.extender.serve, podvirt.certs; print(os.getuid())"
uid="$(timeout 60 "${ctr[@]}" run --rm --read-only "$podvirt" podvirt-verify-podvirt \
  python -c "$imports" </dev/null 2>&1)" || die "$podvirt: $uid"
[[ "$uid" == 10001 ]] || die "$podvirt runs as uid $uid, not 10001"
log "$podvirt: services import on a read-only root as uid 10001"
out="$(timeout 60 "${ctr[@]}" run --rm "$launcher" podvirt-verify-launcher \
  python -c "import libvirt, podvirt.launcher.run; print(libvirt.getVersion())" </dev/null 2>&1)" \
  || die "$launcher: $out"
log "$launcher: podvirt.launcher and libvirt ($out) import"
# Under `ctr run` pause is PID 1 of its container, as in a pod sandbox.
timeout 60 "${ctr[@]}" run --rm "$pause" podvirt-verify-pause </dev/null >"$tmp/pause.log" 2>&1 &
run_pid=$!
sleep 2
"${ctr[@]}" tasks ls | grep -q '^podvirt-verify-pause .*RUNNING' || die "pause is not running"
"${ctr[@]}" tasks kill -s SIGTERM podvirt-verify-pause
wait "$run_pid" || die "pause exited $? on SIGTERM"
log "$pause: ran under runc, exited 0 on SIGTERM"

shared="$tmp/shared"
mkdir -m 0777 "$shared"
mount_shared=(--mount "type=bind,src=$shared,dst=/podvirt,options=rbind:rw")
timeout 120 "${ctr[@]}" run --rm "${mount_shared[@]}" "$launcher" podvirt-verify-launcher \
  cp /usr/lib/podvirt/busybox /podvirt/busybox || die "copying busybox out of $launcher"
timeout 60 "${ctr[@]}" run --rm "${mount_shared[@]}" "$guest" podvirt-verify-guest \
  /podvirt/busybox cp /boot/vmlinuz /boot/initramfs.cpio.gz /podvirt/ || die "copying /boot out of $guest"
[[ "$(head -c 2 "$shared/vmlinuz")" == MZ ]] || die "vmlinuz from $guest is not a bzImage"
[[ "$(od -An -tx1 -N2 "$shared/initramfs.cpio.gz" | tr -d ' ')" == 1f8b ]] || die "initramfs from $guest is not gzip"
log "$guest: ran under runc with $launcher's busybox; copied out /boot/vmlinuz, /boot/initramfs.cpio.gz"
log "all images in $manifest verified"
