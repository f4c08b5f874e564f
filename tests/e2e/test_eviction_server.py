"""The real `podvirt webhook --evictions` process (gunicorn, a gevent worker, TLS) deciding
evictions against the real API server: it reads the pod and marks it from inside the gevent
worker, where an unpatched ssl module once turned every API call into a RecursionError."""

from __future__ import annotations

import copy
import uuid

import pytest
import requests
import yaml

from podvirt.vmspec import keys as k

from tests.e2e.support import DATA
from tests.hardening.services import make_certs, running, webhook


def _review(namespace: str, name: str) -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "policy", "version": "v1", "kind": "Eviction"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "subResource": "eviction", "name": name, "namespace": namespace, "operation": "CREATE",
        "dryRun": False, "object": {"apiVersion": "policy/v1", "kind": "Eviction"}}}


@pytest.fixture
def eviction_webhook(cluster, tmp_path):
    certs = make_certs(tmp_path / "certs")
    service = webhook(certs, tmp_path / "webhook.log", workers=1)
    service.argv += ["--evictions", f"--kubeconfig={cluster.kubeconfig}"]
    with running(service):
        yield service
    assert service.tracebacks() == []


def test_eviction_route_reads_and_marks_pods_through_the_api(eviction_webhook, namespace, apply,
                                                             wait_pod, core):
    def evict(name: str) -> dict:
        r = requests.post(eviction_webhook.url + "/evict", json=_review(namespace, name),
                          verify=eviction_webhook.verify, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["response"]

    assert evict("no-such-pod")["allowed"] is True       # the API's 404, read by the worker

    manifest = copy.deepcopy(yaml.safe_load((DATA / "vm-emulated.yaml").read_text()))
    manifest["metadata"]["annotations"][k.EVICTION_STRATEGY] = k.EVICT_MIGRATE
    apply(manifest, namespace, check=True)
    name = manifest["metadata"]["name"]
    pod = wait_pod(namespace, name, lambda p: p.status.phase == "Running")
    # The launcher's report, which kwok's fake node has no launcher to write.
    core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": {k.PHASE: "Running"}}})

    response = evict(name)
    assert response["allowed"] is False and response["status"]["code"] == 429, response
    assert "will migrate" in response["status"]["message"]
    marked = core.read_namespaced_pod(name, namespace).metadata.annotations
    assert marked.get(k.EVACUATE) == pod.spec.node_name
