"""Fixtures of the hardening tier: certificates, real webhook/extender processes on
loopback, and one local control plane with this tier's own inventory
(tests/hardening/inventory.yaml: 4 kwok nodes x 4 passthrough GPUs, 16Gi each).

Every test here is marked `hardening`. Each reliability figure a test measures is printed
as a `FIGURE name=value` line (run with -s to see them) for the README's reliability table.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.support import core_api, make_namespace

sys.path.insert(0, str(Path(__file__).parent))

from services import Certs, Service, make_certs  # noqa: E402

HERE = Path(__file__).parent
INVENTORY = HERE / "inventory.yaml"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.hardening)


def figure(name: str, value: object) -> None:
    """One reliability figure, printed for the README table."""
    print(f"\nFIGURE {name}={value}", flush=True)


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


def restart_component(cluster: Any, name: str, down_seconds: float) -> None:
    """SIGKILL a component's process group, keep it down a while, start the same argv."""
    from podvirt.cluster import processes, state
    component = cluster.state.component(name)
    argv = Path(f"/proc/{component.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.killpg(component.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _running(component.pid) and time.monotonic() < deadline:   # its ports freed
        time.sleep(0.05)
    time.sleep(down_seconds)
    spawned = processes.spawn([a.decode() for a in argv], Path(component.log))
    pid, ticks = spawned if isinstance(spawned, tuple) else (spawned, None)
    # Recorded like `up` does (appended), so `down` stops the new process too.
    changes: dict[str, Any] = {"pid": pid}
    if hasattr(component, "started"):
        changes["started"] = ticks
    state.save(cluster.layout.state_file,
               cluster.state.with_component(dataclasses.replace(component, **changes)))
    processes.wait_until(name, component.probe.ok, pid, Path(component.log), 60)


def _running(pid: int) -> bool:
    """Some thread of the process is still alive. The leader of a multi-threaded (Go)
    process reads as a zombie as soon as its own thread exits, while the other threads
    still hold the shared file table, listening sockets included: restarting then failed
    with "bind: address already in use". Only a zombie leader alone holds nothing."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" or len(tasks) > 1


def _cluster(state_dir: Path):
    from podvirt.cluster.binaries import BinaryError, locate
    from podvirt.cluster.cluster import Cluster, UpOptions
    try:
        locate()
    except BinaryError as exc:
        pytest.skip(f"control-plane binaries unavailable: {exc}")
    c = Cluster(state_dir)
    c.up(UpOptions(inventory=INVENTORY, timeout=90, node=False))
    return c


@pytest.fixture(scope="session")
def hcluster(tmp_path_factory: pytest.TempPathFactory):
    """The tier's shared control plane (etcd, apiserver, scheduler + extender, kwok, webhook)."""
    c = _cluster(tmp_path_factory.mktemp("hcluster"))
    yield c
    c.down()


@pytest.fixture
def fresh_cluster(tmp_path: Path):
    """A control plane of its own (about 6 s to start): for races that use up every device
    and for faults that kill components."""
    c = _cluster(tmp_path / "cluster")
    yield c
    c.down()


@pytest.fixture(scope="session")
def hcore(hcluster):
    return core_api(hcluster)


@pytest.fixture
def hnamespace(hcluster, request: pytest.FixtureRequest) -> str:
    return make_namespace(hcluster, request)
