#!/usr/bin/env bash
# Runs every podvirt test tier on this machine, installing what is missing first
# (hack/setup.sh). Tiers: unit (pure logic, Flask test clients), e2e (real etcd,
# kube-apiserver, kube-scheduler, kwok, webhook and extender processes), libvirt (real
# libvirtd + QEMU guests under TCG), node (this machine as a real kubelet + containerd
# node running the chart; VMs boot in launcher pods), hardening (fuzz, races, faults,
# escapes).
# Extra arguments go to every pytest run (e.g. -x, -k name).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash hack/setup.sh || { echo "setup failed"; exit 1; }

results="$(mktemp -d)"
status=0
tier() {  # name marker-expression
  local name="$1" expr="$2" t0=$SECONDS rc
  shift 2
  echo; echo "=== [test $(date +%H:%M:%S)] tier: $name"
  .venv/bin/python -m pytest tests -m "$expr" -q -p no:cacheprovider --timeout=600 \
      --junitxml="$results/$name.xml" "$@" ; rc=$?
  echo "=== [test] tier $name: exit $rc in $((SECONDS - t0))s"
  # 5 = nothing collected: a tier with no tests is reported, not failed.
  if [[ $rc != 0 && $rc != 5 ]]; then status=1; fi
}
tier unit "not e2e and not libvirt and not node and not hardening" "$@"
tier e2e "e2e and not libvirt and not node and not hardening" "$@"
tier libvirt "libvirt and not node and not hardening" "$@"
tier node "node and not hardening" "$@"
tier hardening "hardening" "$@"

.venv/bin/python - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        t, f, e, s = (int(suite.get(x, 0)) for x in ("tests", "failures", "errors", "skipped"))
        passed += t - f - e - s; failed += f + e; skipped += s
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
rm -rf "$results"
exit $status
