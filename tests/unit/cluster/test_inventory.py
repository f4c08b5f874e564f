"""The fake-node inventory format (pure parsing: no cluster needed)."""

from __future__ import annotations

import json

import pytest

from podvirt.cluster.inventory import DEFAULT_INVENTORY, KWOK_ANNOTATION, InventoryError, load, parse
from podvirt.vmspec import keys as k

MINIMAL = "nodes:\n- name: n1\n  capacity: {cpu: '4', memory: 8Gi, pods: '110'}\n"


def test_default_inventory_parses_into_distinct_shapes():
    nodes = {n.name: n for n in load(DEFAULT_INVENTORY)}
    assert len(nodes) >= 4
    gpus = json.loads(nodes["big-gpu"].manifest()["metadata"]["annotations"][k.NODE_PCI_DEVICES])
    assert sorted(d["numaNode"] for d in gpus) == [0, 1]
    assert nodes["big-gpu"].allocatable["example.com/gpu"] == "2"
    assert nodes["no-kvm"].labels[k.NODE_KVM_LABEL] == "false"
    assert nodes["hugepages-b"].labels["podvirt.io/zone"] == "b"


def test_defaults_merge_under_node_values_and_allocatable_defaults_to_capacity():
    text = ("defaults:\n  labels: {podvirt.io/kvm: 'true'}\n  capacity: {podvirt.io/vm: '110'}\n"
            + MINIMAL + "  labels: {podvirt.io/kvm: 'false'}\n  allocatable: {memory: 7Gi}\n")
    (node,) = parse(text)
    manifest = node.manifest()
    assert manifest["metadata"]["labels"][k.NODE_KVM_LABEL] == "false"
    assert manifest["metadata"]["annotations"][KWOK_ANNOTATION] == "fake"
    assert manifest["status"]["allocatable"] == {"podvirt.io/vm": "110", "cpu": "4",
                                                 "memory": "7Gi", "pods": "110",
                                                 "ephemeral-storage": "90Gi"}


@pytest.mark.parametrize("extra, capacity, allocatable", [
    pytest.param("", "100Gi", "90Gi", id="absent-a-kubelets-default-disk"),
    pytest.param("  allocatable: {ephemeral-storage: 50Gi}\n", "100Gi", "50Gi",
                 id="allocatable-only"),
    pytest.param("  capacity: {cpu: '4', memory: 8Gi, pods: '110', ephemeral-storage: 1Ti}\n",
                 "1Ti", "1Ti", id="given-kept"),
])
def test_fake_nodes_always_report_ephemeral_storage(extra, capacity, allocatable):
    text = MINIMAL if "capacity" not in extra else MINIMAL.split("  capacity")[0]
    (node,) = parse(text + extra)
    assert (node.capacity["ephemeral-storage"], node.allocatable["ephemeral-storage"]) == \
        (capacity, allocatable)


@pytest.mark.parametrize("text, message", [
    pytest.param("nodes: []", "non-empty 'nodes'", id="no-nodes"),
    pytest.param("nodes: [", "not YAML", id="not-yaml"),
    pytest.param("nodes:\n- name: Bad_Name\n", "DNS-1123", id="bad-name"),
    pytest.param("nodes:\n- name: n1\n  capacity: {cpu: '4', pods: '1'}\n",
                 "capacity.memory is required", id="missing-memory"),
    pytest.param(MINIMAL.replace("8Gi", "8GB"), "node n1.capacity.memory", id="bad-quantity"),
    pytest.param(MINIMAL + "  allocatable: {cpu: '8'}\n", "exceeds capacity", id="alloc-over-cap"),
    pytest.param(MINIMAL + MINIMAL.removeprefix("nodes:\n"), "duplicate node name", id="duplicate"),
    pytest.param(MINIMAL + "  taints: []\n", "unknown field(s) taints", id="unknown-field"),
    pytest.param(MINIMAL + "  pciDevices: [{address: '0000:01:00.0'}]\n",
                 "needs address, vendor and device", id="device-incomplete"),
    pytest.param(MINIMAL + "  pciDevices: [{address: a, vendor: b, device: c, numaNode: x}]\n",
                 "must be integers", id="device-bad-numa"),
])
def test_bad_inventory_is_rejected_with_the_field_named(text, message):
    with pytest.raises(InventoryError) as info:
        parse(text)
    assert message in str(info.value)
