"""Host facts the domain XML is built from, gathered before conversion starts.

`domain_xml(spec, ctx)` is a pure function of the VM spec and this context, so
everything that needs I/O (the KVM check, disk preparation, device assignment, the
pod's CPU set) happens first and lands here as plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from podvirt.vmspec.model import PassthroughDevice, parse_devices
from podvirt.vmspec.overhead import OverheadConstants

DiskFormat = Literal["qcow2", "raw"]


@dataclass(frozen=True)
class DiskAttachment:
    """One disk as QEMU opens it: the overlay or volume path, not the user's source."""
    name: str
    path: str
    format: DiskFormat
    readonly: bool = False


@dataclass(frozen=True)
class HostContext:
    accel: Literal["kvm", "tcg"]
    uuid: str
    emulator: str = "/usr/bin/qemu-system-x86_64"
    disks: tuple[DiskAttachment, ...] = ()          # in the spec's order
    cloud_init_iso: str | None = None
    serial_log: str | None = None                    # None: a pty console
    serial_socket: str | None = None                 # interactive console (with serial_log)
    assigned: tuple[PassthroughDevice, ...] = ()
    passt_socket: str | None = None                  # the pod NIC's passt (podnet.py)
    nvram: str | None = None                         # an EFI guest's variable store
    host_cpus: tuple[int, ...] = ()                  # the pod's CPUs, for dedicated pinning
    tcg_cache_bytes: int = OverheadConstants().tcg_cache


class AssignedDevicesInvalid(ValueError):
    pass


def parse_assigned_devices(text: str | None) -> tuple[PassthroughDevice, ...]:
    """The extender's podvirt.io/assigned-devices annotation (JSON list) as values."""
    try:
        return parse_devices(text)
    except ValueError as exc:
        raise AssignedDevicesInvalid(f"podvirt.io/assigned-devices is not a JSON list of "
                                     f"devices with an address: {exc}") from None

class DevicesNotAllocated(ValueError):
    """kubelet gave the container other devices than the extender assigned the pod."""


def check_allocation(assigned: tuple[PassthroughDevice, ...],
                     allocated: frozenset[str]) -> None:
    """The extender's choice (podvirt.io/assigned-devices) against what kubelet allocated
    (the device plugin's PODVIRT_ALLOCATED_* env): the container's device cgroup holds
    only the allocated groups, so a VM with any other device must not start."""
    wanted = frozenset(d.address for d in assigned)
    if wanted == allocated:
        return
    if not allocated:
        raise DevicesNotAllocated(
            f"the extender assigned {', '.join(sorted(wanted))} (podvirt.io/assigned-devices) "
            "but kubelet allocated no passthrough device to this container: is podvirt's "
            "device plugin serving them (device-plugin --sys-root)?")
    if not wanted:
        raise DevicesNotAllocated(
            f"kubelet allocated {', '.join(sorted(allocated))} but the pod has no "
            "podvirt.io/assigned-devices: it was not bound by podvirt's extender")
    raise DevicesNotAllocated(
        f"kubelet allocated {', '.join(sorted(allocated))}, the extender assigned "
        f"{', '.join(sorted(wanted))} (podvirt.io/assigned-devices): the VM does not start "
        "with devices nobody chose for it")
