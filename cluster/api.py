"""The few Kubernetes API calls `up` makes: fake nodes, the webhook registration, and
readiness checks that wait for the API server to act on them."""

from __future__ import annotations

import json
import time
from typing import Iterable

from kubernetes import client
from kubernetes.client.rest import ApiException

from podvirt.cluster.inventory import FakeNode
from podvirt.vmspec import keys as k


def new_client(kubeconfig: str) -> client.ApiClient:
    from kubernetes import config
    return config.new_client_from_config(config_file=kubeconfig)


def create_nodes(api: client.ApiClient, nodes: Iterable[FakeNode]) -> None:
    core = client.CoreV1Api(api)
    for node in nodes:
        manifest = node.manifest()
        core.create_node(manifest)
        # Status sent on create may be dropped or overwritten by kwok's first pass; setting
        # it through the status subresource makes capacity/allocatable authoritative.
        core.patch_node_status(node.name, {"status": manifest["status"]})


def wait_nodes_ready(api: client.ApiClient, names: set[str], timeout: float) -> None:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        ready = {n.metadata.name for n in core.list_node().items
                 if any(c.type == "Ready" and c.status == "True"
                        for c in (n.status.conditions or ()))}
        if names <= ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes not Ready after {timeout:.0f}s: "
                               f"{', '.join(sorted(names - ready))} (is kwok running?)")
        time.sleep(0.1)


def apply_webhook_configuration(api: client.ApiClient, body: dict) -> None:
    admission = client.AdmissionregistrationV1Api(api)
    try:
        admission.create_mutating_webhook_configuration(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        admission.patch_mutating_webhook_configuration(body["metadata"]["name"], body)


# The smallest valid VM pod: a server-side dry run of it shows whether the API server
# already calls the webhook (registration takes effect asynchronously).
_PROBE_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "podvirt-webhook-probe", "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE},
                 "annotations": {k.VCPUS: "1", k.MEMORY: "128Mi", k.ALLOW_EMULATION: "true",
                                 k.DISKS: "root=scratch:1Gi"}},
    "spec": {"containers": []},
}


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", ""))
    except ValueError:
        return exc.body or ""


def wait_webhook_active(api: client.ApiClient, webhook_name: str, timeout: float) -> None:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            pod = core.create_namespaced_pod("default", _PROBE_POD, dry_run="All")
            if k.RENDERED in (pod.metadata.annotations or {}):
                return
            last = "the pod came back unrendered"
        except ApiException as exc:
            message = _status_message(exc)
            # A denial by our webhook still proves the API server calls it.
            if f'admission webhook "{webhook_name}"' in message:
                return
            last = f"{exc.status} {exc.reason}: {message[:300]}"
        if time.monotonic() > deadline:
            raise TimeoutError(f"webhook not called by the API server after {timeout:.0f}s "
                               f"(last dry run: {last})")
        time.sleep(0.2)
