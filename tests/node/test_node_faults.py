"""Faults on the real node with real guests (hardening tier): what a user sees when the
node's own services restart, when the node is drained, when a VM outgrows its pod, when
QEMU or libvirtd die inside the container, and when podvirt's own pods are deleted while
VM pods are being created.

Each test prints `FIGURE name=value` lines for the README's reliability table.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import yaml

from podvirt.cluster import chart
from podvirt.cluster.inventory import FAKE_NODE_TAINT
from podvirt.cluster.node import NODE_NAME
from podvirt.vmspec import keys as k
from podvirt.vmspec.overhead import DEFAULT_COSTS
from tests.node.conftest import NAMESPACE
from tests.node.vmpods import CONSOLE_TIMEOUT, console_session, container_cgroup, delete, events, \
    gone, phase, qemu_pid, to_yaml, wait_console
from tests.support import restart_component

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.hardening

GRACE = 30    # examples/vm-tiny-guest.yaml's podvirt.io/shutdown-grace


def figure(name: str, value: object) -> None:
    print(f"\nFIGURE {name}={value}", flush=True)


def _boot(cluster, vm_pod, wait_pod, logs, *names: str, **annotations: str) -> dict:
    """Apply VM pods (all first, so they boot side by side) and wait until each runs and
    its guest is up; their pods by name."""
    for name in names:
        cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-",
                        input=to_yaml(vm_pod(name, **annotations)))
    pods = {}
    for name in names:
        pod = wait_pod(name, lambda p: phase(p) in ("Running", "Failed"), CONSOLE_TIMEOUT)
        ann = pod.metadata.annotations
        assert phase(pod) == "Running", (ann.get(k.FAILURE_REASON), ann.get(k.FAILURE_MESSAGE))
        wait_console(logs, name)
        pods[name] = pod
    return pods


def _launcher_status(core, name: str):
    pod = core.read_namespaced_pod(name, NAMESPACE)
    return pod, next(c for c in pod.status.container_statuses if c.name == "launcher")


def _node_ready(core, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = core.read_node(NODE_NAME).status.conditions or []
        if {c.type: c.status for c in conditions}.get("Ready") == "True":
            return
        time.sleep(1)
    raise AssertionError(f"{NODE_NAME} not Ready {timeout}s after the restart")


def _still_running(core, name: str, pid: int, started) -> None:
    """Same pod Running, same launcher container (never restarted), same QEMU process."""
    pod, launcher = _launcher_status(core, name)
    assert pod.status.phase == "Running" and phase(pod) == "Running", pod.status.phase
    assert launcher.state.running is not None and launcher.restart_count == 0, launcher
    assert launcher.state.running.started_at == started, "the launcher container was restarted"
    assert qemu_pid(name) == pid, "QEMU was restarted or killed"


def _cleanup(core, *names: str) -> None:
    for name in names:
        delete(core, name)
    for name in names:
        gone(core, name, GRACE + 30)


def test_kubelet_and_containerd_restarts_leave_running_vms_alone(cluster, core, vm_pod,
                                                                  wait_pod, logs):
    """A kubelet or containerd restart (as their services do on an upgrade) must not touch
    a running guest: same pod, same container, same QEMU; the device plugin registers with
    the new kubelet, so a VM pod created afterwards is admitted and boots; and the old VM
    still stops by ACPI on delete (its shim was found again)."""
    name, later = "vm-restarts", "vm-after-restarts"
    try:
        _boot(cluster, vm_pod, wait_pod, logs, name)
        pid = qemu_pid(name)
        assert pid, "no QEMU process for the VM"
        started = _launcher_status(core, name)[1].state.running.started_at

        t0 = time.monotonic()
        restart_component(cluster, "kubelet", sig=signal.SIGTERM)
        _node_ready(core)
        figure("kubelet_restart_seconds", f"{time.monotonic() - t0:.1f}")
        # kubelet re-syncs its pods after the restart; give it a moment to write status.
        time.sleep(5)
        _still_running(core, name, pid, started)

        t0 = time.monotonic()
        restart_component(cluster, "containerd", sig=signal.SIGTERM, group=False)
        figure("containerd_restart_seconds", f"{time.monotonic() - t0:.1f}")
        time.sleep(5)
        _still_running(core, name, pid, started)
        # containerd found the container's shim again: exec and logs reach the container.
        out = cluster.kubectl("exec", "-n", NAMESPACE, name, "-c", "launcher", "--",
                              "cat", "/proc/1/cmdline").stdout
        assert "launcher" in out, out

        # Both restarts behind it: the device plugin serves the new kubelet.
        t0 = time.monotonic()
        _boot(cluster, vm_pod, wait_pod, logs, later)
        figure("vm_after_restarts_boot_seconds", f"{time.monotonic() - t0:.1f}")
        alloc = core.read_node(NODE_NAME).status.allocatable
        assert alloc.get(k.VM_MARKER_RESOURCE) == "110", alloc
        assert alloc.get(DEFAULT_COSTS.resources.tun, "0") != "0", alloc
        _still_running(core, name, pid, started)
    finally:
        t0 = time.monotonic()
        _cleanup(core, name, later)
    assert time.monotonic() - t0 < GRACE, "the VMs were not shut down by ACPI on delete"
    assert qemu_pid(name) is None and qemu_pid(later) is None


def test_drain_shuts_each_vm_down_by_acpi_and_says_it_was_evicted(cluster, core, vm_pod,
                                                                   wait_pod, logs):
    """`kubectl drain` evicts the VM pods (the Eviction API); each launcher gets SIGTERM,
    asks its guest to power off and the guest does, within the grace; the pod's Events
    say it was an eviction. Only VM pods are drained: podvirt's own pods would have
    nowhere else to go on this one-node cluster."""
    names = ("vm-drain-a", "vm-drain-b")
    try:
        _boot(cluster, vm_pod, wait_pod, logs, *names)
        t0 = time.monotonic()
        proc = cluster.kubectl("drain", NODE_NAME, "--pod-selector", f"{k.OPT_IN_LABEL}=true",
                               "--ignore-daemonsets", "--force", "--delete-emptydir-data",
                               "--timeout", f"{GRACE + 60}s", check=False, timeout=GRACE + 90)
        seconds = time.monotonic() - t0
        assert proc.returncode == 0, proc.stderr
        figure("drain_two_vms_seconds", f"{seconds:.1f}")
        assert seconds < GRACE, f"drain took {seconds:.1f}s: a guest waited out its grace"
        for name in names:
            seen = events(core, name)
            reasons = [r for r, _ in seen]
            shutting = [m for r, m in seen if r == "ShuttingDown"]
            stopped = [m for r, m in seen if r == "Stopped"]
            assert shutting and "EvictionByEvictionAPI" in shutting[0], seen
            assert stopped and "shut down (EvictionByEvictionAPI" in stopped[0], seen
            assert "Crashed" not in reasons and k.REASON_VM_STOPPED not in reasons, seen
            assert qemu_pid(name) is None
    finally:
        cluster.kubectl("uncordon", NODE_NAME, check=False)
        _cleanup(core, *names)


def test_vm_outgrowing_its_container_fails_as_oomkilled_naming_the_limit(cluster, core,
                                                                        vm_pod, wait_pod,
                                                                        logs, plugin_env):
    """The container's memory limit is the guest plus podvirt's overhead estimate. When
    QEMU outgrows it anyway (here: the test lowers the limit to just above what the
    container uses, as a too-small estimate would, and the guest then fills 200Mi of its
    RAM), the kernel kills QEMU and the pod fails saying so, with the limit and the guest
    size, instead of a bare exit code."""
    name = "vm-oom"
    try:
        pod = _boot(cluster, vm_pod, wait_pod, logs, name,
                    kernel_args="console=ttyS0 quiet podvirt.sleep=wait podvirt.shell=1")[name]
        memcg = container_cgroup(pod, "memory")
        used = int((memcg / "memory.usage_in_bytes").read_text())
        limit = used + 48 * 2**20
        (memcg / "memory.limit_in_bytes").write_text(str(limit))
        session = console_session(plugin_env, name)
        try:
            session.send("\r")
            session.expect("# ")
            session.send("mkdir -p /fill && mount -t tmpfs -o size=220m fill /fill && "
                         "dd if=/dev/zero of=/fill/x bs=1M count=200\r")
            failed = wait_pod(name, lambda p: phase(p) == "Failed", 180)
        finally:
            session.close(force=True)
        ann = failed.metadata.annotations
        assert ann.get(k.FAILURE_REASON) == k.REASON_OOM_KILLED, ann
        message = ann[k.FAILURE_MESSAGE]
        assert "memory limit" in message and "256Mi guest" in message, message
        figure("oom_failure_message", repr(message))
        assert (k.REASON_OOM_KILLED, message) in [(r, m[:len(message)])
                                                 for r, m in events(core, name)]
        assert qemu_pid(name) is None
    finally:
        _cleanup(core, name)


def test_qemu_or_libvirtd_killed_in_the_container_fails_the_pod_with_the_reason(
        cluster, core, vm_pod, wait_pod, logs):
    """SIGKILL from outside to the VM's QEMU and to another VM's libvirtd: each pod ends
    Failed with its reason, nothing of either VM keeps running, and the pod's containers
    have terminated (restartPolicy Never: the VM is not silently booted again)."""
    qemu_vm, libvirtd_vm = "vm-kill-qemu", "vm-kill-libvirtd"
    try:
        pods = _boot(cluster, vm_pod, wait_pod, logs, qemu_vm, libvirtd_vm)
        qpid = qemu_pid(qemu_vm)
        subprocess.run(["kill", "-KILL", str(qpid)], check=True)
        lpid = _libvirtd_pid(pods[libvirtd_vm])
        subprocess.run(["kill", "-KILL", str(lpid)], check=True)
        for name, reason in ((qemu_vm, k.REASON_QEMU_EXITED),
                             (libvirtd_vm, k.REASON_LIBVIRTD_LOST)):
            pod = wait_pod(name, lambda p: p.status.phase == "Failed", 60)
            ann = pod.metadata.annotations
            assert ann.get(k.FAILURE_REASON) == reason, ann
            figure(f"killed_{reason}_message", repr(ann.get(k.FAILURE_MESSAGE)))
            assert qemu_pid(name) is None
    finally:
        _cleanup(core, qemu_vm, libvirtd_vm)


def _libvirtd_pid(pod) -> int:
    """The launcher's libvirt daemon: the libvirtd (or virtqemud) process in the launcher
    container's cgroup. Not QEMU's parent: QEMU daemonizes and tini adopts it."""
    from pathlib import Path
    procs = (container_cgroup(pod, "memory") / "cgroup.procs").read_text().split()
    daemons = [int(pid) for pid in procs
               if Path(f"/proc/{pid}/comm").read_text().strip() in ("libvirtd", "virtqemud")]
    assert len(daemons) == 1, daemons
    return daemons[0]


def test_webhook_and_extender_deleted_while_vm_pods_are_created(cluster, core, vm_pod):
    """VM pods created in a loop while the webhook's and then the extender's pods are
    deleted: every pod the API server accepted is a converted launcher pod (never one the
    webhook did not see), every refusal says why, and no GPU of the kwok fleet is given
    to two pods. The load pods go to kwok's nodes only (nodeSelector type=kwok): kwok
    runs nothing, so the real node is not asked to boot two dozen guests."""
    created, refused = [], []
    count = 24
    try:
        for i in range(count):
            if i == 6:
                _delete_component_pods(core, "webhook")
            if i == 14:
                _delete_component_pods(core, "extender")
            name = f"vm-load-{i}"
            manifest = vm_pod(name, devices="example.com/gpu=1" if i % 3 == 0 else None)
            manifest["spec"]["tolerations"] = [{**FAKE_NODE_TAINT, "operator": "Equal"}]
            manifest["spec"]["nodeSelector"] = {"type": "kwok"}
            proc = cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(
                manifest), check=False)
            (created if proc.returncode == 0 else refused).append((name, proc.stderr.strip()))
            time.sleep(0.5)
        figure("load_pods_created", len(created))
        figure("load_pods_refused", len(refused))
        for name, err in refused:
            assert "webhook" in err or "podvirt" in err, (name, err)
        for name, _ in created:
            pod = core.read_namespaced_pod(name, NAMESPACE)
            assert k.RENDERED in (pod.metadata.annotations or {}), f"{name} was not converted"
            assert [c.name for c in pod.spec.containers].count("launcher") == 1, name
        assert created, "no VM pod was admitted at all"
        _wait_chart_ready(core)
        # The extender is back: every GPU pod that could fit is bound, one device each.
        deadline = time.monotonic() + 90
        while True:
            assigned = _assigned(core, [n for n, _ in created])
            if len(assigned) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(2)
        owners: dict[tuple[str, str], str] = {}
        for name, node, addresses in assigned:
            for address in addresses:
                assert (node, address) not in owners, \
                    f"{address} on {node} given to {owners[(node, address)]} and {name}"
                owners[(node, address)] = name
        figure("load_gpu_pods_bound", len(assigned))
        assert len(assigned) >= 2, assigned
    finally:
        for name, _ in created:
            delete(core, name)
        for name, _ in created:
            gone(core, name, 60)


def _delete_component_pods(core, component: str) -> None:
    pods = core.list_namespaced_pod(
        chart.NAMESPACE, label_selector=f"app.kubernetes.io/component={component}").items
    assert pods, f"no {component} pod to delete"
    for pod in pods:
        core.delete_namespaced_pod(pod.metadata.name, chart.NAMESPACE)


def _wait_chart_ready(core, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = [p for p in core.list_namespaced_pod(chart.NAMESPACE).items
                if p.metadata.labels.get("app.kubernetes.io/component") in ("webhook", "extender")
                and p.metadata.deletion_timestamp is None]
        if len(pods) >= 2 and all(
                any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ())
                for p in pods):
            return
        time.sleep(1)
    raise AssertionError("the webhook and extender did not come back Ready")


def _assigned(core, names: list[str]) -> list[tuple[str, str, list[str]]]:
    import json
    out = []
    for name in names:
        pod = core.read_namespaced_pod(name, NAMESPACE)
        value = (pod.metadata.annotations or {}).get(k.ASSIGNED_DEVICES)
        if value and pod.spec.node_name:
            out.append((name, pod.spec.node_name, [d["address"] for d in json.loads(value)]))
    return out
