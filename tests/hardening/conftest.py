"""Fixtures of the hardening tier: certificates, real webhook/extender processes on
loopback, and one local control plane with this tier's own inventory
(tests/hardening/inventory.yaml: 4 kwok nodes x 4 passthrough GPUs, 16Gi each).

Every test here is marked `hardening` (by tests/conftest.py). Each reliability figure a
test measures is printed as a `FIGURE name=value` line (figures.py; run with -s to see
them) for the README's reliability table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.hardening.services import Certs, Service, make_certs
from tests.support import core_api, local_cluster, make_namespace

HERE = Path(__file__).parent
INVENTORY = HERE / "inventory.yaml"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def run_service(tmp_path: Path) -> Iterator[Callable[[Service], Service]]:
    """Start a Service; stop it at teardown and fail the test if it logged a traceback."""
    started: list[Service] = []

    def _run(service: Service) -> Service:
        started.append(service)
        return service.start()

    yield _run
    for s in started:
        s.stop()
    tracebacks = [t for s in started for t in s.tracebacks()]
    assert not tracebacks, "a service logged tracebacks:\n\n" + "\n\n".join(tracebacks[:3])


@pytest.fixture(scope="session")
def hcluster(tmp_path_factory: pytest.TempPathFactory):
    """The tier's shared control plane (etcd, apiserver, scheduler + extender, kwok, webhook)."""
    with local_cluster(tmp_path_factory.mktemp("hcluster"), inventory=INVENTORY, timeout=90,
                       node=False) as c:
        yield c


@pytest.fixture
def fresh_cluster(tmp_path: Path):
    """A control plane of its own (about 6 s to start): for races that use up every device
    and for faults that kill components."""
    with local_cluster(tmp_path / "cluster", inventory=INVENTORY, timeout=90, node=False) as c:
        yield c


@pytest.fixture(scope="session")
def hcore(hcluster):
    return core_api(hcluster)


@pytest.fixture
def hnamespace(hcluster, request: pytest.FixtureRequest) -> str:
    return make_namespace(hcluster, request)
