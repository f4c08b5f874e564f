"""Pure decisions: filter_node reasons, quarantine, scoring and device choice."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from dataclasses import replace

from podvirt.extender.decide import (NUMA_BONUS, DevicesUnavailable, Policy, VMShape, choose_devices,
                                     filter_node, numa_scores)
from podvirt.extender.facts import NodeOffer, NodeUsage
from podvirt.vmspec import DEFAULT_COSTS, CostSettings, DeviceResources, demand, parse_vm
from podvirt.vmspec import keys as k

from tests.unit.extender.objects import BASE_VM, GiB, gpu

# What the base VM asks of a node, from the core (the overhead constants may change).
VM_DEMAND = demand(parse_vm(BASE_VM))
KVM = {"devices.podvirt.io/kvm": 110, "devices.podvirt.io/tun": 110,
       "devices.podvirt.io/vhost-net": 110, "podvirt.io/vm": 110}
FOUR_GPUS = (gpu("0000:3b:00.0", 0), gpu("0000:3c:00.0", 0), gpu("0000:86:00.0", 1),
             gpu("0000:87:00.0", 1))
NOW = 1_700_000_000.0


def node(name="n1", *, memory=16 * GiB, cpu=8000, labels=None, hugepages=None, extended=None,
         kvm=True, devices=(), storage=100 * GiB) -> NodeOffer:
    return NodeOffer(name=name, labels=labels or {}, memory=memory, cpu_millis=cpu,
                     hugepages=hugepages or {}, extended={**KVM, **(extended or {})},
                     ephemeral_storage=storage, kvm_usable=kvm, devices=tuple(devices))


# The fixtures' GPUs are 10de:1db6 devices advertised as nvidia.com/gpu.
COSTS = CostSettings(devices=DeviceResources.parse("10de:1db6=nvidia.com/gpu"))


def vm(costs=COSTS, **extra) -> VMShape:
    """The VM as the extender sees it (pci: requests resolved to their resource, as
    scheduling.vm_shape does), from its annotations alone."""
    spec = parse_vm({**BASE_VM, **extra})
    spec = replace(spec, devices=costs.devices.resolve(spec.devices))
    return VMShape.of(spec, demand(spec, costs))


def verdict(n: NodeOffer, u: NodeUsage, annotations: dict, policy=Policy(), costs=COSTS):
    return filter_node(n, u, vm(costs, **annotations), NOW, policy)


FILTER_CASES = [
    pytest.param(node(), NodeUsage(), {}, "", False, id="fits-empty-node"),
    pytest.param(node(memory=8 * GiB), NodeUsage(memory=int(5.9 * GiB)), {},
                 "needs 4.2Gi (4Gi guest + 256Mi overhead), 2.1Gi free", False,
                 id="memory-misfit-reason"),
    pytest.param(node(memory=8 * GiB), NodeUsage(memory=8 * GiB - VM_DEMAND.memory), {}, "", False,
                 id="memory-exact-fit"),
    pytest.param(node(memory=8 * GiB), NodeUsage(memory=9 * GiB), {},
                 "needs 4.2Gi (4Gi guest + 256Mi overhead), 0B free", False,
                 id="memory-overcommitted-node"),
    pytest.param(node(), NodeUsage(), {k.HUGEPAGES: "1Gi"}, "needs 4Gi of hugepages-1Gi, node has none",
                 True, id="hugepages-size-absent"),
    pytest.param(node(hugepages={"hugepages-1Gi": 8 * GiB, "hugepages-2Mi": 8 * GiB}),
                 NodeUsage(hugepages={"hugepages-1Gi": 6 * GiB}), {k.HUGEPAGES: "1Gi"},
                 "needs 4Gi of hugepages-1Gi, 2Gi free", False, id="hugepages-used-up"),
    pytest.param(node(hugepages={"hugepages-1Gi": 8 * GiB}),
                 NodeUsage(hugepages={"hugepages-2Mi": 6 * GiB}), {k.HUGEPAGES: "1Gi"}, "", False,
                 id="hugepages-other-size-irrelevant"),
    pytest.param(node(cpu=8000), NodeUsage(cpu_millis=6500), {k.DEDICATED_CPUS: "true"},
                 "needs 2 dedicated CPUs (whole cores), 1 free", False, id="dedicated-whole-cores"),
    pytest.param(node(cpu=1000), NodeUsage(), {k.DEDICATED_CPUS: "true"},
                 "needs 2 dedicated CPUs, node has 1 allocatable", True, id="dedicated-too-small"),
    pytest.param(node(cpu=1000), NodeUsage(cpu_millis=900), {}, "needs 200m CPU, 100m free",
                 False, id="shared-cpu-misfit"),
    pytest.param(node("n1"), NodeUsage(), {k.NODE_NAMES: "n2,n3"},
                 f"VM is pinned to n2, n3 ({k.NODE_NAMES})", True, id="pinned-by-name"),
    pytest.param(node(labels={"zone": "b"}), NodeUsage(), {k.NODE_LABELS: "zone=a"},
                 f"node lacks label zone=a ({k.NODE_LABELS})", True, id="pinned-by-label"),
    pytest.param(node(labels={"zone": "a"}), NodeUsage(), {k.NODE_LABELS: "zone=a"}, "", False,
                 id="label-matches"),
    pytest.param(node(kvm=False), NodeUsage(), {},
                 f"KVM is not usable on this node ({k.NODE_KVM_LABEL}=false); set "
                 f"{k.ALLOW_EMULATION}=true to run the VM emulated", True, id="kvm-unusable"),
    pytest.param(node(kvm=False), NodeUsage(), {k.ALLOW_EMULATION: "true"}, "", False,
                 id="kvm-unusable-emulation-allowed"),
    pytest.param(NodeOffer("bare", memory=16 * GiB, cpu_millis=8000), NodeUsage(), {},
                 "needs 1 podvirt.io/vm, node does not advertise it", True,
                 id="node-without-podvirt"),
    pytest.param(node(), NodeUsage(extended={"devices.podvirt.io/kvm": 110}), {},
                 "needs 1 devices.podvirt.io/kvm, all 110 in use", False, id="kvm-device-exhausted"),
    pytest.param(node(devices=FOUR_GPUS), NodeUsage(), {k.DEVICES: "nvidia.com/gpu=2"}, "",
                 False, id="devices-fit"),
    pytest.param(node(), NodeUsage(), {k.DEVICES: "nvidia.com/gpu=1"},
                 "no device of type nvidia.com/gpu on node", True, id="device-type-absent"),
    pytest.param(node(devices=FOUR_GPUS),
                 NodeUsage(claimed=frozenset(d.address for d in FOUR_GPUS)),
                 {k.DEVICES: "pci:10de:1db6=1"}, "needs 1 pci:10de:1db6, all 4 claimed", False,
                 id="devices-all-claimed"),
    pytest.param(node(devices=FOUR_GPUS), NodeUsage(), {k.DEVICES: "pci:10de:1db6=2"}, "",
                 False, id="pci-request-fits-mapped-devices"),
    pytest.param(node(devices=FOUR_GPUS),
                 NodeUsage(claimed=frozenset(d.address for d in FOUR_GPUS[:3])),
                 {k.DEVICES: "nvidia.com/gpu=2"}, "needs 2 nvidia.com/gpu, 1 of 4 free", False,
                 id="devices-partly-claimed"),
    pytest.param(node(devices=FOUR_GPUS), NodeUsage(), {k.DEVICES: "nvidia.com/gpu=5"},
                 "needs 5 nvidia.com/gpu, node has 4", True, id="devices-more-than-node-has"),
    pytest.param(NodeOffer("n1", memory=16 * GiB, cpu_millis=8000, extended=KVM,
                           devices_error="podvirt.io/pci-devices annotation is unusable: x"),
                 NodeUsage(), {k.DEVICES: "nvidia.com/gpu=1"},
                 "podvirt.io/pci-devices annotation is unusable: x", False,
                 id="device-annotation-broken"),
]


@pytest.mark.parametrize("n, usage, annotations, reason, unresolvable", FILTER_CASES)
def test_filter_node(n, usage, annotations, reason, unresolvable):
    v = verdict(n, usage, annotations)
    assert v.reason == reason
    assert v.unresolvable is unresolvable
    assert v.fits is (reason == "")


def test_pci_request_needs_devices_of_the_resource_it_counts_under():
    """Without a rule the request counts under pci.podvirt.io/10de-1db6, which kubelet could
    never allocate from devices advertised as nvidia.com/gpu: they do not match."""
    v = verdict(node(devices=FOUR_GPUS), NodeUsage(), {k.DEVICES: "pci:10de:1db6=1"},
                costs=DEFAULT_COSTS)
    assert (v.reason, v.unresolvable) == ("no device of type pci:10de:1db6 on node", True)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


QUARANTINE_CASES = [
    pytest.param((NOW - 60, NOW - 120), Policy(), "", id="two-failures-below-limit"),
    pytest.param((NOW - 60, NOW - 120, NOW - 700), Policy(), "", id="third-failure-aged-out"),
    pytest.param((NOW - 60, NOW - 120, NOW - 300), Policy(),
                 "quarantined: 3 VM start failures (VMStartFailed) in the last 10m, until "
                 + _iso(NOW - 300 + 600), id="three-in-window"),
    pytest.param((NOW - 10, NOW - 60, NOW - 120, NOW - 300), Policy(),
                 "quarantined: 4 VM start failures (VMStartFailed) in the last 10m, until "
                 + _iso(NOW - 120 + 600), id="until-third-most-recent-expires"),
    pytest.param((NOW - 60, NOW - 120, NOW - 300), Policy(quarantine_failures=0), "",
                 id="quarantine-disabled"),
    pytest.param((NOW - 60, NOW - 1000), Policy(quarantine_failures=2, quarantine_window=3600),
                 "quarantined: 2 VM start failures (VMStartFailed) in the last 1h, until "
                 + _iso(NOW - 1000 + 3600), id="configured-window"),
]


@pytest.mark.parametrize("failures, policy, reason", QUARANTINE_CASES)
def test_quarantine(failures, policy, reason):
    v = verdict(node(), NodeUsage(failures=tuple(sorted(failures))), {}, policy)
    assert v.reason == reason
    assert v.unresolvable is False


def test_numa_bonus_where_the_devices_share_a_numa_node():
    shape = vm(**{k.DEVICES: "nvidia.com/gpu=2"})
    split = (gpu("0000:3b:00.0", 0), gpu("0000:86:00.0", 1))      # one per NUMA node
    local = (gpu("0000:3b:00.0", 0), gpu("0000:3c:00.0", 0))
    taken = NodeUsage(claimed=frozenset({"0000:3c:00.0"}))     # local-busy: pair broken up
    scores = numa_scores([(node("split", devices=split), NodeUsage()),
                          (node("local", devices=local), NodeUsage()),
                          (node("local-busy", devices=local + (gpu("0000:86:00.0", 1),)),
                           taken)], shape)
    assert scores == [("split", 0), ("local", NUMA_BONUS), ("local-busy", 0)]


def test_vms_without_devices_score_alike():
    """Memory is kube-scheduler's to score (NodeResourcesFit): nothing to rank here."""
    candidates = [(node(f"n{i}"), NodeUsage(memory=used)) for i, used in enumerate((0, 12 * GiB))]
    assert numa_scores(candidates, vm()) == [("n0", 0), ("n1", 0)]


CHOICE_CASES = [
    pytest.param(FOUR_GPUS, frozenset(), "nvidia.com/gpu=2", ["0000:3b:00.0", "0000:3c:00.0"],
                 id="first-numa-node"),
    pytest.param(FOUR_GPUS, frozenset({"0000:3b:00.0"}), "nvidia.com/gpu=2",
                 ["0000:86:00.0", "0000:87:00.0"], id="prefers-numa-node-with-room"),
    pytest.param(FOUR_GPUS, frozenset({"0000:3b:00.0", "0000:86:00.0"}), "nvidia.com/gpu=2",
                 ["0000:3c:00.0", "0000:87:00.0"], id="spans-numa-nodes-when-needed"),
    pytest.param(FOUR_GPUS + (gpu("0000:d8:00.0", 1, resource="intel.com/nic"),),
                 frozenset(), "nvidia.com/gpu=1,intel.com/nic=1",
                 ["0000:86:00.0", "0000:d8:00.0"], id="mixed-requests-one-numa-node"),
]


@pytest.mark.parametrize("devices, claimed, request_text, expected", CHOICE_CASES)
def test_choose_devices(devices, claimed, request_text, expected):
    shape = vm(**{k.DEVICES: request_text})
    chosen = choose_devices(node(devices=devices), NodeUsage(claimed=claimed), shape.devices)
    assert [d.address for d in chosen] == expected


def test_choose_devices_unavailable_says_why():
    shape = vm(**{k.DEVICES: "nvidia.com/gpu=2"})
    claimed = frozenset(d.address for d in FOUR_GPUS[1:])
    with pytest.raises(DevicesUnavailable, match="needs 2 nvidia.com/gpu, 1 of 4 free"):
        choose_devices(node(devices=FOUR_GPUS), NodeUsage(claimed=claimed), shape.devices)
