"""The `pod` fixture: a fresh pod directory under /tmp/podvirt (a path VM specs may name)
and the launcher processes a test started there, killed if still running at the end."""

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.launcher.realguest import LauncherProcess


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
    # A launcher killed mid-test leaves its children (libvirtd, QEMU, passt): they all
    # name the pod directory on their command lines.
    subprocess.run(["pkill", "-9", "-f", str(path)], capture_output=True, timeout=10)
    shutil.rmtree(path, ignore_errors=True)
