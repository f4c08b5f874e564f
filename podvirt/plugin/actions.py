"""`kubectl podvirt pause|resume|reboot|stop`: request an action through the pod's
`podvirt.io/action` annotation and wait for the launcher's `podvirt.io/action-ack`.

The launcher acts on an action its ack does not already name (launcher/report.py
`action_to_run`), and forgets its ack once the action annotation is removed. So asking
for the action the last ack names (a second reboot) first withdraws the annotation and
waits for the ack to go; then any ack naming our action answers our request.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from podvirt.plugin.target import PluginError, PodFacts, require_running
from podvirt.vmspec import keys as k

# The VM phases in which the launcher watches for (and can carry out) each action.
ACCEPTED_IN: dict[str, tuple[str, ...]] = {
    "pause": ("Running", "Paused"),
    "resume": ("Running", "Paused"),
    "reboot": ("Running", "Paused"),
    "stop": ("Running", "Paused", "ShuttingDown"),
    k.MIGRATE: ("Running",),           # podvirt/plugin/migrate.py sets up the target first
}
DONE_MESSAGE = {
    "pause": "VM {ref} paused",
    "resume": "VM {ref} resumed",
    "reboot": "VM {ref} is rebooting",
    "stop": "VM {ref} is shutting down (ACPI); its pod ends when the guest powers off",
    k.MIGRATE: "VM {ref} migrated",
}
ENDED = ("Succeeded", "Failed")


class Pods(Protocol):
    def read(self, name: str) -> PodFacts: ...
    def patch_annotations(self, name: str, changes: dict[str, str | None]) -> None: ...
    def warning_events(self, name: str, reason: str) -> list[str]: ...


def ack_of(annotations: dict[str, str]) -> tuple[str, str] | None:
    """(action, "ok" | "error") of the launcher's ack, if there is one."""
    ack = annotations.get(k.ACTION_ACK, "")
    if not ack:
        return None
    action, _, rest = ack.partition(":")
    return action, rest.rpartition(":")[2]


def answered(pod: PodFacts, action: str) -> str | None:
    """"ok" or "error" once the launcher has answered `action`, else None. A VM that
    powered off has done what `stop` asks even if its pod went before the ack did."""
    ack = ack_of(pod.annotations)
    if ack and ack[0] == action:
        return ack[1] if ack[1] in ("ok", "error") else "error"
    if action == "stop" and pod.vm_phase == "Succeeded":
        return "ok"
    if action == k.MIGRATE and pod.annotations.get(k.FAILURE_REASON) == k.REASON_MIGRATED:
        return "ok"
    return None


class ActionWaiter:
    def __init__(self, pods: Pods, name: str, action: str, *, timeout: float = 60.0,
                 interval: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if action not in ACCEPTED_IN:
            raise PluginError(f"unknown action {action!r} ({', '.join(ACCEPTED_IN)})")
        self.pods, self.name, self.action = pods, name, action
        self.timeout, self.interval, self.clock, self.sleep = timeout, interval, clock, sleep

    def run(self) -> str:
        """Request the action; the success message, or PluginError."""
        pod = self.pods.read(self.name)
        require_running(pod, ACCEPTED_IN[self.action])
        deadline = self.clock() + self.timeout
        ack = ack_of(pod.annotations)
        if ack and ack[0] == self.action:
            self.pods.patch_annotations(self.name, {k.ACTION: None})
            self._wait(lambda p: k.ACTION_ACK not in p.annotations, deadline,
                       f"the launcher to withdraw its acknowledgement of the previous "
                       f"{self.action}")
        self.pods.patch_annotations(self.name, {k.ACTION: self.action})
        pod = self._wait(lambda p: answered(p, self.action) is not None, deadline,
                         f"the launcher to acknowledge {self.action}")
        if answered(pod, self.action) == "ok":
            return DONE_MESSAGE[self.action].format(ref=pod.ref)
        events = [m for m in self.pods.warning_events(self.name, k.EVENT_ACTION_FAILED)
                  if m.startswith(self.action + ":")]
        why = events[-1].partition(":")[2].strip() if events else \
            f"see `kubectl logs -n {pod.namespace} {pod.name}`"
        raise PluginError(f"the launcher could not {self.action} VM {pod.ref}: {why}")

    def _wait(self, done: Callable[[PodFacts], bool], deadline: float, what: str) -> PodFacts:
        while True:
            try:
                pod = self.pods.read(self.name)
            except PluginError as exc:
                raise PluginError(f"while waiting for {what}: {exc}") from None
            if done(pod):
                return pod
            if pod.vm_phase in ENDED or pod.phase in ENDED:
                raise PluginError(f"VM {pod.ref} ended ({pod.vm_phase or pod.phase}) before "
                                  f"{what}")
            if self.clock() >= deadline:
                raise PluginError(f"timed out after {self.timeout:g}s waiting for {what} "
                                  f"({k.ACTION_ACK}: {pod.annotations.get(k.ACTION_ACK, 'none')}"
                                  f"); is the launcher running? `kubectl logs -n "
                                  f"{pod.namespace} {pod.name}`")
            self.sleep(self.interval)
