"""What a VM costs its node: guest memory plus the launcher pod's overhead, CPU, devices,
pod storage.

The webhook writes these numbers into the launcher pod and the extender filters nodes
with the very same function and constants (the contract's, contract.py), so a pod's
request and the extender's view cannot drift.

Memory overhead formula (each term a constant in OverheadConstants):

    overhead = guest_memory / page_table_divisor      guest page tables
             + vcpus * per_vcpu                       vCPU threads and their KVM state
             + launcher + libvirt + qemu_base         fixed process costs in the pod
             + video            (graphics=vnc)        emulated VGA framebuffer
             + tcg_cache        (allow-emulation)     TCG translation-block cache
             + passt            (a pod NIC)           passt, the pod network's user-space stack
             + efi_flash        (firmware: efi)       OVMF's code and variable flash in QEMU
             + tpm              (tpm: true)           swtpm, the emulated TPM
             + vfio             (passthrough)         locked DMA-mapping memory for VFIO

- page tables: x86-64 maps 4 KiB pages with 8-byte entries, so the last level alone is
  1/512 of guest memory (KubeVirt's virt-launcher uses the same ratio).
- per vCPU: each vCPU is a QEMU thread with its stack and the kernel's kvm_vcpu state;
  KubeVirt budgets 8 MiB per vCPU.
- launcher/libvirt/qemu_base: resident size of `podvirt launcher` (Python, 45Mi measured),
  the libvirt daemons (libvirtd + virtlogd, 49Mi measured) and QEMU's own memory beyond
  guest RAM. bench/launcher_bench.py measured QEMU RSS minus the memory the guest touched
  at 202-222Mi for 128Mi-1Gi guests under TCG, an upper bound since the guest kernel's
  pages count as overhead there; qemu_base was raised from 64Mi to 128Mi and libvirt
  from 40Mi to 56Mi on that evidence (KVM guests could not be measured on this machine).
- video: QEMU's standard VGA has a 16 MiB framebuffer.
- tcg_cache: with emulation allowed the launcher caps QEMU's TCG translation cache
  (libvirt <tcg><tb-cache>) to this size; without the cap QEMU reserves up to 1 GiB.
- passt: resident size of the passt process serving the pod NIC (31Mi measured idle:
  its flow tables and packet buffers are static).
- efi_flash: QEMU maps OVMF's two 4 MiB flash images (code, variables) as guest ROM/flash.
- tpm: resident size of swtpm (6.7Mi measured with a TPM 2.0 in use by the guest kernel).
- vfio: KubeVirt adds 1 GiB for VFIO devices' IOMMU mappings and QEMU's locked buffers.

Pod storage (`ephemeral-storage`, request = limit on the launcher container; kubelet
evicts a pod that writes more, as it OOM-kills one over its memory):

    storage = sum over disks of disk_storage(disk)    what the guest can fill
            + launcher                                the launcher's own files
            + kernel_boot      (kernel-image)         the kernel and initrd copied into the pod

- scratch <size>: a qcow2 of that virtual size in an emptyDir; fully written it is the size
  plus its metadata (qcow2_file_bytes), which is also the emptyDir's sizeLimit.
- containerdisk / file: the guest writes to a qcow2 overlay that grows up to the image's
  virtual size, and a containerdisk's image is copied into the pod first. Neither size is
  known at admission (the image is pulled on the node), so such a disk is priced at its
  `size=` (the pod storage it may take: copy plus overlay) or at `overlay_disk` (10Gi:
  Debian's, Ubuntu's and Fedora's cloud images are 2-5Gi virtual, their qcow2 files
  0.3-0.6Gi, so a fully rewritten one plus its copy fits). Pricing the image's virtual size
  exactly would need the image at admission; a fixed default is a bound the user can see
  and raise.
- launcher: libvirt's state and capability cache, QEMU's and the console's logs (virtlogd
  keeps 4 files of 2Mi each), the container log (kubelet rotates 5 files of 10Mi), the
  copied busybox (a 16Mi emptyDir), the cloud-init seed, the EFI variable store and swtpm's
  state: well under 256Mi together.
- kernel_boot: the sizeLimit of the emptyDir holding the kernel and initrd.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from podvirt.quantity import human_bytes
from podvirt.vmspec import keys as k
from podvirt.vmspec.devicemap import NO_RULES, DeviceResources
from podvirt.vmspec.model import Disk, VMSpec

MiB = 2**20
GiB = 2**30
# Kubernetes' resource names for what a launcher pod requests besides memory and cpu.
EPHEMERAL_STORAGE = "ephemeral-storage"
HUGEPAGES_PREFIX = "hugepages-"


@dataclass(frozen=True)
class OverheadConstants:
    page_table_divisor: int = 512
    per_vcpu: int = 8 * MiB
    launcher: int = 48 * MiB
    libvirt: int = 56 * MiB
    qemu_base: int = 128 * MiB
    video: int = 16 * MiB
    tcg_cache: int = 64 * MiB
    passt: int = 32 * MiB
    efi_flash: int = 8 * MiB
    tpm: int = 8 * MiB
    vfio: int = GiB


@dataclass(frozen=True)
class StorageConstants:
    launcher: int = 256 * MiB
    overlay_disk: int = 10 * GiB
    kernel_boot: int = GiB


def qcow2_file_bytes(virtual: int) -> int:
    """The most a qcow2 image of `virtual` bytes occupies fully written, whole MiB: with
    64 KiB clusters an 8-byte L2 entry and a 2-byte refcount per cluster (virtual/6554),
    plus L1, header and refcount-table clusters; virtual/4096 + 1Mi bounds it (`qemu-img
    measure`: 100Ti fully allocated is 100Ti + 15.7Gi)."""
    return -(-(virtual + virtual // 4096 + MiB) // MiB) * MiB


@dataclass(frozen=True)
class ResourceNames:
    """Extended resources that device plugins advertise for host devices."""
    kvm: str = "devices.podvirt.io/kvm"
    tun: str = "devices.podvirt.io/tun"
    vhost_net: str = "devices.podvirt.io/vhost-net"


@dataclass(frozen=True)
class CostSettings:
    overhead: OverheadConstants = field(default_factory=OverheadConstants)
    storage: StorageConstants = field(default_factory=StorageConstants)
    resources: ResourceNames = field(default_factory=ResourceNames)
    # The extended resource each passthrough device counts under (devicemap.py).
    devices: DeviceResources = NO_RULES
    # Shared (non-dedicated) vCPUs request 1/ratio of a core each, as KubeVirt's
    # cpuAllocationRatio does; dedicated vCPUs take whole cores.
    cpu_allocation_ratio: int = 10


DEFAULT_COSTS = CostSettings()


@dataclass(frozen=True)
class Overhead:
    page_tables: int
    vcpus: int
    fixed: int
    video: int
    tcg_cache: int
    vfio: int
    network: int = 0
    firmware: int = 0          # EFI flash and the TPM emulator

    @property
    def total(self) -> int:
        return (self.page_tables + self.vcpus + self.fixed + self.video + self.tcg_cache
                + self.vfio + self.network + self.firmware)


@dataclass(frozen=True)
class Storage:
    """The launcher pod's ephemeral-storage, by what fills it."""
    disks: tuple[tuple[str, int], ...]    # (disk name, bytes), in podvirt.io/disks order
    launcher: int                         # the launcher's own files
    kernel_boot: int = 0                  # kernel and initrd copied out of kernel-image

    @property
    def total(self) -> int:
        return sum(size for _, size in self.disks) + self.launcher + self.kernel_boot

    def parts(self) -> list[str]:
        """['disk root 10Gi', 'launcher 256Mi']: which disk asks for how much."""
        parts = [f"disk {name} {human_bytes(size)}" for name, size in self.disks]
        parts.append(f"launcher {human_bytes(self.launcher)}")
        if self.kernel_boot:
            parts.append(f"kernel-image {human_bytes(self.kernel_boot)}")
        return parts


@dataclass(frozen=True)
class Demand:
    """Everything the launcher pod requests for one VM."""
    guest_memory: int
    overhead: Overhead
    # Container memory request = limit: what the VM takes of the node's `memory`
    # allocatable (with hugepages only the overhead; the guest's RAM is in `hugepages`).
    memory: int
    hugepages: tuple[str, int] | None     # ("hugepages-2Mi", bytes)
    cpu_request_millis: int
    cpu_limit_millis: int | None          # None: no limit (shared vCPUs may burst)
    extended: tuple[tuple[str, int], ...]  # (resource name, count), sorted
    storage: Storage

    @property
    def ephemeral_storage(self) -> int:
        """ephemeral-storage request = limit of the launcher container."""
        return self.storage.total

    @property
    def requests(self) -> dict[str, int]:
        """The launcher container's resource requests, in whole units (bytes, millicores
        for cpu, counts for extended resources): the webhook renders exactly these, and
        the extender assumes them for a VM whose pod it has not seen."""
        return self._resources(self.cpu_request_millis)

    @property
    def limits(self) -> dict[str, int]:
        """The launcher container's limits: its requests, except that shared vCPUs have
        no cpu limit."""
        return self._resources(self.cpu_limit_millis)

    def _resources(self, cpu_millis: int | None) -> dict[str, int]:
        out = {"memory": self.memory}
        if cpu_millis is not None:
            out["cpu"] = cpu_millis
        if self.hugepages:
            out[self.hugepages[0]] = self.hugepages[1]
        # Scratch disks, overlays and copied images fill the node's disk: requested so the
        # scheduler counts them, limited so kubelet evicts a pod that writes more.
        out[EPHEMERAL_STORAGE] = self.ephemeral_storage
        # Extended resources cannot be overcommitted: Kubernetes wants requests = limits.
        # Every launcher pod takes one VM marker (contracts.md).
        out.update(self.extended)
        out[k.VM_MARKER_RESOURCE] = 1
        return out

    def describe_memory(self, pod_memory: int | None = None) -> str:
        """'4.1Gi (4Gi guest + 120Mi overhead)': the memory request and what makes it up.

        `pod_memory` is the whole pod's memory request when other containers (sidecars)
        add to the VM's; below the VM's own (a pod rendered with other constants) only that
        number can be told."""
        need = self.memory if pod_memory is None else pod_memory
        extra = need - self.memory
        if extra < 0:
            return human_bytes(need)
        sidecars = f" + {human_bytes(extra)} sidecars" if extra else ""
        if self.hugepages:
            own = f"{human_bytes(self.memory)} overhead{sidecars}"
            head = f"{human_bytes(need)} ({own})" if extra else own
            return f"{head} + {human_bytes(self.hugepages[1])} {self.hugepages[0]}"
        return (f"{human_bytes(need)} ({human_bytes(self.guest_memory)} guest + "
                f"{human_bytes(self.overhead.total)} overhead{sidecars})")


def memory_overhead(spec: VMSpec, c: OverheadConstants = OverheadConstants()) -> Overhead:
    page_tables = -(-spec.memory_bytes // c.page_table_divisor)  # ceiling
    return Overhead(
        page_tables=page_tables,
        vcpus=spec.vcpus * c.per_vcpu,
        fixed=c.launcher + c.libvirt + c.qemu_base,
        video=c.video if spec.graphics == "vnc" else 0,
        tcg_cache=c.tcg_cache if spec.allow_emulation else 0,
        vfio=c.vfio if spec.devices else 0,
        network=c.passt if spec.pod_nic else 0,
        firmware=(c.efi_flash if spec.firmware == "efi" else 0) + (c.tpm if spec.tpm else 0),
    )


def disk_storage(disk: Disk, c: StorageConstants = StorageConstants()) -> int:
    """Pod storage one disk can fill (a pvc's bytes are the claim's, not the node's)."""
    if disk.kind == "scratch":
        return qcow2_file_bytes(disk.size_bytes)
    if disk.kind in ("containerdisk", "file"):
        return disk.size_bytes or c.overlay_disk
    return 0


def storage(spec: VMSpec, c: StorageConstants = StorageConstants()) -> Storage:
    disks = tuple((d.name, size) for d in spec.disks if (size := disk_storage(d, c)))
    return Storage(disks, c.launcher, c.kernel_boot if spec.kernel_image else 0)


def demand(spec: VMSpec, settings: CostSettings = DEFAULT_COSTS) -> Demand:
    overhead = memory_overhead(spec, settings.overhead)
    # Round the container's memory up to whole MiB: nicer quantities, never less.
    mem_overhead = -(-overhead.total // MiB) * MiB
    if spec.hugepage_bytes:
        hugepages = (f"{HUGEPAGES_PREFIX}{spec.hugepage_size}", spec.memory_bytes)
        memory = mem_overhead
    else:
        hugepages = None
        memory = spec.memory_bytes + mem_overhead
    if spec.dedicated_cpus:
        cpu_request = cpu_limit = spec.vcpus * 1000
    else:
        cpu_request = max(1, -(-spec.vcpus * 1000 // settings.cpu_allocation_ratio))
        cpu_limit = None
    extended: dict[str, int] = {}
    names = settings.resources
    if not spec.allow_emulation:
        extended[names.kvm] = 1
    for request in spec.devices:
        resource = settings.devices.for_request(request)
        extended[resource] = extended.get(resource, 0) + request.count
    return Demand(
        guest_memory=spec.memory_bytes,
        overhead=overhead,
        memory=memory,
        hugepages=hugepages,
        cpu_request_millis=cpu_request,
        cpu_limit_millis=cpu_limit,
        extended=tuple(sorted(extended.items())),
        storage=storage(spec, settings.storage),
    )
