"""A fake sysfs PCI tree and stand-in VFIO group nodes, shared by the device plugin tests
and the node tier (no passthrough hardware exists here).

Laid out as the kernel does, with relative symlinks so the tree works wherever it is
mounted: <sys>/bus/pci/devices/<addr>/{vendor,device,class,numa_node},
iommu_group -> ../../../../kernel/iommu_groups/<n>, driver -> ../../../../bus/pci/drivers/<d>.
Group nodes are character devices with /dev/null's numbers: kubelet can hand them to a
container and open them in its device cgroup, but they are no VFIO group.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FakeDevice:
    address: str
    vendor: str = "10de"
    device: str = "1eb8"
    group: int = 30
    numa: int = 0
    driver: str = "vfio-pci"
    pci_class: str = "0x030200"


def add_device(sys_root: Path, d: FakeDevice) -> None:
    base = sys_root / "bus/pci/devices" / d.address
    base.mkdir(parents=True)
    for name, value in (("vendor", f"0x{d.vendor}"), ("device", f"0x{d.device}"),
                        ("class", d.pci_class), ("numa_node", str(d.numa))):
        (base / name).write_text(value + "\n")
    (sys_root / "kernel/iommu_groups" / str(d.group)).mkdir(parents=True, exist_ok=True)
    (base / "iommu_group").symlink_to(f"../../../../kernel/iommu_groups/{d.group}")
    if d.driver:
        (sys_root / "bus/pci/drivers" / d.driver).mkdir(parents=True, exist_ok=True)
        (base / "driver").symlink_to(f"../../../../bus/pci/drivers/{d.driver}")


def unbind(sys_root: Path, address: str) -> None:
    (sys_root / "bus/pci/devices" / address / "driver").unlink()


def make_char_device(path: Path) -> None:
    """A character device node with /dev/null's numbers (we run as root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))


def make_tree(root: Path, devices: tuple[FakeDevice, ...]) -> tuple[Path, Path]:
    """(sysfs root, VFIO dir) under root, with every device's group node and vfio."""
    sys_root, vfio_dir = root / "sys", root / "dev/vfio"
    for d in devices:
        add_device(sys_root, d)
        if not (vfio_dir / str(d.group)).exists():
            make_char_device(vfio_dir / str(d.group))
    make_char_device(vfio_dir / "vfio")
    return sys_root, vfio_dir
