"""The answer to an eviction of a VM pod, as a pure function of the request and the pod.

A pod with `podvirt.io/eviction-strategy: migrate` whose VM runs is not evicted: the
eviction is refused with 429 Too Many Requests (which `kubectl drain` and other eviction
clients retry), and the pod is marked with the node it must leave (podvirt.io/evacuate).
`podvirt evacuator` migrates the VM away; the source pod then ends and is deleted, and the
client's next eviction finds it gone. Every other pod is left to the API server's own
rules (PodDisruptionBudgets among them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from podvirt.vmspec import is_vm_pod, keys as k
from podvirt.vmspec.mobility import eviction_strategy
from podvirt.webhook.wire import AdmissionRequest

TOO_MANY_REQUESTS = 429     # what eviction clients retry (a PDB's refusal uses it too)


@dataclass(frozen=True)
class EvictionVerdict:
    rule: str
    allowed: bool
    message: str | None = None
    mark: str | None = None         # node to write into podvirt.io/evacuate; None: no change

    @property
    def code(self) -> int | None:
        return None if self.allowed else TOO_MANY_REQUESTS


def is_eviction(request: AdmissionRequest) -> bool:
    kind = request.get("kind") or {}
    return (request.get("subResource") == "eviction" and kind.get("kind") == "Eviction"
            and request.get("operation") == "CREATE")


def decide_eviction(request: AdmissionRequest, pod: Mapping[str, Any] | None) -> EvictionVerdict:
    if not is_eviction(request):
        return EvictionVerdict("not-an-eviction", True)
    if pod is None:
        return EvictionVerdict("no-such-pod", True)     # the API server answers 404
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if not is_vm_pod(meta.get("labels")) or eviction_strategy(annotations) != k.EVICT_MIGRATE:
        return EvictionVerdict("shutdown-strategy", True)
    if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") != "Running":
        return EvictionVerdict("not-running", True)
    if annotations.get(k.PHASE) != "Running":
        # Starting, Incoming (a migration's target), Migrating... or ended: nothing to move
        # yet, or the move already under way decides the pod's fate.
        if annotations.get(k.PHASE) == "Migrating":
            return EvictionVerdict("migrating", False, _refusal(meta, pod, "is migrating"))
        return EvictionVerdict("vm-not-running", True)
    node = (pod.get("spec") or {}).get("nodeName") or ""
    mark = None if annotations.get(k.EVACUATE) == node else node
    return EvictionVerdict("evacuate", False, _refusal(meta, pod, "will migrate"), mark)


def _refusal(meta: Mapping[str, Any], pod: Mapping[str, Any], doing: str) -> str:
    node = (pod.get("spec") or {}).get("nodeName") or "its node"
    return (f"VM pod {meta.get('namespace')}/{meta.get('name')} {doing} off {node} instead of "
            f"being evicted ({k.EVICTION_STRATEGY}: {k.EVICT_MIGRATE}); its pod ends when the VM "
            "runs elsewhere")
