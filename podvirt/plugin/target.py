"""What the plugin needs to know of a VM pod, and the checks each command makes on it.

Pure: `PodFacts` is gathered by kubeapi; every check raises `PluginError` with a
message a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podvirt.vmspec import keys as k

LAUNCHER_CONTAINER = "launcher"


class PluginError(Exception):
    """A refusal or failure to report to the user as one line, without a traceback."""


@dataclass(frozen=True)
class PodFacts:
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    phase: str = ""                       # the pod's phase (Pending, Running, ...)
    launcher_running: bool = False        # the launcher container is running
    deleting: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def vm_phase(self) -> str:
        return self.annotations.get(k.PHASE, "")


def require_vm(pod: PodFacts) -> None:
    if pod.labels.get(k.OPT_IN_LABEL) != k.OPT_IN_VALUE:
        raise PluginError(f"pod {pod.ref} is not a podvirt VM pod (it lacks the label "
                          f"{k.OPT_IN_LABEL}={k.OPT_IN_VALUE})")
    if k.RENDERED not in pod.annotations:
        raise PluginError(f"pod {pod.ref} is labelled as a VM but was never turned into a "
                          "launcher pod (no podvirt.io/rendered): is the podvirt webhook "
                          "installed?")


def require_running(pod: PodFacts, vm_phases: tuple[str, ...] = ("Running", "Paused")) -> None:
    """The launcher runs and its VM is in one of `vm_phases`."""
    require_vm(pod)
    if pod.deleting:
        raise PluginError(f"VM pod {pod.ref} is being deleted")
    if pod.phase != "Running" or not pod.launcher_running:
        detail = pod.vm_phase or pod.phase or "unknown"
        reason = pod.annotations.get(k.FAILURE_REASON)
        raise PluginError(f"VM pod {pod.ref} is not running (pod phase {pod.phase or '?'}, "
                          f"VM {detail}{', ' + reason if reason else ''})")
    if pod.vm_phase not in vm_phases:
        raise PluginError(f"VM {pod.ref} is {pod.vm_phase or 'not started yet'} "
                          f"({k.PHASE}); this needs it {' or '.join(vm_phases)}")


def require_vnc(pod: PodFacts) -> None:
    require_vm(pod)
    graphics = pod.annotations.get(k.GRAPHICS, "none")
    if graphics != "vnc":
        raise PluginError(f"VM {pod.ref} has no graphics ({k.GRAPHICS}: {graphics}); "
                          f"set {k.GRAPHICS}: vnc to give it a VNC display")
    require_running(pod)
