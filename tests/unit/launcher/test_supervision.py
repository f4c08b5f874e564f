"""Every transition of the launcher's supervision (launcher/supervision/machine.py), as
a table: (state, event, now) -> the state's changes and the commands, logs aside."""

from dataclasses import replace

import pytest

from podvirt.launcher.cgroup import MemoryCgroup
from podvirt.launcher.migration import migration_refusal
from podvirt.launcher.report import PodView, VMStatus
from podvirt.launcher.supervision import machine
from podvirt.launcher.supervision.commands import Ack, AdoptDomain, AttemptStart, Call, \
    CheckHealth, CleanUpFailedStart, CloseChannel, Exit, KillQemu, Log, MeasureMemory, \
    Migrate, PrepareMigration, Publish, ReadDisruption, RecordEvent, WatchActions
from podvirt.launcher.supervision.events import ActionRequested, CallReturned, \
    DisruptionRead, DomainResumed, DomainRunning, DomainStarted, DomainStopped, \
    DomainSuspended, GuestShutdownRequested, HealthReport, HypervisorOp as Op, \
    LibvirtdLost, MemoryMeasured, MigrationEnded, MigrationReady, MigrationRefused, \
    QemuKilled, StartAttempted, StopSignal, Tick
from podvirt.launcher.supervision.machine import Guest, Incoming, Migration, State

GUEST = Guest(name="vm1", shutdown_grace_seconds=30, memory_bytes=1 << 30,
              start_attempts=3, start_retry_delay=2.0,
              memory_at_start=MemoryCgroup(oom_kills=1, limit_bytes=2 << 30))
NOW = 100.0
PID = 4242
BASE = VMStatus("Starting", node="n1", accel="tcg")
RUN = BASE.with_(phase="Running", domain_state="running", started_at="2026-12-03T22:00:00Z")
ARRIVED = DomainRunning(qemu_pid=PID, domain_state="running", qemu_rss=50_000_000,
                        guest_ip="10.0.0.7", started_at="2026-12-03T22:00:00Z")


def req(action, token="rv7"):
    return ActionRequested(action, token)


def starting(**changes) -> State:
    return replace(machine.starting(GUEST, BASE, NOW), **changes)


def waiting(**changes) -> State:
    return replace(machine.incoming(GUEST, BASE, "src", NOW, 600), **changes)


def running(phase="Running", **changes) -> State:
    return State(GUEST, RUN.with_(phase=phase), **{"qemu_pid": PID, **changes})


MIGRATING = dict(phase="Migrating", migration=Migration("rv5", "tgt", NOW - 4.5))
SHUTTING = dict(phase="ShuttingDown", grace_deadline=NOW + 10, stop_cause="SIGTERM")
FORCED = "guest did not shut down within 30s and was destroyed"


CASES = [
    # --- start, with retries and their backoff -----------------------------------------
    pytest.param(starting(), Tick(), NOW, dict(attempt=1, next_attempt_at=None),
                 [AttemptStart(1)], id="first-attempt-due-at-once"),
    pytest.param(starting(attempt=1, next_attempt_at=NOW + 1), Tick(), NOW, {}, [],
                 id="retry-not-due-yet"),
    pytest.param(starting(attempt=1, next_attempt_at=NOW + 1), Tick(), NOW + 1,
                 dict(attempt=2, next_attempt_at=None), [AttemptStart(2)], id="retry-due"),
    pytest.param(starting(attempt=1, next_attempt_at=None), StartAttempted(1, seconds=0.4), NOW,
                 {}, [AdoptDomain("vm1")], id="attempt-succeeds"),
    pytest.param(starting(attempt=1, next_attempt_at=None), StartAttempted(1, "boom"), NOW,
                 dict(next_attempt_at=NOW + 2.0),
                 [RecordEvent("StartAttemptFailed", "attempt 1/3: boom", warning=True),
                  CleanUpFailedStart()], id="attempt-fails-retry-after-delay"),
    pytest.param(starting(attempt=3, next_attempt_at=None), StartAttempted(3, "boom"), NOW,
                 dict(status=BASE.with_(phase="Failed", failure_reason="VMStartFailed",
                                        failure_message="VM did not start after 3 attempts: "
                                                        "boom")),
                 [RecordEvent("StartAttemptFailed", "attempt 3/3: boom", warning=True),
                  CleanUpFailedStart(),
                  Publish(BASE.with_(phase="Failed", failure_reason="VMStartFailed",
                                     failure_message="VM did not start after 3 attempts: boom")),
                  RecordEvent("VMStartFailed", "VM did not start after 3 attempts: boom",
                              warning=True), Exit(1)], id="last-attempt-fails"),
    pytest.param(starting(attempt=1, next_attempt_at=NOW + 1), StopSignal("SIGTERM"), NOW,
                 dict(stop_signal="SIGTERM",
                      status=BASE.with_(phase="Failed", failure_reason="StoppedBeforeStart",
                                        failure_message="SIGTERM arrived before the VM "
                                                        "started; it was not started")),
                 [Publish(BASE.with_(phase="Failed", failure_reason="StoppedBeforeStart",
                                     failure_message="SIGTERM arrived before the VM started; "
                                                     "it was not started")),
                  RecordEvent("StoppedBeforeStart", "SIGTERM arrived before the VM started; "
                              "it was not started", warning=True), Exit(0)],
                 id="sigterm-while-starting-does-not-start"),
    pytest.param(starting(attempt=1, next_attempt_at=None), ARRIVED, NOW,
                 dict(qemu_pid=PID, status=RUN.with_(qemu_rss=50_000_000, guest_ip="10.0.0.7")),
                 [Publish(RUN.with_(qemu_rss=50_000_000, guest_ip="10.0.0.7")),
                  RecordEvent("Started", "VM vm1 is running (tcg)"), WatchActions()],
                 id="started-domain-runs"),
    pytest.param(starting(attempt=1, next_attempt_at=None), LibvirtdLost("keepalive timeout"),
                 NOW, dict(libvirtd_lost="keepalive timeout"), [],
                 id="libvirtd-lost-while-starting-waits-for-the-attempt"),
    pytest.param(starting(attempt=1, next_attempt_at=None, libvirtd_lost="keepalive timeout"),
                 ARRIVED, NOW,
                 dict(qemu_pid=PID, status=RUN.with_(qemu_rss=50_000_000, guest_ip="10.0.0.7")),
                 [Publish(RUN.with_(qemu_rss=50_000_000, guest_ip="10.0.0.7")),
                  RecordEvent("Started", "VM vm1 is running (tcg)"), WatchActions(),
                  KillQemu(PID)], id="libvirtd-lost-while-starting-stops-the-started-vm"),
    pytest.param(starting(attempt=1, next_attempt_at=NOW + 1), DomainStopped("destroyed"), NOW,
                 {}, [], id="failed-attempt-leftover-events-ignored"),

    # --- incoming migration ---------------------------------------------------------------
    pytest.param(waiting(), DomainResumed(), NOW, {},
                 [CloseChannel(), AdoptDomain("src", arrived=True)], id="incoming-vm-arrives"),
    pytest.param(waiting(), replace(ARRIVED, downtime="12"), NOW,
                 dict(qemu_pid=PID, incoming=None,
                      status=RUN.with_(qemu_rss=50_000_000, guest_ip="10.0.0.7")),
                 [Publish(RUN.with_(qemu_rss=50_000_000, guest_ip="10.0.0.7")),
                  RecordEvent("MigratedIn", "VM src arrived from pod src and runs here (tcg, "
                              "guest paused 12 ms)")], id="incoming-vm-runs"),
    pytest.param(waiting(), DomainStopped("failed"), NOW, "exit 3 MigrationFailed: the "
                 "migration from pod src did not complete (domain stopped: failed)", None,
                 id="incoming-vm-stopped"),
    pytest.param(waiting(), LibvirtdLost("error"), NOW, "exit 4 LibvirtdLost: lost libvirtd "
                 "(error) while waiting for VM src", None, id="incoming-libvirtd-lost"),
    pytest.param(waiting(), StopSignal("SIGTERM"), NOW, "exit 0 StoppedBeforeStart: SIGTERM "
                 "arrived before the VM started; it was not started", None,
                 id="incoming-sigterm"),
    pytest.param(waiting(), req("stop"), NOW, "exit 0 StoppedBeforeStart: stop arrived before "
                 "the VM started; it was not started", None, id="incoming-stop-action"),
    pytest.param(waiting(), Tick(), NOW + 600, "exit 3 MigrationFailed: no VM arrived from pod "
                 "src within 600s", None, id="incoming-times-out"),
    pytest.param(waiting(), Tick(), NOW + 599, {}, [], id="incoming-keeps-waiting"),
    pytest.param(waiting(), req("pause"), NOW, dict(last_request=req("pause")), [],
                 id="incoming-other-action-waits"),

    # --- stop: signals, the stop action, the grace -----------------------------------------
    pytest.param(running(), StopSignal("SIGTERM"), NOW, dict(stop_signal="SIGTERM"),
                 [ReadDisruption("SIGTERM")], id="sigterm-asks-why"),
    pytest.param(running(), DisruptionRead("SIGTERM", "EvictionByEvictionAPI: drain"), NOW,
                 dict(stop_cause="EvictionByEvictionAPI: drain", grace_deadline=NOW + 30,
                      status=RUN.with_(phase="ShuttingDown")),
                 [RecordEvent("ShuttingDown", "ACPI shutdown of VM vm1 (EvictionByEvictionAPI: "
                              "drain), 30s grace"),
                  Publish(RUN.with_(phase="ShuttingDown")), Call(Op.SHUTDOWN)],
                 id="sigterm-shuts-down-naming-the-disruption"),
    pytest.param(running(), DisruptionRead("SIGINT", ""), NOW,
                 dict(stop_cause="SIGINT", grace_deadline=NOW + 30,
                      status=RUN.with_(phase="ShuttingDown")),
                 [RecordEvent("ShuttingDown", "ACPI shutdown of VM vm1 (SIGINT), 30s grace"),
                  Publish(RUN.with_(phase="ShuttingDown")), Call(Op.SHUTDOWN)],
                 id="plain-delete-names-the-signal"),
    pytest.param(running("Paused"), StopSignal("SIGTERM"), NOW, dict(stop_signal="SIGTERM"),
                 [ReadDisruption("SIGTERM")], id="sigterm-while-paused"),
    pytest.param(running(**MIGRATING), StopSignal("SIGTERM"), NOW, dict(stop_signal="SIGTERM"),
                 [Call(Op.ABORT_MIGRATION), ReadDisruption("SIGTERM")],
                 id="sigterm-while-migrating-aborts-first"),
    pytest.param(running(**SHUTTING), StopSignal("SIGTERM"), NOW,
                 dict(stop_signal="SIGTERM", forced="a second stop signal (SIGTERM) arrived "
                      "during the ACPI shutdown grace; the guest was destroyed"),
                 [Call(Op.DESTROY)], id="second-sigterm-destroys"),
    pytest.param(running(**SHUTTING, forced=FORCED), StopSignal("SIGTERM"), NOW,
                 dict(stop_signal="SIGTERM"), [], id="third-sigterm-changes-nothing"),
    pytest.param(running(), req("stop"), NOW,
                 dict(last_request=req("stop"), stop_cause="podvirt.io/action stop",
                      grace_deadline=NOW + 30, status=RUN.with_(phase="ShuttingDown")),
                 [RecordEvent("ShuttingDown", "ACPI shutdown of VM vm1 (podvirt.io/action "
                              "stop), 30s grace"),
                  Publish(RUN.with_(phase="ShuttingDown")),
                  Call(Op.SHUTDOWN, answer=req("stop"))], id="stop-action-shuts-down"),
    pytest.param(running(**SHUTTING), req("stop"), NOW, dict(last_request=req("stop")),
                 [Ack("stop", "rv7", True)], id="stop-action-while-shutting-down"),
    pytest.param(running(**SHUTTING), CallReturned(Op.SHUTDOWN, "no ACPI", req("stop")), NOW,
                 {}, [Ack("stop", "rv7", False)], id="stop-action-shutdown-fails"),
    pytest.param(running(**SHUTTING), CallReturned(Op.SHUTDOWN, "", req("stop")), NOW,
                 {}, [Ack("stop", "rv7", True)], id="stop-action-acked"),
    pytest.param(running(**SHUTTING), CallReturned(Op.SHUTDOWN), NOW, {}, [],
                 id="signal-shutdown-not-acked"),
    pytest.param(running(**SHUTTING), Tick(), NOW + 10, dict(forced=FORCED),
                 [Call(Op.DESTROY)], id="grace-expires-destroys"),
    pytest.param(running(**SHUTTING), Tick(), NOW + 9, {}, [CheckHealth()],
                 id="grace-running"),
    pytest.param(running(**SHUTTING, forced=FORCED), Tick(), NOW + 11, {}, [CheckHealth()],
                 id="destroyed-once"),

    # --- the domain stops ---------------------------------------------------------------
    pytest.param(running(**SHUTTING), DomainStopped("shutdown"), NOW,
                 dict(status=RUN.with_(phase="Succeeded", domain_state="shutoff")),
                 [Publish(RUN.with_(phase="Succeeded", domain_state="shutoff")),
                  RecordEvent("Stopped", "VM vm1 shut down (SIGTERM)"), Exit(0)],
                 id="acpi-shutdown-succeeds"),
    pytest.param(running(), DomainStopped("shutdown"), NOW,
                 dict(status=RUN.with_(phase="Succeeded", domain_state="shutoff")),
                 [Publish(RUN.with_(phase="Succeeded", domain_state="shutoff")),
                  RecordEvent("Stopped", "VM vm1 shut down"), Exit(0)],
                 id="guest-powers-off"),
    pytest.param(running(**SHUTTING, forced=FORCED), DomainStopped("destroyed"), NOW,
                 f"exit 3 VMStopped/Stopped: {FORCED}", None, id="destroyed-after-grace"),
    pytest.param(running(**SHUTTING, forced=FORCED), DomainStopped("shutdown"), NOW,
                 f"exit 3 VMStopped/Stopped: {FORCED}", None, id="shutdown-too-late"),
    pytest.param(running(), DomainStopped("destroyed"), NOW,
                 "exit 3 VMStopped/Stopped: domain stopped: destroyed", None,
                 id="destroyed-by-someone"),
    pytest.param(running(), DomainStopped("failed"), NOW, {}, [MeasureMemory("failed")],
                 id="qemu-died-asks-about-oom"),
    pytest.param(running(), MemoryMeasured("failed", MemoryCgroup(1, 2 << 30)), NOW,
                 "exit 3 QEMUExited/Crashed: QEMU (pid 4242) exited unexpectedly; the VM is "
                 "gone (domain stopped: failed)", None, id="qemu-crash"),
    pytest.param(running(), MemoryMeasured("failed", MemoryCgroup(2, 2 << 30)), NOW,
                 "exit 3 OOMKilled/OOMKilled: the launcher container reached its memory limit "
                 "(2Gi for a 1Gi guest) and the kernel's OOM killer killed QEMU (pid 4242); "
                 "the VM is gone", None, id="oom-killed"),
    pytest.param(running(), MemoryMeasured("crashed", MemoryCgroup(None, None)), NOW,
                 "exit 3 VMStopped/Crashed: domain stopped: crashed", None,
                 id="guest-crashed-no-oom-count"),
    pytest.param(running(**SHUTTING, forced=FORCED), DomainStopped("failed"), NOW,
                 f"exit 3 VMStopped/Crashed: {FORCED}", None, id="forced-off-not-measured"),

    # --- libvirtd ---------------------------------------------------------------------------
    pytest.param(running(), LibvirtdLost("end of file on the socket"), NOW,
                 dict(libvirtd_lost="end of file on the socket"), [KillQemu(PID)],
                 id="libvirtd-lost-kills-qemu"),
    pytest.param(running(libvirtd_lost="end of file on the socket"), QemuKilled(True), NOW,
                 "exit 4 LibvirtdLost/LibvirtdLost: lost libvirtd (end of file on the socket); "
                 "the VM cannot be managed and is stopped (QEMU pid 4242 killed)", None,
                 id="libvirtd-lost-qemu-killed"),
    pytest.param(running(libvirtd_lost="error"), QemuKilled(False), NOW,
                 "exit 4 LibvirtdLost/LibvirtdLost: lost libvirtd (error); the VM cannot be "
                 "managed and is stopped", None, id="libvirtd-lost-qemu-gone"),
    pytest.param(running(qemu_pid=None), LibvirtdLost("error"), NOW,
                 "exit 4 LibvirtdLost/LibvirtdLost: lost libvirtd (error); the VM cannot be "
                 "managed and is stopped", None, id="libvirtd-lost-no-qemu-pid"),
    pytest.param(running(), HealthReport(libvirtd_alive=False), NOW,
                 dict(libvirtd_lost="libvirtd process exited"), [KillQemu(PID)],
                 id="libvirtd-process-exited"),

    # --- health, lifecycle ------------------------------------------------------------------
    pytest.param(running(), Tick(), NOW, {}, [CheckHealth()], id="tick-checks-health"),
    pytest.param(running(), HealthReport(passt_alive=False), NOW, dict(passt_lost=True),
                 [RecordEvent("PodNetworkLost", "passt exited: the guest has lost the pod "
                              "network", warning=True)], id="passt-lost-said-once"),
    pytest.param(running(passt_lost=True), HealthReport(passt_alive=False), NOW, {}, [],
                 id="passt-lost-not-repeated"),
    pytest.param(running(), HealthReport(qemu_rss=7), NOW, dict(status=RUN.with_(qemu_rss=7)),
                 [Publish(RUN.with_(qemu_rss=7))], id="rss-reported"),
    pytest.param(running(), DomainSuspended(), NOW,
                 dict(status=RUN.with_(phase="Paused", domain_state="paused")),
                 [Publish(RUN.with_(phase="Paused", domain_state="paused"))], id="paused"),
    pytest.param(running(**MIGRATING), DomainSuspended(), NOW, {}, [],
                 id="migration-last-round-stays-migrating"),
    pytest.param(running("Paused"), DomainResumed(), NOW, dict(status=RUN),
                 [Publish(RUN)], id="resumed"),
    pytest.param(running(**MIGRATING), DomainResumed(), NOW, {}, [],
                 id="resumed-while-migrating"),
    pytest.param(running(), DomainStarted(), NOW, {}, [], id="started-event-ignored"),
    pytest.param(running(), GuestShutdownRequested(), NOW, {}, [],
                 id="guest-shutdown-request-ignored"),

    # --- actions ----------------------------------------------------------------------------
    pytest.param(running(), req("pause"), NOW, dict(last_request=req("pause")),
                 [Call(Op.PAUSE, answer=req("pause"))], id="pause"),
    pytest.param(running("Paused"), req("resume"), NOW, dict(last_request=req("resume")),
                 [Call(Op.RESUME, answer=req("resume"))], id="resume"),
    pytest.param(running(), req("reboot"), NOW, dict(last_request=req("reboot")),
                 [Call(Op.REBOOT, answer=req("reboot"))], id="reboot"),
    pytest.param(running(), CallReturned(Op.REBOOT, "", req("reboot")), NOW, {},
                 [Ack("reboot", "rv7", True)], id="action-done-acked-ok"),
    pytest.param(running(), CallReturned(Op.PAUSE, "not valid", req("pause")), NOW, {},
                 [RecordEvent("ActionFailed", "pause: not valid", warning=True),
                  Ack("pause", "rv7", False)], id="action-failed-event-then-ack"),
    pytest.param(running(), req("frobnicate"), NOW, dict(last_request=req("frobnicate")),
                 [RecordEvent("ActionFailed", "frobnicate: unknown action 'frobnicate' "
                              "(pause, resume, reboot, stop)", warning=True),
                  Ack("frobnicate", "rv7", False)], id="unknown-action"),
    pytest.param(running(last_request=req("reboot")), req("reboot"), NOW, {}, [],
                 id="duplicate-token-ignored"),
    pytest.param(running(last_request=req("reboot", "rv6")), req("reboot"), NOW,
                 dict(last_request=req("reboot")), [Call(Op.REBOOT, answer=req("reboot"))],
                 id="same-action-new-token"),

    # --- live migration, source side --------------------------------------------------------
    pytest.param(running(), req("migrate"), NOW, dict(last_request=req("migrate")),
                 [PrepareMigration("rv7")], id="migrate-prepares"),
    pytest.param(running("Paused"), req("migrate"), NOW, dict(last_request=req("migrate")),
                 [RecordEvent("ActionFailed", "migrate: the VM is Paused, not Running",
                              warning=True), Ack("migrate", "rv7", False)],
                 id="migrate-only-when-running"),
    pytest.param(running(**MIGRATING), req("migrate"), NOW, dict(last_request=req("migrate")),
                 [RecordEvent("ActionFailed", "migrate: a migration to pod tgt is already "
                              "running", warning=True), Ack("migrate", "rv7", False)],
                 id="migrate-twice"),
    pytest.param(running(), MigrationRefused("rv7", "target pod tgt cannot be read"), NOW, {},
                 [RecordEvent("ActionFailed", "migrate: target pod tgt cannot be read",
                              warning=True), Ack("migrate", "rv7", False)],
                 id="migrate-refused"),
    pytest.param(running(), MigrationReady("rv7", "tgt", "n2", "CERT"), NOW,
                 dict(migration=Migration("rv7", "tgt", NOW),
                      status=RUN.with_(phase="Migrating", migration_cert="CERT")),
                 [Publish(RUN.with_(phase="Migrating", migration_cert="CERT")),
                  RecordEvent("Migrating", "live migration of VM vm1 to pod tgt on node n2"),
                  Migrate()], id="migrate-starts"),
    pytest.param(running(**MIGRATING), MigrationEnded(), NOW, {}, [],
                 id="migrate-call-returned-ok-wait-for-stopped"),
    pytest.param(running(**MIGRATING), MigrationEnded("job aborted"), NOW,
                 dict(migration=None, status=RUN),
                 [CloseChannel(), Publish(RUN),
                  RecordEvent("MigrationFailed", "VM vm1 keeps running here; the migration to "
                              "pod tgt failed: job aborted", warning=True),
                  Ack("migrate", "rv5", False)], id="migration-fails-vm-stays"),
    pytest.param(running(**MIGRATING), DomainStopped("migrated"), NOW,
                 dict(status=RUN.with_(phase="Succeeded", domain_state="shutoff",
                                       failure_reason="Migrated",
                                       failure_message="VM vm1 migrated live to pod tgt in "
                                                       "4.5s; it runs there now")),
                 [CloseChannel(), Ack("migrate", "rv5", True),
                  Publish(RUN.with_(phase="Succeeded", domain_state="shutoff",
                                    failure_reason="Migrated",
                                    failure_message="VM vm1 migrated live to pod tgt in 4.5s; "
                                                    "it runs there now")),
                  RecordEvent("Migrated", "VM vm1 migrated live to pod tgt in 4.5s; it runs "
                              "there now"), Exit(0)], id="migrated"),
    pytest.param(running(), req("migrate-cancel"), NOW,
                 dict(last_request=req("migrate-cancel")),
                 [RecordEvent("ActionFailed", "migrate-cancel: no migration is running",
                              warning=True), Ack("migrate-cancel", "rv7", False)],
                 id="cancel-without-migration"),
    pytest.param(running(**MIGRATING), req("migrate-cancel"), NOW,
                 dict(last_request=req("migrate-cancel")),
                 [Call(Op.ABORT_MIGRATION, answer=req("migrate-cancel"))], id="cancel"),
    pytest.param(running(**MIGRATING), CallReturned(Op.ABORT_MIGRATION, "no job",
                                                    req("migrate-cancel")), NOW, {},
                 [RecordEvent("ActionFailed", "migrate-cancel: no job", warning=True),
                  Ack("migrate-cancel", "rv7", False)], id="cancel-fails"),
]


@pytest.mark.parametrize(("state", "event", "now", "changes", "commands"), CASES)
def test_transition(state, event, now, changes, commands):
    after, out = machine.step(state, event, now)
    acts = [c for c in out if not isinstance(c, Log)]
    if isinstance(changes, str):      # "exit N Reason[/EventReason]: message"
        head, message = changes.split(": ", 1)
        _exit, code, reasons = head.split(" ")
        reason, _, event_reason = reasons.partition("/")
        assert after.phase == "Failed"
        assert (after.status.failure_reason, after.status.failure_message) == (reason, message)
        assert acts == [Publish(after.status),
                             RecordEvent(event_reason or reason, message, warning=True),
                             Exit(int(code))]
        assert after.status == state.status.with_(
            **{f: getattr(after.status, f) for f in ("phase", "failure_reason",
                                                     "failure_message", "domain_state")})
        return
    assert acts == commands
    assert after == replace(state, **changes)


def test_every_failure_is_logged():
    _, out = machine.step(running(), MemoryMeasured("failed", MemoryCgroup(1, None)), NOW)
    assert Log(40, "QEMU (pid 4242) exited unexpectedly; the VM is gone (domain stopped: "
                   "failed)") in out


@pytest.mark.parametrize(("state", "now", "wait"), [
    pytest.param(running(), NOW, 10.0, id="running-status-interval"),
    pytest.param(starting(), NOW, 0.0, id="first-attempt-now"),
    pytest.param(starting(attempt=1, next_attempt_at=NOW + 2), NOW, 2.0, id="retry-backoff"),
    pytest.param(running(**SHUTTING), NOW, 10.0, id="grace-end-is-status-interval"),
    pytest.param(running(**SHUTTING), NOW + 7, 3.0, id="grace-end-first"),
    pytest.param(running(**SHUTTING, forced=FORCED), NOW + 20, 10.0,
                 id="after-destroy-no-busy-wait"),
    pytest.param(waiting(), NOW + 595, 5.0, id="incoming-deadline"),
    pytest.param(waiting(), NOW + 700, 0.0, id="incoming-overdue"),
])
def test_next_wakeup(state, now, wait):
    assert machine.next_wakeup(state, now, 10.0) == pytest.approx(wait)


def test_incoming_state_starts_waiting():
    assert waiting().incoming == Incoming("src", NOW + 600, 600)
    assert waiting().phase == "Incoming"


def _target(phase="Incoming", source="vm1", cert="CERT", ip="10.0.0.9"):
    annotations = {"podvirt.io/phase": phase, "podvirt.io/migration-source": source,
                   "podvirt.io/migration-cert": cert}
    return PodView({k: v for k, v in annotations.items() if v}, ip, "n2")


ME = PodView({"podvirt.io/migration-target": "tgt"}, "10.0.0.8", "n1")


@pytest.mark.parametrize(("me", "name", "target", "refusal"), [
    pytest.param(ME, "tgt", _target(), "", id="ready"),
    pytest.param(None, "", None, "the launcher cannot read its own pod", id="own-pod-unreadable"),
    pytest.param(ME, "", None, "podvirt.io/migration-target names no target pod",
                 id="no-target-named"),
    pytest.param(ME, "tgt", None, "target pod tgt cannot be read", id="target-unreadable"),
    pytest.param(ME, "tgt", _target(source="other"), "pod tgt is not a migration target for "
                 "this VM (podvirt.io/migration-source is not 'vm1')", id="target-of-another"),
    pytest.param(ME, "tgt", _target(phase="Starting"), "target pod tgt is not waiting for a "
                 "migration yet (phase Starting)", id="target-not-waiting"),
    pytest.param(ME, "tgt", _target(cert=""), "target pod tgt is not waiting for a migration "
                 "yet (phase Incoming)", id="target-without-cert"),
    pytest.param(ME, "tgt", _target(ip=""), "target pod tgt is not waiting for a migration "
                 "yet (phase Incoming)", id="target-without-ip"),
])
def test_migration_refusal(me, name, target, refusal):
    assert migration_refusal(me, name, target, "vm1") == refusal
