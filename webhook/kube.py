"""The webhook's only API access, used by the eviction route alone: read a pod, mark it."""

from __future__ import annotations

from typing import Any, Protocol


class PodAccess(Protocol):
    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def annotate(self, namespace: str, name: str, changes: dict[str, str]) -> None: ...


class KubePodAccess:
    """Connects in `connect()`, which the gevent worker calls after it patched the stdlib.

    The app is preloaded in the gunicorn master, before gevent patches `ssl`. Had the
    kubernetes client (urllib3) been imported there, it would keep the unpatched
    `ssl.SSLContext`, and every HTTPS call from the worker would end in a RecursionError
    (the last CI run's drain: "could not decide on evicting pod ...: RecursionError")."""

    def __init__(self, kubeconfig: str | None = None):
        self.kubeconfig = kubeconfig
        self._core: Any = None

    def connect(self) -> None:
        """Raises the client's ConfigException (or OSError) when no credentials are usable."""
        from kubernetes import client

        from podvirt.kubeclient import api_client
        self._core = client.CoreV1Api(api_client(self.kubeconfig))

    @property
    def core(self) -> Any:
        if self._core is None:
            self.connect()
        return self._core

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
