"""Node facts for the extender: KVM usability, CPU model, hugepages, PCI devices (pci.py).

`gather_facts` is a pure function of a sysfs/procfs root and the KVM verdict, so tests
feed it a fake tree; `node_patch` turns facts into the node labels and annotations in
podvirt.vmspec.keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from podvirt.launcher import pci
from podvirt.launcher.kvm import KvmVerdict
from podvirt.quantity import format_bytes
from podvirt.vmspec import keys as k
from podvirt.vmspec.devicemap import NO_RULES, DeviceResources
from podvirt.vmspec.model import PassthroughDevice

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ProbeResult:
    """What one probe of this node measured; node_patch publishes it for the extender."""
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


def gather_facts(*, sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc"),
                 kvm: KvmVerdict, pci_sys_root: Path | None = None,
                 resources: DeviceResources = NO_RULES) -> ProbeResult:
    """`pci_sys_root` (default `sys_root`) is where PCI devices are scanned: the node
    tier points it at a fake tree while hugepages still come from the real /sys."""
    return ProbeResult(kvm=kvm, cpu_model=cpu_model(_read(proc_root / "cpuinfo")),
                     hugepages=hugepages(sys_root),
                     pci_devices=pci.scan(pci_sys_root or sys_root, resources))


def capacity_patch(vm_slots: int) -> dict:
    """Node status patch advertising the marker resource every launcher pod requests.

    Nothing else advertises podvirt.io/vm; without it kubelet refuses launcher pods and the
    extender filters the node out. One slot per VM the node may run (its pod limit is the
    natural bound)."""
    quantity = str(vm_slots)
    return {"status": {"capacity": {k.VM_MARKER_RESOURCE: quantity},
                       "allocatable": {k.VM_MARKER_RESOURCE: quantity}}}


def node_patch(facts: ProbeResult) -> dict:
    return {"metadata": {
        "labels": {k.NODE_KVM_LABEL: "true" if facts.kvm.usable else "false",
                   k.NODE_CPU_MODEL_LABEL: facts.cpu_model},
        "annotations": {
            k.NODE_PCI_DEVICES: json.dumps([d.to_json() for d in facts.pci_devices],
                                           separators=(",", ":")),
            k.NODE_HUGEPAGES: json.dumps(dict(facts.hugepages), separators=(",", ":"))}}}
