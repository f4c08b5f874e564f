"""The `pod` fixture: a fresh pod directory under /tmp/podvirt (a path VM specs may name)
and the launcher processes a test started there, killed if still running at the end."""

import shutil
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
    shutil.rmtree(path, ignore_errors=True)
