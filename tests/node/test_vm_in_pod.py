"""VMs booted for real in launcher pods on the local cluster's real node."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from podvirt.cluster.node import NODE_NAME
from podvirt.launcher.kvmboot import MARKER
from podvirt.vmspec import keys as k
from podvirt.vmspec.overhead import DEFAULT_COSTS
from tests.node.conftest import NAMESPACE
from tests.node.vmpods import CONSOLE_TIMEOUT, delete as _delete, gone as _gone, phase as _phase, \
    to_yaml as _yaml, wait_console as _wait_console


DEPLOYMENT = Path(__file__).resolve().parents[2] / "examples" / "vm-deployment.yaml"


def _qemu_running(name: str) -> bool:
    """A QEMU process of this VM anywhere on the machine (the pod's pid namespace is
    still the host's process table)."""
    out = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True).stdout
    return any(f"guest={NAMESPACE}_{name}" in line or f"-name guest={name}" in line
               or f" {name} " in line for line in out.splitlines())


def test_tiny_guest_boots_in_its_pod_and_shuts_down_on_delete(cluster, core, vm_pod, wait_pod,
                                                              logs):
    name = "vm-boot"
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=_yaml(vm_pod(name)))
    try:
        pod = wait_pod(name, lambda p: _phase(p) in ("Running", "Failed"), CONSOLE_TIMEOUT)
        ann = pod.metadata.annotations
        assert _phase(pod) == "Running", (ann.get(k.FAILURE_REASON), ann.get(k.FAILURE_MESSAGE))
        assert pod.spec.node_name == NODE_NAME
        assert pod.status.phase == "Running"
        assert ann[k.ACCEL] == "tcg" and ann[k.NODE] == NODE_NAME
        console = _wait_console(logs, name)
        assert "Linux version" in console or MARKER.decode() in console
        launcher = next(c for c in pod.spec.containers if c.name == "launcher")
        assert launcher.security_context.privileged is False
        assert launcher.security_context.capabilities.drop == ["ALL"]
        # What the pod's cgroup enforces is what the webhook computed.
        assert launcher.resources.limits["memory"] == launcher.resources.requests["memory"]
    finally:
        _delete(core, name)
    # SIGTERM -> ACPI shutdown -> the guest powers off well within the grace period.
    seconds = _gone(core, name, 60)
    assert seconds < 30, f"{name} took {seconds:.1f}s to go"
    assert not _qemu_running(name)


def test_vm_that_needs_kvm_stays_pending_with_the_extender_reason(cluster, core, vm_pod):
    name = "vm-needs-kvm"
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-",
                    input=_yaml(vm_pod(name, allow_emulation=None)))
    try:
        message = _failed_scheduling(cluster, name, timeout=60)
        assert "KVM is not usable" in message, message
        assert core.read_namespaced_pod(name, NAMESPACE).spec.node_name is None
    finally:
        _delete(core, name)
        _gone(core, name, 30)


def test_vm_that_needs_kvm_bound_to_the_node_gets_dev_kvm_and_fails_the_check(cluster, core,
                                                                             vm_pod, wait_pod):
    """Past the scheduler (spec.nodeName), kubelet admits the pod with /dev/kvm from the
    device plugin; the launcher's functional check finds KVM unusable here (kvm_pvm), and
    without allow-emulation the VM fails with that reason instead of running emulated."""
    name = "vm-kvm-bound"
    manifest = vm_pod(name, allow_emulation=None)
    manifest["spec"]["nodeName"] = NODE_NAME
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=_yaml(manifest))
    try:
        pod = wait_pod(name, lambda p: _phase(p) == "Failed", CONSOLE_TIMEOUT)
        ann = pod.metadata.annotations
        launcher = next(c for c in pod.spec.containers if c.name == "launcher")
        assert launcher.resources.limits.get(DEFAULT_COSTS.resources.kvm) == "1"
        assert ann[k.FAILURE_REASON] == k.REASON_START_FAILED
        message = ann[k.FAILURE_MESSAGE]
        assert "allow-emulation" in message, message
        assert "does not exist" not in message, f"/dev/kvm was not given to the pod: {message}"
    finally:
        _delete(core, name)
        _gone(core, name, 60)


def test_statefulset_replica_boots(cluster, core, vm_pod, logs):
    from kubernetes import client
    apps = client.AppsV1Api(cluster.api_client())
    template = _template(vm_pod("unused"), "vm-set")
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "vm-set", "namespace": NAMESPACE},
           "spec": {"replicas": 1, "serviceName": "vm-set",
                    "selector": {"matchLabels": {"app": "vm-set"}}, "template": template}}
    result = cluster.kubectl("apply", "-f", "-", input=_yaml(sts), check=False)
    try:
        assert result.returncode == 0, result.stderr
        assert _wait_booted(core, logs, "app=vm-set", 1) == {"vm-set-0"}
    finally:
        _ignore_missing(apps.delete_namespaced_stateful_set, "vm-set", NAMESPACE)
        deadline = time.monotonic() + 60
        while core.list_namespaced_pod(NAMESPACE, label_selector="app=vm-set").items:
            assert time.monotonic() < deadline, "vm-set-0 outlived its StatefulSet"
            time.sleep(1)


def test_deployment_replicas_boot_and_a_deleted_one_is_replaced(cluster, core, logs):
    """examples/vm-deployment.yaml as a user applies it."""
    from kubernetes import client
    apps = client.AppsV1Api(cluster.api_client())
    result = cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(DEPLOYMENT), check=False)
    try:
        assert result.returncode == 0, result.stderr
        first = _wait_booted(core, logs, "app=vm-fleet", 2)
        victim = sorted(first)[0]
        _delete(core, victim)
        _gone(core, victim, 60)
        second = _wait_booted(core, logs, "app=vm-fleet", 2)
        assert victim not in second and len(second & first) == 1
    finally:
        _ignore_missing(apps.delete_namespaced_deployment, "vm-fleet", NAMESPACE,
                        propagation_policy="Foreground")
        deadline = time.monotonic() + 60
        while core.list_namespaced_pod(NAMESPACE, label_selector="app=vm-fleet").items:
            assert time.monotonic() < deadline, "vm-fleet pods outlived their Deployment"
            time.sleep(1)


def _template(pod: dict, app: str) -> dict:
    """A pod template as a user writes it for a controller (examples/vm-deployment.yaml):
    the VM pod's annotations, the opt-in label plus the app label, and a placeholder
    `launcher` container, since controllers reject templates without containers."""
    return {"metadata": {"labels": {"app": app, k.OPT_IN_LABEL: k.OPT_IN_VALUE},
                         "annotations": pod["metadata"]["annotations"]},
            "spec": {**pod["spec"], "containers": [
                {"name": "launcher", "image": "localhost/podvirt/launcher:0.1.0"}]}}


def _ignore_missing(delete, *args, **kwargs) -> None:
    from kubernetes.client.exceptions import ApiException
    try:
        delete(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _wait_booted(core, logs, selector: str, count: int) -> set[str]:
    deadline = time.monotonic() + 2 * CONSOLE_TIMEOUT
    while True:
        pods = [p for p in core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
                if p.metadata.deletion_timestamp is None]
        booted = {p.metadata.name for p in pods
                  if _phase(p) == "Running" and MARKER.decode() in logs(p.metadata.name)}
        if len(booted) == count:
            return booted
        if time.monotonic() > deadline:
            states = {p.metadata.name: (_phase(p), p.status.phase) for p in pods}
            raise AssertionError(f"{len(booted)}/{count} replicas booted: {states}")
        time.sleep(2)


def _failed_scheduling(cluster, name: str, timeout: float) -> str:
    import json
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json",
                              f"--field-selector=involvedObject.name={name},"
                              "reason=FailedScheduling").stdout
        items = json.loads(out)["items"]
        if items:
            return items[-1]["message"]
        time.sleep(1)
    raise AssertionError(f"no FailedScheduling event for {name} in {timeout}s")


def test_efi_vm_with_a_tpm_boots_in_its_pod(cluster, core, vm_pod, wait_pod, logs):
    """OVMF and swtpm come with the launcher image: the guest comes up under UEFI and its
    kernel finds the TPM."""
    from tests.node.vmpods import console_value
    name = "vm-efi"
    manifest = vm_pod(name, firmware="efi", tpm="true",
                      kernel_args="console=ttyS0 quiet podvirt.sleep=wait podvirt.firmware")
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=_yaml(manifest))
    try:
        pod = wait_pod(name, lambda p: _phase(p) in ("Running", "Failed"), CONSOLE_TIMEOUT)
        ann = pod.metadata.annotations
        assert _phase(pod) == "Running", (ann.get(k.FAILURE_REASON), ann.get(k.FAILURE_MESSAGE))
        console = _wait_console(logs, name)
        assert console_value(console, "PODVIRT-GUEST-FIRMWARE") == "efi"
        assert console_value(console, "PODVIRT-GUEST-TPM") == "tpm0 none"
    finally:
        _delete(core, name)
        _gone(core, name, 60)
