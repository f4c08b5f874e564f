#!/usr/bin/env bash
# Builds kube-apiserver, kube-scheduler, kubectl (pinned in go.mod), kwok and helm from the
# Go module proxy into a per-version cache outside the repository. Idempotent: a binary that
# is already in the cache is not rebuilt. Prints the cache's bin directory last.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
K8S_VERSION="v1.34.4"
KWOK_VERSION="v0.7.0"
HELM_VERSION="v3.19.0"
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

log "downloading modules for the wrapper (k8s ${K8S_VERSION})"
(cd "$here" && go mod download)
for name in ${PODVIRT_K8S_BINARIES:-kube-apiserver kube-scheduler kubectl}; do build_k8s "$name"; done
install_tool kwok "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
if [[ "${PODVIRT_SKIP_HELM:-}" != 1 ]]; then
  install_tool helm "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
fi
echo "$bin"
