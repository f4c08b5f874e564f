"""The launcher against real libvirtd + QEMU (TCG unless KVM is usable), booting hack/guest's busybox guest.

Each test runs `podvirt launcher run` as a subprocess with its own private daemons
and a shared QEMU capabilities cache, and reads the guest's console from its stdout
and the status from its JSON-lines report.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from podvirt.launcher.devguest import ensure_guest
from podvirt.vmspec.downward import render_annotations_file

pytestmark = [
    pytest.mark.libvirt,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd")
                       or not shutil.which("qemu-system-x86_64"),
                       reason="needs root, libvirtd and qemu-system-x86_64"),
]
CACHE = Path("/tmp/podvirt/libvirt-cache")


class LauncherProcess:
    def __init__(self, pod: Path, kernel_args: str, grace: str = "20s", accel: str = "tcg"):
        guest = ensure_guest().install(pod / "guest")
        (pod / "annotations").write_text(render_annotations_file({
            "podvirt.io/memory": "128Mi", "podvirt.io/allow-emulation": "true",
            "podvirt.io/kernel": str(guest.kernel), "podvirt.io/initrd": str(guest.initrd),
            "podvirt.io/kernel-args": f"console=ttyS0 quiet {kernel_args}",
            "podvirt.io/shutdown-grace": grace, "podvirt.io/start-retries": "0"}))
        self.pod, self.report = pod, pod / "report.jsonl"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "podvirt.cli", "launcher", "run",
             "--spec", str(pod / "annotations"), "--pod-root", str(pod), "--accel", accel,
             "--libvirt-cache", str(CACHE), "--report-json", str(self.report)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "POD_NAME": "vm-" + pod.name[-6:]})
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=lambda s=stream, o=sink: o.extend(iter(s.readline, "")),
                             daemon=True).start()

    def wait_for_output(self, marker: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while not any(marker in line for line in self.stdout):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {marker!r} on stdout; stderr:\n{''.join(self.stderr)}")
            time.sleep(0.05)
        return time.monotonic() - self.started

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.2)   # let the reader threads drain
        return code

    def statuses(self) -> list[dict]:
        return [r["annotations"] for r in map(json.loads, self.report.read_text().splitlines())
                if r["kind"] == "status"]


@pytest.fixture
def pod():
    path = Path("/tmp/podvirt") / f"t-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    procs: list[LauncherProcess] = []
    yield path, procs
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
    shutil.rmtree(path, ignore_errors=True)


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


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (its parent libvirtd is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
