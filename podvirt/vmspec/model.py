"""The VM spec: frozen, typed values parsed from a pod's podvirt.io/ annotations.

Nothing here does I/O or applies policy; parse.py builds these, overhead.py prices
them, and the services render them.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Iterable, Literal

from podvirt.vmspec.pciaddress import pci_address

DiskKind = Literal["containerdisk", "pvc", "scratch", "file"]
# pod: behind the pod's IP through passt (DHCP, NAT out, declared ports in);
# user: QEMU's own user networking (slirp), outbound only.
NicBinding = Literal["pod", "user"]
PortProtocol = Literal["tcp", "udp"]

# Where the launcher pod mounts what the webhook renders; the launcher and the
# sanitizer both treat these as "inside the pod".
POD_ROOT = "/var/lib/podvirt"
DISKS_ROOT = POD_ROOT + "/disks"
SPEC_DIR = "/etc/podvirt"
SPEC_FILE = SPEC_DIR + "/annotations"
# The launcher's Prometheus endpoint in every VM pod (launcher/metrics.py).
METRICS_PORT = 9101
# A live migration's target launcher listens here on its pod's IP (launcher/migration.py).
MIGRATION_PORT = 49152
CLOUD_INIT_DIR = SPEC_DIR + "/cloud-init"
# Where an init container copies kernel and initrd out of podvirt.io/kernel-image.
KERNEL_BOOT_DIR = POD_ROOT + "/kernel-boot"
# The launcher's scratch directory; its serial console socket is there, where
# `podvirt launcher console` (run by `kubectl podvirt console`) finds it.
LAUNCHER_WORK_DIR = POD_ROOT + "/launcher"
CONSOLE_SOCKET = LAUNCHER_WORK_DIR + "/console.sock"
# A VM's VNC server listens on the pod's loopback at this fixed port, the one
# `kubectl podvirt vnc` forwards (each pod has its own network namespace, so no clash).
VNC_PORT = 5900
# Paths a VM may name directly (file: disks, kernel, initrd, domain XML sources).
ALLOWED_PATH_ROOTS: tuple[str, ...] = (POD_ROOT, SPEC_DIR, "/var/run/podvirt", "/tmp/podvirt")


def inside_roots(path: str, roots: Iterable[str] = ALLOWED_PATH_ROOTS) -> bool:
    """Whether absolute `path`, once normalized ('..' resolved), is one of `roots` or
    below one."""
    if not path.startswith("/") or "\x00" in path:
        return False
    norm = posixpath.normpath(path)
    return any(norm == r or norm.startswith(r.rstrip("/") + "/") for r in roots)


@dataclass(frozen=True)
class Disk:
    name: str
    kind: DiskKind
    source: str              # image reference, claim name, file path, or "" for scratch
    # scratch: the disk's size; containerdisk, file: the pod storage it may fill (`size=`;
    # 0: the operator's default, overhead.StorageConstants.overlay_disk); pvc: unused.
    size_bytes: int = 0

    @property
    def mount_dir(self) -> str:
        """Directory of this disk inside the launcher pod (containerdisk, pvc, scratch)."""
        return f"{DISKS_ROOT}/{self.name}"


@dataclass(frozen=True)
class Nic:
    name: str
    binding: NicBinding
    mac: str | None = None


@dataclass(frozen=True, order=True)
class Port:
    """A guest port forwarded from the pod's IP (the pod NIC's passt)."""
    number: int
    protocol: PortProtocol = "tcp"

    def __str__(self) -> str:
        return f"{self.number}/{self.protocol}"


@dataclass(frozen=True)
class DeviceRequest:
    """Passthrough devices by extended-resource name, or by PCI vendor:device (whose
    resource devicemap.DeviceResources.resolve fills in)."""
    count: int
    resource: str | None = None
    vendor: str | None = None    # 4 lowercase hex digits
    device: str | None = None

    @property
    def label(self) -> str:
        return f"pci:{self.vendor}:{self.device}" if self.vendor else str(self.resource)

    def matches(self, dev: "PassthroughDevice") -> bool:
        """A pci: request resolved by devicemap carries both: the PCI ID and the resource
        kubelet allocates it from must match."""
        if self.resource is not None and dev.resource != self.resource:
            return False
        return self.vendor is None or (dev.vendor, dev.device) == (self.vendor, self.device)


@dataclass(frozen=True)
class PassthroughDevice:
    """A host PCI device a node publishes (podvirt.io/pci-devices) and the extender assigns."""
    address: str             # 0000:3b:00.0
    vendor: str
    device: str
    resource: str = ""       # extended resource the device plugin advertises it under
    numa_node: int = -1
    iommu_group: int = -1
    driver: str = ""

    @classmethod
    def from_json(cls, raw: object) -> "PassthroughDevice":
        """One entry of podvirt.io/pci-devices or podvirt.io/assigned-devices."""
        if not isinstance(raw, dict):
            raise ValueError(f"expected an object, got {type(raw).__name__}")
        try:
            address, vendor, device = raw["address"], raw["vendor"], raw["device"]
        except KeyError as exc:
            raise ValueError(f"device entry lacks {exc.args[0]!r}") from None
        if not all(isinstance(v, str) and v for v in (address, vendor, device)):
            raise ValueError("address, vendor and device must be non-empty strings")
        numa, group = raw.get("numaNode", -1), raw.get("iommuGroup", -1)
        if type(numa) is not int or type(group) is not int:
            raise ValueError(f"device {address}: numaNode and iommuGroup must be integers")
        return cls(address=pci_address(address), vendor=vendor.lower(), device=device.lower(),
                   resource=str(raw.get("resource") or ""), numa_node=numa,
                   iommu_group=group, driver=str(raw.get("driver") or ""))

    def to_json(self) -> dict:
        return {"address": self.address, "vendor": self.vendor, "device": self.device,
                "resource": self.resource, "numaNode": self.numa_node,
                "iommuGroup": self.iommu_group, "driver": self.driver}


def parse_devices(text: str | None) -> tuple[PassthroughDevice, ...]:
    """A JSON list of devices (podvirt.io/pci-devices, podvirt.io/assigned-devices);
    ValueError says what is wrong with it."""
    import json
    if not text:
        return ()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from None
    if not isinstance(raw, list):
        raise ValueError("must be a JSON list")
    devices = tuple(PassthroughDevice.from_json(item) for item in raw)
    if len({d.address for d in devices}) != len(devices):
        raise ValueError("lists a PCI address twice")
    return devices


@dataclass(frozen=True)
class Pinning:
    node_names: tuple[str, ...] = ()
    node_labels: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.node_names or self.node_labels)


@dataclass(frozen=True)
class CloudInit:
    inline: str | None = None
    secret: str | None = None
    configmap: str | None = None


@dataclass(frozen=True)
class VMSpec:
    name: str                           # the pod's name (the domain's name)
    vcpus: int
    memory_bytes: int                   # guest RAM
    cpu_model: str = "host-model"
    dedicated_cpus: bool = False
    hugepage_bytes: int | None = None   # page size, when memory is hugepage-backed
    machine: str = "q35"
    pinning: Pinning = field(default_factory=Pinning)
    devices: tuple[DeviceRequest, ...] = ()
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    ports: tuple[Port, ...] = ()        # forwarded into the guest through the pod NIC
    kernel: str | None = None           # inside the pod, or inside kernel_image
    initrd: str | None = None
    kernel_args: str | None = None
    kernel_image: str | None = None     # image the kernel and initrd are copied out of
    cloud_init: CloudInit | None = None
    graphics: Literal["none", "vnc"] = "none"
    firmware: Literal["bios", "efi"] = "bios"
    secure_boot: bool = False
    tpm: bool = False
    start_retries: int = 2
    shutdown_grace_seconds: int = 60
    allow_emulation: bool = False
    domain_xml: str | None = None

    def boot_path(self, path: str | None) -> str | None:
        """Where the domain finds `kernel` or `initrd` inside the pod: copied out of
        kernel_image into KERNEL_BOOT_DIR under its own file name, or as given."""
        if path is None or self.kernel_image is None:
            return path
        return f"{KERNEL_BOOT_DIR}/{path.rsplit('/', 1)[1]}"

    @property
    def pod_nic(self) -> Nic | None:
        """The NIC behind the pod's IP (at most one: passt owns the pod's ports)."""
        return next((n for n in self.nics if n.binding == "pod"), None)

    @property
    def hugepage_size(self) -> str | None:
        from podvirt.quantity import format_bytes
        return format_bytes(self.hugepage_bytes) if self.hugepage_bytes else None
