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


def create_nodes(api: client.ApiClient, nodes: Iterable[FakeNode], tainted: bool = False) -> None:
    core = client.CoreV1Api(api)
    for node in nodes:
        manifest = node.manifest(tainted)
        core.create_node(manifest)
        # Status sent on create may be dropped or overwritten by kwok's first pass; setting
        # it through the status subresource makes capacity/allocatable authoritative.
        core.patch_node_status(node.name, {"status": manifest["status"]})


NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def _schedulable(node) -> bool:
    """Ready, and kube-controller-manager has lifted the not-ready taint that
    TaintNodesByCondition puts on every new node (until then only pods that tolerate it
    could be scheduled there)."""
    return (any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or ()))
            and not any(t.key == NOT_READY_TAINT for t in (node.spec.taints or ())))


def wait_nodes_ready(api: client.ApiClient, names: set[str], timeout: float) -> None:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        ready = {n.metadata.name for n in core.list_node().items if _schedulable(n)}
        if names <= ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes not Ready after {timeout:.0f}s: "
                               f"{', '.join(sorted(names - ready))} (is kwok running?)")
        time.sleep(0.1)


def wait_service_account(api: client.ApiClient, namespace: str, name: str,
                         timeout: float) -> None:
    """kube-controller-manager creates each namespace's `default` ServiceAccount, without
    which ServiceAccount admission refuses the namespace's pods."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account(name, namespace)
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"ServiceAccount {namespace}/{name} not created after "
                               f"{timeout:.0f}s (is kube-controller-manager running?)")
        time.sleep(0.2)


def delete_node_pods(core: client.CoreV1Api, node_name: str, grace_seconds: int,
                     timeout: float) -> None:
    """Delete every pod bound to `node_name` and wait until kubelet has removed them."""
    selector = f"spec.nodeName={node_name}"
    for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
        try:
            core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                       grace_period_seconds=grace_seconds)
        except ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + timeout
    while core.list_pod_for_all_namespaces(field_selector=selector).items:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pods on {node_name} still there after {timeout:.0f}s")
        time.sleep(0.5)


def apply_storage_class(api: client.ApiClient, body: dict) -> None:
    try:
        client.StorageV1Api(api).create_storage_class(body)
    except ApiException as exc:
        if exc.status != 409:
            raise


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
