"""Faults under the launcher with real libvirtd + QEMU (TCG): QEMU killed beneath it, and
SIGTERM at the two awkward moments, while the VM is starting and while it is shutting
down. Each must end quickly, with an exit code and a report naming what happened, and
leave no QEMU or libvirtd behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.libvirt.realguest import LauncherProcess, _alive

pytestmark = pytest.mark.timeout(60)


def _pids(path: Path) -> dict[str, int]:
    """QEMU's and libvirtd's pids from the private daemons' run directory. QEMU's file is
    named after the domain (LauncherProcess's POD_NAME); run/qemu/driver.pid is libvirtd's."""
    run = path / "launcher/libvirt/run"
    qemu = run / "qemu" / f"vm-{path.name[-6:]}.pid"
    return {"qemu": int(qemu.read_text()), "libvirtd": int((run / "libvirtd.pid").read_text())}


def _gone(pids: dict[str, int], timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    return [name for name, p in pids.items() if _alive(p)]


def _wait_for_log(launcher: LauncherProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in launcher.stderr):
        if launcher.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"launcher never logged {text!r}:\n{''.join(launcher.stderr)}")
        time.sleep(0.01)


def test_qemu_killed_fails_naming_qemu(pod):
    path, procs = pod
    launcher = LauncherProcess(path, "podvirt.sleep=wait")
    procs.append(launcher)
    launcher.wait_for_output("PODVIRT-GUEST-UP")
    pids = _pids(path)
    os.kill(pids["qemu"], signal.SIGKILL)
    t0 = time.monotonic()
    code = launcher.wait(timeout=20)
    print(f"\nQEMU SIGKILL -> launcher exit {code} in {time.monotonic() - t0:.1f}s")
    final = launcher.statuses()[-1]
    assert code == 3, "".join(launcher.stderr)
    assert final["podvirt.io/phase"] == "Failed"
    assert final["podvirt.io/failure-reason"] == "QEMUExited"
    assert "QEMU" in final["podvirt.io/failure-message"] and str(pids["qemu"]) in \
        final["podvirt.io/failure-message"]
    assert not _gone(pids), "libvirtd outlived its launcher"


def test_sigterm_while_starting_does_not_start_the_vm(pod):
    path, procs = pod
    launcher = LauncherProcess(path, "podvirt.sleep=wait")
    procs.append(launcher)
    # Logged just before the private daemons start: the domain is not defined yet.
    _wait_for_log(launcher, "starting private virtlogd and libvirtd")
    launcher.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    code = launcher.wait(timeout=20)
    print(f"\nSIGTERM while starting -> exit {code} in {time.monotonic() - t0:.1f}s")
    phases = [s["podvirt.io/phase"] for s in launcher.statuses()]
    final = launcher.statuses()[-1]
    assert code == 0, "".join(launcher.stderr)
    assert "Running" not in phases and phases[-1] == "Failed", phases
    assert final["podvirt.io/failure-reason"] == "StoppedBeforeStart"
    assert "SIGTERM" in final["podvirt.io/failure-message"]
    assert not any("PODVIRT-GUEST-UP" in line for line in launcher.stdout)
    assert not any(path.glob("launcher/libvirt/run/qemu/vm-*.pid")), "a domain was started"
    pid_file = path / "launcher/libvirt/run/libvirtd.pid"
    if pid_file.exists():   # the daemons came up before the signal: they must be gone
        assert not _gone({"libvirtd": int(pid_file.read_text())})


def test_second_sigterm_during_acpi_grace_destroys_the_guest(pod):
    path, procs = pod
    # acpi=off: the guest never sees the power button, so the grace would run its 30s.
    launcher = LauncherProcess(path, "podvirt.sleep=wait acpi=off", grace="30s")
    procs.append(launcher)
    launcher.wait_for_output("PODVIRT-GUEST-UP")
    pids = _pids(path)
    launcher.proc.send_signal(signal.SIGTERM)
    _wait_for_log(launcher, "ACPI shutdown, 30s grace")
    time.sleep(0.5)
    t0 = time.monotonic()
    launcher.proc.send_signal(signal.SIGTERM)
    code = launcher.wait(timeout=15)
    print(f"\nsecond SIGTERM -> exit {code} in {time.monotonic() - t0:.1f}s")
    phases = [s["podvirt.io/phase"] for s in launcher.statuses()]
    final = launcher.statuses()[-1]
    assert code == 3, "".join(launcher.stderr)
    assert phases[-2:] == ["ShuttingDown", "Failed"], phases
    assert final["podvirt.io/failure-reason"] == "VMStopped"
    assert "second stop signal (SIGTERM)" in final["podvirt.io/failure-message"]
    assert not _gone(pids), "QEMU or libvirtd outlived the launcher"
