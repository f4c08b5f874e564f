"""Where the launcher tells the world what its VM does: the pod itself, or JSON lines.

`VMStatus` is the value; reporters only publish it. The API reporter writes the
annotations in podvirt.vmspec.keys, a `podvirt.io/VMReady` pod condition and Events;
the JSON reporter writes one line per report to a stream (no cluster needed, and what
tests capture).
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, replace
from typing import Callable, Literal, Protocol, TextIO

from podvirt.kubeclient import now_rfc3339
from podvirt.vmspec import keys as k

# Incoming: a migration target waiting for its VM; Migrating: the source sending it.
Phase = Literal["Starting", "Incoming", "Running", "Migrating", "Paused",
                "ShuttingDown", "Succeeded", "Failed"]


@dataclass(frozen=True)
class VMStatus:
    phase: Phase
    domain_state: str = ""
    node: str = ""
    started_at: str = ""
    guest_ip: str = ""
    qemu_rss: int | None = None
    accel: str = ""
    failure_reason: str = ""
    failure_message: str = ""
    migration_cert: str = ""     # this end's certificate while a migration is set up

    def with_(self, **changes) -> "VMStatus":
        return replace(self, **changes)

    def annotations(self) -> dict[str, str | None]:
        """Annotation patch; None deletes a key that no longer applies."""
        values = {k.PHASE: self.phase, k.DOMAIN_STATE: self.domain_state, k.NODE: self.node,
                  k.STARTED_AT: self.started_at, k.GUEST_IP: self.guest_ip,
                  k.QEMU_RSS: str(self.qemu_rss) if self.qemu_rss is not None else "",
                  k.ACCEL: self.accel, k.FAILURE_REASON: self.failure_reason,
                  k.FAILURE_MESSAGE: self.failure_message, k.MIGRATION_CERT: self.migration_cert}
        return {key: (value or None) for key, value in values.items()}

    @property
    def ready(self) -> bool:
        return self.phase == "Running"


@dataclass(frozen=True)
class PodView:
    """Another pod (or this one) as a migration needs it."""
    annotations: dict[str, str]
    ip: str
    node: str


class PodReporter(Protocol):
    def publish(self, status: VMStatus) -> None: ...
    def event(self, reason: str, message: str, *, warning: bool = False) -> None: ...
    def ack(self, action: str, token: str, ok: bool) -> None: ...
    def clear_ack(self) -> None: ...
    def watch_actions(self, on_action: Callable[[str, str], None]) -> None: ...
    def disruption(self) -> str: ...
    def peer(self, name: str | None = None) -> "PodView | None": ...
    def close(self) -> None: ...


class JsonLinesReporter:
    """One JSON object per line: {"kind": "status"|"event"|"ack", ...}."""

    def __init__(self, stream: TextIO = sys.stderr):
        self.stream = stream
        self._lock = threading.Lock()

    def _write(self, record: dict) -> None:
        with self._lock:
            self.stream.write(json.dumps({"time": now_rfc3339(), **record}) + "\n")
            self.stream.flush()

    def publish(self, status: VMStatus) -> None:
        self._write({"kind": "status", "annotations": status.annotations(),
                     "ready": status.ready})

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self._write({"kind": "event", "type": "Warning" if warning else "Normal",
                     "reason": reason, "message": message})

    def ack(self, action: str, token: str, ok: bool) -> None:
        self._write({"kind": "ack", "value": f"{action}:{token}:{'ok' if ok else 'error'}"})

    def clear_ack(self) -> None:
        pass

    def watch_actions(self, on_action: Callable[[str, str], None]) -> None:
        pass   # no pod to watch: actions arrive as signals only

    def disruption(self) -> str:
        return ""   # no pod: a signal is all there is to know

    def peer(self, name: str | None = None) -> PodView | None:
        return None   # no API server: no migration

    def close(self) -> None:
        pass


def disruption_cause(conditions) -> str:
    """Why Kubernetes is ending this pod, from its DisruptionTarget condition (set by the
    Eviction API, i.e. `kubectl drain`, by taint eviction, preemption or node pressure
    before the pod is deleted), or "" for a plain deletion."""
    for c in conditions or ():
        if c.type == "DisruptionTarget" and c.status == "True":
            return f"{c.reason}: {c.message}" if c.message else (c.reason or "disrupted")
    return ""


def action_to_run(annotations: dict[str, str]) -> str | None:
    """The requested action not yet acknowledged, if any.

    An ack names its action, so the same action stays done however often the pod
    changes; the launcher clears its ack when the user removes the action, which lets
    the user ask for the same action again.
    """
    action = annotations.get(k.ACTION, "").strip()
    if not action:
        return None
    ack = annotations.get(k.ACTION_ACK, "")
    return None if ack.split(":", 1)[0] == action else action
