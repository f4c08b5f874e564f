"""The pods/eviction webhook: which evictions become migrations, and what the route does."""

from __future__ import annotations

import copy

import pytest

from podvirt.vmspec import keys as k
from podvirt.webhook.app import create_app
from podvirt.webhook.eviction import decide_eviction


def eviction_request(name="vm1", *, dry_run=False, sub="eviction", kind="Eviction") -> dict:
    return {"uid": "u-1", "kind": {"group": "policy", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": sub, "name": name, "namespace": "vms", "operation": "CREATE",
            "dryRun": dry_run, "object": {"apiVersion": "policy/v1", "kind": "Eviction"}}


def vm_pod(*, strategy="migrate", phase="Running", vm_phase="Running", mark=None,
           labels=None, deleting=False) -> dict:
    ann = {k.MEMORY: "1Gi", k.PHASE: vm_phase}
    if strategy:
        ann[k.EVICTION_STRATEGY] = strategy
    if mark:
        ann[k.EVACUATE] = mark
    meta = {"name": "vm1", "namespace": "vms", "annotations": ann,
            "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE} if labels is None else labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "node-a"}, "status": {"phase": phase}}


@pytest.mark.parametrize("pod, rule, allowed, mark", [
    pytest.param(vm_pod(), "evacuate", False, "node-a", id="running-migrate-vm"),
    pytest.param(vm_pod(mark="node-a"), "evacuate", False, None, id="already-marked"),
    pytest.param(vm_pod(mark="node-old"), "evacuate", False, "node-a", id="marked-for-another-node"),
    pytest.param(vm_pod(strategy=None), "shutdown-strategy", True, None, id="default-strategy"),
    pytest.param(vm_pod(strategy="shutdown"), "shutdown-strategy", True, None, id="shutdown"),
    pytest.param(vm_pod(labels={}), "shutdown-strategy", True, None, id="not-a-vm-pod"),
    pytest.param(vm_pod(phase="Succeeded"), "not-running", True, None, id="pod-ended"),
    pytest.param(vm_pod(deleting=True), "not-running", True, None, id="pod-deleting"),
    pytest.param(vm_pod(vm_phase="Starting"), "vm-not-running", True, None, id="vm-starting"),
    pytest.param(vm_pod(vm_phase="Incoming"), "vm-not-running", True, None,
                 id="migration-target"),
    pytest.param(vm_pod(vm_phase="Migrating"), "migrating", False, None, id="migrating"),
    pytest.param(None, "no-such-pod", True, None, id="gone"),
])
def test_decide_eviction(pod, rule, allowed, mark):
    v = decide_eviction(eviction_request(), pod)
    assert (v.rule, v.allowed, v.mark) == (rule, allowed, mark)
    if not allowed:
        assert v.code == 429
        assert "vms/vm1" in v.message and k.EVICTION_STRATEGY in v.message
        assert "node-a" in v.message


def test_other_requests_pass():
    for req in (eviction_request(sub=""), eviction_request(kind="Pod"),
                {**eviction_request(), "operation": "DELETE"}):
        assert decide_eviction(req, vm_pod()).rule == "not-an-eviction"


class FakePods:
    def __init__(self, pods: dict, fail: Exception | None = None):
        self.pods, self.fail, self.patches = pods, fail, []

    def get(self, namespace, name):
        if self.fail:
            raise self.fail
        return copy.deepcopy(self.pods.get((namespace, name)))

    def annotate(self, namespace, name, changes):
        self.patches.append((namespace, name, changes))


def post(pods, request) -> dict:
    client = create_app(pods=pods).test_client()
    reply = client.post("/evict", json={"apiVersion": "admission.k8s.io/v1",
                                        "kind": "AdmissionReview", "request": request})
    assert reply.status_code == 200
    return reply.get_json()["response"]


def test_route_marks_and_refuses():
    pods = FakePods({("vms", "vm1"): vm_pod()})
    response = post(pods, eviction_request())
    assert response["allowed"] is False and response["status"]["code"] == 429
    assert pods.patches == [("vms", "vm1", {k.EVACUATE: "node-a"})]


def test_route_dry_run_marks_nothing():
    pods = FakePods({("vms", "vm1"): vm_pod()})
    response = post(pods, eviction_request(dry_run=True))
    assert response["allowed"] is False and pods.patches == []


def test_route_api_failure_refuses_for_now():
    pods = FakePods({}, fail=ConnectionError("refused"))
    response = post(pods, eviction_request())
    assert response["allowed"] is False and response["status"]["code"] == 429
    assert "could not decide" in response["status"]["message"]


def test_route_absent_without_api_access():
    assert "/evict" not in {r.rule for r in create_app().url_map.iter_rules()}
