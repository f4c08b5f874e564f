"""The webhook's only API access, used by the eviction route alone: read a pod, mark it."""

from __future__ import annotations

from typing import Any, Protocol


class PodAccess(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def annotate(self, namespace: str, name: str, changes: dict[str, str]) -> None: ...


class KubePodAccess:
    def __init__(self, kubeconfig: str | None = None):
        from kubernetes import client

        from podvirt.kubeclient import api_client
        self.core = client.CoreV1Api(api_client(kubeconfig))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException
        try:
            pod = self.core.read_namespaced_pod(name, namespace, _request_timeout=5)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self.core.api_client.sanitize_for_serialization(pod)

    def annotate(self, namespace: str, name: str, changes: dict[str, str]) -> None:
        self.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": changes}},
                                       _request_timeout=5)
