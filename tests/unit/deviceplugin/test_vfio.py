"""VFIO passthrough devices: the pure answers (vfio.py), then the plugins over real gRPC on
a fake sysfs tree with stand-in group nodes, the test playing kubelet."""

import json
import re
import queue
import threading

import grpc
import pytest

from podvirt.launcher.deviceplugin import vfio
from podvirt.launcher.deviceplugin.api import pb
from podvirt.launcher.deviceplugin.devices import AllocationError
from podvirt.launcher.deviceplugin.manager import VfioSettings
from podvirt.vmspec import keys as k
from podvirt.vmspec.devicemap import DeviceResources
from tests.fakepci import FakeDevice, add_device, make_tree, unbind

from tests.unit.deviceplugin.fakes import WAIT, plugin_stub

pytestmark = pytest.mark.timeout(30)

GPU = "example.com/gpu"
RULES = DeviceResources.parse(f"10de:1eb8={GPU}")
A = FakeDevice("0000:3b:00.0", group=30, numa=0)
B = FakeDevice("0000:3c:00.0", group=31, numa=0)
C = FakeDevice("0000:af:00.0", group=80, numa=1)
NVME = FakeDevice("0000:5e:00.0", vendor="144d", device="a808", group=40, driver="nvme")
DEVICES = (vfio.VfioDevice(A.address, 30, 0, True), vfio.VfioDevice(B.address, 31, 0, True),
           vfio.VfioDevice(C.address, 80, 1, False))


# --- pure ------------------------------------------------------------------------------------

def test_allocate_hands_vfio_and_each_group_once_and_names_the_addresses():
    shared_group = DEVICES + (vfio.VfioDevice("0000:3b:00.1", 30, 0, True),)
    (answer,) = vfio.allocate(GPU, [["0000:3b:00.1", A.address, B.address]], shared_group,
                              "/host/vfio")
    assert [(m.container_path, m.host_path, m.permissions) for m in answer.mounts] == [
        ("/dev/vfio/vfio", "/host/vfio/vfio", "rw"), ("/dev/vfio/30", "/host/vfio/30", "rw"),
        ("/dev/vfio/31", "/host/vfio/31", "rw")]
    assert answer.env == (("PODVIRT_ALLOCATED_EXAMPLE_COM_GPU",
                           "0000:3b:00.0,0000:3b:00.1,0000:3c:00.0"),)


@pytest.mark.parametrize("ids, message", [
    pytest.param([C.address], "are unhealthy", id="unhealthy"),
    pytest.param(["0000:00:01.0"], "unknown example.com/gpu device(s) 0000:00:01.0",
                 id="unknown"),
    pytest.param([], "names no device", id="empty"),
])
def test_allocate_refuses(ids, message):
    with pytest.raises(AllocationError, match=re.escape(message)):
        vfio.allocate(GPU, [ids], DEVICES, "/dev/vfio")


def pod(name, addresses, assigned_at, phase="Pending", resource=GPU):
    devices = [{"address": a, "vendor": "10de", "device": "1eb8", "resource": resource}
               for a in addresses]
    return {"metadata": {"name": name, "namespace": "vms", "annotations": {
        k.ASSIGNED_DEVICES: json.dumps(devices), k.ASSIGNED_AT: assigned_at}},
        "status": {"phase": phase}}


PODS = [pod("late", [B.address], "2026-01-01T00:00:00.000200Z"),
        pod("early", [A.address], "2026-01-01T00:00:00.000100Z"),
        pod("running", [C.address], "2026-01-01T00:00:00.000000Z", phase="Running"),
        pod("pair", [A.address, B.address], "2026-01-01T00:00:00.000000Z"),
        pod("other-resource", [A.address], "2025-01-01T00:00:00.000000Z", resource="x.io/y"),
        {"metadata": {"name": "broken", "annotations": {k.ASSIGNED_DEVICES: "{"}},
         "status": {"phase": "Pending"}}]


@pytest.mark.parametrize("available, must, size, ids, chosen_pod", [
    pytest.param([A.address, B.address, C.address], [], 1, (A.address,), "vms/early",
                 id="the-first-bound-pending-pod"),
    pytest.param([B.address, C.address], [], 1, (B.address,), "vms/late",
                 id="earlier-pod-already-admitted"),
    pytest.param([A.address, B.address, C.address], [], 2, (A.address, B.address), "vms/pair",
                 id="matching-size"),
    pytest.param([A.address, B.address], [B.address], 1, (B.address,), "vms/late",
                 id="must-include-honoured"),
    pytest.param([C.address], [], 1, (C.address,), "", id="no-pod-fits-any-free"),
])
def test_preferred_allocation_finds_the_pod_being_admitted(available, must, size, ids,
                                                           chosen_pod):
    pending = vfio.pending_assignments(PODS, GPU)
    assert {p.pod for p in pending} == {"vms/late", "vms/early", "vms/pair"}
    assert vfio.preferred_allocation(available, must, size, pending) == (ids, chosen_pod)


# --- over gRPC ---------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path):
    """A fake /sys and the VFIO dir as the host has it, seen by the plugin under dev_root."""
    dev_root = tmp_path / "host"
    host_vfio = "/fake/dev/vfio"
    sys_root, _ = make_tree(tmp_path / "t", ())
    for d in (A, B, C, NVME):
        add_device(sys_root, d)
    from tests.fakepci import make_char_device
    seen = dev_root / host_vfio.lstrip("/")
    for name in ("vfio", "30", "31", "80", "40"):
        make_char_device(seen / name)
    return sys_root, seen, host_vfio


class FakePods:
    def __init__(self, pods=()):
        self.pods = list(pods)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.pods


class Stream:
    """ListAndWatch with the full Device messages (IDs, health, NUMA nodes)."""

    def __init__(self, socket):
        self.channel, stub = plugin_stub(socket)
        self.call = stub.ListAndWatch(pb.Empty(), timeout=30)
        self.updates: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for response in self.call:
                self.updates.put([(d.ID, d.health, [n.ID for n in d.topology.nodes])
                                  for d in response.devices])
        except grpc.RpcError:
            pass

    def next(self):
        return self.updates.get(timeout=WAIT)

    def close(self):
        self.call.cancel()
        self.channel.close()


def test_vfio_devices_served_registered_and_allocated(kubelet, run_manager, plugin_dir, tree):
    sys_root, seen, host_vfio = tree
    pods = FakePods([pod("b", [B.address], "2026-01-01T00:00:01Z"),
                     pod("a", [A.address], "2026-01-01T00:00:00Z")])
    manager, _, _ = run_manager(specs=(), dev_root=seen.parents[2], vfio=VfioSettings(
        sys_root=sys_root, host_vfio_dir=host_vfio, resources=RULES, pods=pods))
    (registration,) = kubelet.registered(1)
    assert registration.resource_name == GPU
    assert registration.endpoint == vfio.socket_name(GPU)
    assert registration.options.get_preferred_allocation_available

    socket = plugin_dir / registration.endpoint
    stream = Stream(socket)
    channel, stub = plugin_stub(socket)
    try:
        # One device per address with its NUMA node; the nvme-bound device is not served.
        assert stream.next() == [(A.address, "Healthy", [0]), (B.address, "Healthy", [0]),
                                 (C.address, "Healthy", [1])]
        preferred = stub.GetPreferredAllocation(pb.PreferredAllocationRequest(container_requests=[
            pb.ContainerPreferredAllocationRequest(
                available_deviceIDs=[C.address, B.address, A.address], allocation_size=1)]),
            timeout=WAIT)
        assert list(preferred.container_responses[0].deviceIDs) == [A.address]
        assert pods.calls == 1

        answer = stub.Allocate(pb.AllocateRequest(container_requests=[
            pb.ContainerAllocateRequest(devices_ids=[A.address])]), timeout=WAIT)
        (container,) = answer.container_responses
        assert [(d.container_path, d.host_path) for d in container.devices] == [
            ("/dev/vfio/vfio", f"{host_vfio}/vfio"), ("/dev/vfio/30", f"{host_vfio}/30")]
        assert dict(container.envs) == {"PODVIRT_ALLOCATED_EXAMPLE_COM_GPU": A.address}

        # A group node gone: that device turns Unhealthy and is refused; unbound from
        # vfio-pci: it leaves the list.
        (seen / "31").unlink()
        assert stream.next() == [(A.address, "Healthy", [0]), (B.address, "Unhealthy", [0]),
                                 (C.address, "Healthy", [1])]
        with pytest.raises(grpc.RpcError) as refused:
            stub.Allocate(pb.AllocateRequest(container_requests=[
                pb.ContainerAllocateRequest(devices_ids=[B.address])]), timeout=WAIT)
        assert "unhealthy" in refused.value.details()
        unbind(sys_root, C.address)
        assert stream.next() == [(A.address, "Healthy", [0]), (B.address, "Unhealthy", [0])]

        # A device of a new resource bound later gets its own plugin, registered then.
        add_device(sys_root, FakeDevice("0000:d8:00.0", vendor="8086", device="0d5c",
                                        group=90, numa=1))
        (late,) = kubelet.registered(1)
        assert late.resource_name == "pci.podvirt.io/8086-0d5c"
    finally:
        stream.close()
        channel.close()


def test_preferred_allocation_survives_the_api_being_away(kubelet, run_manager, plugin_dir,
                                                          tree):
    sys_root, seen, host_vfio = tree

    def broken():
        raise OSError("connection refused")
    run_manager(specs=(), dev_root=seen.parents[2], vfio=VfioSettings(
        sys_root=sys_root, host_vfio_dir=host_vfio, resources=RULES, pods=broken))
    (registration,) = kubelet.registered(1)
    channel, stub = plugin_stub(plugin_dir / registration.endpoint)
    with channel:
        preferred = stub.GetPreferredAllocation(pb.PreferredAllocationRequest(container_requests=[
            pb.ContainerPreferredAllocationRequest(available_deviceIDs=[C.address, B.address],
                                                   allocation_size=1)]), timeout=WAIT)
        assert list(preferred.container_responses[0].deviceIDs) == [C.address]


# --- one resource name end to end ------------------------------------------------------------

def test_pci_request_counts_under_one_resource_in_webhook_extender_and_plugin(tmp_path):
    """A pci:10de:1eb8 request, one rule map: the webhook's request on the launcher, the
    extender's fit (its stand-in for in-tree NodeResourcesFit, against the node's allocatable
    and the probe's devices) and the resource the device plugin serves name one resource."""
    from dataclasses import replace

    from podvirt.extender.decide import filter_node
    from podvirt.extender.facts import NodeOffer, NodeUsage, pod_requests
    from podvirt.extender.scheduling import vm_shape
    from podvirt.launcher import pci
    from podvirt.vmspec import DEFAULT_COSTS, parse_vm
    from podvirt.webhook.render import render_launcher_pod
    from podvirt.webhook.settings import RenderSettings

    costs = replace(DEFAULT_COSTS, devices=RULES)
    annotations = {k.MEMORY: "1Gi", k.DISKS: "root=scratch:1Gi", k.DEVICES: "pci:10de:1eb8=1"}
    pod = render_launcher_pod(
        {"metadata": {"name": "vm1", "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE},
                      "annotations": annotations}, "spec": {"containers": []}},
        parse_vm(annotations, name="vm1"), RenderSettings(costs=costs))
    launcher = next(c for c in pod["spec"]["containers"] if c["name"] == "launcher")
    webhook = {r for r in launcher["resources"]["limits"] if r.startswith("example.com/")}

    sys_root, _ = make_tree(tmp_path, (A,))
    scanned = pci.scan(sys_root, RULES)
    plugin = set(vfio.resources_of(scanned))

    shape = vm_shape(pod, costs)
    extender = {r.resource for r in shape.devices}
    assert webhook == plugin == extender == {GPU}

    node = NodeOffer("n1", memory=64 * 2**30, cpu_millis=16000, ephemeral_storage=100 * 2**30,
                     extended={"podvirt.io/vm": 10, "devices.podvirt.io/kvm": 10, GPU: 1},
                     devices=scanned)
    requests = pod_requests(pod)
    assert requests[GPU] == 1
    assert filter_node(node, NodeUsage(), shape, 0.0).reason == ""
    claimed = NodeUsage(claimed=frozenset({A.address}))
    assert filter_node(node, claimed, shape, 0.0).reason == \
        "needs 1 pci:10de:1eb8, all 1 claimed"
