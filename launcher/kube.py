"""The API reporter: the launcher patches its own pod (and only its own pod)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from podvirt.launcher.report import PodView, VMStatus, action_to_run, disruption_cause
from podvirt.kubeclient import now_rfc3339, pod_event
from podvirt.vmspec import keys as k

log = logging.getLogger(__name__)


def load_config(kubeconfig: str | None) -> None:
    from kubernetes import config
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)
    else:
        config.load_incluster_config()


class KubePodReporter:
    def __init__(self, name: str, namespace: str, *, node: str = ""):
        from kubernetes import client
        self.name, self.namespace, self.node = name, namespace, node
        self.api = client.CoreV1Api()
        self._last_ready: bool | None = None
        self._stop = threading.Event()

    def _patch_annotations(self, annotations: dict[str, str | None]) -> None:
        self.api.patch_namespaced_pod(self.name, self.namespace,
                                      {"metadata": {"annotations": annotations}})

    def publish(self, status: VMStatus) -> None:
        from kubernetes.client.exceptions import ApiException
        try:
            self._patch_annotations(status.annotations())
            if status.ready != self._last_ready:
                condition = {"type": k.VM_READY_CONDITION, "status": str(status.ready),
                             "reason": status.failure_reason or status.phase,
                             "message": status.failure_message or f"VM is {status.phase}",
                             "lastTransitionTime": now_rfc3339()}
                # Conditions merge by type in a strategic merge patch.
                self.api.patch_namespaced_pod_status(
                    self.name, self.namespace, {"status": {"conditions": [condition]}})
                self._last_ready = status.ready
        except ApiException as exc:
            # Reporting must never take the VM down; the next report retries.
            log.warning("cannot report VM status to pod %s/%s: %s %s", self.namespace,
                        self.name, exc.status, exc.reason)

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        from kubernetes.client.exceptions import ApiException
        body = pod_event(self.namespace, self.name, reason, message, warning=warning,
                         component="podvirt-launcher", host=self.node or None)
        try:
            self.api.create_namespaced_event(self.namespace, body)
        except ApiException as exc:
            log.warning("cannot create event %s: %s %s", reason, exc.status, exc.reason)

    def ack(self, action: str, token: str, ok: bool) -> None:
        self._patch_annotations({k.ACTION_ACK: f"{action}:{token}:{'ok' if ok else 'error'}"})

    def clear_ack(self) -> None:
        self._patch_annotations({k.ACTION_ACK: None})

    def watch_actions(self, on_action: Callable[[str, str], None]) -> None:
        """Watch this pod; call on_action(action, resourceVersion) for unacknowledged ones."""
        threading.Thread(target=self._watch, args=(on_action,), name="action-watch",
                         daemon=True).start()

    def _watch(self, on_action: Callable[[str, str], None]) -> None:
        from kubernetes import watch
        delivered: str | None = None   # events can repeat an action before our ack lands
        while not self._stop.is_set():
            try:
                w = watch.Watch()
                for item in w.stream(self.api.list_namespaced_pod, self.namespace,
                                     field_selector=f"metadata.name={self.name}",
                                     timeout_seconds=60):
                    if self._stop.is_set():
                        w.stop()
                        return
                    pod = item["object"]
                    annotations = pod.metadata.annotations or {}
                    action = action_to_run(annotations)
                    if action and action != delivered:
                        delivered = action
                        on_action(action, pod.metadata.resource_version)
                    elif k.ACTION not in annotations:
                        delivered = None
                        if k.ACTION_ACK in annotations:
                            self.clear_ack()
            except Exception as exc:  # noqa: BLE001 - a watch error must not end the VM
                log.warning("pod watch for actions failed, retrying: %s", exc)
                self._stop.wait(2)

    def disruption(self) -> str:
        from kubernetes.client.exceptions import ApiException
        try:
            pod = self.api.read_namespaced_pod(self.name, self.namespace)
        except ApiException as exc:
            log.warning("cannot read pod %s/%s: %s %s", self.namespace, self.name,
                        exc.status, exc.reason)
            return ""
        return disruption_cause(pod.status.conditions if pod.status else None)

    def peer(self, name: str | None = None) -> PodView | None:
        """A pod of this namespace (default: our own), None if it cannot be read."""
        from kubernetes.client.exceptions import ApiException
        try:
            pod = self.api.read_namespaced_pod(name or self.name, self.namespace)
        except ApiException as exc:
            log.warning("cannot read pod %s/%s: %s %s", self.namespace, name or self.name,
                        exc.status, exc.reason)
            return None
        return PodView(dict(pod.metadata.annotations or {}), pod.status.pod_ip or "",
                       pod.spec.node_name or "")

    def close(self) -> None:
        self._stop.set()
