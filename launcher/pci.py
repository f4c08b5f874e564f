"""PCI passthrough candidates as sysfs shows them, for the probe and the device plugin.

A pure function of a sysfs root, so both take it as a flag and tests (and the node tier)
point them at a fake tree: <root>/bus/pci/devices/<address>/ with vendor, device, class,
numa_node, an iommu_group symlink and a driver symlink, as the kernel lays it out.
"""

from __future__ import annotations

from pathlib import Path

from podvirt.vmspec.devicemap import DeviceResources
from podvirt.vmspec.model import PassthroughDevice

# PCI classes that are never passthrough candidates: host, ISA and PCI bridges.
_BRIDGE_CLASSES = ("0x0600", "0x0601", "0x0604")


def is_vfio(driver: str) -> bool:
    """Bound to vfio-pci or a VFIO variant driver (mlx5_vfio_pci, ...): QEMU can open it
    through /dev/vfio with the host driver out of the way, which managed='no' relies on."""
    return driver == "vfio-pci" or driver.endswith("_vfio_pci")


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def scan(sys_root: Path, resources: DeviceResources) -> tuple[PassthroughDevice, ...]:
    """Devices with an IOMMU group that are not bridges. Only VFIO-bound ones get a
    resource: those are what the device plugin serves and the extender may assign; the
    others are listed so a user sees what binding them to vfio-pci would offer."""
    base = sys_root / "bus/pci/devices"
    found = []
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        group = d / "iommu_group"
        if not group.exists() or _read(d / "class")[:6] in _BRIDGE_CLASSES:
            continue
        driver = d / "driver"
        driver_name = driver.resolve().name if driver.exists() else ""
        vendor = _read(d / "vendor").removeprefix("0x").lower()
        device = _read(d / "device").removeprefix("0x").lower()
        found.append(PassthroughDevice(
            address=d.name.lower(), vendor=vendor, device=device,
            resource=resources.for_device(vendor, device, driver_name)
            if is_vfio(driver_name) else "",
            numa_node=_number(_read(d / "numa_node", "-1") or "-1"),
            iommu_group=_number(group.resolve().name),
            driver=driver_name))
    return tuple(found)
