"""Faults on the control plane: the webhook and the extender are SIGKILLed and restarted
while VM pods are being created. No opted-in pod may be stored unconverted; no device
may be handed out twice after the extender rebuilt its state from a fresh list."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from podvirt.vmspec import keys as k

from tests.hardening import fuzzlib
from tests.hardening.figures import figure
from tests.support import restart_component

pytestmark = pytest.mark.timeout(240)


def _create_while(core: Any, namespace: str, annotations: dict, stop: threading.Event,
                  outcome: Counter) -> None:
    i = 0
    while not stop.is_set():
        body = fuzzlib.pod(annotations, name=f"vm-{i:03d}", namespace=namespace)
        del body["metadata"]["uid"]
        try:
            core.create_namespaced_pod(namespace, body)
            outcome["created"] += 1
        except ApiException as exc:
            outcome[f"refused-{exc.status}"] += 1
        i += 1
        time.sleep(0.05)


def _core(cluster: Any) -> Any:
    from kubernetes import client
    return client.CoreV1Api(cluster.api_client())


def test_webhook_killed_while_pods_are_created(fresh_cluster) -> None:
    core, ns = _core(fresh_cluster), "fault-webhook"
    fresh_cluster.kubectl("create", "namespace", ns)
    outcome, stop = Counter(), threading.Event()
    creator = threading.Thread(target=_create_while, args=(
        core, ns, {k.MEMORY: "256Mi", k.DISKS: "root=scratch:1Gi"}, stop, outcome))
    creator.start()
    try:
        time.sleep(2)
        restart_component(fresh_cluster, "webhook", down_seconds=3)
        time.sleep(2)
    finally:
        stop.set()
        creator.join()
    pods = core.list_namespaced_pod(ns, label_selector=f"{k.OPT_IN_LABEL}={k.OPT_IN_VALUE}").items
    unconverted = [p.metadata.name for p in pods if k.RENDERED not in (p.metadata.annotations or {})]
    figure("fault_webhook_restart", f"created={outcome['created']} refused="
           f"{sum(v for key, v in outcome.items() if key.startswith('refused'))} "
           f"stored_unconverted={len(unconverted)}")
    assert outcome["created"] > 0 and any(key.startswith("refused") for key in outcome), outcome
    assert not unconverted, unconverted[:5]


def test_extender_killed_mid_run_rebuilds_state(fresh_cluster) -> None:
    core, ns = _core(fresh_cluster), "fault-extender"
    fresh_cluster.kubectl("create", "namespace", ns)
    outcome, stop = Counter(), threading.Event()
    creator = threading.Thread(target=_create_while, args=(
        core, ns, {k.MEMORY: "256Mi", k.DEVICES: "example.com/gpu=1", k.DISKS: "root=scratch:1Gi"},
        stop, outcome))
    creator.start()
    try:
        time.sleep(1.0)     # some pods bound (devices assigned) before the kill
        restart_component(fresh_cluster, "extender", down_seconds=2)
        time.sleep(2)
    finally:
        stop.set()
        creator.join()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(ns).items
        bound = [p for p in pods if p.spec.node_name]
        if len(bound) >= min(16, len(pods)):
            break
        time.sleep(2)
    assigned = Counter()
    for p in bound:
        for d in json.loads((p.metadata.annotations or {}).get(k.ASSIGNED_DEVICES, "[]")):
            assigned[d["address"]] += 1
    doubles = {a: n for a, n in assigned.items() if n > 1}
    figure("fault_extender_restart", f"pods={len(pods)} bound={len(bound)} "
           f"double_allocations={len(doubles)}")
    assert not doubles
    assert len(bound) == min(16, len(pods)) and len(assigned) == len(bound)
