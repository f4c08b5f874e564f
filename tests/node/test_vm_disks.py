"""Disks on the real node: a FROM-scratch containerdisk (its overlay is ephemeral), a PVC
on a real PersistentVolume (kube-controller-manager's hostPath provisioner, the local
cluster's default StorageClass) that outlives the pod, and the cloud-init seed.

Two VM pods in turn use the same claim: the first writes to both disks, the second sees
the claim's data and the containerdisk as it was built."""

from __future__ import annotations

import secrets
import time

import pytest

from podvirt.cluster.node import STORAGE_CLASS
from podvirt.vmspec import keys as k
from tests.node.conftest import NAMESPACE
from tests.node.vmpods import CONSOLE_TIMEOUT, console_value, delete, gone, phase, to_yaml, \
    wait_console

CLAIM = "vm-data"
TINY_DISK = "localhost/podvirt/tiny-disk:0.1.0"
TINY_DISK_LINE = "PODVIRT-DATA tiny-disk"     # hack/images/build.sh


@pytest.fixture
def claim(core):
    from kubernetes import client
    core.create_namespaced_persistent_volume_claim(NAMESPACE, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=CLAIM),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"}))))
    try:
        deadline = time.monotonic() + 60
        while (pvc := core.read_namespaced_persistent_volume_claim(CLAIM, NAMESPACE)) \
                .status.phase != "Bound":
            assert time.monotonic() < deadline, f"claim never bound: {pvc.status}"
            time.sleep(1)
        assert pvc.spec.storage_class_name == STORAGE_CLASS    # the default class
        yield pvc
    finally:
        core.delete_namespaced_persistent_volume_claim(CLAIM, NAMESPACE)


def _boot(cluster, core, vm_pod, wait_pod, logs, name: str, kernel_args: str,
          **annotations) -> str:
    manifest = vm_pod(name, disks=f"root=containerdisk:{TINY_DISK},data=pvc:{CLAIM}",
                      kernel_args=f"console=ttyS0 quiet podvirt.sleep=wait {kernel_args}",
                      **annotations)
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=to_yaml(manifest))
    pod = wait_pod(name, lambda p: phase(p) in ("Running", "Failed"), CONSOLE_TIMEOUT)
    ann = pod.metadata.annotations
    assert phase(pod) == "Running", (ann.get(k.FAILURE_REASON), ann.get(k.FAILURE_MESSAGE))
    return wait_console(logs, name, "PODVIRT-GUEST-UP")


def test_claim_outlives_the_pod_containerdisk_overlay_does_not_seed_is_read(
        cluster, core, vm_pod, wait_pod, logs, claim):
    token, seed_value = secrets.token_hex(6), secrets.token_hex(6)
    first, second = "vm-disks-1", "vm-disks-2"
    try:
        console = _boot(cluster, core, vm_pod, wait_pod, logs, first,
                        f"podvirt.disk-read=vda,vdb podvirt.disk-write=vda:changed,vdb:{token}")
        assert console_value(console, "PODVIRT-GUEST-READ vda") == TINY_DISK_LINE
        assert "PODVIRT-GUEST-WROTE vda" in console and "PODVIRT-GUEST-WROTE vdb" in console
        delete(core, first)          # ACPI shutdown: QEMU flushes and exits
        gone(core, first, 90)

        console = _boot(cluster, core, vm_pod, wait_pod, logs, second,
                        "podvirt.disk-read=vda,vdb podvirt.seed=podvirt_marker",
                        cloud_init=f"#cloud-config\npodvirt_marker: {seed_value}\n")
        # The claim kept what the first VM wrote; the containerdisk's overlay went with
        # the first pod; the seed (after the two disks) carried the user data.
        assert console_value(console, "PODVIRT-GUEST-READ vdb") == f"PODVIRT-DATA {token}"
        assert console_value(console, "PODVIRT-GUEST-READ vda") == TINY_DISK_LINE
        assert console_value(console, "PODVIRT-GUEST-SEED") == seed_value
    finally:
        for name in (first, second):
            delete(core, name)
            gone(core, name, 90)
