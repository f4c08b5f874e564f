"""The decision: `step(state, event, now) -> (state, commands)`, pure.

Phases (VMStatus.phase): Starting (start attempts, with retries) and Incoming (a
migration target waiting for its VM) end in Running or in an exit; Running, Paused,
Migrating and ShuttingDown are supervised until the domain stops. `now` is the
launcher's monotonic clock; every deadline in the state is on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from podvirt.launcher.cgroup import MemoryCgroup, oom_killed_since
from podvirt.launcher.exitcodes import EXIT_LIBVIRTD, EXIT_OK, EXIT_START_FAILED, \
    EXIT_VM_FAILED
from podvirt.launcher.report import VMStatus
from podvirt.launcher.supervision.commands import Ack, AdoptDomain, AttemptStart, Call, \
    CheckHealth, CleanUpFailedStart, CloseChannel, Command, Exit, KillQemu, Log, \
    MeasureMemory, Migrate, PrepareMigration, Publish, ReadDisruption, RecordEvent, \
    WatchActions
from podvirt.launcher.supervision.events import ActionRequested, CallReturned, \
    DisruptionRead, DomainResumed, DomainRunning, DomainStopped, DomainSuspended, Event, \
    HealthReport, HypervisorOp, LibvirtdLost, MemoryMeasured, MigrationEnded, \
    MigrationReady, MigrationRefused, QemuKilled, StartAttempted, StopSignal, Tick
from podvirt.quantity import human_bytes
from podvirt.vmspec import keys as k

STOP = "stop"
# What an action name asks of the hypervisor; migrate and stop have their own rules.
ACTION_OPS = {"pause": HypervisorOp.PAUSE, "resume": HypervisorOp.RESUME,
              "reboot": HypervisorOp.REBOOT}


@dataclass(frozen=True)
class Guest:
    """The facts of this VM that decisions and their messages need."""
    name: str
    shutdown_grace_seconds: int
    memory_bytes: int
    start_attempts: int = 1          # 1 + the spec's start retries
    start_retry_delay: float = 1.0
    memory_at_start: MemoryCgroup = MemoryCgroup(None, None)


@dataclass(frozen=True)
class Migration:
    """The VM is being sent to `target`; `token` is acknowledged when that ends."""
    token: str
    target: str
    started: float


@dataclass(frozen=True)
class Incoming:
    source: str
    deadline: float
    timeout: float


@dataclass(frozen=True)
class State:
    guest: Guest
    status: VMStatus
    attempt: int = 0                      # start attempts made
    next_attempt_at: float | None = None  # Starting: when the next attempt is due
    incoming: Incoming | None = None      # Incoming: where from, until when
    qemu_pid: int | None = None
    stop_signal: str = ""                 # the first stop signal received
    stop_cause: str = ""                  # why the VM is shutting down
    grace_deadline: float | None = None   # end of the ACPI shutdown grace
    forced: str = ""                      # why the guest was destroyed, if it was
    migration: Migration | None = None
    passt_lost: bool = False
    libvirtd_lost: str = ""               # why, once the connection to libvirtd is gone
    last_request: ActionRequested | None = None

    @property
    def phase(self) -> str:
        return self.status.phase


Result = tuple[State, list[Command]]


def starting(guest: Guest, status: VMStatus, now: float) -> State:
    """The first start attempt is due at once (after any stop already queued)."""
    return State(guest, status.with_(phase="Starting"), next_attempt_at=now)


def incoming(guest: Guest, status: VMStatus, source: str, now: float, timeout: float) -> State:
    return State(guest, status.with_(phase="Incoming"),
                 incoming=Incoming(source, now + timeout, timeout))


def next_wakeup(state: State, now: float, interval: float) -> float:
    """Seconds the loop may wait for an event before it must send a Tick."""
    due = [now + interval]
    if state.phase == "Starting" and state.next_attempt_at is not None:
        due.append(state.next_attempt_at)
    if state.incoming is not None:
        due.append(state.incoming.deadline)
    if state.grace_deadline is not None and not state.forced:
        due.append(state.grace_deadline)
    return max(0.0, min(due) - now)


def failure(status: VMStatus, code: int, reason: str,
            message: str) -> tuple[VMStatus, list[Command]]:
    """Every failed launch ends so: phase Failed with the reason, a Warning Event, exit."""
    new = status.with_(phase="Failed", failure_reason=reason, failure_message=message[:1000])
    return new, [Log(logging.ERROR, f"{reason}: {message}"), Publish(new),
                 RecordEvent(reason, message, warning=True), Exit(code)]


def step(state: State, event: Event, now: float) -> Result:
    if isinstance(event, ActionRequested):
        if event == state.last_request:
            return state, [Log(logging.INFO, f"{k.ACTION} {event.action} (token "
                                             f"{event.token}) was handled already")]
        state = replace(state, last_request=event)
    if state.phase == "Starting":
        return _starting(state, event, now)
    if state.phase == "Incoming":
        return _incoming(state, event, now)
    return _supervised(state, event, now)


# --- helpers ---------------------------------------------------------------------------------

def _publish(state: State, **changes) -> Result:
    new = state.status.with_(**changes)
    if new == state.status:
        return state, []
    return replace(state, status=new), [Publish(new)]


def _fail(state: State, code: int, reason: str, message: str) -> Result:
    status, commands = failure(state.status, code, reason, message)
    return replace(state, status=status), commands


def _action_failed(request: ActionRequested, error: str) -> list[Command]:
    """Event first: whoever waits for the ack finds the reason."""
    return [RecordEvent(k.EVENT_ACTION_FAILED, f"{request.action}: {error}", warning=True),
            Ack(request.action, request.token, False)]


def not_started(stop: str) -> str:
    """Why a VM stopped before it ran was not started. Its exit is 0: the stop was
    honoured, and restartPolicy OnFailure must not undo it; the phase (Failed, reason
    StoppedBeforeStart) still says the VM never ran."""
    return f"{stop} arrived before the VM started; it was not started"


def _stopped_before_start(state: State, signal: str) -> Result:
    stop = state.stop_signal or signal
    return _fail(replace(state, stop_signal=stop), EXIT_OK, k.REASON_STOPPED_BEFORE_START,
                 not_started(stop))


def _running(state: State, ev: DomainRunning, reason: str, message: str) -> Result:
    state = replace(state, qemu_pid=ev.qemu_pid, next_attempt_at=None, incoming=None)
    state, commands = _publish(state, phase="Running", domain_state=ev.domain_state,
                               started_at=ev.started_at, qemu_rss=ev.qemu_rss,
                               guest_ip=ev.guest_ip, migration_cert="")
    return state, [*commands, RecordEvent(reason, message)]


# --- Starting --------------------------------------------------------------------------------

def _starting(state: State, ev: Event, now: float) -> Result:
    g = state.guest
    if isinstance(ev, StopSignal):
        return _stopped_before_start(state, ev.signal)
    if isinstance(ev, Tick):
        if state.next_attempt_at is None or now < state.next_attempt_at:
            return state, []
        attempt = state.attempt + 1
        return replace(state, attempt=attempt, next_attempt_at=None), [AttemptStart(attempt)]
    if isinstance(ev, StartAttempted):
        of = f"{ev.attempt}/{g.start_attempts}"
        if not ev.error:
            return state, [Log(logging.INFO, f"domain {g.name} started (attempt {of}, "
                                             f"{ev.seconds:.2f}s)"), AdoptDomain(g.name)]
        commands: list[Command] = [
            Log(logging.WARNING, f"start attempt {of} failed: {ev.error}"),
            RecordEvent("StartAttemptFailed", f"attempt {of}: {ev.error}", warning=True),
            CleanUpFailedStart()]
        if ev.attempt >= g.start_attempts:
            state, failed = _fail(state, EXIT_START_FAILED, k.REASON_START_FAILED,
                                  f"VM did not start after {g.start_attempts} attempts: "
                                  f"{ev.error}")
            return state, commands + failed
        return replace(state, next_attempt_at=now + g.start_retry_delay), commands
    if isinstance(ev, DomainRunning):
        state, commands = _running(state, ev, "Started",
                                   f"VM {g.name} is running ({state.status.accel})")
        commands.append(WatchActions())
        if state.libvirtd_lost:     # noticed while starting; handled as the running VM's
            state, lost = _lose_libvirtd(state, state.libvirtd_lost)
            commands += lost
        return state, commands
    if isinstance(ev, LibvirtdLost):
        # A start attempt in flight fails on its own (and counts as a start failure);
        # a domain that did start is stopped as soon as it is adopted.
        return replace(state, libvirtd_lost=state.libvirtd_lost or ev.detail), []
    # Lifecycle events of a failed attempt, and actions (not yet watched), change nothing.
    return state, []


# --- Incoming (migration target) ---------------------------------------------------------------

def _incoming(state: State, ev: Event, now: float) -> Result:
    inc = state.incoming
    assert inc is not None
    if isinstance(ev, DomainResumed):     # the VM arrived and runs
        return state, [CloseChannel(), AdoptDomain(inc.source, arrived=True)]
    if isinstance(ev, DomainRunning):
        downtime = f", guest paused {ev.downtime} ms" if ev.downtime else ""
        return _running(state, ev, k.REASON_MIGRATED + "In",
                        f"VM {inc.source} arrived from pod {inc.source} and runs here "
                        f"({state.status.accel}{downtime})")
    if isinstance(ev, DomainStopped):
        return _fail(state, EXIT_VM_FAILED, k.REASON_MIGRATION_FAILED,
                     f"the migration from pod {inc.source} did not complete (domain "
                     f"stopped: {ev.detail})")
    if isinstance(ev, LibvirtdLost):
        return _fail(state, EXIT_LIBVIRTD, k.REASON_LIBVIRTD_LOST,
                     f"lost libvirtd ({ev.detail}) while waiting for VM {inc.source}")
    if isinstance(ev, StopSignal):
        return _stopped_before_start(state, ev.signal)
    if isinstance(ev, ActionRequested) and ev.action == STOP:
        return _stopped_before_start(state, STOP)
    if isinstance(ev, Tick) and now >= inc.deadline:
        return _fail(state, EXIT_VM_FAILED, k.REASON_MIGRATION_FAILED,
                     f"no VM arrived from pod {inc.source} within {inc.timeout:g}s")
    # Other actions wait for a VM that runs here; they are not answered meanwhile.
    return state, []


# --- Running, Paused, Migrating, ShuttingDown ---------------------------------------------------

def _supervised(state: State, ev: Event, now: float) -> Result:
    if isinstance(ev, DomainStopped):
        return _domain_stopped(state, ev.detail, None, now)
    if isinstance(ev, MemoryMeasured):
        return _domain_stopped(state, ev.detail, ev.memory, now)
    if isinstance(ev, LibvirtdLost):
        return _lose_libvirtd(state, ev.detail)
    if isinstance(ev, QemuKilled):
        return _libvirtd_lost(state, ev.killed)
    if isinstance(ev, DomainSuspended):
        # A live migration pauses the guest for its last round; still Migrating.
        if state.migration is None:
            return _publish(state, phase="Paused", domain_state="paused")
        return state, []
    if isinstance(ev, DomainResumed):
        return _publish(state, phase="Migrating" if state.migration else "Running",
                        domain_state="running")
    if isinstance(ev, StopSignal):
        return _stop(state, ev, now)
    if isinstance(ev, DisruptionRead):
        # A signal alone does not say why; the pod's DisruptionTarget does (drain,
        # taint, preemption), and users want to see it.
        return _shut_down(state, ev.cause or ev.signal, None, now)
    if isinstance(ev, ActionRequested):
        return _action(state, ev, now)
    if isinstance(ev, CallReturned):
        if ev.answer is None:
            return state, []
        if ev.error and ev.answer.action != STOP:
            return state, _action_failed(ev.answer, ev.error)
        return state, [Ack(ev.answer.action, ev.answer.token, not ev.error)]
    if isinstance(ev, MigrationReady):
        g = state.guest
        state = replace(state, migration=Migration(ev.token, ev.target, now))
        state, commands = _publish(state, phase="Migrating", migration_cert=ev.cert)
        return state, [*commands, RecordEvent("Migrating", f"live migration of VM {g.name} to "
                                              f"pod {ev.target} on node {ev.target_node or '?'}"),
                       Migrate()]
    if isinstance(ev, MigrationRefused):
        return state, _action_failed(ActionRequested(k.MIGRATE, ev.token), ev.error)
    if isinstance(ev, MigrationEnded):
        return _migration_ended(state, ev.error)
    if isinstance(ev, Tick):
        if state.grace_deadline is not None and now >= state.grace_deadline \
                and not state.forced:
            forced = (f"guest did not shut down within {state.guest.shutdown_grace_seconds}s "
                      "and was destroyed")
            return replace(state, forced=forced), [
                Log(logging.WARNING, f"guest did not shut down within "
                                     f"{state.guest.shutdown_grace_seconds}s; destroying it"),
                Call(HypervisorOp.DESTROY)]
        return state, [CheckHealth()]
    if isinstance(ev, HealthReport):
        return _health(state, ev)
    return state, []


def _action(state: State, req: ActionRequested, now: float) -> Result:
    if req.action == STOP:
        return _stop(state, req, now)
    if req.action == k.MIGRATE:
        if state.migration is not None:
            return state, _action_failed(
                req, f"a migration to pod {state.migration.target} is already running")
        if state.phase != "Running":
            return state, _action_failed(req, f"the VM is {state.phase}, not Running")
        return state, [PrepareMigration(req.token)]
    if req.action == k.MIGRATE_CANCEL:
        if state.migration is None:
            return state, _action_failed(req, "no migration is running")
        return state, [Call(HypervisorOp.ABORT_MIGRATION, answer=req)]
    op = ACTION_OPS.get(req.action)
    if op is None:
        return state, _action_failed(
            req, f"unknown action {req.action!r} ({', '.join(k.ACTIONS)})")
    return state, [Call(op, answer=req)]


def _stop(state: State, ev: StopSignal | ActionRequested, now: float) -> Result:
    commands: list[Command] = []
    if state.migration is not None:
        commands.append(Call(HypervisorOp.ABORT_MIGRATION))    # stopping wins over moving
    if isinstance(ev, StopSignal):
        state = replace(state, stop_signal=state.stop_signal or ev.signal)
        if state.grace_deadline is None:
            return state, [*commands, ReadDisruption(ev.signal)]
        if not state.forced:
            # A second signal during the grace: whoever sent it will not wait.
            forced = (f"a second stop signal ({ev.signal}) arrived during the ACPI shutdown "
                      "grace; the guest was destroyed")
            return replace(state, forced=forced), [
                *commands, Log(logging.WARNING, forced), Call(HypervisorOp.DESTROY)]
        return state, commands
    if state.grace_deadline is None:
        state, shut = _shut_down(state, f"{k.ACTION} stop", ev, now)
        return state, commands + shut
    return state, [*commands, Ack(ev.action, ev.token, True)]   # already shutting down


def _shut_down(state: State, cause: str, answer: ActionRequested | None, now: float) -> Result:
    grace = state.guest.shutdown_grace_seconds
    state = replace(state, stop_cause=cause, grace_deadline=now + grace)
    commands: list[Command] = [
        Log(logging.INFO, f"stopping the VM ({cause}): ACPI shutdown, {grace}s grace"),
        RecordEvent("ShuttingDown", f"ACPI shutdown of VM {state.guest.name} ({cause}), "
                                    f"{grace}s grace")]
    state, published = _publish(state, phase="ShuttingDown")
    return state, [*commands, *published, Call(HypervisorOp.SHUTDOWN, answer=answer)]


def _migration_ended(state: State, error: str) -> Result:
    """Success ends in DomainStopped("migrated"); a failure leaves the VM running here."""
    m = state.migration
    if m is None or not error:
        return state, []
    state = replace(state, migration=None)
    state, published = _publish(state, phase="Running", migration_cert="")
    return state, [
        CloseChannel(), Log(logging.ERROR, f"migration to pod {m.target} failed: {error}"),
        *published,
        RecordEvent(k.REASON_MIGRATION_FAILED, f"VM {state.guest.name} keeps running here; "
                    f"the migration to pod {m.target} failed: {error}", warning=True),
        Ack(k.MIGRATE, m.token, False)]


def _health(state: State, ev: HealthReport) -> Result:
    if not ev.libvirtd_alive:
        return _lose_libvirtd(state, "libvirtd process exited")
    commands: list[Command] = []
    if not ev.passt_alive and not state.passt_lost:
        # The guest keeps running but is cut off from the pod network: say so once.
        state = replace(state, passt_lost=True)
        commands += [Log(logging.ERROR, "passt exited: the guest has lost the pod network"),
                     RecordEvent("PodNetworkLost", "passt exited: the guest has lost the pod "
                                 "network", warning=True)]
    state, published = _publish(state, qemu_rss=ev.qemu_rss)
    return state, commands + published


def _pid(state: State) -> str:
    return f" (pid {state.qemu_pid})" if state.qemu_pid else ""


def _domain_stopped(state: State, detail: str, memory: MemoryCgroup | None,
                    now: float) -> Result:
    g = state.guest
    m = state.migration
    if detail == "migrated" and m is not None:
        message = (f"VM {g.name} migrated live to pod {m.target} in {now - m.started:.1f}s; "
                   "it runs there now")
        state, published = _publish(state, phase="Succeeded", domain_state="shutoff",
                                    migration_cert="", failure_reason=k.REASON_MIGRATED,
                                    failure_message=message)
        return state, [CloseChannel(), Log(logging.INFO, message), Ack(k.MIGRATE, m.token, True),
                       *published, RecordEvent(k.REASON_MIGRATED, message), Exit(EXIT_OK)]
    if detail == "shutdown" and not state.forced:
        why = f" ({state.stop_cause})" if state.stop_cause else ""
        state, published = _publish(state, phase="Succeeded", domain_state="shutoff")
        return state, [Log(logging.INFO, "guest shut down"), *published,
                       RecordEvent("Stopped", f"VM {g.name} shut down{why}"), Exit(EXIT_OK)]
    crashed = detail in ("failed", "crashed")
    if crashed and not state.forced and memory is None:
        return state, [MeasureMemory(detail)]     # was it the OOM killer?
    reason = k.REASON_VM_STOPPED
    if state.forced:
        message = state.forced
    elif crashed and memory is not None and oom_killed_since(g.memory_at_start, memory):
        reason = k.REASON_OOM_KILLED
        limit = human_bytes(memory.limit_bytes) if memory.limit_bytes else "unknown"
        message = (f"the launcher container reached its memory limit ({limit} for a "
                   f"{human_bytes(g.memory_bytes)} guest) and the kernel's OOM killer "
                   f"killed QEMU{_pid(state)}; the VM is gone")
    elif detail == "failed":    # libvirt: the host emulator failed, i.e. QEMU died
        reason = k.REASON_QEMU_EXITED
        message = f"QEMU{_pid(state)} exited unexpectedly; the VM is gone (domain stopped: failed)"
    else:
        message = f"domain stopped: {detail}"
    state, published = _publish(state, phase="Failed", domain_state="shutoff",
                                failure_reason=reason, failure_message=message)
    event = reason if reason == k.REASON_OOM_KILLED else "Crashed" if crashed else "Stopped"
    return state, [Log(logging.ERROR, message), *published,
                   RecordEvent(event, message, warning=True), Exit(EXIT_VM_FAILED)]


def _lose_libvirtd(state: State, detail: str) -> Result:
    state = replace(state, libvirtd_lost=detail)
    if state.qemu_pid:
        # QEMU outlives libvirtd; without a manager it must not keep running unseen.
        return state, [KillQemu(state.qemu_pid)]
    return _libvirtd_lost(state, killed=False)


def _libvirtd_lost(state: State, killed: bool) -> Result:
    message = f"lost libvirtd ({state.libvirtd_lost}); the VM cannot be managed and is stopped"
    if killed:
        message += f" (QEMU pid {state.qemu_pid} killed)"
    state, published = _publish(state, phase="Failed", failure_reason=k.REASON_LIBVIRTD_LOST,
                                failure_message=message)
    return state, [Log(logging.ERROR, message), *published,
                   RecordEvent("LibvirtdLost", message, warning=True), Exit(EXIT_LIBVIRTD)]
