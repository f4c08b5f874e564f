"""The launcher's loop carrying out supervision commands, against an injected fake
hypervisor, reporter and clock: no libvirt, the real Launcher code."""

import queue
from pathlib import Path

import pytest

from podvirt.launcher.report import VMStatus
from podvirt.launcher.run import LaunchConfig, Launcher
from podvirt.launcher.supervision import machine
from podvirt.launcher.supervision.events import DomainStarted, DomainStopped, StopSignal
from podvirt.launcher.supervision.machine import Guest
from podvirt.launcher.virt import LibvirtError


class FakeConn:
    def getURI(self) -> str:
        return "fake:///"


class FakeHypervisor:
    """Answers as libvirt would, putting lifecycle events on the launcher's inbox."""

    def __init__(self, uri: str, inbox: queue.Queue, *, failures: int = 0,
                 on_start=(), on_shutdown=(DomainStopped("shutdown"),),
                 on_reboot=()):
        self.uri, self.inbox, self.conn = uri, inbox, FakeConn()
        self.failures, self.on_start = failures, on_start
        self.on_shutdown, self.on_reboot = on_shutdown, on_reboot
        self.calls: list[str] = []

    def _emit(self, events) -> None:
        for event in events:
            self.inbox.put(event)

    def define_and_start(self, xml: str) -> None:
        self.calls.append("start")
        if self.failures:
            self.failures -= 1
            raise LibvirtError("start domain: internal error: no QEMU today")
        self._emit((DomainStarted(), *self.on_start))

    def cleanup_failed_start(self) -> None:
        self.calls.append("cleanup")

    def state(self) -> str:
        return "running"

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        self._emit(self.on_shutdown)

    def destroy(self) -> None:
        self.calls.append("destroy")
        self._emit((DomainStopped("destroyed"),))

    def reboot(self) -> None:
        self.calls.append("reboot")
        self._emit(self.on_reboot)

    def undefine(self) -> None:
        self.calls.append("undefine")

    def close(self) -> None:
        pass


class RecordingReporter:
    def __init__(self, *, actions=(), disruption=""):
        self.statuses: list[VMStatus] = []
        self.events: list[tuple[str, str, bool]] = []
        self.acks: list[str] = []
        self.actions, self._disruption = actions, disruption

    def publish(self, status):
        self.statuses.append(status)

    def event(self, reason, message, *, warning=False):
        self.events.append((reason, message, warning))

    def ack(self, action, token, ok):
        self.acks.append(f"{action}:{token}:{'ok' if ok else 'error'}")

    def clear_ack(self):
        pass

    def watch_actions(self, on_action):
        for action, token in self.actions:
            on_action(action, token)

    def disruption(self):
        return self._disruption

    def peer(self, name=None):
        return None

    def close(self):
        pass


class SteppingClock:
    """Each reading is `step` seconds after the last: deadlines pass without waiting."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _run(tmp_path: Path, reporter, clock=None, **hv) -> tuple[int, FakeHypervisor]:
    cfg = LaunchConfig(spec_file=tmp_path / "annotations", work_dir=tmp_path,
                       connect="fake:///", status_interval=0.05, start_retry_delay=0,
                       cgroup_root=tmp_path / "no-cgroup")
    made: list[FakeHypervisor] = []

    def connect(uri, inbox):
        made.append(FakeHypervisor(uri, inbox, **hv))
        return made[0]
    launcher = Launcher(cfg, reporter, connect_hypervisor=connect,
                        **({"clock": clock} if clock else {}))
    launcher.status = VMStatus("Starting", accel="tcg")
    launcher.xml = "<domain/>"
    guest = Guest(name="vm1", shutdown_grace_seconds=30, memory_bytes=1 << 30,
                  start_attempts=2)
    try:
        launcher._connect()
        code = launcher._supervise(machine.starting(guest, launcher.status, launcher.clock()))
    finally:
        launcher._teardown()
    return code, made[0]


@pytest.mark.timeout(20)
def test_retry_then_sigterm_ends_in_an_acpi_shutdown(tmp_path):
    reporter = RecordingReporter(disruption="EvictionByEvictionAPI: Eviction API")
    code, hv = _run(tmp_path, reporter, failures=1, on_start=(StopSignal("SIGTERM"),))
    assert code == 0
    assert hv.calls == ["start", "cleanup", "start", "shutdown", "cleanup", "undefine"]
    assert [s.phase for s in reporter.statuses] == ["Running", "ShuttingDown", "Succeeded"]
    assert [e[0] for e in reporter.events] == ["StartAttemptFailed", "Started", "ShuttingDown",
                                               "Stopped"]
    assert reporter.events[-1][1] == "VM vm1 shut down (EvictionByEvictionAPI: Eviction API)"


@pytest.mark.timeout(20)
def test_grace_expiry_destroys_on_the_injected_clock(tmp_path):
    reporter = RecordingReporter()
    code, hv = _run(tmp_path, reporter, clock=SteppingClock(7.0),
                    on_start=(StopSignal("SIGTERM"),), on_shutdown=())
    assert code == 3
    assert hv.calls[:3] == ["start", "shutdown", "destroy"]
    final = reporter.statuses[-1]
    assert (final.phase, final.failure_reason, final.failure_message) == (
        "Failed", "VMStopped", "guest did not shut down within 30s and was destroyed")


@pytest.mark.timeout(20)
def test_actions_are_carried_out_and_acknowledged(tmp_path):
    reporter = RecordingReporter(actions=[("reboot", "rv1"), ("fly", "rv2")])
    code, hv = _run(tmp_path, reporter, on_reboot=(DomainStopped("crashed"),))
    assert code == 3
    assert "reboot" in hv.calls
    assert reporter.acks == ["reboot:rv1:ok", "fly:rv2:error"]
    assert ("ActionFailed", "fly: unknown action 'fly' (pause, resume, reboot, stop)",
            True) in reporter.events
    assert reporter.statuses[-1].failure_message == "domain stopped: crashed"


@pytest.mark.timeout(20)
def test_all_attempts_failing_is_a_start_failure(tmp_path):
    reporter = RecordingReporter()
    code, hv = _run(tmp_path, reporter, failures=5)
    assert code == 1
    assert hv.calls.count("start") == 2
    final = reporter.statuses[-1]
    assert (final.phase, final.failure_reason) == ("Failed", "VMStartFailed")
    assert final.failure_message == ("VM did not start after 2 attempts: start domain: "
                                     "internal error: no QEMU today")
