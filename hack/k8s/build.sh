#!/usr/bin/env bash
# Builds kube-apiserver, kube-scheduler, kube-controller-manager, kube-proxy, kubelet, kubectl
# (pinned in go.mod), etcd, kwok and helm from
# the Go module proxy into a per-version cache outside the repository. Idempotent: a binary that
# is already in the cache is not rebuilt. Prints the cache's bin directory last.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
K8S_VERSION="v1.34.4"
KWOK_VERSION="v0.7.0"
HELM_VERSION="v3.19.0"
# Not Debian's etcd 3.4: kube-apiserver 1.34 turns off RequestWatchProgress for etcd older
# than 3.4.31/3.5.13, and then rejects the streaming lists (WatchListClient) of client-go
# based controllers such as kwok, whose informers never sync.
ETCD_VERSION="v3.5.21"
cache="${PODVIRT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podvirt}/k8s-${K8S_VERSION}-kwok-${KWOK_VERSION}-helm-${HELM_VERSION}"
bin="$cache/bin"
mkdir -p "$bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34 \
 -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION} \
 -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=34"

log() { echo "[build-k8s $(date +%H:%M:%S)] $*" >&2; }

build_k8s() {  # name
  local name="$1"
  if [[ -x "$bin/$name" ]]; then log "$name: cached"; return; fi
  log "$name: building k8s.io/kubernetes/cmd/$name@${K8S_VERSION} (several minutes on 2 cores)"
  local t0=$SECONDS
  (cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$bin/$name.tmp" "$bin/$name"
  log "$name: built in $((SECONDS - t0))s"
}

install_tool() {  # name package@version
  local name="$1" pkg="$2"
  if [[ -x "$bin/$name" ]]; then log "$name: cached"; return; fi
  log "$name: go install $pkg"
  local t0=$SECONDS
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "$pkg"
  log "$name: built in $((SECONDS - t0))s"
}

build_etcd() {
  local have=""
  [[ -x "$bin/etcd" ]] && have="$("$bin/etcd" --version 2>/dev/null | head -1 || true)"
  if [[ "$have" == "etcd Version: ${ETCD_VERSION#v}" ]]; then
    log "etcd: cached"; return
  fi
  # etcd's server module has replace directives, which `go install pkg@version` refuses;
  # a throwaway wrapper module requiring it builds the same code.
  log "etcd: building go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  local t0=$SECONDS wrapper
  wrapper="$(mktemp -d)"
  if ! (cd "$wrapper" && go mod init podvirt.io/hack/etcd >/dev/null 2>&1 \
     && printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go \
     && go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" \
     && go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3); then
    rm -rf "$wrapper"; log "etcd: build failed"; return 1
  fi
  rm -rf "$wrapper"
  mv "$bin/etcd.tmp" "$bin/etcd"
  log "etcd: built in $((SECONDS - t0))s"
}

log "downloading modules for the wrapper (k8s ${K8S_VERSION})"
(cd "$here" && go mod download)
for name in ${PODVIRT_K8S_BINARIES:-kube-apiserver kube-scheduler kubectl kube-controller-manager kube-proxy kubelet}; do build_k8s "$name"; done
build_etcd
install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
if [[ "${PODVIRT_SKIP_HELM:-}" != 1 ]]; then
  install_tool helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
fi
echo "$bin"
