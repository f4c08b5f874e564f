"""Everything the webhook's rendering depends on besides the pod: one frozen object."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from podvirt.vmspec import CostSettings, Limits
from podvirt.vmspec.contract import DEFAULT_CONTRACT, DEFAULT_LAUNCHER_IMAGE, Contract

# gunicorn worker models `podvirt webhook --worker-class` takes (server.py says why gevent).
WORKER_CLASSES = ("gevent", "gthread")


@dataclass(frozen=True)
class RenderSettings:
    # The four fields of the contract (vmspec/contract.py) rendering reads; from_contract
    # fills them from the one the webhook loaded, `contract` puts them back together.
    launcher_image: str = DEFAULT_LAUNCHER_IMAGE
    scheduler_name: str = DEFAULT_CONTRACT.scheduler_name
    # ServiceAccount launcher pods run as (the chart creates it with a Role that lets the
    # launcher report on its own pod); None keeps whatever the pod says.
    launcher_service_account: str | None = None
    # Added to the VM's shutdown grace so the launcher can still destroy the domain and
    # report its phase after an ACPI shutdown that used all of its time.
    grace_margin_seconds: int = 15
    # Disk-copy init containers: requests = limits, so a dedicated-CPU pod stays Guaranteed.
    copier_cpu: str = "100m"
    copier_memory: str = "64Mi"
    # The static busybox of the launcher image (images/launcher.Containerfile): the copy
    # tool init containers bring into images that have none.
    static_busybox: str = "/usr/lib/podvirt/busybox"
    # CAP_SYS_RESOURCE for launchers of VMs with passthrough devices (VFIO's memlock limit,
    # docs/passthrough.md); off only where the nodes' runtime cannot grant it.
    vfio_memlock_capability: bool = True
    costs: CostSettings = field(default_factory=lambda: DEFAULT_CONTRACT.costs)
    limits: Limits = field(default_factory=lambda: DEFAULT_CONTRACT.limits)

    @classmethod
    def from_contract(cls, contract: Contract, **others: object) -> "RenderSettings":
        return cls(launcher_image=contract.launcher_image, scheduler_name=contract.scheduler_name,
                   costs=contract.costs, limits=contract.limits, **others)  # type: ignore[arg-type]

    @functools.cached_property
    def contract(self) -> Contract:
        return Contract(limits=self.limits, costs=self.costs, scheduler_name=self.scheduler_name,
                        launcher_image=self.launcher_image)

    @functools.cached_property
    def contract_json(self) -> str:
        """podvirt.io/contract of every pod rendered with these settings (once, not per pod)."""
        return self.contract.to_json()
