"""The extender's only Kubernetes API caller: list/watch nodes and pods, read and patch a
pod, create a Binding. Objects cross this boundary as plain JSON dicts."""

from __future__ import annotations

from typing import Any, Iterator, Literal, Protocol
from urllib.parse import quote

from podvirt import wirejson
from podvirt.extender.apiconn import ApiConnections

Kind = Literal["nodes", "pods"]


class ApiWriter(Protocol):
    """What bind needs; tests substitute a fake."""

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def patch_pod_annotations(self, namespace: str, name: str, uid: str,
                              annotations: dict[str, str]) -> None: ...

    def create_binding(self, namespace: str, name: str, uid: str, node: str) -> None: ...


class ApiReader(Protocol):
    """What the watches need; tests substitute a fake event stream."""

    def list(self, kind: Kind) -> tuple[list[dict[str, Any]], str]: ...

    def watch(self, kind: Kind, resource_version: str,
              timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]: ...


class KubeClient:
    def __init__(self, api_client: Any):
        from kubernetes import client
        self.core = client.CoreV1Api(api_client)
        # The bind path's writes (apiconn.py); reads and watches use the generated client.
        self.writes = ApiConnections(api_client.configuration)

    @classmethod
    def connect(cls, kubeconfig: str | None = None, *, pool_size: int = 16) -> "KubeClient":
        """From a kubeconfig file, else in-cluster config, else the default kubeconfig.

        The connection pool is sized for every request thread plus the two watches: the
        client's default (5 per CPU) would make concurrent binds open and throw away TLS
        connections, paying a handshake each."""
        from kubernetes import client, config
        cfg = client.Configuration()
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException:
                config.load_kube_config(client_configuration=cfg)
        cfg.connection_pool_maxsize = pool_size + 2
        return cls(client.ApiClient(cfg))

    def _lister(self, kind: Kind):
        return self.core.list_node if kind == "nodes" else self.core.list_pod_for_all_namespaces

    def list(self, kind: Kind) -> tuple[list[dict[str, Any]], str]:
        # Raw JSON: skips model deserialization, which dominates for thousands of objects.
        resp = self._lister(kind)(_preload_content=False)
        data = wirejson.loads(resp.data)
        return data.get("items") or [], str((data.get("metadata") or {}).get("resourceVersion", ""))

    def watch(self, kind: Kind, resource_version: str,
              timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        # Raw event lines parsed as plain JSON: kubernetes.watch.Watch also builds a V1Pod
        # model per event that nobody reads, the bulk of this process's CPU while the
        # scheduler binds a burst of pods (every bind is several pod events). A non-2xx
        # answer raises ApiException, and so does an ERROR event (an expired
        # resourceVersion arrives as one with code 410), as kubernetes.watch.Watch does.
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines
        resp = self._lister(kind)(
            watch=True, resource_version=resource_version, timeout_seconds=timeout_seconds,
            allow_watch_bookmarks=True, _preload_content=False,
            _request_timeout=(10, timeout_seconds + 30))
        try:
            for line in iter_resp_lines(resp):
                event = wirejson.loads(line)
                if event["type"] == "ERROR":
                    status = event.get("object") or {}
                    raise ApiException(status=status.get("code", 500),
                                       reason=str(status.get("message", "watch error")))
                yield event["type"], event["object"]
        finally:   # a stream left mid-way must not go back to the pool half-read
            resp.close()
            resp.release_conn()

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException
        try:
            resp = self.core.read_namespaced_pod(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return wirejson.loads(resp.data)

    def patch_pod_annotations(self, namespace: str, name: str, uid: str,
                              annotations: dict[str, str]) -> None:
        meta: dict[str, Any] = {"annotations": annotations}
        if uid:
            meta["uid"] = uid     # precondition: never annotate a recreated namesake
        self.writes.request("PATCH", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}",
                            {"metadata": meta}, "application/merge-patch+json")

    def create_binding(self, namespace: str, name: str, uid: str, node: str) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if uid:
            meta["uid"] = uid
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        self.writes.request("POST", f"/api/v1/namespaces/{quote(namespace)}/bindings", body,
                            "application/json")
