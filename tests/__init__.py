"""podvirt's tests, one folder per tier (hack/test.sh selects the tiers by marker; each tier
folder's conftest.py marks what it holds):

  unit/       pure logic and Flask test clients, one sub-package per component; no marker
  e2e/        a real local control plane (etcd, kube-apiserver, kube-scheduler, kwok, the
              webhook and extender processes); marked e2e
  libvirt/    real libvirtd + QEMU guests booted by `podvirt launcher run`; marked libvirt
  node/       this machine as a real kubelet + containerd node running the chart; marked node
  hardening/  fuzz, races, faults and escapes; marked hardening

Every folder is a package: modules import shared helpers by package path
(`from tests.e2e.support import DATA`), never by a bare name.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
