"""What the device plugins advertise and answer, as plain values (no gRPC here).

One plugin per host device node, KubeVirt's "permanent" devices: /dev/kvm, /dev/net/tun and
/dev/vhost-net. Their extended-resource names are the contract's resourceNames
(podvirt.vmspec.overhead.ResourceNames), the very names the webhook writes into launcher
pods' requests; this module only adds the device node behind each.

Health, as KubeVirt's generic device plugin does it: every plugin is served and registered
whether or not its device node exists, and all of its N shared device IDs are Healthy
while the node exists (as a character device) and Unhealthy while it does not. A node
without /dev/vhost-net thus still shows the resource, with capacity N and allocatable 0
(kubelet counts unhealthy devices in capacity, not in allocatable), instead of the resource silently not
existing, and the devices turn Healthy by themselves when the module is loaded later.

Every ID stands for the same node, shared: a VM pod asks for one of each, and N (kubelet's
pod limit by default) only bounds how many such pods the node admits.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from podvirt.vmspec.overhead import DEFAULT_COSTS, ResourceNames

# k8s.io/kubelet pkg/apis/deviceplugin/v1beta1/constants.go
API_VERSION = "v1beta1"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
KUBELET_SOCKET = "kubelet.sock"
DEFAULT_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"

DEFAULT_SLOTS = 110  # kubelet's default maxPods: every pod on the node could be a VM

# The host device node behind each field of ResourceNames. A field added there without a
# node here fails plugin_specs() (and its test) instead of going unserved.
_DEVICE_NODES = {"kvm": "/dev/kvm", "tun": "/dev/net/tun", "vhost_net": "/dev/vhost-net"}


@dataclass(frozen=True)
class PluginSpec:
    """One device plugin: an extended resource backed by one host device node."""
    resource: str            # e.g. "devices.podvirt.io/kvm"
    device_path: str         # absolute path on the host, the same inside the container
    permissions: str = "rw"  # cgroup device access; no "m": containers never mknod it

    @property
    def name(self) -> str:
        """The resource's name without its domain ("vhost-net"): IDs and socket name."""
        return self.resource.rpartition("/")[2]

    @property
    def socket_name(self) -> str:
        return f"podvirt-{self.name}.sock"

    def device_ids(self, slots: int) -> tuple[str, ...]:
        return tuple(f"{self.name}-{i}" for i in range(slots))

    def node_under(self, dev_root: Path) -> Path:
        """Where this plugin sees the device node: the host's /dev may be mounted elsewhere."""
        return Path(dev_root, self.device_path.lstrip("/"))


@dataclass(frozen=True)
class DeviceMount:
    """One DeviceSpec of an Allocate answer."""
    container_path: str
    host_path: str
    permissions: str


class AllocationError(ValueError):
    """An Allocate request this plugin must refuse; the message goes back to kubelet."""


class DeviceAbsent(AllocationError):
    """Refused because the device node is gone: the node's state, not the request, is wrong."""


def plugin_specs(resources: ResourceNames = DEFAULT_COSTS.resources) -> tuple[PluginSpec, ...]:
    return tuple(PluginSpec(resource=getattr(resources, f.name), device_path=_DEVICE_NODES[f.name])
                 for f in fields(resources))


def select_specs(specs: Sequence[PluginSpec], names: Sequence[str] | None) -> tuple[PluginSpec, ...]:
    """The plugins named (by PluginSpec.name or full resource name); all when names is None."""
    if names is None:
        return tuple(specs)
    if not names:
        raise ValueError("no resources selected")
    by_name = {s.name: s for s in specs} | {s.resource: s for s in specs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown resource(s) {', '.join(unknown)}; "
                         f"known: {', '.join(s.name for s in specs)}")
    chosen = {by_name[n] for n in names}
    return tuple(s for s in specs if s in chosen)


def device_present(node: Path) -> bool:
    """The health check: the node exists and is a character device (stat follows symlinks)."""
    try:
        return stat.S_ISCHR(os.stat(node).st_mode)
    except OSError:
        return False


def device_list(spec: PluginSpec, slots: int, healthy: bool) -> tuple[tuple[str, str], ...]:
    """ListAndWatch's devices as (ID, health): all share the node's health."""
    health = HEALTHY if healthy else UNHEALTHY
    return tuple((device_id, health) for device_id in spec.device_ids(slots))


def allocate(spec: PluginSpec, requests: Sequence[Sequence[str]], *, known_ids: frozenset[str],
             present: bool) -> tuple[DeviceMount, ...]:
    """One DeviceMount per container request, whatever number of IDs it holds (they all
    mean the same node). Refused as a whole, as the API asks, when any ID is not one of
    ours or the node is gone (the caller then also reports the devices Unhealthy)."""
    if not requests:
        raise AllocationError("no container requests")
    for i, ids in enumerate(requests):
        if not ids:
            raise AllocationError(f"container request {i} names no device")
        unknown = sorted(set(ids) - known_ids)
        if unknown:
            raise AllocationError(f"unknown {spec.name} device(s) {', '.join(unknown)}")
    if not present:
        raise DeviceAbsent(f"{spec.device_path} is not present on this node")
    mount = DeviceMount(container_path=spec.device_path, host_path=spec.device_path,
                        permissions=spec.permissions)
    return tuple(mount for _ in requests)


def preferred_allocation(available: Sequence[str], must_include: Sequence[str],
                         size: int) -> tuple[str, ...]:
    """GetPreferredAllocation for interchangeable devices: the required IDs, then the first
    available others, up to size. (The plugin does not ask kubelet to call it.)"""
    chosen = list(dict.fromkeys(must_include))
    for device_id in available:
        if len(chosen) >= size:
            break
        if device_id not in chosen:
            chosen.append(device_id)
    return tuple(chosen)
