"""The launcher against real libvirtd + QEMU (TCG unless KVM is usable), booting hack/guest's busybox guest.

Each test runs `podvirt launcher run` as a subprocess with its own private daemons
and a shared QEMU capabilities cache, and reads the guest's console from its stdout
and the status from its JSON-lines report.
"""

import os
import shutil
import signal
import time

import pytest

from tests.libvirt.realguest import LauncherProcess, _alive

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd")
                       or not shutil.which("qemu-system-x86_64"),
                       reason="needs root, libvirtd and qemu-system-x86_64"),
]


def test_boot_to_poweroff_reports_running_then_succeeded(pod):
    path, procs = pod
    launcher = LauncherProcess(path, "podvirt.sleep=1", accel="auto")   # the default
    procs.append(launcher)
    up = launcher.wait_for_output("PODVIRT-GUEST-UP")
    assert launcher.wait() == 0, "".join(launcher.stderr)
    total = time.monotonic() - launcher.started
    print(f"\ne2e: marker after {up:.1f}s, exit after {total:.1f}s")
    phases = [s["podvirt.io/phase"] for s in launcher.statuses()]
    assert phases[0] == "Starting" and phases[-1] == "Succeeded" and "Running" in phases
    running = next(s for s in launcher.statuses() if s["podvirt.io/phase"] == "Running")
    # auto follows the KVM check the launcher logged (TCG where KVM guests hang).
    verdict = next(line for line in launcher.stderr if "KVM usable" in line
                   or "KVM unusable" in line)
    assert running["podvirt.io/accel"] == ("tcg" if "KVM unusable" in verdict else "kvm")
    assert running["podvirt.io/domain-state"] == "running"
    assert int(running["podvirt.io/qemu-rss"]) > 10 * 2**20


def test_sigterm_shuts_down_over_acpi_within_grace(pod):
    path, procs = pod
    launcher = LauncherProcess(path, "podvirt.sleep=wait", grace="30s")
    procs.append(launcher)
    launcher.wait_for_output("PODVIRT-GUEST-UP")
    time.sleep(0.5)   # the power-button watcher starts with the marker
    t0 = time.monotonic()
    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=40) == 0, "".join(launcher.stderr)
    print(f"\nSIGTERM -> exit in {time.monotonic() - t0:.1f}s")
    assert any("PODVIRT-GUEST-ACPI-SHUTDOWN" in line for line in launcher.stdout)
    phases = [s["podvirt.io/phase"] for s in launcher.statuses()]
    assert phases[-2:] == ["ShuttingDown", "Succeeded"]


def test_libvirtd_killed_exits_nonzero_naming_libvirtd(pod):
    path, procs = pod
    launcher = LauncherProcess(path, "podvirt.sleep=wait")
    procs.append(launcher)
    launcher.wait_for_output("PODVIRT-GUEST-UP")
    run_dir = path / "launcher/libvirt/run"
    libvirtd_pid = int((run_dir / "libvirtd.pid").read_text())
    # The domain's own pid file (named after POD_NAME); run/qemu/driver.pid is libvirtd's.
    qemu_pid = int(next((run_dir / "qemu").glob("vm-*.pid")).read_text())
    os.kill(libvirtd_pid, signal.SIGKILL)
    code = launcher.wait(timeout=30)
    assert code == 4
    assert "libvirtd" in "".join(launcher.stderr)
    final = launcher.statuses()[-1]
    assert final["podvirt.io/failure-reason"] == "LibvirtdLost"
    deadline = time.monotonic() + 10
    while _alive(qemu_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(qemu_pid), "QEMU outlived its launcher"
