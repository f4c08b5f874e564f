#!/usr/bin/env bash
# Generates the Python gRPC stubs of the kubelet device plugin API into
# launcher/deviceplugin/_api/ (api_pb2.py, api_pb2_grpc.py and their .pyi), from
# k8s.io/kubelet's pkg/apis/deviceplugin/v1beta1/api.proto at the version hack/k8s/go.mod
# pins, read from the Go module cache (`go mod download` fetches it when missing). git
# ignores the outputs; hack/images/build.sh and tests/unit/deviceplugin run this first.
#
# Uses grpcio-tools (python -m grpc_tools.protoc) from $PYTHON, default .venv/bin/python
# (the `test` extra installs it). Idempotent: does nothing while the outputs are newer than
# the proto and this script and were made from the same proto and grpcio-tools version
# (the stamp file .source; a pin moved back to an already-cached, older proto is caught by
# it, not by mtimes). Prints the output directory last.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
out="$repo/launcher/deviceplugin/_api"
# The import path the stubs live at. protoc names a generated module's imports after the
# proto's path relative to the include root, so the proto is compiled from a temporary tree
# where it sits at this path: api_pb2_grpc.py then says
# `from podvirt.launcher.deviceplugin._api import api_pb2`, a package import, with no sed
# over generated code; the descriptor is registered as
# "podvirt/launcher/deviceplugin/_api/api.proto", which no other library's "api.proto"
# (CRI's, say) can collide with in protobuf's default pool.
rel="podvirt/launcher/deviceplugin/_api"

log() { echo "[deviceplugin-gen] $*" >&2; }

gomod="$repo/hack/k8s/go.mod"
# The replace directive is what the binaries are built with; the require line otherwise.
version="$(awk '$1 == "k8s.io/kubelet" && $2 == "=>" { print $4 }' "$gomod" | tail -1)"
[[ -n "$version" ]] || version="$(awk '$1 == "k8s.io/kubelet" && $2 ~ /^v/ { print $2 }' "$gomod" | head -1)"
[[ -n "$version" ]] || { log "no k8s.io/kubelet version in $gomod"; exit 1; }

modcache="$(go env GOMODCACHE 2>/dev/null || true)"
modcache="${modcache:-${GOPATH:-$HOME/go}/pkg/mod}"
proto="$modcache/k8s.io/kubelet@$version/pkg/apis/deviceplugin/v1beta1/api.proto"
if [[ ! -f "$proto" ]]; then
  command -v go >/dev/null || { log "$proto is missing and there is no go to download it"; exit 1; }
  log "go mod download k8s.io/kubelet@$version"
  (cd "$repo/hack/k8s" && go mod download k8s.io/kubelet)
  [[ -f "$proto" ]] || { log "$proto still missing after go mod download"; exit 1; }
fi

if ! tools="$("$python" -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))' 2>/dev/null)"; then
  log "grpcio-tools is not installed for $python (pip install -e '.[test]')"
  exit 1
fi
stamp="k8s.io/kubelet@$version $(sha256sum <"$proto" | cut -c1-64) grpcio-tools $tools"
outputs=("$out/api_pb2.py" "$out/api_pb2_grpc.py" "$out/api_pb2.pyi")
fresh=1
for f in "${outputs[@]}"; do
  [[ "$f" -nt "$proto" && "$f" -nt "$0" ]] || fresh=0
done
if ((fresh)) && [[ "$(cat "$out/.source" 2>/dev/null)" == "$stamp" ]]; then
  log "up to date ($stamp)"
  echo "$out"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/$rel" "$tmp/gen"
# gogoproto: kubelet's api.proto imported github.com/gogo/protobuf/gogoproto/gogo.proto until
# Kubernetes dropped gogo (v0.34's has no gogo left; this is then a no-op). Its options only
# steer Go code generation and never change the wire format, so they are stripped from the
# copy rather than gogo.proto being put on the include path: that would make protoc emit an
# import of `github.com.gogo.protobuf.gogoproto.gogo_pb2`, a module name Python cannot
# import (dots in "github.com"), and need gogo's own descriptor.proto as well.
sed -e '\|^import "github.com/gogo/protobuf/gogoproto/gogo.proto";|d' \
    -e '/^option (gogoproto\./d' \
    -e 's/ *\[(gogoproto\.[^]]*\]//' \
    "$proto" >"$tmp/src/$rel/api.proto"
if grep -n gogoproto "$tmp/src/$rel/api.proto" >&2; then
  log "gogoproto left in $proto after stripping (lines above): update the sed in $0"
  exit 1
fi
# grpc_tools.protoc adds its bundled well-known types (google/protobuf/*.proto) to the
# include path by itself.
(cd "$tmp/src" && "$python" -m grpc_tools.protoc -I . --python_out="$tmp/gen" \
   --pyi_out="$tmp/gen" --grpc_python_out="$tmp/gen" "$rel/api.proto")
# grpcio-tools emits `import warnings` into api_pb2_grpc.py whether or not it uses it; the
# repository's pyflakes run (tests/unit/test_lint.py) covers launcher/, so the line goes when
# nothing else in the file says `warnings.`.
grpc_py="$tmp/gen/$rel/api_pb2_grpc.py"
grep -q 'warnings\.' "$grpc_py" || sed -i '/^import warnings$/d' "$grpc_py"
# The protobuf runtime refuses gencode newer than itself: load the new api_pb2 once here
# (grpcio-tools requires a grpcio as new as its gencode, so the _grpc module's check holds).
"$python" -c 'import runpy, sys; runpy.run_path(sys.argv[1])' "$tmp/gen/$rel/api_pb2.py" \
  || { log "the generated api_pb2.py does not load with $python's protobuf"; exit 1; }
mkdir -p "$out"
for f in "${outputs[@]}"; do
  cp "$tmp/gen/$rel/$(basename "$f")" "$f.tmp" && mv "$f.tmp" "$f"
done
echo "$stamp" >"$out/.source"
log "wrote ${outputs[*]#"$repo/"} from $proto ($stamp)"
echo "$out"
