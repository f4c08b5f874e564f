"""The plugin's only API-server client: read a pod as `PodFacts`, patch its annotations.

Connection settings follow kubectl's: --kubeconfig, else $KUBECONFIG (a list of files),
else ~/.kube/config; --context, else the current context; the namespace from -n, else
the context's, else `default`.
"""

from __future__ import annotations

from dataclasses import dataclass

from podvirt.plugin.target import LAUNCHER_CONTAINER, PluginError, PodFacts


@dataclass(frozen=True)
class Connection:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


def _api_error(exc, what: str) -> PluginError:
    if exc.status == 404:
        return PluginError(f"{what}: not found")
    if exc.status in (401, 403):
        return PluginError(f"{what}: not allowed ({exc.status} {exc.reason})")
    return PluginError(f"{what}: the API server answered {exc.status} {exc.reason}")


class KubePods:
    """Pods of one namespace, as the plugin sees them."""

    def __init__(self, core, namespace: str):
        self.core, self.namespace = core, namespace     # a kubernetes CoreV1Api

    @classmethod
    def connect(cls, conn: Connection) -> "KubePods":
        """Through kubectl's connection settings (the plugin's)."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
        try:
            api = config.new_client_from_config(config_file=conn.kubeconfig,
                                                context=conn.context)
            namespace = conn.namespace
            if namespace is None:
                contexts, active = config.list_kube_config_contexts(config_file=conn.kubeconfig)
                if conn.context:
                    active = next((c for c in contexts if c["name"] == conn.context), active)
                namespace = (active or {}).get("context", {}).get("namespace") or "default"
        except (ConfigException, OSError) as exc:
            raise PluginError(f"no usable kubeconfig: {exc}") from None
        return cls(client.CoreV1Api(api), namespace)

    def read(self, name: str) -> PodFacts:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError
        try:
            pod = self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            raise _api_error(exc, f"pod {self.namespace}/{name}") from None
        except HTTPError as exc:
            raise PluginError(f"cannot reach the API server: {exc}") from None
        statuses = pod.status.container_statuses or []
        launcher = next((s for s in statuses if s.name == LAUNCHER_CONTAINER), None)
        return PodFacts(
            name=name, namespace=self.namespace, labels=dict(pod.metadata.labels or {}),
            annotations=dict(pod.metadata.annotations or {}), phase=pod.status.phase or "",
            launcher_running=bool(launcher and launcher.state and launcher.state.running),
            deleting=pod.metadata.deletion_timestamp is not None)

    def patch_annotations(self, name: str, changes: dict[str, str | None]) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError
        try:
            self.core.patch_namespaced_pod(name, self.namespace,
                                           {"metadata": {"annotations": changes}})
        except ApiException as exc:
            raise _api_error(exc, f"annotating pod {self.namespace}/{name}") from None
        except HTTPError as exc:
            raise PluginError(f"cannot reach the API server: {exc}") from None

    def warning_events(self, name: str, reason: str) -> list[str]:
        """Messages of this pod's Warning events with `reason`, oldest first."""
        from kubernetes.client.exceptions import ApiException
        try:
            events = self.core.list_namespaced_event(
                self.namespace,
                field_selector=f"involvedObject.name={name},reason={reason},type=Warning")
        except ApiException:
            return []   # only ever used to say more about an error already known
        return [e.message for e in sorted(events.items, key=lambda e: str(e.last_timestamp))]

    def manifest(self, name: str) -> dict:
        """The pod as the API server returns it, as plain JSON (camelCase keys)."""
        from kubernetes.client.exceptions import ApiException
        try:
            pod = self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            raise _api_error(exc, f"pod {self.namespace}/{name}") from None
        return self.core.api_client.sanitize_for_serialization(pod)

    def create(self, manifest: dict) -> None:
        from kubernetes.client.exceptions import ApiException
        try:
            self.core.create_namespaced_pod(self.namespace, manifest)
        except ApiException as exc:
            detail = _reason_of(exc)
            raise PluginError(f"creating pod {self.namespace}/{manifest['metadata']['name']} "
                              f"was refused: {detail}") from None

    def delete(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException
        try:
            self.core.delete_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise _api_error(exc, f"deleting pod {self.namespace}/{name}") from None

    def scheduling_failures(self, name: str) -> list[str]:
        """Messages of the pod's FailedScheduling events (the extender's per-node reasons)."""
        return self.warning_events(name, "FailedScheduling")


def _reason_of(exc) -> str:
    import json
    try:
        return json.loads(exc.body).get("message") or f"{exc.status} {exc.reason}"
    except (TypeError, ValueError):
        return f"{exc.status} {exc.reason}"
