"""Which evicted VM pods the evacuator migrates, how many at once, and when it retries."""

from __future__ import annotations

import pytest

from podvirt.evacuator.plan import Schedule, candidate
from podvirt.vmspec import keys as k


def pod(name="vm1", *, mark="node-a", node="node-a", strategy="migrate", phase="Running",
        deleting=False, vm=True) -> dict:
    ann = {k.MEMORY: "1Gi", k.PHASE: phase, k.EVICTION_STRATEGY: strategy}
    if mark:
        ann[k.EVACUATE] = mark
    meta = {"name": name, "namespace": "vms", "uid": f"uid-{name}", "annotations": ann,
            "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE} if vm else {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node}}


@pytest.mark.parametrize("p, wanted", [
    pytest.param(pod(), True, id="marked-running"),
    pytest.param(pod(mark=None), False, id="not-marked"),
    pytest.param(pod(mark="node-old"), False, id="mark-for-a-node-it-left"),
    pytest.param(pod(strategy="shutdown"), False, id="strategy-changed-back"),
    pytest.param(pod(phase="Migrating"), False, id="already-migrating"),
    pytest.param(pod(phase="Succeeded"), False, id="ended"),
    pytest.param(pod(deleting=True), False, id="deleting"),
    pytest.param(pod(vm=False), False, id="not-a-vm-pod"),
])
def test_candidate(p, wanted):
    c = candidate(p)
    assert (c is not None) == wanted
    if c:
        assert (c.ref, c.uid, c.node) == ("vms/vm1", "uid-vm1", "node-a")


def test_parallel_limit_and_no_double_start():
    s = Schedule(parallel=2, retry_seconds=30)
    pods = [pod("a"), pod("b"), pod("c")]
    assert [c.name for c in s.due(pods, 0)] == ["a", "b"]
    assert s.due(pods, 1) == []                       # both slots taken, a and b running
    s.finished(candidate(pods[0]), True, 2)           # a migrated: its pod is gone
    assert [c.name for c in s.due(pods[1:], 3)] == ["c"]   # b runs: not started twice


def test_failure_waits_then_retries_after_others():
    s = Schedule(parallel=1, retry_seconds=30)
    a, b = pod("a"), pod("b")
    [started] = s.due([a], 0)
    s.finished(started, False, 10)
    assert s.due([a], 39) == []                       # 29 s after the failure
    assert [c.name for c in s.due([a, b], 41)] == ["b"]   # the never-failed one first
    s.finished(candidate(b), True, 50)
    assert [c.name for c in s.due([a], 51)] == ["a"]


def test_forget_drops_gone_pods():
    s = Schedule(parallel=1, retry_seconds=30)
    [c] = s.due([pod("a")], 0)
    s.finished(c, False, 1)
    s.forget({"uid-b"})
    assert s.failed_at == {}
