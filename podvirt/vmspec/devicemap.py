"""Which extended resource a passthrough device is counted under: the one mapping that the
webhook (a pod's requests), the extender (device matching), the probe (the node's
podvirt.io/pci-devices) and the device plugin (what kubelet allocates) all use.

Rules, in the order they are tried for a device:
  1. `<vendor>:<device>=<resource>`  that PCI ID;
  2. `driver:<name>=<resource>`      the kernel driver it is bound to (VFIO variant
                                     drivers such as mlx5_vfio_pci);
  3. otherwise `pci.podvirt.io/<vendor>-<device>`.
A `pci:<vendor>:<device>` request has no driver, so it counts under rule 1 or 3: devices
named by a driver rule are requested by that resource name instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from podvirt.vmspec.model import DeviceRequest

DEFAULT_DOMAIN = "pci.podvirt.io"
# Kubernetes' extended-resource name: <DNS subdomain>/<name of at most 63 characters>.
RESOURCE_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_PCI_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
_DRIVER = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")


def default_resource(vendor: str, device: str) -> str:
    return f"{DEFAULT_DOMAIN}/{vendor}-{device}"


@dataclass(frozen=True)
class DeviceResources:
    by_id: tuple[tuple[str, str], ...] = ()        # ("10de:1eb8", resource)
    by_driver: tuple[tuple[str, str], ...] = ()    # ("mlx5_vfio_pci", resource)

    @classmethod
    def parse(cls, text: str | None) -> "DeviceResources":
        """`10de:1eb8=nvidia.com/t4,driver:mlx5_vfio_pci=example.com/vf` (the contract's
        deviceResources map, joined: contract.py); ValueError names the rule."""
        by_id: dict[str, str] = {}
        by_driver: dict[str, str] = {}
        for item in (i.strip() for i in (text or "").split(",")):
            if not item:
                continue
            match, sep, resource = item.partition("=")
            match, resource = match.strip().lower(), resource.strip()
            if not sep or not RESOURCE_NAME.match(resource):
                raise ValueError(f"device resource rule {item!r}: must be <vendor>:<device>="
                                 "<resource> or driver:<name>=<resource>, the resource an "
                                 "extended-resource name such as example.com/gpu")
            if match.startswith("driver:"):
                table, key = by_driver, match.removeprefix("driver:")
                valid = bool(_DRIVER.match(key))
            else:
                table, key, valid = by_id, match, bool(_PCI_ID.match(match))
            if not valid:
                raise ValueError(f"device resource rule {item!r}: {match!r} is neither "
                                 "<vendor>:<device> (4 hex digits each) nor driver:<name>")
            if key in table:
                raise ValueError(f"device resource rule {item!r}: {match!r} is mapped twice")
            table[key] = resource
        return cls(tuple(by_id.items()), tuple(by_driver.items()))

    @property
    def resources(self) -> tuple[str, ...]:
        """The resource names the rules give, sorted (not the default pci.podvirt.io ones)."""
        return tuple(sorted({r for _, r in self.by_id + self.by_driver}))

    def for_device(self, vendor: str, device: str, driver: str = "") -> str:
        found = dict(self.by_id).get(f"{vendor}:{device}")
        if found is None and driver:
            found = dict(self.by_driver).get(driver)
        return found or default_resource(vendor, device)

    def for_request(self, request: DeviceRequest) -> str:
        if request.resource:
            return request.resource
        assert request.vendor and request.device
        return self.for_device(request.vendor, request.device)

    def resolve(self, requests: tuple[DeviceRequest, ...]) -> tuple[DeviceRequest, ...]:
        """`pci:` requests with the resource they count under, so matching a device checks
        both its PCI ID and the resource kubelet will allocate it from."""
        return tuple(r if r.resource else replace(r, resource=self.for_request(r))
                     for r in requests)

    def to_text(self) -> str:
        return ",".join([f"{m}={r}" for m, r in self.by_id]
                        + [f"driver:{m}={r}" for m, r in self.by_driver])


NO_RULES = DeviceResources()
