"""bind(): device assignment, rollback on API failure, and concurrent binds."""

from __future__ import annotations

import json
import sys
import threading

import pytest

from podvirt.extender.binding import BindRequest, bind
from podvirt.extender.decide import Policy
from podvirt.extender.state import WatchedCluster
from podvirt.vmspec import DEFAULT_COSTS
from podvirt.vmspec import keys as k

from tests.unit.extender.objects import FakeApi, gpu, node_json, vm_pod

GPUS = [gpu("0000:3b:00.0", 0), gpu("0000:3c:00.0", 0), gpu("0000:86:00.0", 1),
        gpu("0000:87:00.0", 1)]


def gpu_state(pods, nodes=("n1",)) -> WatchedCluster:
    state = WatchedCluster()
    state.replace_nodes([node_json(n, memory="256Gi", cpu="64", devices=GPUS) for n in nodes])
    state.replace_pods(pods)
    return state


def do_bind(state, api, name, node="n1") -> str:
    return bind(state, api, BindRequest(name, "default", f"uid-{name}", node),
                policy=Policy(), costs=DEFAULT_COSTS, now=lambda: 0.0)


def gpu_vm(name, count=1):
    return vm_pod(name, {k.DEVICES: f"nvidia.com/gpu={count}"})


def test_bind_assigns_devices_on_one_numa_node_before_binding():
    state, api = gpu_state([gpu_vm("a", 2)]), FakeApi()
    assert do_bind(state, api, "a") == ""
    (ns, name, annotations), = api.patches
    assigned = json.loads(annotations[k.ASSIGNED_DEVICES])
    assert [d["address"] for d in assigned] == ["0000:3b:00.0", "0000:3c:00.0"]
    assert assigned[0] == GPUS[0].to_json()
    assert api.bindings == [("default", "a", "n1")]
    assert state.usage("n1").claimed == {"0000:3b:00.0", "0000:3c:00.0"}


def test_failed_binding_releases_the_assumption():
    state, api = gpu_state([gpu_vm("a", 2)]), FakeApi(fail_binding=True)
    error = do_bind(state, api, "a")
    assert error == "binding pod default/a on node n1: apiserver unavailable"
    assert state.usage("n1").claimed == frozenset() and state.usage("n1").memory == 0


def test_bind_rechecks_the_node():
    state, api = gpu_state([gpu_vm("a", 4), gpu_vm("b", 1)]), FakeApi()
    assert do_bind(state, api, "a") == ""
    error = do_bind(state, api, "b")
    assert error == ("binding pod default/b on node n1: no longer fits: "
                     "needs 1 nvidia.com/gpu, all 4 claimed")
    assert len(api.bindings) == 1


@pytest.fixture
def eager_thread_switches():
    """Switch threads every microsecond so check-then-assume races actually interleave
    (without the per-node lock this test fails every time)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def test_concurrent_binds_never_share_a_device(eager_thread_switches):
    names = [f"vm{i}" for i in range(20)]
    state = gpu_state([gpu_vm(n) for n in names], nodes=("n1", "n2"))
    api = FakeApi()
    results: dict[str, str] = {}
    start = threading.Barrier(len(names))

    def worker(i: int, name: str) -> None:
        start.wait()
        results[name] = do_bind(state, api, name, node=f"n{i % 2 + 1}")

    threads = [threading.Thread(target=worker, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(1 for e in results.values() if e == "") == 8
    assigned = {}
    for _ns, name, patched in api.patches:
        bound_node = next(node for _, n, node in api.bindings if n == name)
        for d in json.loads(patched[k.ASSIGNED_DEVICES]):
            key = (bound_node, d["address"])
            assert key not in assigned, f"{key} assigned to {assigned.get(key)} and {name}"
            assigned[key] = name
    assert len(assigned) == 8
    assert all(len(state.usage(n).claimed) == 4 for n in ("n1", "n2"))
