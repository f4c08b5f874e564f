"""PCI passthrough on the real node, without passthrough hardware: the chart's probe and
device plugin read a fake sysfs tree (three 10de:1eb8 devices bound to vfio-pci, in IOMMU
groups 30, 31, 80) and serve stand-in group nodes (character devices with /dev/null's
numbers). Proven here: the device the extender assigns is the device kubelet allocates, the
container holds exactly its group nodes (containerd's spec of the container, and what the
launcher lists in its /dev/vfio), the domain XML names exactly its addresses, and a pod
whose assignment cannot be honoured fails with the reason. Not proven: a guest using a
device (libvirt refuses: the container's real sysfs has no IOMMU groups, and the stand-in
nodes are no VFIO groups), nor the memlock limit VFIO needs.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET

import pytest
import yaml

from podvirt.cluster import chart, nodehost
from podvirt.cluster.node import NODE_NAME
from podvirt.vmspec import keys as k
from tests.fakepci import FakeDevice, make_char_device, make_tree
from tests.node.conftest import NAMESPACE
from tests.node.vmpods import delete, gone, phase, to_yaml

GPU = "example.com/gpu"
DEVICES = (FakeDevice("0000:3b:00.0", group=30, numa=0),
           FakeDevice("0000:3c:00.0", group=31, numa=0),
           FakeDevice("0000:af:00.0", group=80, numa=1))
GROUP = {d.address: d.group for d in DEVICES}
START = 240         # image copy, KVM check, libvirtd: until the launcher reports Failed
# libvirt's refusal on a host without IOMMU groups: where the fake devices end.
NO_VFIO_HOST = "host doesn't support passthrough of host PCI devices"


@pytest.fixture(scope="module")
def fake_devices(cluster, core, tmp_path_factory):
    """The chart upgraded to read the fake tree (and to name 10de:1eb8 example.com/gpu),
    rolled back afterwards."""
    root = tmp_path_factory.mktemp("fake-pci")
    sys_root, vfio_dir = make_tree(root, DEVICES)
    values = root / "passthrough.yaml"
    memlock = _runtime_can_grant_sys_resource()
    values.write_text(yaml.safe_dump({"passthrough": {
        "enabled": True, "sysRoot": str(sys_root), "vfioDir": str(vfio_dir), "resources": {"10de:1eb8": GPU},
        "memlockCapability": memlock}}))
    helm = (cluster.binaries.kubectl.parent / "helm", cluster.kubeconfig)
    chart.helm(*helm, "upgrade", chart.RELEASE, str(chart.CHART), "--namespace",
               chart.NAMESPACE, "--reuse-values", "--values", str(values), "--wait",
               "--timeout", "300s", timeout=330)
    try:
        _wait_webhooks_render(core, memlock)
        try:
            _wait_node(core, lambda node: _published(node) == set(GROUP) and
                       int((node.status.allocatable or {}).get(GPU, "0")) == len(DEVICES))
        except AssertionError as exc:
            selector = ("-n", chart.NAMESPACE, "-l", "app.kubernetes.io/component=probe")
            plugin = cluster.kubectl("logs", *selector, "-c", "device-plugin", "--tail", "30",
                                     check=False)
            states = cluster.kubectl("get", "pods", *selector, "-o",
                                     "jsonpath={.items[*].status.containerStatuses}",
                                     check=False)
            raise AssertionError(f"{exc}\ndevice plugin log:\n{plugin.stdout}{plugin.stderr}"
                                 f"\ncontainer states: {states.stdout}{states.stderr}")
        yield vfio_dir
    finally:
        chart.helm(*helm, "rollback", chart.RELEASE, "--namespace", chart.NAMESPACE, "--wait",
                   "--timeout", "300s", timeout=330)
        # The restored revision was rendered without the CA its post-install hook injected:
        # the post-rollback hook must put it back, or every VM pod after this one is refused.
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            bundles = cluster.kubectl("get", kind, "podvirt-webhook", "-o",
                                      "jsonpath={.webhooks[*].clientConfig.caBundle}").stdout
            assert bundles.strip(), f"{kind} podvirt-webhook lost its caBundle in the rollback"


def _runtime_can_grant_sys_resource() -> bool:
    """runc can only give containers capabilities in its own bounding set; some sandboxes
    (this project's development machines) lack CAP_SYS_RESOURCE (bit 24) there."""
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status") if ":\t" in line)
    return bool(int(status["CapBnd"], 16) >> 24 & 1)


def _wait_webhooks_render(core, memlock: bool, timeout: float = 120) -> None:
    """Until every webhook pod left is one of the upgrade's. `helm --wait` returns once the
    new ones are ready, while the old ones still drain (and answer reviews, as a rolling
    update needs): a VM pod admitted by one got CAP_SYS_RESOURCE, which runc here cannot
    grant ("unable to apply caps: operation not permitted", a CI run's StartError)."""
    deadline = time.monotonic() + timeout
    while True:
        pods = core.list_namespaced_pod(chart.NAMESPACE,
                                        label_selector="app.kubernetes.io/component=webhook").items
        args = [c.args or [] for p in pods for c in p.spec.containers if c.name == "webhook"]
        if args and all(("--no-vfio-memlock-capability" in a) != memlock for a in args):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"webhook pods still render the old memlock setting: "
                                 f"{[p.metadata.name for p in pods]}")
        time.sleep(1)


def _published(node) -> set[str]:
    raw = json.loads((node.metadata.annotations or {}).get(k.NODE_PCI_DEVICES) or "[]")
    return {d["address"] for d in raw if d.get("resource") == GPU}


def _wait_node(core, predicate, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        node = core.read_node(NODE_NAME)
        if predicate(node):
            return node
        if time.monotonic() > deadline:
            raise AssertionError(f"node never got the fake devices: allocatable "
                                 f"{node.status.allocatable}, pci-devices "
                                 f"{(node.metadata.annotations or {}).get(k.NODE_PCI_DEVICES)}")
        time.sleep(1)


def _gpu_pod(vm_pod, name: str, devices: str) -> dict:
    return vm_pod(name, devices=devices)


def _assigned(pod) -> list[str]:
    return sorted(d["address"] for d in
                  json.loads((pod.metadata.annotations or {}).get(k.ASSIGNED_DEVICES, "[]")))


def _launcher(pod):
    return next(c for c in pod.spec.containers if c.name == "launcher")


def _ended(pod) -> bool:
    """The launcher reported Failed and kubelet reported its container (with its ID)."""
    return ((phase(pod) == "Failed" or pod.status.phase == "Failed")
            and any(c.name == "launcher" and c.container_id
                    for c in pod.status.container_statuses or ()))


def _end_state(cluster, pod) -> str:
    """How the pod ended, for a failure message: kubelet's phase and the launcher
    container's terminated state beside podvirt's annotations and the node's log files."""
    status = next((c for c in pod.status.container_statuses or () if c.name == "launcher"),
                  None)
    ended = status and status.state and status.state.terminated
    return (f"{pod.metadata.name}: kubelet phase {pod.status.phase} ({pod.status.reason}: "
            f"{pod.status.message}); launcher container "
            + (f"exit {ended.exit_code} {ended.reason} {ended.message!r} "
               f"{ended.started_at} -> {ended.finished_at}" if ended else f"state {status}")
            + f"; annotations {pod.metadata.annotations}; "
            f"node log files {_node_log_files(cluster, pod)}")


def _container_vfio(cluster, pod) -> set[str]:
    """The /dev/vfio nodes containerd was told to create in the launcher container (from
    kubelet's CRI request, which carries Allocate's DeviceSpecs), read on the host: it
    stays readable after the launcher has exited, unlike `kubectl exec`."""
    status = next(c for c in pod.status.container_statuses if c.name == "launcher")
    cid = status.container_id.split("://", 1)[1]
    info = json.loads(nodehost.ctr(cluster.node_layout, "containers", "info", cid,
                                   timeout=30).stdout)
    return {d["path"] for d in info["Spec"]["linux"].get("devices") or ()
            if d["path"].startswith("/dev/vfio/")}


def _launcher_log(cluster, pod, timeout: float = 30) -> str:
    """The launcher's log once it holds the domain XML: through kubelet (`kubectl logs`)
    and, while that reads empty, from the CRI log files kubelet keeps on the node. Neither
    holding it fails, listing the node's log files. (An empty log file is a container that
    never started, e.g. runc refusing a capability: _end_state names that case first.)"""
    name = pod.metadata.name
    deadline = time.monotonic() + timeout
    while True:
        proc = cluster.kubectl("logs", "-n", NAMESPACE, name, "-c", "launcher", check=False)
        log = proc.stdout if "</domain>" in proc.stdout else _node_log(cluster, pod)
        if "</domain>" in log:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no domain XML in {name}'s launcher log: kubectl logs rc={proc.returncode} "
                f"{len(proc.stdout)} bytes, stderr {proc.stderr!r}; "
                f"{_node_log_dir(cluster, pod)}: {_node_log_files(cluster, pod)}; "
                f"tail: {(proc.stdout or log)[-2000:]!r}")
        time.sleep(1)


def _node_log_dir(cluster, pod):
    m = pod.metadata
    return cluster.node_layout.pod_logs / f"{m.namespace}_{m.name}_{m.uid}" / "launcher"


def _node_log_files(cluster, pod) -> dict[str, int]:
    """The launcher container's log files on the node (path in its folder -> bytes)."""
    folder = _node_log_dir(cluster, pod)
    files = sorted(folder.rglob("*")) if folder.exists() else []
    return {str(f.relative_to(folder)): f.stat().st_size for f in files if f.is_file()}


def _node_log(cluster, pod) -> str:
    """The launcher's output from kubelet's CRI log files (`TIME STREAM P|F TEXT` lines; P
    is a partial line that the next record continues), rotated files first."""
    folder = _node_log_dir(cluster, pod)
    if not folder.exists():
        return ""
    files = sorted((f for f in folder.glob("*.log*") if f.suffix != ".gz"),
                   key=lambda f: (f.name.endswith(".log"), f.name))
    out = []
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4:
                out.append(parts[3] if parts[2] == "P" else parts[3] + "\n")
    return "".join(out)


def _vfio_nodes(*groups: int) -> set[str]:
    return {"/dev/vfio/vfio"} | {f"/dev/vfio/{g}" for g in groups}


def _domain_hostdevs(log: str) -> list[str]:
    """PCI addresses of the <hostdev>s in the domain XML the launcher logged."""
    found = re.search(r"<domain .*?</domain>", log, re.S)
    assert found, f"no domain XML in the launcher's log:\n{log[-3000:]}"
    out = []
    for a in ET.fromstring(found.group(0)).findall("devices/hostdev/source/address"):
        d, b, s, f = (int(a.get(x), 16) for x in ("domain", "bus", "slot", "function"))
        out.append(f"{d:04x}:{b:02x}:{s:02x}.{f:x}")
    return sorted(out)


def test_racing_vm_pods_get_different_devices_each_exactly_its_own(
        cluster, core, vm_pod, wait_pod, fake_devices):
    names = ("gpu-a", "gpu-b")
    manifests = [_gpu_pod(vm_pod, n, f"{GPU}=1") for n in names]
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-",
                    input="---\n".join(to_yaml(m) for m in manifests))
    try:
        bound = {n: wait_pod(n, lambda p: bool(p.spec.node_name and _assigned(p)), 120)
                 for n in names}
        assigned = {n: _assigned(p) for n, p in bound.items()}
        assert all(len(a) == 1 for a in assigned.values()), assigned
        assert assigned["gpu-a"] != assigned["gpu-b"], assigned
        for n in names:
            pod = wait_pod(n, _ended, START)
            ann = pod.metadata.annotations
            (address,) = assigned[n]
            assert _launcher(pod).resources.limits[GPU] == "1"
            # kubelet allocated the extender's choice: the container holds its group only,
            # as containerd created it and as the launcher saw it from inside.
            assert _container_vfio(cluster, pod) == _vfio_nodes(GROUP[address]), n
            # The honest end: the container's real sysfs has no IOMMU groups.
            assert ann.get(k.FAILURE_REASON) == k.REASON_START_FAILED, _end_state(cluster, pod)
            assert NO_VFIO_HOST in ann[k.FAILURE_MESSAGE], ann[k.FAILURE_MESSAGE]
            log = _launcher_log(cluster, pod)
            assert f"/dev/vfio holds {GROUP[address]}, vfio" in log, log[-3000:]
            assert _domain_hostdevs(log) == assigned[n]
    finally:
        for n in names:
            delete(core, n)
        for n in names:
            gone(core, n, 60)


def test_assignment_kubelet_cannot_honour_fails_the_pod_with_the_reason(
        cluster, core, vm_pod, wait_pod, fake_devices):
    """The extender assigns the lowest free device; its group node is gone, so the device
    plugin reports it Unhealthy and kubelet allocates another: the launcher refuses."""
    first = DEVICES[0]
    node_path = fake_devices / str(first.group)
    node_path.unlink()
    name = "gpu-mismatch"
    try:
        _wait_node(core, lambda n: int((n.status.allocatable or {}).get(GPU, "0"))
                   == len(DEVICES) - 1)
        cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-",
                        input=to_yaml(_gpu_pod(vm_pod, name, "pci:10de:1eb8=1")))
        pod = wait_pod(name, _ended, START)
        ann = pod.metadata.annotations or {}
        # pci:10de:1eb8 counts under the resource the device plugin serves (the webhook's
        # request, the extender's match), so kubelet allocated it one of the others.
        assert _launcher(pod).resources.limits[GPU] == "1"
        assert _assigned(pod) == [first.address]
        others = {d.group for d in DEVICES[1:]}
        assert any(_container_vfio(cluster, pod) == _vfio_nodes(g) for g in others), \
            _container_vfio(cluster, pod)
        assert ann.get(k.FAILURE_REASON) == k.REASON_DEVICES_NOT_ALLOCATED, \
            (ann, pod.status.reason, pod.status.message)
        assert (f"the extender assigned {first.address} (podvirt.io/assigned-devices)"
                in ann[k.FAILURE_MESSAGE]), ann[k.FAILURE_MESSAGE]
        events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                                 f"involvedObject.name={name}", "-o", "json").stdout
        assert any(e["reason"] == k.REASON_DEVICES_NOT_ALLOCATED
                   for e in json.loads(events)["items"])
    finally:
        delete(core, name)
        gone(core, name, 60)
        make_char_device(node_path)
