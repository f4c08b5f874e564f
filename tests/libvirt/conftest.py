"""The libvirt tier: `podvirt launcher run` against real libvirtd + QEMU (TCG unless KVM is
usable). Every test here is marked `libvirt` (by tests/conftest.py).

The `pod` fixture: a fresh pod directory under /tmp/podvirt (a path VM specs may name)
and the launcher processes a test started there, killed if still running at the end."""

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.libvirt.realguest import LauncherProcess


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
    # A launcher killed mid-test leaves its children: libvirtd, virtlogd (sessions of their
    # own) and passt inherit its POD_NAME; QEMU (libvirt clears its environment) names the
    # pod directory on its command line.
    for pid in _inheriting(f"POD_NAME={LauncherProcess.pod_name(path)}"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["pkill", "-9", "-f", str(path)], capture_output=True, timeout=10)
    shutil.rmtree(path, ignore_errors=True)


def _inheriting(variable: str) -> list[int]:
    needle = variable.encode() + b"\0"
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            pass
    return found
