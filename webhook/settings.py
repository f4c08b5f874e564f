"""Everything the webhook's rendering depends on besides the pod: one frozen object."""

from __future__ import annotations

from dataclasses import dataclass, field

from podvirt.vmspec import DEFAULT_COSTS, DEFAULT_LIMITS, CostSettings, Limits

DEFAULT_LAUNCHER_IMAGE = "podvirt/launcher:0.1.0"
# gunicorn worker models `podvirt webhook --worker-class` takes (server.py says why gevent).
WORKER_CLASSES = ("gevent", "gthread")


@dataclass(frozen=True)
class RenderSettings:
    launcher_image: str = DEFAULT_LAUNCHER_IMAGE
    scheduler_name: str = "default-scheduler"
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
    costs: CostSettings = field(default_factory=lambda: DEFAULT_COSTS)
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
