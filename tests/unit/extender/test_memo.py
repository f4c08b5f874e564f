"""Verdicts shared by VM shape (scheduling.VerdictMemo): reused across VMs that differ only in
name, never across VMs that differ in anything the decisions read."""

from __future__ import annotations

import pytest

from podvirt.extender import scheduling
from podvirt.extender.decide import DEFAULT_POLICY
from podvirt.extender.scheduling import VerdictMemo, filter_pod, prioritize_pod
from podvirt.extender.state import WatchedCluster
from podvirt.vmspec import DEFAULT_COSTS
from podvirt.vmspec import keys as k

from tests.unit.extender.objects import node_json, vm_pod

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


def test_scores_follow_the_shape(state):
    memo = VerdictMemo()
    small = prioritize_pod(state, vm_pod("small"), NAMES, policy=DEFAULT_POLICY,
                           costs=DEFAULT_COSTS, memo=memo)
    big = prioritize_pod(state, vm_pod("big", {k.MEMORY: "5Gi"}), NAMES, policy=DEFAULT_POLICY,
                         costs=DEFAULT_COSTS, memo=memo)
    # spread: memory left after placing the VM; zone-b (6Gi) has less of it for a bigger VM.
    assert dict(small)["zone-b"] > dict(big)["zone-b"]
