"""Evictions of a VM pod with `podvirt.io/eviction-strategy: migrate` on the real node: the
chart's pods/eviction webhook refuses each eviction with 429 and marks the pod, the chart's
evacuator migrates the VM into a new pod (`--same-node`: this is the only real node), and
the guest's counter goes on there. A drain cannot move it (the cordoned node takes no
target pod): the drain is refused until its timeout while the same QEMU keeps running, and
the VM moves once the node is uncordoned."""

from __future__ import annotations

import re
import time

from podvirt.cluster.node import NODE_NAME
from podvirt.vmspec import keys as k
from tests.node.conftest import NAMESPACE
from tests.node.vmpods import delete, events, gone, phase, qemu_pid, to_yaml, wait_console


COUNT = re.compile(r"^PODVIRT-COUNT (\d+)\r?$", re.M)
MOVE = 300      # target pod scheduled and booted to Incoming, live migration, source deleted


def _boot_counting_vm(cluster, vm_pod, logs, name: str) -> int:
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=to_yaml(vm_pod(
        name, memory="128Mi", eviction_strategy=k.EVICT_MIGRATE,
        kernel_args="console=ttyS0 quiet podvirt.sleep=wait podvirt.count")))
    wait_console(logs, name, "PODVIRT-COUNT 20")
    pid = qemu_pid(name)
    assert pid is not None, f"no QEMU for {name}"
    return pid


def _evict(core, name: str) -> tuple[int, str]:
    """One eviction through the Eviction API: (HTTP status, the refusal's message)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=NAMESPACE))
    try:
        core.create_namespaced_pod_eviction(name, NAMESPACE, body)
    except ApiException as exc:
        return exc.status, exc.body or ""
    return 201, ""


def _target(core, name: str) -> str:
    """The pod that now runs VM `name` (the stable label every migration target carries)."""
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"{k.VM_NAME_LABEL}={name}").items
    names = [p.metadata.name for p in pods if p.metadata.name != name]
    assert len(names) == 1, f"VM {name}: expected one target pod, found {names}"
    return names[0]


def _keeps_counting(logs, target: str) -> None:
    text = wait_console(logs, target, "PODVIRT-COUNT", timeout=30)
    counts = [int(n) for n in COUNT.findall(text)]
    assert counts and counts[0] > 20, f"the counter restarted: {counts[:5]}"
    assert "PODVIRT-GUEST-UP" not in text and "Linux version" not in text, \
        "the guest booted again in the target pod"


def _cleanup(core, name: str) -> None:
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"{k.VM_NAME_LABEL}={name}").items
    for pod_name in {name, *(p.metadata.name for p in pods)}:
        delete(core, pod_name)
    for pod_name in {name, *(p.metadata.name for p in pods)}:
        gone(core, pod_name, 90)


def test_evicted_vm_migrates_instead_and_keeps_counting(cluster, core, vm_pod, wait_pod, logs):
    name = "vm-evict"
    try:
        source_qemu = _boot_counting_vm(cluster, vm_pod, logs, name)
        status, message = _evict(core, name)
        assert status == 429 and "will migrate" in message, (status, message)
        assert core.read_namespaced_pod(name, NAMESPACE).metadata.annotations.get(
            k.EVACUATE) == NODE_NAME

        # What `kubectl drain` does: evict again every few seconds until the pod is gone.
        t0 = time.monotonic()
        answers = [status]
        while status != 404:
            assert time.monotonic() - t0 < MOVE, f"still there after {MOVE}s: {answers}"
            time.sleep(3)
            status, message = _evict(core, name)
            answers.append(status)
        print(f"\nFIGURE evicted_vm_moved_seconds={time.monotonic() - t0:.1f}")
        assert set(answers) <= {429, 201, 404}, answers

        target = _target(core, name)
        pod = wait_pod(target, lambda p: phase(p) == "Running", 30)
        assert pod.metadata.labels[k.VM_NAME_LABEL] == name
        assert qemu_pid(name) not in (None, source_qemu)
        _keeps_counting(logs, target)
        # The source pod is gone, its Events stay behind.
        reasons = [r for r, _ in events(core, name)]
        assert k.EVENT_EVACUATING in reasons and "Migrated" in reasons, reasons
        assert k.EVENT_EVACUATION_FAILED not in reasons, events(core, name)
    finally:
        _cleanup(core, name)


def test_drain_keeps_the_vm_running_until_uncordon_lets_it_move(cluster, core, vm_pod,
                                                                 wait_pod, logs):
    name = "vm-drain-migrate"
    try:
        source_qemu = _boot_counting_vm(cluster, vm_pod, logs, name)
        try:
            proc = cluster.kubectl("drain", NODE_NAME, "--pod-selector",
                                   f"{k.OPT_IN_LABEL}=true", "--ignore-daemonsets",
                                   "--delete-emptydir-data", "--force", "--timeout", "40s",
                                   check=False, timeout=90)
            assert proc.returncode != 0, "a drain of the only node moved its VM"
            assert "will migrate" in proc.stderr, proc.stderr[-2000:]
            assert qemu_pid(name) == source_qemu, "the VM did not keep running in its pod"
            assert phase(core.read_namespaced_pod(name, NAMESPACE)) == "Running"
        finally:
            cluster.kubectl("uncordon", NODE_NAME, check=False)
        # Still marked: the evacuator's next try (or the one waiting on a Pending target)
        # moves the VM now that the node takes pods again.
        gone(core, name, MOVE)
        target = _target(core, name)
        wait_pod(target, lambda p: phase(p) == "Running", 30)
        _keeps_counting(logs, target)
    finally:
        cluster.kubectl("uncordon", NODE_NAME, check=False)
        _cleanup(core, name)
