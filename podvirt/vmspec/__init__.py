"""The VM-spec contract shared by the webhook, the extender and the launcher."""

from podvirt.vmspec.devicemap import DeviceResources
from podvirt.vmspec.model import (CloudInit, DeviceRequest, Disk, Nic, PassthroughDevice,
                                  Pinning, VMSpec)
from podvirt.vmspec.overhead import (CostSettings, Demand, OverheadConstants, ResourceNames,
                                     DEFAULT_COSTS, demand, memory_overhead)
from podvirt.vmspec.parse import (DEFAULT_LIMITS, Limits, SpecInvalid, Violation, is_vm_pod,
                                  parse_vm, vm_annotations)

__all__ = [
    "DeviceResources",
    "CloudInit", "DeviceRequest", "Disk", "Nic", "PassthroughDevice", "Pinning", "VMSpec",
    "CostSettings", "Demand", "OverheadConstants", "ResourceNames", "DEFAULT_COSTS", "demand",
    "memory_overhead", "DEFAULT_LIMITS", "Limits", "SpecInvalid", "Violation", "is_vm_pod",
    "parse_vm", "vm_annotations",
]
