"""Verdicts shared by VM shape (scheduling.VerdictMemo): reused across VMs that differ only in
name, never across VMs that differ in anything the decisions read."""

from __future__ import annotations

import json

import pytest

from podvirt.extender import scheduling
from podvirt.extender.decide import DEFAULT_POLICY, NUMA_BONUS
from podvirt.extender.scheduling import VerdictMemo, filter_pod, prioritize_pod
from podvirt.extender.state import WatchedCluster
from podvirt.vmspec import DEFAULT_COSTS
from podvirt.vmspec import keys as k

from tests.unit.extender.objects import gpu, node_json, vm_pod

NAMES = ["zone-a", "zone-b"]


@pytest.fixture
def state() -> WatchedCluster:
    s = WatchedCluster()
    s.replace_nodes([node_json("zone-a", labels={"zone": "a"}),
                     node_json("zone-b", labels={"zone": "b"}, memory="6Gi")])
    s.replace_pods([])
    return s


@pytest.fixture
def decided(monkeypatch) -> list[str]:
    """Names of the nodes filter_node was asked about, in order."""
    calls: list[str] = []
    real = scheduling.filter_node

    def counting(node, *args, **kwargs):
        calls.append(node.name)
        return real(node, *args, **kwargs)

    monkeypatch.setattr(scheduling, "filter_node", counting)
    return calls


def _filter(state, memo, pod):
    return filter_pod(state, pod, NAMES, now=0.0, policy=DEFAULT_POLICY, costs=DEFAULT_COSTS,
                      memo=memo)


def with_sidecar(pod: dict, memory: str) -> dict:
    pod["spec"]["containers"].append({"name": "sidecar",
                                      "resources": {"requests": {"memory": memory}}})
    return pod


def test_vms_of_one_shape_share_verdicts(state, decided):
    memo = VerdictMemo()
    first = _filter(state, memo, vm_pod("first"))
    second = _filter(state, memo, vm_pod("second", annotations={"app": "other"}))
    assert decided == NAMES            # the second VM was not decided again
    assert first == second and first.passed == NAMES


@pytest.mark.parametrize("other, rejected", [
    pytest.param(vm_pod("pinned", {k.NODE_LABELS: "zone=b"}),
                 {"zone-a": f"node lacks label zone=b ({k.NODE_LABELS})"}, id="pinning"),
    pytest.param(vm_pod("bigger", {k.MEMORY: "8Gi"}),
                 {"zone-b": "needs 8.3Gi (8Gi guest + 264Mi overhead), 6Gi free"}, id="demand"),
    pytest.param(with_sidecar(vm_pod("sidecar"), "2Gi"),
                 {"zone-b": "needs 6.2Gi (4Gi guest + 256Mi overhead + 2Gi sidecars), 6Gi free"},
                 id="pod-requests"),
])
def test_a_vm_of_another_shape_is_decided_again(state, decided, other, rejected):
    memo = VerdictMemo()
    assert _filter(state, memo, vm_pod("first")).passed == NAMES
    outcome = _filter(state, memo, other)
    assert decided == NAMES + NAMES
    assert {**outcome.failed, **outcome.unresolvable} == rejected


def test_scores_follow_the_shape_and_the_devices_taken():
    """NUMA scores are kept per VM shape and node view: a VM wanting more devices is
    scored again, and so is a node whose devices were taken since."""
    state = WatchedCluster()
    state.replace_nodes([node_json("local", devices=[gpu("0000:3b:00.0", 0), gpu("0000:3c:00.0", 0),
                                                     gpu("0000:86:00.0", 1)])])
    state.replace_pods([])
    memo = VerdictMemo()

    def scores(pod) -> int:
        return dict(prioritize_pod(state, pod, ["local"], policy=DEFAULT_POLICY,
                                   costs=DEFAULT_COSTS, memo=memo))["local"]

    one, two, three = (vm_pod(f"vm{n}", {k.DEVICES: f"nvidia.com/gpu={n}"}) for n in (1, 2, 3))
    assert (scores(one), scores(two), scores(three)) == (NUMA_BONUS, NUMA_BONUS, 0)
    state.apply_pod("ADDED", vm_pod("holder", {k.DEVICES: "nvidia.com/gpu=1"}, node="local",
                                    annotations={k.ASSIGNED_DEVICES: json.dumps(
                                        [gpu("0000:3c:00.0", 0).to_json()])}))
    assert (scores(one), scores(two)) == (NUMA_BONUS, 0)
