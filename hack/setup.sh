#!/usr/bin/env bash
# Installs everything podvirt's demo and tests need on a fresh Debian 12 machine, and
# reuses what is already there: Debian packages (apt-get), the Kubernetes binaries
# (built from the Go module proxy, cached per version), the test guest (kernel +
# busybox initramfs, cached) and the Python venv (.venv). Safe to run again.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# etcd is built from the Go module proxy with the Kubernetes binaries (hack/k8s/build.sh):
# Debian's etcd 3.4 lacks the watch-progress feature kube-apiserver 1.34's clients rely on.
# The local node (cluster/node.py): containerd + runc run the kubelet's pods, CNI plugins
# wire them to the podvirt0 bridge, conntrack + iptables serve kube-proxy; buildah,
# mmdebstrap and uidmap build the images offline (hack/images/build.sh), libc6-dev links
# the static pause binary.
APT_PACKAGES=(libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86
              qemu-utils busybox-static libvirt-dev pkg-config cpio gcc libc6-dev
              containerd runc containernetworking-plugins conntrack iptables
              buildah mmdebstrap uidmap passt openssh-client ovmf swtpm swtpm-tools)

phase() { echo; echo "=== [setup $(date +%H:%M:%S)] $*"; }
timed() {  # name cmd...
  local name="$1"; shift; local t0=$SECONDS
  "$@"
  echo "=== [setup] $name took $((SECONDS - t0))s"
}

apt_install() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo"
  if ((${#missing[@]} == 0)); then
    echo "Debian packages: all present"
    # The guest build downloads the kernel package: it needs package lists.
    compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null || $sudo apt-get update -q
    return
  fi
  echo "Debian packages to install: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

python_env() {
  if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
  local stamp=".venv/.podvirt-installed"
  if [[ -f "$stamp" && "$stamp" -nt pyproject.toml ]]; then echo "Python venv: up to date"; return; fi
  local log=.venv/pip-install.log
  # libvirt-python compiles against Debian's libvirt-dev; its build chatter goes to a log.
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[test,libvirt]'; } \
      >"$log" 2>&1; then
    cat "$log"; echo "pip install failed (log above)"; return 1
  fi
  touch "$stamp"
}

phase "Debian packages (libvirt, QEMU, busybox, build tools)"
timed "Debian packages" apt_install
phase "etcd, kube-apiserver, kube-scheduler, kubectl, kwok, helm from the Go module proxy (cold: ~9 min on 2 cores)"
timed "Kubernetes binaries" bash -c "bash hack/k8s/build.sh >/dev/null"
phase "test guest (Debian cloud kernel + busybox initramfs)"
timed "test guest" bash -c "bash hack/guest/build.sh >/dev/null"
phase "Python venv"
timed "Python venv" python_env
phase "container images (buildah, offline; cold: ~3 min)"
timed "container images" bash -c "bash hack/images/build.sh >/dev/null"
