"""What the supervision loop reacts to: libvirt, signals, the pod, the clock, and the
answers its own commands bring back (so a decision that needs a fact asks for it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from podvirt.launcher.cgroup import MemoryCgroup


# --- from libvirt (launcher/virt.py) -------------------------------------------------------

@dataclass(frozen=True)
class DomainStarted:
    pass


@dataclass(frozen=True)
class DomainStopped:
    # libvirt's stop detail: shutdown, destroyed, crashed, migrated, saved, failed, ...
    detail: str


@dataclass(frozen=True)
class DomainSuspended:
    pass


@dataclass(frozen=True)
class DomainResumed:
    pass


@dataclass(frozen=True)
class GuestShutdownRequested:
    pass


@dataclass(frozen=True)
class LibvirtdLost:
    detail: str     # why the connection closed


# --- from the pod and the process ----------------------------------------------------------

@dataclass(frozen=True)
class StopSignal:
    signal: str     # SIGTERM or SIGINT


@dataclass(frozen=True)
class ActionRequested:
    """A `podvirt.io/action` the ack does not name yet; token: the pod's resourceVersion."""
    action: str
    token: str


@dataclass(frozen=True)
class Tick:
    """Nothing arrived before the loop's wake-up time (machine.next_wakeup)."""


@dataclass(frozen=True)
class MigrationEnded:
    """The migrate call returned; error is empty when the VM now runs at the target."""
    error: str = ""


# --- answers to commands -------------------------------------------------------------------

@dataclass(frozen=True)
class StartAttempted:
    attempt: int
    error: str = ""          # empty: the domain was defined and started
    seconds: float = 0.0


@dataclass(frozen=True)
class DomainRunning:
    """The domain runs here; the facts the Running report carries."""
    qemu_pid: int | None
    domain_state: str
    qemu_rss: int | None
    guest_ip: str
    started_at: str
    downtime: str = ""       # an arrived migration: how long the guest was paused (ms)


class HypervisorOp(Enum):
    SHUTDOWN = "shutdown"        # ACPI power button
    DESTROY = "destroy"
    PAUSE = "pause"
    RESUME = "resume"
    REBOOT = "reboot"
    ABORT_MIGRATION = "abort-migration"


@dataclass(frozen=True)
class CallReturned:
    op: HypervisorOp
    error: str = ""
    answer: ActionRequested | None = None    # the request this call answers, if any


@dataclass(frozen=True)
class MigrationReady:
    """The channel to the target pod is open; `cert`: our end's, for the target's check."""
    token: str
    target: str
    target_node: str
    cert: str


@dataclass(frozen=True)
class MigrationRefused:
    token: str
    error: str


@dataclass(frozen=True)
class DisruptionRead:
    """Why Kubernetes ends the pod (its DisruptionTarget condition), "" for a plain delete."""
    signal: str
    cause: str


@dataclass(frozen=True)
class MemoryMeasured:
    detail: str              # of the DomainStopped that asked
    memory: MemoryCgroup


@dataclass(frozen=True)
class HealthReport:
    libvirtd_alive: bool = True
    passt_alive: bool = True     # True when there is no passt
    qemu_rss: int | None = None


@dataclass(frozen=True)
class QemuKilled:
    killed: bool             # False: it was gone already


Event = (DomainStarted | DomainStopped | DomainSuspended | DomainResumed
         | GuestShutdownRequested | LibvirtdLost | StopSignal | ActionRequested | Tick
         | MigrationEnded | StartAttempted | DomainRunning | CallReturned | MigrationReady
         | MigrationRefused | DisruptionRead | MemoryMeasured | HealthReport | QemuKilled)
