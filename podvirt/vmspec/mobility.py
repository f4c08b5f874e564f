"""Which VMs can move to another pod, and how a VM pod answers an eviction.

One answer for the three places that ask: `kubectl podvirt migrate` (refuses to start),
the webhook (refuses `podvirt.io/eviction-strategy: migrate` on a VM that could never
leave, so a drain cannot wait forever on it) and the evacuator (moves the VM).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from podvirt.vmspec import keys as k
from podvirt.vmspec.model import VMSpec

STRATEGIES = (k.EVICT_SHUTDOWN, k.EVICT_MIGRATE)
# Disks whose writes live in the pod: a migration copies their writable layer to the
# target pod (launcher/domain.py copied_disks); pvc disks are the claim both pods mount.
EPHEMERAL_DISKS = ("containerdisk", "scratch", "file")


def migration_refusals(vm: VMSpec, owners: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Why this VM cannot migrate (empty: it can). `owners` are the pod's ownerReferences."""
    refusals = []
    if owners:
        owner = owners[0]
        refusals.append(
            f"the pod is owned by {owner.get('kind')} {owner.get('name')}: a migrated VM lives "
            "in a new pod with a new name, which its controller would not own (it would start "
            "another); only bare VM pods can migrate")
    if vm.devices:
        refusals.append("it has passthrough devices, which stay with their host")
    if vm.dedicated_cpus:
        refusals.append("its vCPUs are pinned to the source pod's exclusive CPUs")
    return refusals


def eviction_strategy(annotations: Mapping[str, str] | None) -> str:
    """The pod's strategy; an unknown value reads as the default (admission refused it)."""
    value = (annotations or {}).get(k.EVICTION_STRATEGY, k.EVICT_SHUTDOWN)
    return value if value in STRATEGIES else k.EVICT_SHUTDOWN


def strategy_problem(annotations: Mapping[str, str] | None, vm: VMSpec,
                     owners: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """What is wrong with the pod's podvirt.io/eviction-strategy, naming the rule."""
    value = (annotations or {}).get(k.EVICTION_STRATEGY)
    if value is None:
        return None
    if value not in STRATEGIES:
        return f"{k.EVICTION_STRATEGY}: must be one of {', '.join(STRATEGIES)}, not {value!r}"
    if value == k.EVICT_MIGRATE and (why := migration_refusals(vm, owners)):
        return (f"{k.EVICTION_STRATEGY}: migrate needs a VM that can migrate, and this one "
                "cannot: " + "; ".join(why))
    return None
