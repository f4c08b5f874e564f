"""A fake of the plugin's API layer (podvirt.plugin.kubeapi.KubePods): one pod whose
annotations a scripted launcher changes as patches arrive, and a fake clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from podvirt.plugin.target import PluginError, PodFacts
from podvirt.vmspec import keys as k

VM_LABELS = {k.OPT_IN_LABEL: k.OPT_IN_VALUE}


def vm_facts(vm_phase: str = "Running", **annotations: str) -> PodFacts:
    return PodFacts(name="vm1", namespace="vms", labels=dict(VM_LABELS),
                    annotations={k.RENDERED: "h", k.PHASE: vm_phase, **annotations},
                    phase="Running", launcher_running=True)


class FakePods:
    """Every read() is one step of the fake clock; `launcher(pod) -> pod | None` runs
    after each patch and each read and may answer, like the real launcher's watch."""

    def __init__(self, pod: PodFacts, launcher: Callable[[PodFacts], PodFacts | None]):
        self.pod, self.launcher = pod, launcher
        self.patches: list[dict] = []
        self.reads = 0
        self.events: list[str] = []
        self.now = 0.0
        self.deleted_after: int | None = None    # reads after which the pod is gone

    def _react(self) -> None:
        answer = self.launcher(self.pod)
        if answer is not None:
            self.pod = answer

    def read(self, name: str) -> PodFacts:
        self.reads += 1
        if self.deleted_after is not None and self.reads > self.deleted_after:
            raise PluginError(f"pod vms/{name}: not found")
        self._react()
        return self.pod

    def patch_annotations(self, name: str, changes: dict[str, str | None]) -> None:
        self.patches.append(changes)
        ann = dict(self.pod.annotations)
        for key, value in changes.items():
            if value is None:
                ann.pop(key, None)
            else:
                ann[key] = value
        self.pod = replace(self.pod, annotations=ann)

    def warning_events(self, name: str, reason: str) -> list[str]:
        return list(self.events) if reason == k.EVENT_ACTION_FAILED else []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def real_launcher(result: str = "ok", events: list[str] | None = None):
    """The launcher's rules (launcher/report.py action_to_run and kube.py's watch): act on
    an action its ack does not name; drop the ack once the action is removed."""
    from podvirt.launcher.report import action_to_run

    def react(pod: PodFacts) -> PodFacts | None:
        ann = dict(pod.annotations)
        action = action_to_run(ann)
        if action:
            ann[k.ACTION_ACK] = f"{action}:{len(ann)}:{result}"
            if action == "pause" and result == "ok":
                ann[k.PHASE] = "Paused"
            return replace(pod, annotations=ann)
        if k.ACTION not in ann and k.ACTION_ACK in ann:
            del ann[k.ACTION_ACK]
            return replace(pod, annotations=ann)
        return None
    return react
