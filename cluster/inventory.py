"""Fake-node inventory: a YAML file of node shapes -> Node objects kwok will animate.

The file format is documented at the top of examples/nodes.yaml. Parsing is pure and
checks every value up front, so a typo fails `podvirt cluster up` with the node and field
named, before any process starts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from podvirt.quantity import QuantityError, parse_decimal
from podvirt.vmspec import PassthroughDevice
from podvirt.vmspec import keys as k

# kwok manages exactly the nodes carrying this annotation (--manage-nodes-with-annotation-selector).
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_VALUE = "fake"
# Beside a real node the fake ones carry this taint, so only pods that tolerate it (the
# scheduling examples) land where no container would ever run.
FAKE_NODE_TAINT = {"key": KWOK_ANNOTATION, "value": KWOK_VALUE, "effect": "NoSchedule"}
DEFAULT_INVENTORY = Path(__file__).resolve().parent / "nodes.yaml"  # -> examples/nodes.yaml

# Every kubelet reports its root filesystem as ephemeral-storage, allocatable less the 10%
# its default hard eviction threshold keeps free (nodefs.available<10%); a fake node the
# inventory gives none gets this disk, so VM pods' scratch disks and overlays are fitted.
DEFAULT_EPHEMERAL_STORAGE = ("100Gi", "90Gi")     # (capacity, allocatable)
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NODE_KEYS = {"name", "labels", "annotations", "capacity", "allocatable", "pciDevices"}
_DEVICE_KEYS = {"address", "vendor", "device", "resource", "numaNode", "iommuGroup", "driver"}


class InventoryError(ValueError):
    """An inventory file that does not describe valid nodes."""


@dataclass(frozen=True)
class FakeNode:
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    capacity: Mapping[str, str]
    allocatable: Mapping[str, str]
    devices: tuple[PassthroughDevice, ...] = ()

    def manifest(self, tainted: bool = False) -> dict[str, Any]:
        """The Node as the API takes it, status included (kwok keeps a set allocatable)."""
        annotations = {**self.annotations, KWOK_ANNOTATION: KWOK_VALUE}
        if self.devices:
            annotations[k.NODE_PCI_DEVICES] = json.dumps([d.to_json() for d in self.devices])
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "type": "kwok", **self.labels}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": labels, "annotations": annotations},
                "spec": {"taints": [dict(FAKE_NODE_TAINT)]} if tainted else {},
                "status": {"capacity": dict(self.capacity),
                           "allocatable": dict(self.allocatable)}}


def _strings(where: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InventoryError(f"{where}: expected a mapping, got {type(raw).__name__}")
    out = {}
    for key, value in raw.items():
        if not isinstance(key, str) or isinstance(value, (dict, list)) or value is None:
            raise InventoryError(f"{where}: {key!r} must map to a string")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _quantities(where: str, raw: Any) -> dict[str, str]:
    out = _strings(where, raw)
    for name, value in out.items():
        try:
            if parse_decimal(value) < 0:
                raise QuantityError(f"{value!r} is negative")
        except QuantityError as exc:
            raise InventoryError(f"{where}.{name}: {exc}") from None
    return out


def _device(where: str, raw: Any) -> PassthroughDevice:
    if not isinstance(raw, dict) or not {"address", "vendor", "device"} <= raw.keys():
        raise InventoryError(f"{where}: needs address, vendor and device")
    unknown = raw.keys() - _DEVICE_KEYS
    if unknown:
        raise InventoryError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    try:
        return PassthroughDevice(address=str(raw["address"]), vendor=str(raw["vendor"]),
                                 device=str(raw["device"]), resource=str(raw.get("resource", "")),
                                 numa_node=int(raw.get("numaNode", -1)),
                                 iommu_group=int(raw.get("iommuGroup", -1)),
                                 driver=str(raw.get("driver", "")))
    except (TypeError, ValueError):
        raise InventoryError(f"{where}: numaNode and iommuGroup must be integers") from None


def _node(where: str, raw: Any, defaults: Mapping[str, Any]) -> FakeNode:
    if not isinstance(raw, dict):
        raise InventoryError(f"{where}: expected a mapping")
    unknown = raw.keys() - _NODE_KEYS
    if unknown:
        raise InventoryError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _DNS_NAME.match(name) or len(name) > 253:
        raise InventoryError(f"{where}: name {name!r} is not a DNS-1123 subdomain")
    where = f"node {name}"
    devices = tuple(_device(f"{where}.pciDevices[{i}]", d)
                    for i, d in enumerate(raw.get("pciDevices") or ()))
    # A device plugin advertises one unit of its resource per device: derive the count so
    # the inventory cannot disagree with itself.
    device_counts: dict[str, str] = {}
    for d in devices:
        if d.resource:
            device_counts[d.resource] = str(int(device_counts.get(d.resource, "0")) + 1)
    capacity = {**_quantities("defaults.capacity", defaults.get("capacity")), **device_counts,
                **_quantities(f"{where}.capacity", raw.get("capacity"))}
    for required in ("cpu", "memory", "pods"):
        if required not in capacity:
            raise InventoryError(f"{where}: capacity.{required} is required")
    given = _quantities(f"{where}.allocatable", raw.get("allocatable"))
    if "ephemeral-storage" not in capacity:
        capacity["ephemeral-storage"] = DEFAULT_EPHEMERAL_STORAGE[0]
        given.setdefault("ephemeral-storage", DEFAULT_EPHEMERAL_STORAGE[1])
    allocatable = {**capacity, **given}
    for resource, value in allocatable.items():
        if resource in capacity and parse_decimal(value) > parse_decimal(capacity[resource]):
            raise InventoryError(f"{where}: allocatable.{resource} {value} exceeds "
                                 f"capacity {capacity[resource]}")
    return FakeNode(
        name=name,
        labels=MappingProxyType({**_strings("defaults.labels", defaults.get("labels")),
                                 **_strings(f"{where}.labels", raw.get("labels"))}),
        annotations=MappingProxyType({**_strings("defaults.annotations",
                                                 defaults.get("annotations")),
                                      **_strings(f"{where}.annotations", raw.get("annotations"))}),
        capacity=MappingProxyType(capacity), allocatable=MappingProxyType(allocatable),
        devices=devices)


def parse(text: str) -> tuple[FakeNode, ...]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryError(f"not YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list) or not doc["nodes"]:
        raise InventoryError("expected a mapping with a non-empty 'nodes' list")
    unknown = doc.keys() - {"defaults", "nodes"}
    if unknown:
        raise InventoryError(f"unknown top-level field(s) {', '.join(sorted(unknown))}")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict) or defaults.keys() - {"labels", "annotations", "capacity"}:
        raise InventoryError("defaults may only hold labels, annotations and capacity")
    nodes = tuple(_node(f"nodes[{i}]", raw, defaults) for i, raw in enumerate(doc["nodes"]))
    names = [n.name for n in nodes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InventoryError(f"duplicate node name(s): {', '.join(duplicates)}")
    return nodes


def load(path: Path) -> tuple[FakeNode, ...]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    try:
        return parse(text)
    except InventoryError as exc:
        raise InventoryError(f"{path}: {exc}") from None
