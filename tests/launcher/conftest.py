"""The `pod` fixture: a fresh pod directory under /tmp/podvirt (a path VM specs may name)
and the launcher processes a test started there, killed if still running at the end."""

import os
import shutil
import signal
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
        # A launcher killed mid-test would leave its children: its process group holds
        # libvirtd, virtlogd and passt; QEMU (daemonized by libvirt) names the pod
        # directory on its command line.
        try:
            os.killpg(p.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.proc.wait()
    subprocess.run(["pkill", "-9", "-f", str(path)], capture_output=True, timeout=10)
    shutil.rmtree(path, ignore_errors=True)
