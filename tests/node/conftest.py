"""The node tier: the local cluster with this machine as a real node (kubelet,
containerd, kube-proxy) and podvirt installed on it by its Helm chart, for the whole
session. VM pods here run for real: kubelet starts the launcher pod, libvirtd and QEMU run
inside its container.

Fixtures:
  cluster    the running `Cluster` (node mode); at teardown the host must be clean
  core       a kubernetes CoreV1Api on it
  vm_pod     vm_pod(name, **annotations) -> manifest of a tiny-guest VM pod (default ns)
  wait_pod   wait_pod(name, predicate, timeout) -> V1Pod, via a watch (default ns)
  logs       logs(name, container) -> the container's log so far
  plugin_env the environment `kubectl podvirt` runs in: this cluster's kubectl and the
             venv's kubectl-podvirt on PATH, KUBECONFIG set
VM pods go to the `default` namespace: the chart gives the launcher ServiceAccount only
to its VM namespaces (cluster/chart.py). Each test deletes what it created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.support import core_api, local_cluster, watch_pod

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vm-tiny-guest.yaml"
NAMESPACE = "default"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    from podvirt.cluster import nodehost
    with local_cluster(tmp_path_factory.mktemp("node-cluster"), require=True, timeout=120,
                       node=True) as c:
        yield c
    left = nodehost.leftovers(c.node_layout)
    assert left == [], f"podvirt cluster down left on this machine: {left}"


@pytest.fixture(scope="session")
def core(cluster):
    return core_api(cluster)


@pytest.fixture
def vm_pod() -> Callable[..., dict]:
    def _make(name: str, **annotations: str) -> dict:
        manifest = yaml.safe_load(EXAMPLE.read_text())
        manifest["metadata"]["name"] = name
        ann = manifest["metadata"]["annotations"]
        for key, value in annotations.items():
            full = "podvirt.io/" + key.replace("_", "-")
            if value is None:
                ann.pop(full, None)
            else:
                ann[full] = value
        return manifest
    return _make


@pytest.fixture
def wait_pod(core) -> Callable:
    def _wait(name: str, predicate: Callable, timeout: float = 120):
        return watch_pod(core, NAMESPACE, name, predicate, timeout)
    return _wait


@pytest.fixture
def logs(cluster) -> Callable[[str, str], str]:
    def _logs(name: str, container: str = "launcher") -> str:
        return cluster.kubectl("logs", "-n", NAMESPACE, name, "-c", container, check=False).stdout
    return _logs


@pytest.fixture(scope="session")
def plugin_env(cluster) -> dict[str, str]:
    import os
    import sys
    path = [str(cluster.binaries.kubectl.parent), str(Path(sys.executable).parent),
            os.environ.get("PATH", "")]
    return {**os.environ, "PATH": os.pathsep.join(path), "KUBECONFIG": str(cluster.kubeconfig)}
