"""VFIO passthrough devices as kubelet device plugins, as plain values (no gRPC here).

One plugin per extended resource (podvirt.vmspec.devicemap names it), one kubelet device
per PCI address, each with its NUMA node so kubelet's topology manager can align it. A
device is Healthy while sysfs still shows it bound to a VFIO driver and its IOMMU group's
node <vfio-dir>/<group> exists; Allocate hands a container /dev/vfio/vfio and the group
node of each device, and tells the launcher which addresses kubelet chose (ENV_PREFIX).

Which devices: the extender picked them at bind time (podvirt.io/assigned-devices);
kubelet's device manager would pick any free ones. So the plugin answers
GetPreferredAllocation with the assignment of the pod being admitted, found as gpushare's
device plugin finds it: among this node's Pending pods, those whose assignment for this
resource is the request's size and wholly available (an admitted pod's devices no longer
are), the one bound first (podvirt.io/assigned-at): kubelet admits pods in the order they
are bound to it. Should kubelet still allocate others, the launcher compares and fails.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from podvirt.launcher.deviceplugin.devices import (HEALTHY, UNHEALTHY, AllocationError,
                                                   DeviceMount)
from podvirt.vmspec import keys as k
from podvirt.vmspec.model import PassthroughDevice, parse_devices

# Container env var per resource: PODVIRT_ALLOCATED_<RESOURCE>=<address>,<address>.
ENV_PREFIX = "PODVIRT_ALLOCATED_"
VFIO_CONTAINER = "vfio"          # /dev/vfio/vfio: the VFIO API every user opens first
CONTAINER_VFIO_DIR = "/dev/vfio"  # where QEMU (libvirt) looks for group nodes


def env_name(resource: str) -> str:
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", resource.upper())


def socket_name(resource: str) -> str:
    """Short whatever the resource's length: a unix socket path has at most 107 bytes."""
    return f"podvirt-vfio-{hashlib.sha256(resource.encode()).hexdigest()[:12]}.sock"


@dataclass(frozen=True, order=True)
class VfioDevice:
    """One kubelet device: a PCI address with its IOMMU group and NUMA node."""
    address: str
    iommu_group: int
    numa_node: int
    healthy: bool


def resources_of(scan: Iterable[PassthroughDevice]) -> tuple[str, ...]:
    """The resources the probe's scan gives VFIO-bound devices (pci.scan sets none else)."""
    return tuple(sorted({d.resource for d in scan if d.resource}))


def devices_of(resource: str, scan: Iterable[PassthroughDevice],
               present: Mapping[int, bool], vfio_present: bool) -> tuple[VfioDevice, ...]:
    """The resource's devices now; `present` says which group nodes exist. A device that
    left VFIO (or the tree) simply drops out: kubelet then no longer counts it."""
    return tuple(sorted(
        VfioDevice(d.address, d.iommu_group, d.numa_node,
                   vfio_present and d.iommu_group >= 0 and present.get(d.iommu_group, False))
        for d in scan if d.resource == resource))


def health(device: VfioDevice) -> str:
    return HEALTHY if device.healthy else UNHEALTHY


@dataclass(frozen=True)
class ContainerAllocation:
    mounts: tuple[DeviceMount, ...]
    env: tuple[tuple[str, str], ...]


def allocate(resource: str, requests: Sequence[Sequence[str]],
             devices: Sequence[VfioDevice], host_vfio_dir: str) -> tuple[ContainerAllocation, ...]:
    """Per container: /dev/vfio/vfio, each distinct group node (two functions of one card
    share a group), and the env naming the addresses. Refused as a whole when an ID is
    not a Healthy device of ours."""
    if not requests:
        raise AllocationError("no container requests")
    by_address = {d.address: d for d in devices}
    out = []
    for i, ids in enumerate(requests):
        if not ids:
            raise AllocationError(f"container request {i} names no device")
        unknown = sorted(a for a in ids if a not in by_address)
        if unknown:
            raise AllocationError(f"unknown {resource} device(s) {', '.join(unknown)}")
        sick = sorted(a for a in ids if not by_address[a].healthy)
        if sick:
            raise AllocationError(f"{resource} device(s) {', '.join(sick)} are unhealthy "
                                  f"(not bound to vfio-pci, or no {host_vfio_dir}/<group>)")
        groups = sorted({by_address[a].iommu_group for a in ids})
        mounts = [DeviceMount(f"{CONTAINER_VFIO_DIR}/{VFIO_CONTAINER}",
                              f"{host_vfio_dir}/{VFIO_CONTAINER}", "rw")]
        mounts += [DeviceMount(f"{CONTAINER_VFIO_DIR}/{g}", f"{host_vfio_dir}/{g}", "rw")
                   for g in groups]
        out.append(ContainerAllocation(tuple(mounts),
                                       ((env_name(resource), ",".join(sorted(ids))),)))
    return tuple(out)


@dataclass(frozen=True)
class PendingAssignment:
    """A Pending pod on this node and the addresses the extender assigned it."""
    pod: str                      # namespace/name, for logs
    assigned_at: str              # podvirt.io/assigned-at: RFC 3339, sortable
    addresses: frozenset[str]     # of one resource


def pending_assignments(pods: Iterable[Mapping[str, Any]],
                        resource: str) -> tuple[PendingAssignment, ...]:
    """From pod JSON (any pods; only Pending ones with an assignment count)."""
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") != "Pending":
            continue
        annotations = meta.get("annotations") or {}
        try:
            assigned = parse_devices(annotations.get(k.ASSIGNED_DEVICES))
        except ValueError:
            continue            # the launcher reports a broken annotation itself
        addresses = frozenset(d.address for d in assigned if d.resource == resource)
        if addresses:
            out.append(PendingAssignment(f"{meta.get('namespace')}/{meta.get('name')}",
                                         str(annotations.get(k.ASSIGNED_AT) or ""), addresses))
    return tuple(out)


def preferred_allocation(available: Sequence[str], must_include: Sequence[str], size: int,
                         pending: Sequence[PendingAssignment]) -> tuple[tuple[str, ...], str]:
    """(the IDs to prefer, the pod they were assigned to or "" when no pod fits)."""
    free, required = set(available), set(must_include)
    fitting = sorted((p for p in pending if len(p.addresses) == size
                      and p.addresses <= free and required <= p.addresses),
                     key=lambda p: (p.assigned_at, p.pod))
    if fitting:
        return tuple(sorted(fitting[0].addresses)), fitting[0].pod
    chosen = list(dict.fromkeys(must_include))
    chosen += [a for a in available if a not in chosen][:max(0, size - len(chosen))]
    return tuple(chosen), ""


def allocated_addresses(environ: Mapping[str, str]) -> frozenset[str]:
    """What kubelet gave this container, from the env Allocate set (for the launcher)."""
    return frozenset(a.strip().lower() for name, value in environ.items()
                     if name.startswith(ENV_PREFIX) for a in value.split(",") if a.strip())
