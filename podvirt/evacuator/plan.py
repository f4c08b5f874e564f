"""Which marked VM pods to migrate now: a pure function of the pods, what runs, and the clock.

A pod is a candidate while the webhook's mark (podvirt.io/evacuate) names the node it
still runs on, its strategy is migrate and its VM runs. At most `parallel` migrations run
at once (each moves a whole guest's memory over the pod network); a failed one is
retried after `retry_seconds`, as long as the mark stays (a drain keeps re-marking it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from podvirt.vmspec import is_vm_pod, keys as k
from podvirt.vmspec.mobility import eviction_strategy


@dataclass(frozen=True)
class Candidate:
    namespace: str
    name: str
    uid: str
    node: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def candidate(pod: Mapping[str, Any]) -> Candidate | None:
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    node = (pod.get("spec") or {}).get("nodeName")
    if not (is_vm_pod(meta.get("labels")) and node and annotations.get(k.EVACUATE) == node
            and eviction_strategy(annotations) == k.EVICT_MIGRATE
            and annotations.get(k.PHASE) == "Running" and not meta.get("deletionTimestamp")):
        return None
    return Candidate(meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""), node)


@dataclass
class Schedule:
    parallel: int = 2
    retry_seconds: float = 30.0
    running: set[str] = field(default_factory=set)          # pod uids
    failed_at: dict[str, float] = field(default_factory=dict)

    def due(self, pods: Iterable[Mapping[str, Any]], now: float) -> list[Candidate]:
        """The candidates to start now, oldest failure last; marks them running."""
        ready = []
        for c in filter(None, map(candidate, pods)):
            if c.uid in self.running:
                continue
            if now - self.failed_at.get(c.uid, float("-inf")) < self.retry_seconds:
                continue
            ready.append(c)
        ready.sort(key=lambda c: (self.failed_at.get(c.uid, float("-inf")), c.ref))
        start = ready[:max(0, self.parallel - len(self.running))]
        self.running.update(c.uid for c in start)
        return start

    def finished(self, c: Candidate, ok: bool, now: float) -> None:
        self.running.discard(c.uid)
        if ok:
            self.failed_at.pop(c.uid, None)
        else:
            self.failed_at[c.uid] = now

    def forget(self, live_uids: set[str]) -> None:
        """Drop failure times of pods that no longer exist."""
        for uid in set(self.failed_at) - live_uids:
            del self.failed_at[uid]
