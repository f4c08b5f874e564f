"""The launcher against a pod stored in the real API server, with a real QEMU guest.

A VM pod goes through the webhook and the scheduler (kwok plays its node); the launcher
then runs here as kubelet would run it there, reading the stored pod's annotations as its
downward-API file and reporting through the API: annotations, Events, and the requested
pause, resume, reboot and stop, each acknowledged (an impossible action with an error ack
and an ActionFailed Event).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podvirt.vmspec import keys as k
from podvirt.vmspec.downward import render_annotations_file

pytestmark = [
    pytest.mark.libvirt,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd")
                       or not shutil.which("qemu-system-x86_64"),
                       reason="needs root, libvirtd and qemu-system-x86_64"),
]
GUEST_DIR = Path("/tmp/podvirt/e2e-guest")


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_launcher_reports_to_its_pod_and_obeys_actions(cluster, core, namespace, apply, wait_pod,
                                                    tmp_path):
    from tests.guest import ensure_guest

    guest = ensure_guest().install(GUEST_DIR)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "vm-real", "labels": {k.OPT_IN_LABEL: "true"}, "annotations": {
               k.MEMORY: "128Mi", k.ALLOW_EMULATION: "true", k.KERNEL: str(guest.kernel),
               k.INITRD: str(guest.initrd), k.SHUTDOWN_GRACE: "20s",
               k.KERNEL_ARGS: "console=ttyS0 quiet podvirt.sleep=wait"}},
           "spec": {"containers": []}}
    apply(pod, namespace, check=True)
    stored = wait_pod(namespace, "vm-real", lambda p: bool(p.spec.node_name))

    spec_file = tmp_path / "annotations"
    spec_file.write_text(render_annotations_file(stored.metadata.annotations))
    env = dict(os.environ, POD_NAME="vm-real", POD_NAMESPACE=namespace,
               NODE_NAME=stored.spec.node_name)
    log = (tmp_path / "launcher.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "podvirt.cli", "launcher", "run", "--spec", str(spec_file),
         "--kubeconfig", str(cluster.kubeconfig), "--work-dir", str(tmp_path / "work"),
         "--accel", "tcg", "--libvirt-cache", "/tmp/podvirt/libvirt-cache"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def annotations():
            return core.read_namespaced_pod("vm-real", namespace).metadata.annotations or {}

        running = _until(lambda: (a := annotations()).get(k.PHASE) == "Running" and a,
                         60, "phase Running on the pod")
        assert running[k.ACCEL] == "tcg" and running[k.NODE] == stored.spec.node_name
        assert running[k.DOMAIN_STATE] == "running" and running[k.STARTED_AT]
        assert int(running[k.QEMU_RSS]) > 10 * 2**20
        conditions = core.read_namespaced_pod_status("vm-real", namespace).status.conditions
        ready = [c for c in conditions or () if c.type == k.VM_READY_CONDITION]
        assert ready and ready[0].status == "True", conditions
        _until(lambda: "PODVIRT-GUEST-UP" in (tmp_path / "launcher.log").read_text(), 30,
               "the guest's marker on the launcher's stdout")

        def request(action: str) -> dict:
            core.patch_namespaced_pod("vm-real", namespace,
                                      {"metadata": {"annotations": {k.ACTION: action}}})
            return _until(lambda: (a := annotations()).get(k.ACTION_ACK, "").startswith(
                action + ":") and a, 30, f"the {action} acknowledgement")

        paused = request("pause")
        assert paused[k.ACTION_ACK].endswith(":ok")
        _until(lambda: annotations().get(k.DOMAIN_STATE) == "paused", 15, "domain paused")
        assert annotations()[k.PHASE] == "Paused"
        request("resume")
        _until(lambda: annotations().get(k.DOMAIN_STATE) == "running", 15, "domain running")
        request("reboot")
        _until(lambda: (tmp_path / "launcher.log").read_text().count("PODVIRT-GUEST-UP") >= 2,
               60, "the guest's marker again after the reboot")

        # An action the launcher cannot carry out: an error ack, and the reason in an Event.
        assert request("hibernate")[k.ACTION_ACK].endswith(":error")
        failed = core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name=vm-real,"
                                      f"reason={k.EVENT_ACTION_FAILED}").items
        assert [e.type for e in failed] == ["Warning"]
        assert failed[0].message.startswith("hibernate: unknown action"), failed[0].message

        ack = request("stop")[k.ACTION_ACK]
        assert ack.endswith(":ok")
        assert proc.wait(timeout=40) == 0
        final = annotations()
        assert final[k.PHASE] == "Succeeded" and final[k.DOMAIN_STATE] == "shutoff"
        assert "PODVIRT-GUEST-ACPI-SHUTDOWN" in (tmp_path / "launcher.log").read_text()

        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=vm-real").items
        reasons = {e.reason for e in events}
        assert {"Started", "Stopped"} <= reasons, reasons
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
