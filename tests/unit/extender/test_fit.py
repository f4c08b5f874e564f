"""The extender as the whole resource fit of VM pods (their profile disables
NodeResourcesFit): the pod's full requests, sidecars included, and the node's pod count."""

from __future__ import annotations

import pytest

from podvirt.extender.decide import VMShape, filter_node
from podvirt.extender.facts import node_offer, pod_requests
from podvirt.extender.state import WatchedCluster
from podvirt.quantity import human_bytes
from podvirt.vmspec import demand, parse_vm
from podvirt.vmspec import keys as k

from tests.unit.extender.objects import BASE_VM, GiB, MiB, node_json, plain_pod, vm_pod

NOW = 1_700_000_000.0
DEM = demand(parse_vm(BASE_VM))
GUEST = f"{human_bytes(DEM.guest_memory)} guest + {human_bytes(DEM.overhead.total)} overhead"


def with_sidecar(pod: dict, requests: dict, *, init: bool = False, sidecar: bool = False) -> dict:
    """`pod` plus one container: a regular one, a native sidecar (init, restartPolicy
    Always) or a plain init container."""
    container = {"name": "extra", "resources": {"requests": requests}}
    if init or sidecar:
        if sidecar:
            container["restartPolicy"] = "Always"
        pod["spec"].setdefault("initContainers", []).append(container)
    else:
        pod["spec"]["containers"].append(container)
    return pod


def verdict(node: dict, pod: dict, running: list[dict] = ()):
    """filter_node for `pod` on `node` with `running` pods charged, as the extender sees it."""
    state = WatchedCluster()
    state.replace_nodes([node])
    state.replace_pods(list(running))
    meta = pod["metadata"]
    spec = parse_vm(meta["annotations"], name=meta["name"])
    name = node["metadata"]["name"]
    return filter_node(state.node(name), state.usage(name),
                       VMShape.of(spec, demand(spec), pod_requests(pod)), NOW)


def fill(node: str, memory: str = "0", count: int = 1) -> list[dict]:
    return [plain_pod(f"p{i}", node=node, memory=memory, cpu="0") for i in range(count)]


FIT_CASES = [
    pytest.param(node_json("n"), vm_pod("vm"), [], "", False, id="fits"),
    pytest.param(node_json("n", memory="8Gi"), with_sidecar(vm_pod("vm"), {"memory": "100Mi"}),
                 fill("n", "5900Mi"),
                 f"needs {human_bytes(DEM.memory + 100 * MiB)} ({GUEST} + 100Mi sidecars), "
                 f"{human_bytes(8 * GiB - 5900 * MiB)} free", False, id="memory-sidecar-container"),
    pytest.param(node_json("n", memory="8Gi"),
                 with_sidecar(vm_pod("vm"), {"memory": "100Mi"}, sidecar=True),
                 fill("n", "5900Mi"),
                 f"needs {human_bytes(DEM.memory + 100 * MiB)} ({GUEST} + 100Mi sidecars), "
                 f"{human_bytes(8 * GiB - 5900 * MiB)} free", False, id="memory-native-sidecar"),
    pytest.param(node_json("n", memory="8Gi"),
                 with_sidecar(vm_pod("vm"), {"memory": "100Mi"}, init=True),
                 fill("n", "3800Mi"), "", False, id="small-init-container-runs-before"),
    pytest.param(node_json("n", memory="8Gi"),
                 with_sidecar(vm_pod("vm"), {"memory": "6Gi"}, init=True),
                 fill("n", "3Gi"), f"needs 6Gi ({GUEST} + {human_bytes(6 * GiB - DEM.memory)} "
                                   f"sidecars), 5Gi free", False, id="large-init-container"),
    pytest.param(node_json("n", memory="4Gi"), vm_pod("vm"), [],
                 f"needs {DEM.describe_memory()}, 4Gi free", True,
                 id="memory-above-allocatable-unresolvable"),
    pytest.param(node_json("n", cpu="1"), with_sidecar(vm_pod("vm"), {"cpu": "900m"}), [],
                 "needs 1100m CPU (200m VM + 900m sidecars), 1 free", True,
                 id="cpu-sidecar-above-allocatable"),
    pytest.param(node_json("n", cpu="2"), with_sidecar(vm_pod("vm"), {"cpu": "1"}),
                 [plain_pod("p", node="n", memory="0", cpu="1")],
                 "needs 1200m CPU (200m VM + 1 sidecars), 1 free", False, id="cpu-sidecar"),
    pytest.param(node_json("n", cpu="4"), with_sidecar(vm_pod("vm", {k.DEDICATED_CPUS: "true"}),
                                                       {"cpu": "500m"}),
                 [plain_pod("p", node="n", memory="0", cpu="1600m")],
                 "needs 2500m CPU (2 VM + 500m sidecars), 2400m free", False,
                 id="dedicated-cpus-plus-sidecar"),
    pytest.param(node_json("n", extra={"hugepages-2Mi": "4Gi"}),
                 with_sidecar(vm_pod("vm", {k.HUGEPAGES: "2Mi"}), {"hugepages-2Mi": "64Mi"}), [],
                 "needs 4.1Gi of hugepages-2Mi, node has 4Gi", True, id="hugepages-sidecar"),
    pytest.param(node_json("n", extra={"ephemeral-storage": "10Gi"}),
                 with_sidecar(vm_pod("vm"), {"ephemeral-storage": "12Gi"}), [],
                 "needs 22.2Gi ephemeral-storage (disk root 10Gi + launcher 256Mi + 12Gi "
                 "sidecars), 10Gi free", True, id="ephemeral-storage-sidecar"),
    pytest.param(node_json("n", extra={"ephemeral-storage": "40Gi"}),
                 vm_pod("vm", {k.DISKS: "scratch=scratch:100Ti"}), [],
                 "needs 100Ti ephemeral-storage (disk scratch 100Ti + launcher 256Mi), 40Gi free",
                 True, id="scratch-above-allocatable"),
    pytest.param(node_json("n", extra={"ephemeral-storage": "40Gi"}),
                 vm_pod("vm", {k.DISKS: "scratch=scratch:20Gi"}),
                 [vm_pod("other", {k.DISKS: "scratch=scratch:20Gi"}, node="n")],
                 "needs 20.3Gi ephemeral-storage (disk scratch 20Gi + launcher 256Mi), 19.7Gi free",
                 False, id="scratch-of-pods-on-the-node-counted"),
    pytest.param(node_json("n", extra={"ephemeral-storage": "40Gi"}),
                 vm_pod("vm", {k.DISKS: "scratch=scratch:19Gi"}),
                 [vm_pod("other", {k.DISKS: "scratch=scratch:20Gi"}, node="n")], "", False,
                 id="scratch-fits-beside-another"),
    pytest.param(node_json("n", extra={"ephemeral-storage": "0"}), vm_pod("vm"), [],
                 "needs 10.2Gi ephemeral-storage (disk root 10Gi + launcher 256Mi), node reports "
                 "no allocatable ephemeral-storage", True, id="node-without-ephemeral-storage"),
    pytest.param(node_json("n"), with_sidecar(vm_pod("vm"), {"example.com/nic": "1"}), [],
                 "needs 1 example.com/nic, node does not advertise it", True,
                 id="sidecar-extended-absent"),
    pytest.param(node_json("n", extra={"example.com/nic": "2"}),
                 with_sidecar(vm_pod("vm"), {"example.com/nic": "1"}),
                 [with_sidecar(plain_pod("p", node="n", memory="0", cpu="0"),
                               {"example.com/nic": "2"})],
                 "needs 1 example.com/nic, all 2 in use", False, id="sidecar-extended-in-use"),
    pytest.param(node_json("n", extra={"pods": "3"}), vm_pod("vm"), fill("n", count=3),
                 "node runs 3 pods, its limit (allocatable pods) is 3", False, id="pods-full"),
    pytest.param(node_json("n", extra={"pods": "3"}), vm_pod("vm"),
                 fill("n", count=2) + [plain_pod("done", node="n", phase="Succeeded")], "",
                 False, id="terminal-pods-not-counted"),
]


@pytest.mark.parametrize("node, pod, running, reason, unresolvable", FIT_CASES)
def test_fit_uses_the_whole_pod(node, pod, running, reason, unresolvable):
    v = verdict(node, pod, running)
    assert (v.reason, v.unresolvable) == (reason, unresolvable)


@pytest.mark.parametrize("annotations", [
    pytest.param({}, id="base"),
    pytest.param({k.HUGEPAGES: "2Mi", k.DEVICES: "nvidia.com/gpu=1"}, id="hugepages-devices"),
    pytest.param({k.ALLOW_EMULATION: "true", k.DEDICATED_CPUS: "true"}, id="emulated-dedicated"),
])
def test_a_vm_without_its_pod_is_assumed_to_request_what_its_rendered_pod_requests(annotations):
    pod = vm_pod("vm", annotations)
    vm = parse_vm(pod["metadata"]["annotations"])
    assert VMShape.of(vm, demand(vm)) == VMShape.of(vm, demand(vm), pod_requests(pod))


def test_pod_requests_skip_what_is_not_a_quantity_or_is_negative():
    pod = plain_pod("p", memory="1.5Gi", cpu="0.25")
    pod["spec"]["containers"][0]["resources"]["requests"].update(
        {"example.com/widget": "2", "example.com/broken": "lots", "example.com/minus": "-1"})
    assert pod_requests(pod) == {"memory": 3 * 2**29, "cpu": 250, "example.com/widget": 2,
                                 "pods": 1}


def test_node_offer_reads_pods_and_ephemeral_storage():
    facts = node_offer(node_json("n", extra={"ephemeral-storage": "100Gi"}))
    assert (facts.pods, facts.ephemeral_storage) == (110, 100 * GiB)
    no_limit = node_json("n")
    del no_limit["status"]["allocatable"]["pods"]
    assert node_offer(no_limit).pods is None
