#!/usr/bin/env bash
# The podvirt demo on a fresh machine: installs what is missing (hack/setup.sh), then
# hack/demo.py starts a local control plane with the webhook and the extender, applies
# the examples, explains where each VM landed or why it did not, boots one VM for real
# and tears everything down (also on Ctrl-C).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash hack/setup.sh
exec .venv/bin/python hack/demo.py "$@"
