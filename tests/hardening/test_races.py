"""Races through the real kube-scheduler + extender: 200 VM pods created at once against
4 kwok nodes with 4 passthrough GPUs and 16Gi each. Nothing may be handed out twice."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from podvirt.quantity import parse_bytes
from podvirt.vmspec import keys as k

from tests.hardening import fuzzlib
from tests.hardening.figures import figure

PODS = 200
SETTLE_TIMEOUT = 150.0


def _create_all(core: Any, namespace: str, annotations: dict[str, str]) -> None:
    from kubernetes.client.exceptions import ApiException

    def create(i: int) -> None:
        body = fuzzlib.pod(annotations, name=f"vm-{i:03d}", namespace=namespace)
        del body["metadata"]["uid"]
        # 24 creators on 2 cores can push one admission call past its timeout; the API
        # server then stores nothing (failurePolicy Fail), so a client retries, as here.
        for attempt in range(4):
            try:
                core.create_namespaced_pod(namespace, body)
                return
            except ApiException as exc:
                if exc.status == 409 and attempt:
                    return          # an earlier attempt did land
                if exc.status != 500 or "failed calling webhook" not in (exc.body or "") \
                        or attempt == 3:
                    raise
                time.sleep(0.5 * (attempt + 1))
    with ThreadPoolExecutor(24) as pool:
        list(pool.map(create, range(PODS)))


def _unschedulable(p: Any) -> bool:
    return any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
               for c in p.status.conditions or ())


def _settle(core: Any, namespace: str, expected_bound: int | None) -> list[Any]:
    """Wait until every pod is bound or marked Unschedulable by the scheduler."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        pods = core.list_namespaced_pod(namespace).items
        bound = sum(1 for p in pods if p.spec.node_name)
        waiting = sum(1 for p in pods if not p.spec.node_name and _unschedulable(p))
        print(f"  {bound} bound, {waiting} unschedulable of {len(pods)}", flush=True)
        if bound + waiting == PODS and (expected_bound is None or bound >= expected_bound):
            return pods
        if time.monotonic() > deadline:
            return pods
        time.sleep(3)


def _failed_scheduling(core: Any, namespace: str) -> set[str]:
    events = core.list_namespaced_event(namespace, field_selector="reason=FailedScheduling").items
    return {e.involved_object.name for e in events}


def test_200_vms_race_for_16_gpus(fresh_cluster) -> None:
    core = _core(fresh_cluster)
    fresh_cluster.kubectl("create", "namespace", "race-gpu")
    started = time.monotonic()
    _create_all(core, "race-gpu", {k.MEMORY: "512Mi", k.DEVICES: "example.com/gpu=1",
                                   k.DISKS: "root=scratch:1Gi"})
    pods = _settle(core, "race-gpu", expected_bound=16)
    seconds = time.monotonic() - started

    node_devices = {n.metadata.name: {d["address"] for d in json.loads(
        n.metadata.annotations[k.NODE_PCI_DEVICES])} for n in core.list_node().items}
    bound = [p for p in pods if p.spec.node_name]
    assigned = Counter()
    for p in pods:
        devices = json.loads((p.metadata.annotations or {}).get(k.ASSIGNED_DEVICES, "[]"))
        if not p.spec.node_name:
            assert not devices, f"{p.metadata.name} is Pending but holds {devices}"
            continue
        assert len(devices) == 1, f"{p.metadata.name}: {devices}"
        for d in devices:
            assert d["address"] in node_devices[p.spec.node_name], \
                f"{p.metadata.name} on {p.spec.node_name} got {d['address']} of another node"
            assigned[(p.spec.node_name, d["address"])] += 1
    doubles = {dev: n for dev, n in assigned.items() if n > 1}
    pending = {p.metadata.name for p in pods if not p.spec.node_name}
    without_reason = pending - _failed_scheduling(core, "race-gpu")
    figure("race_gpu", f"pods={PODS} bound={len(bound)} double_allocations={len(doubles)} "
           f"pending={len(pending)} pending_without_event={len(without_reason)} "
           f"seconds={seconds:.1f}")
    assert not doubles
    assert len(bound) == 16
    assert all(_unschedulable(p) for p in pods if not p.spec.node_name)
    assert not without_reason, sorted(without_reason)[:5]


def test_200_vms_race_for_memory(fresh_cluster) -> None:
    core = _core(fresh_cluster)
    fresh_cluster.kubectl("create", "namespace", "race-mem")
    started = time.monotonic()
    _create_all(core, "race-mem", {k.MEMORY: "3Gi", k.DISKS: "root=scratch:1Gi"})
    pods = _settle(core, "race-mem", expected_bound=None)
    seconds = time.monotonic() - started

    allocatable = {n.metadata.name: parse_bytes(n.status.allocatable["memory"])
                   for n in core.list_node().items}
    demand: dict[str, int] = defaultdict(int)
    for p in pods:
        if p.spec.node_name:
            demand[p.spec.node_name] += sum(
                parse_bytes((c.resources.requests or {}).get("memory", "0"))
                for c in p.spec.containers)
    over = {n: (d, allocatable[n]) for n, d in demand.items() if d > allocatable[n]}
    bound = sum(1 for p in pods if p.spec.node_name)
    figure("race_memory", f"pods={PODS} bound={bound} nodes_overcommitted={len(over)} "
           f"seconds={seconds:.1f} fill=" + ",".join(f"{n}:{demand[n] / allocatable[n]:.2f}"
                                                       for n in sorted(allocatable)))
    assert not over
    assert 0 < bound < PODS
    assert all(_unschedulable(p) for p in pods if not p.spec.node_name)


def _core(cluster: Any) -> Any:
    from kubernetes import client
    return client.CoreV1Api(cluster.api_client())


pytestmark = pytest.mark.timeout(300)
