"""Node facts for the extender: KVM usability, CPU model, hugepages, PCI devices.

`gather_facts` is a pure function of a sysfs/procfs root and the KVM verdict, so tests
feed it a fake tree; `node_patch` turns facts into the node labels and annotations in
podvirt.vmspec.keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from podvirt.launcher.kvm import KvmVerdict
from podvirt.quantity import format_bytes
from podvirt.vmspec import keys as k
from podvirt.vmspec.model import PassthroughDevice

# PCI classes that are never passthrough candidates: host, ISA and PCI bridges.
_BRIDGE_CLASSES = ("0x0600", "0x0601", "0x0604")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class NodeFacts:
    kvm: KvmVerdict
    cpu_model: str
    hugepages: tuple[tuple[str, int], ...]        # (size, free pages)
    pci_devices: tuple[PassthroughDevice, ...]

    def to_json(self) -> dict:
        return {"kvm": self.kvm.to_json(),
                "cpuModel": self.cpu_model, "hugepages": dict(self.hugepages),
                "pciDevices": [d.to_json() for d in self.pci_devices]}


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def cpu_model(cpuinfo: str) -> str:
    """The host CPU's model name as a label value (<= 63 chars of [A-Za-z0-9_.-])."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return _LABEL_UNSAFE.sub("-", value.strip()).strip("-_.")[:63].rstrip("-_.")
    return "unknown"


def hugepages(sys_root: Path) -> tuple[tuple[str, int], ...]:
    base = sys_root / "kernel/mm/hugepages"
    sizes = []
    for d in sorted(base.glob("hugepages-*kB")) if base.is_dir() else []:
        kib = int(d.name.removeprefix("hugepages-").removesuffix("kB"))
        sizes.append((format_bytes(kib * 1024), int(_read(d / "free_hugepages", "0") or 0)))
    return tuple(sorted(sizes, key=lambda s: s[0]))


def pci_devices(sys_root: Path) -> tuple[PassthroughDevice, ...]:
    """Devices with an IOMMU group that are not bridges: what VFIO could pass through."""
    base = sys_root / "bus/pci/devices"
    found = []
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        group = d / "iommu_group"
        if not group.exists() or _read(d / "class")[:6] in _BRIDGE_CLASSES:
            continue
        driver = d / "driver"
        found.append(PassthroughDevice(
            address=d.name,
            vendor=_read(d / "vendor").removeprefix("0x"),
            device=_read(d / "device").removeprefix("0x"),
            numa_node=int(_read(d / "numa_node", "-1") or -1),
            iommu_group=int(group.resolve().name) if group.resolve().name.isdigit() else -1,
            driver=driver.resolve().name if driver.exists() else ""))
    return tuple(found)


def gather_facts(*, sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc"),
                 kvm: KvmVerdict) -> NodeFacts:
    return NodeFacts(kvm=kvm, cpu_model=cpu_model(_read(proc_root / "cpuinfo")),
                     hugepages=hugepages(sys_root), pci_devices=pci_devices(sys_root))


def capacity_patch(vm_slots: int) -> dict:
    """Node status patch advertising the marker resource every launcher pod requests.

    Nothing else advertises podvirt.io/vm; without it kubelet refuses launcher pods and the
    extender filters the node out. One slot per VM the node may run (its pod limit is the
    natural bound)."""
    quantity = str(vm_slots)
    return {"status": {"capacity": {k.VM_MARKER_RESOURCE: quantity},
                       "allocatable": {k.VM_MARKER_RESOURCE: quantity}}}


def node_patch(facts: NodeFacts) -> dict:
    return {"metadata": {
        "labels": {k.NODE_KVM_LABEL: "true" if facts.kvm.usable else "false",
                   k.NODE_CPU_MODEL_LABEL: facts.cpu_model},
        "annotations": {
            k.NODE_PCI_DEVICES: json.dumps([d.to_json() for d in facts.pci_devices],
                                           separators=(",", ":")),
            k.NODE_HUGEPAGES: json.dumps(dict(facts.hugepages), separators=(",", ":"))}}}
