"""The launcher's Prometheus endpoint: a real guest scraped over HTTP twice (the conversion of
libvirt's stats record: tests/unit/launcher/test_metrics.py)."""

import os
import shutil
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.libvirt.realguest import LauncherProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        families = text_string_to_metric_families(resp.read().decode())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families for s in family.samples}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd"), reason="needs root")
def test_a_running_guest_is_scraped_and_its_cpu_time_grows(pod):
    path, procs = pod
    port = _free_port()
    launcher = LauncherProcess(path, "podvirt.sleep=wait", args=("--metrics-port", str(port)))
    procs.append(launcher)
    launcher.wait_for_output("PODVIRT-GUEST-UP", timeout=90)
    vm = ("vm", LauncherProcess.pod_name(path))
    first = _scrape(port)
    assert first[("podvirt_vm_state", (("state", "running"), vm))] == 1
    cpu = ("podvirt_vm_cpu_seconds_total", (vm,))
    assert first[cpu] > 0
    # An idle guest's QEMU can take 2 s to add to cpu.time (CI saw 2.89 s twice, 2 s apart:
    # it advances in steps): wait for it, within bounds.
    deadline = time.monotonic() + 20
    while (second := _scrape(port))[cpu] == first[cpu] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert second[cpu] > first[cpu]
    assert second[("podvirt_vm_vcpu_seconds_total", (("vcpu", "0"), vm))] > 0
    assert second[("podvirt_vm_memory_bytes", (vm,))] == 128 * 2**20
    launcher.proc.terminate()
    assert launcher.wait(60) == 0
    with pytest.raises(OSError):
        _scrape(port)          # the endpoint goes with the launcher
