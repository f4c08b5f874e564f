"""What a supervision decision asks the I/O loop (launcher/run.py) to do, in order.

A command whose outcome matters to the next decision is answered by an event
(supervision/events.py), which the loop hands to `step` before anything else."""

from __future__ import annotations

from dataclasses import dataclass

from podvirt.launcher.report import VMStatus
from podvirt.launcher.supervision.events import ActionRequested, HypervisorOp


@dataclass(frozen=True)
class Publish:
    status: VMStatus


@dataclass(frozen=True)
class RecordEvent:
    """A Kubernetes Event on the pod."""
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Ack:
    """`podvirt.io/action-ack: <action>:<token>:ok|error`."""
    action: str
    token: str
    ok: bool


@dataclass(frozen=True)
class Log:
    level: int          # logging.INFO, ...
    message: str


@dataclass(frozen=True)
class Call:
    """One hypervisor operation; answered by CallReturned."""
    op: HypervisorOp
    answer: ActionRequested | None = None


@dataclass(frozen=True)
class AttemptStart:
    """Define and start the domain; answered by StartAttempted."""
    attempt: int


@dataclass(frozen=True)
class CleanUpFailedStart:
    pass


@dataclass(frozen=True)
class AdoptDomain:
    """Find QEMU, follow the console, serve metrics; answered by DomainRunning."""
    domain: str
    arrived: bool = False     # brought by a migration: also read its downtime


@dataclass(frozen=True)
class WatchActions:
    pass


@dataclass(frozen=True)
class PrepareMigration:
    """Check the target pod and open the channel; MigrationReady or MigrationRefused."""
    token: str


@dataclass(frozen=True)
class Migrate:
    """Start the migrate call over the open channel; its end comes as MigrationEnded."""


@dataclass(frozen=True)
class CloseChannel:
    """Stop the migration relay (either end)."""


@dataclass(frozen=True)
class ReadDisruption:
    signal: str


@dataclass(frozen=True)
class MeasureMemory:
    detail: str


@dataclass(frozen=True)
class CheckHealth:
    pass


@dataclass(frozen=True)
class KillQemu:
    pid: int


@dataclass(frozen=True)
class Exit:
    code: int


Command = (Publish | RecordEvent | Ack | Log | Call | AttemptStart | CleanUpFailedStart
           | AdoptDomain | WatchActions | PrepareMigration | Migrate | CloseChannel
           | ReadDisruption | MeasureMemory | CheckHealth | KillQemu | Exit)
