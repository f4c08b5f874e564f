"""The e2e tier: one real control plane (etcd, kube-apiserver, kube-scheduler, kwok, the
podvirt webhook and extender) for the whole session, brought up in a temporary state dir.

Fixtures for tests in this directory:
  cluster      the running `Cluster` (kubectl(), api_client(), port(name), kubeconfig)
  core         a kubernetes CoreV1Api on it
  namespace    a fresh namespace per test
  apply        apply(path_or_manifest, namespace) -> CompletedProcess of `kubectl apply`
  wait_pod     wait_pod(namespace, name, predicate, timeout) -> V1Pod, via a watch
Every test here is marked `e2e` (by tests/conftest.py; hack/test.sh selects tiers by
marker); one that also needs libvirt (test_launcher_pod.py) is marked `libvirt` too and so
runs in the libvirt tier. Pure tests of podvirt.cluster live in tests/unit/cluster/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.support import core_api, local_cluster, make_namespace, watch_pod


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with local_cluster(tmp_path_factory.mktemp("cluster"), timeout=90, node=False) as c:
        yield c


@pytest.fixture(scope="session")
def core(cluster):
    return core_api(cluster)


@pytest.fixture
def namespace(cluster, request: pytest.FixtureRequest) -> str:
    return make_namespace(cluster, request)


@pytest.fixture
def apply(cluster) -> Callable:
    def _apply(source: Path | dict, namespace: str, check: bool = False):
        text = source.read_text() if isinstance(source, Path) else yaml.safe_dump(source)
        return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=check)
    return _apply


@pytest.fixture
def wait_pod(core) -> Callable:
    def _wait(namespace: str, name: str, predicate: Callable, timeout: float = 30):
        return watch_pod(core, namespace, name, predicate, timeout)
    return _wait
