"""Pure placement decisions: does a VM fit a node, how good is each node, which devices.

Every function takes plain values (NodeOffer, NodeUsage, and a VMShape: what placement
reads of the core's VMSpec and Demand) and returns plain values. A rejection is a Verdict
whose reason a user can act on; `unresolvable` marks what evicting other pods cannot fix
(the scheduler then does not try preemption there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence

from podvirt.extender.facts import PODS, NodeOffer, NodeUsage
from podvirt.quantity import format_millis, human_bytes
from podvirt.vmspec import Demand, DeviceRequest, PassthroughDevice, Pinning, VMSpec
from podvirt.vmspec import keys as k
from podvirt.vmspec.overhead import EPHEMERAL_STORAGE, HUGEPAGES_PREFIX

MAX_PRIORITY = 10  # k8s.io/kube-scheduler/extender/v1 MaxExtenderPriority
# A node where a VM's devices can all come from one NUMA node scores this of the extender's
# 0..MAX_PRIORITY; kube-scheduler multiplies it by 10 (x weight): 20 against the 0..100 its
# NodeResourcesFit scores free memory with.
NUMA_BONUS = 2


@dataclass(frozen=True)
class Policy:
    quarantine_failures: int = 3        # VMStartFailed on a node within the window ...
    quarantine_window: float = 600.0    # ... keep VMs off it (seconds)


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Verdict:
    reason: str = ""          # empty: the VM fits
    unresolvable: bool = False
    category: str = ""        # metrics label: memory, cpu, devices, quarantine, ...

    @property
    def fits(self) -> bool:
        return not self.reason


FITS = Verdict()


def _no(reason: str, category: str) -> Verdict:
    return Verdict(reason, False, category)


def _never(reason: str, category: str) -> Verdict:
    return Verdict(reason, True, category)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


@dataclass(frozen=True)
class VMShape:
    """Everything the placement decisions read of a VM and its pod, and nothing else (no
    names): filter_node and numa_scores take only this, so it is also the key under which
    VMs of one shape share verdicts (scheduling.VerdictMemo). A check that needs one more
    fact of the VM adds a field here, and the key follows."""
    vcpus: int
    dedicated_cpus: bool
    allow_emulation: bool
    pinning: Pinning
    devices: tuple[DeviceRequest, ...]
    demand: Demand
    # The pod's full effective requests (facts.pod_requests: the launcher plus any sidecar
    # and init containers), sorted by name.
    requests: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, vm: VMSpec, demand: Demand,
           requests: Mapping[str, int] | None = None) -> "VMShape":
        """The shape of `vm`; without `requests`, those of a pod holding only the launcher
        (its container's requests, as the webhook renders them, and one of the node's pods)."""
        req = {**demand.requests, PODS: 1} if requests is None else requests
        return cls(vm.vcpus, vm.dedicated_cpus, vm.allow_emulation, vm.pinning, vm.devices,
                   demand, tuple(sorted(req.items())))


def filter_node(node: NodeOffer, usage: NodeUsage, vm: VMShape, now: float,
                policy: Policy = DEFAULT_POLICY) -> Verdict:
    """Why `vm` cannot run on `node` now (empty reason: it can).

    VM pods skip kube-scheduler's NodeResourcesFit, so this is their whole resource fit
    against the pod's requests: memory, cpu, hugepages, ephemeral storage, extended
    resources and the node's pod count. Reasons name the VM's demand. Checks that no
    eviction can fix come first, so the reason shown is the root cause."""
    req = dict(vm.requests)
    pin = vm.pinning
    if pin.node_names and node.name not in pin.node_names:
        return _never(f"VM is pinned to {', '.join(pin.node_names)} ({k.NODE_NAMES})", "pinning")
    if pin.node_labels:
        missing = [f"{key}={value}" for key, value in pin.node_labels
                   if node.labels.get(key) != value]
        if missing:
            return _never(f"node lacks label {', '.join(missing)} ({k.NODE_LABELS})", "pinning")
    if not node.kvm_usable and not vm.allow_emulation:
        return _never(f"KVM is not usable on this node ({k.NODE_KVM_LABEL}=false); set "
                      f"{k.ALLOW_EMULATION}=true to run the VM emulated", "kvm")
    verdict = _static_capacity(node, vm, req)
    if verdict.reason:
        return verdict
    return (_free_capacity(node, usage, vm, req)
            or _free_devices(node, usage, vm.devices)
            or quarantine(usage, now, policy)
            or FITS)


def _device_names(vm: VMShape) -> set[str]:
    return {r.resource for r in vm.devices if r.resource}


def _extended(vm: VMShape, req: Mapping[str, int]) -> list[tuple[str, int]]:
    """Extended resources checked by count, the VM marker first (kube-scheduler ignores it,
    ignoredByScheduler, so only this checks that nodes advertise it); passthrough devices
    are checked one by one (that reason names which devices are claimed)."""
    devices = _device_names(vm)
    names = sorted((n for n, v in req.items() if "/" in n and v and n not in devices),
                   key=lambda n: (n != k.VM_MARKER_RESOURCE, n))
    return [(n, req[n]) for n in names]


def _hugepages(req: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted((n, v) for n, v in req.items() if n.startswith(HUGEPAGES_PREFIX) and v)


def _static_capacity(node: NodeOffer, vm: VMShape, req: Mapping[str, int]) -> Verdict:
    """What the node lacks even when empty (memory and cpu: see _free_capacity)."""
    for size, need in _hugepages(req):
        total = node.hugepages.get(size, 0)
        if total < need:
            return _never(f"needs {human_bytes(need)} of {size}, node has "
                          f"{human_bytes(total) if total else 'none'}", "hugepages")
    if vm.dedicated_cpus and node.cpu_millis // 1000 < vm.vcpus:
        return _never(f"needs {_count(vm.vcpus, 'dedicated CPU')}, node has "
                      f"{node.cpu_millis // 1000} allocatable", "cpu")
    for name, need in _extended(vm, req):
        have = node.extended.get(name, 0)
        if have < need:
            return _never(f"needs {need} {name}, node " +
                          (f"has {have}" if have else "does not advertise it"), "extended")
    if vm.devices and node.devices_error:
        return _no(node.devices_error, "devices")
    for request in vm.devices:
        matching = sum(1 for d in node.devices if request.matches(d))
        if not matching:
            return _never(f"no device of type {request.label} on node", "devices")
        if matching < request.count:
            return _never(f"needs {request.count} {request.label}, node has {matching}",
                          "devices")
    return FITS


def _describe_cpu(dem: Demand, need: int) -> str:
    extra = need - dem.cpu_request_millis
    if extra <= 0:
        return f"{format_millis(need)} CPU"
    return (f"{format_millis(need)} CPU ({format_millis(dem.cpu_request_millis)} VM + "
            f"{format_millis(extra)} sidecars)")


def _describe_storage(dem: Demand, need: int) -> str:
    """'100Ti ephemeral-storage (disk scratch 100Ti + launcher 256Mi)': which disks ask."""
    extra = need - dem.ephemeral_storage
    if extra < 0:       # a pod rendered with other constants: its own number only
        return f"{human_bytes(need)} {EPHEMERAL_STORAGE}"
    parts = dem.storage.parts() + ([f"{human_bytes(extra)} sidecars"] if extra else [])
    return f"{human_bytes(need)} {EPHEMERAL_STORAGE} ({' + '.join(parts)})"


def _free_capacity(node: NodeOffer, usage: NodeUsage, vm: VMShape,
                   req: Mapping[str, int]) -> Verdict | None:
    """Like NodeResourcesFit: a request above what the node has allocatable in all is
    unresolvable (no preemption attempt), one above what is free now is not."""
    dem = vm.demand
    if node.pods is not None and usage.pods + req.get(PODS, 1) > node.pods:
        return _no(f"node runs {usage.pods} pods, its limit (allocatable pods) is {node.pods}",
                   "pods")
    need = req.get("memory", 0)
    free = node.memory - usage.memory
    if need > free:
        label = " memory" if dem.hugepages else ""
        return Verdict(f"needs {dem.describe_memory(need)}, {human_bytes(max(free, 0))}"
                       f"{label} free", need > node.memory, "memory")
    for size, need in _hugepages(req):
        hp_free = node.hugepages.get(size, 0) - usage.hugepages.get(size, 0)
        if need > hp_free:
            return _no(f"needs {human_bytes(need)} of {size}, {human_bytes(max(hp_free, 0))} free",
                       "hugepages")
    cpu_free = node.cpu_millis - usage.cpu_millis
    need = req.get("cpu", 0)
    if vm.dedicated_cpus and max(cpu_free, 0) // 1000 < vm.vcpus:
        return _no(f"needs {_count(vm.vcpus, 'dedicated CPU')} (whole cores), "
                   f"{max(cpu_free, 0) // 1000} free", "cpu")
    if need > cpu_free:
        return Verdict(f"needs {_describe_cpu(dem, need)}, {format_millis(max(cpu_free, 0))} free",
                       need > node.cpu_millis, "cpu")
    need = req.get(EPHEMERAL_STORAGE, 0)
    disk_free = node.ephemeral_storage - usage.ephemeral_storage
    if need > disk_free:
        free_text = (f"{human_bytes(max(disk_free, 0))} free" if node.ephemeral_storage
                     else f"node reports no allocatable {EPHEMERAL_STORAGE}")
        return Verdict(f"needs {_describe_storage(dem, need)}, {free_text}",
                       need > node.ephemeral_storage, "ephemeral-storage")
    for name, need in _extended(vm, req):
        total = node.extended.get(name, 0)
        left = total - usage.extended.get(name, 0)
        if need > left:
            return _no(f"needs {need} {name}, " +
                       (f"all {total} in use" if left <= 0 else f"{left} of {total} free"),
                       "extended")
    return None


def _free_devices(node: NodeOffer, usage: NodeUsage,
                  requests: Sequence[DeviceRequest]) -> Verdict | None:
    taken: set[str] = set(usage.claimed)
    for request in requests:
        # Same greedy order as choose_devices' fallback, so a pass here means bind succeeds.
        matching = [d for d in node.devices if request.matches(d)]
        free = sorted((d for d in matching if d.address not in taken), key=lambda d: d.address)
        if len(free) < request.count:
            state = (f"all {len(matching)} claimed" if not free
                     else f"{len(free)} of {len(matching)} free")
            return _no(f"needs {request.count} {request.label}, {state}", "devices")
        taken.update(d.address for d in free[:request.count])
    return None


def quarantine(usage: NodeUsage, now: float, policy: Policy) -> Verdict | None:
    """A node where VMs keep failing to start is avoided until failures age out."""
    limit = policy.quarantine_failures
    if limit <= 0 or len(usage.failures) < limit:
        return None
    recent = sorted((t for t in usage.failures if now - policy.quarantine_window < t <= now),
                    reverse=True)
    if len(recent) < limit:
        return None
    # Once the limit-th most recent failure leaves the window, fewer than `limit` remain.
    until = datetime.fromtimestamp(recent[limit - 1] + policy.quarantine_window, timezone.utc)
    return _no(f"quarantined: {len(recent)} VM start failures ({k.REASON_START_FAILED}) in the "
               f"last {_window(policy.quarantine_window)}, until "
               f"{until.strftime('%Y-%m-%dT%H:%M:%SZ')}", "quarantine")


def _window(seconds: float) -> str:
    s = int(seconds)
    if s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


# --- device choice -------------------------------------------------------------------------

class DevicesUnavailable(ValueError):
    pass


def choose_devices(node: NodeOffer, usage: NodeUsage,
                   requests: Sequence[DeviceRequest]) -> tuple[PassthroughDevice, ...]:
    """Concrete unclaimed devices for every request, all on one NUMA node when possible
    (the lowest such node, for determinism); else in address order."""
    if not requests:
        return ()
    free = sorted((d for d in node.devices if d.address not in usage.claimed),
                  key=lambda d: d.address)
    for numa in sorted({d.numa_node for d in free if d.numa_node >= 0}):
        picked = _greedy([d for d in free if d.numa_node == numa], requests)
        if picked is not None:
            return picked
    picked = _greedy(free, requests)
    if picked is None:
        verdict = _free_devices(node, usage, requests)
        raise DevicesUnavailable(verdict.reason if verdict else "devices unavailable")
    return picked


def _greedy(free: Sequence[PassthroughDevice],
            requests: Sequence[DeviceRequest]) -> tuple[PassthroughDevice, ...] | None:
    taken: list[PassthroughDevice] = []
    for request in requests:
        got = [d for d in free if request.matches(d) and d not in taken][:request.count]
        if len(got) < request.count:
            return None
        taken.extend(got)
    return tuple(taken)


# --- scoring -------------------------------------------------------------------------------

def numa_scores(candidates: Sequence[tuple[NodeOffer, NodeUsage]],
                vm: VMShape) -> list[tuple[str, int]]:
    """NUMA_BONUS per node where the VM's passthrough devices can all come from one NUMA
    node, else 0 (0 everywhere for a VM without devices).

    Memory is scored by kube-scheduler itself (NodeResourcesFit, spread or pack:
    schedconfig.py), from the pod's requests, which carry the overhead, and its own cache,
    which also holds the pods it is still binding. Where a node's free devices sit is what
    it cannot see."""
    return [(node.name, NUMA_BONUS if vm.devices and _one_numa_node(node, usage, vm.devices)
             else 0) for node, usage in candidates]


def _one_numa_node(node: NodeOffer, usage: NodeUsage, requests: Sequence[DeviceRequest]) -> bool:
    try:
        numas = {d.numa_node for d in choose_devices(node, usage, requests)}
    except DevicesUnavailable:
        return False
    return len(numas) == 1 and min(numas) >= 0
