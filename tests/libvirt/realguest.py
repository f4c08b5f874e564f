"""A `podvirt launcher run` subprocess booting hack/guest's busybox guest, shared by the
libvirt tier's tests (the `pod` fixture in conftest.py stops what a test left running)."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.guest import ensure_guest
from podvirt.vmspec.downward import render_annotations_file

CACHE = Path("/tmp/podvirt/libvirt-cache")


class LauncherProcess:
    def __init__(self, pod: Path, kernel_args: str, grace: str = "20s", accel: str = "tcg",
                 annotations: dict[str, str] | None = None, netns: str | None = None,
                 args: tuple[str, ...] = ()):
        """`annotations` add to the tiny guest's; `netns` runs the launcher in that network
        namespace, as in a pod."""
        guest = ensure_guest().install(pod / "guest")
        (pod / "annotations").write_text(render_annotations_file({
            "podvirt.io/memory": "128Mi", "podvirt.io/allow-emulation": "true",
            "podvirt.io/kernel": str(guest.kernel), "podvirt.io/initrd": str(guest.initrd),
            "podvirt.io/kernel-args": f"console=ttyS0 quiet {kernel_args}",
            "podvirt.io/shutdown-grace": grace, "podvirt.io/start-retries": "0",
            **(annotations or {})}))
        self.pod, self.report = pod, pod / "report.jsonl"
        self.started = time.monotonic()
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "podvirt.cli", "launcher", "run",
             "--spec", str(pod / "annotations"), "--pod-root", str(pod), "--accel", accel,
             "--libvirt-cache", str(CACHE), "--report-json", str(self.report), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "POD_NAME": self.pod_name(pod)})
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=lambda s=stream, o=sink: o.extend(iter(s.readline, "")),
                             daemon=True).start()

    @staticmethod
    def pod_name(pod: Path) -> str:
        return "vm-" + pod.name[-6:]

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


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (its parent libvirtd is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
