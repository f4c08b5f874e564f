"""Where the control-plane and node binaries come from.

kube-apiserver, kube-scheduler, kube-controller-manager, kube-proxy, kubelet, kubectl,
etcd and kwok are built from the Go module proxy
by hack/k8s/build.sh into a per-version cache; the script is idempotent and prints the bin
directory last, so calling it is both "build if missing" and "locate". $PODVIRT_K8S_BIN
(a directory) and $PODVIRT_ETCD (a binary) override it. etcd is built rather than taken
from Debian (3.4): see the note in build.sh.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "hack" / "k8s" / "build.sh"
K8S_TOOLS = ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kube-proxy",
             "kubelet", "kubectl", "kwok", "etcd")
_OVERRIDES = {"etcd": "PODVIRT_ETCD"}


class BinaryError(RuntimeError):
    """A binary is missing and cannot be built."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kube_proxy: Path
    kubelet: Path
    kubectl: Path
    kwok: Path


def _bin_dir() -> Path:
    override = os.environ.get("PODVIRT_K8S_BIN")
    if override:
        return Path(override)
    if not BUILD_SCRIPT.is_file():
        raise BinaryError(f"{BUILD_SCRIPT} not found; set PODVIRT_K8S_BIN to a directory "
                          f"holding {', '.join(K8S_TOOLS)}")
    # helm is not needed for the control plane; skipping it keeps a cold build shorter.
    env = {**os.environ, "PODVIRT_SKIP_HELM": os.environ.get("PODVIRT_SKIP_HELM", "1")}
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, stdout=subprocess.PIPE,
                          stderr=None, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BinaryError(f"{BUILD_SCRIPT} failed (exit {proc.returncode}); see its output above")
    return Path(lines[-1])


def locate() -> Binaries:
    """Find (building on first use) every binary `podvirt cluster up` runs."""
    bin_dir = _bin_dir()
    paths = {t: Path(os.environ.get(_OVERRIDES.get(t, ""), "") or bin_dir / t) for t in K8S_TOOLS}
    missing = [str(p) for p in paths.values() if not os.access(p, os.X_OK)]
    if missing:
        raise BinaryError(f"missing: {', '.join(missing)}; run {BUILD_SCRIPT}")
    return Binaries(**{tool.replace("-", "_"): path for tool, path in paths.items()})
