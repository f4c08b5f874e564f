"""What the extender knows about a node and what the pods on it take, as frozen values.

Built from Kubernetes JSON (watch events, the scheduler's request) by the functions at
the bottom; the decision layer (decide.py) only ever sees these values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from podvirt.quantity import QuantityError, parse_bytes, parse_millis
from podvirt.vmspec import PassthroughDevice
from podvirt.vmspec import keys as k
from podvirt.vmspec.model import parse_devices
from podvirt.vmspec.overhead import EPHEMERAL_STORAGE, HUGEPAGES_PREFIX

PODS = "pods"


def _empty() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True)
class NodeOffer:
    """What a node offers VMs, as the extender knows it from the Node object."""
    name: str
    labels: Mapping[str, str] = field(default_factory=_empty)
    # Allocatable: bytes, millicores, "hugepages-2Mi" -> bytes, "vendor/name" -> count.
    memory: int = 0
    cpu_millis: int = 0
    hugepages: Mapping[str, int] = field(default_factory=_empty)
    extended: Mapping[str, int] = field(default_factory=_empty)
    ephemeral_storage: int = 0
    pods: int | None = None             # allocatable pods; None: not reported, not checked
    kvm_usable: bool = True             # label podvirt.io/kvm != "false"
    devices: tuple[PassthroughDevice, ...] = ()
    devices_error: str = ""             # why the pci-devices annotation is unusable


@dataclass(frozen=True)
class NodeUsage:
    """Requests of the live (and assumed) pods on one node, plus its recent VM start failures."""
    memory: int = 0
    cpu_millis: int = 0
    hugepages: Mapping[str, int] = field(default_factory=_empty)
    extended: Mapping[str, int] = field(default_factory=_empty)
    ephemeral_storage: int = 0
    pods: int = 0                           # non-terminal pods charged to the node
    claimed: frozenset[str] = frozenset()   # PCI addresses assigned to pods
    failures: tuple[float, ...] = ()        # epoch seconds of VMStartFailed


EMPTY_USAGE = NodeUsage()


def usage_from_requests(requests: Mapping[str, int], claimed: frozenset[str] = frozenset(),
                        failures: tuple[float, ...] = ()) -> NodeUsage:
    return NodeUsage(
        memory=requests.get("memory", 0),
        cpu_millis=requests.get("cpu", 0),
        hugepages=MappingProxyType({n: v for n, v in requests.items()
                                    if n.startswith(HUGEPAGES_PREFIX) and v}),
        extended=MappingProxyType({n: v for n, v in requests.items() if "/" in n and v}),
        ephemeral_storage=requests.get(EPHEMERAL_STORAGE, 0),
        pods=requests.get(PODS, 0),
        claimed=claimed,
        failures=failures,
    )


# --- Kubernetes JSON -> values ------------------------------------------------------------

def quantity_value(name: str, text: Any) -> int | None:
    """A resource quantity as an int: millicores for cpu, whole units rounded up otherwise
    (bytes, or a count for extended resources); None for what is not a quantity or is
    negative (the API server refuses both)."""
    try:
        return parse_millis(str(text)) if name == "cpu" else parse_bytes(str(text))
    except (QuantityError, ValueError):
        return None


def resource_list(raw: Any) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for name, text in raw.items():
        value = quantity_value(name, text)
        if value is not None:
            out[name] = value
    return out


def node_offer(node: Mapping[str, Any]) -> NodeOffer:
    """NodeOffer from a Node object; a malformed annotation is recorded, not raised."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    alloc = resource_list((node.get("status") or {}).get("allocatable"))
    devices: tuple[PassthroughDevice, ...] = ()
    error = ""
    try:
        devices = parse_devices(annotations.get(k.NODE_PCI_DEVICES))
    except ValueError as exc:
        error = f"{k.NODE_PCI_DEVICES} annotation is unusable: {exc}"
    return NodeOffer(
        name=str(meta.get("name") or ""),
        labels=MappingProxyType(dict(labels)),
        memory=alloc.get("memory", 0),
        cpu_millis=alloc.get("cpu", 0),
        hugepages=MappingProxyType({n: v for n, v in alloc.items()
                                    if n.startswith(HUGEPAGES_PREFIX)}),
        extended=MappingProxyType({n: v for n, v in alloc.items() if "/" in n}),
        ephemeral_storage=alloc.get(EPHEMERAL_STORAGE, 0),
        pods=alloc.get(PODS),
        kvm_usable=labels.get(k.NODE_KVM_LABEL) != "false",
        devices=devices,
        devices_error=error,
    )


def _container_requests(container: Mapping[str, Any]) -> dict[str, int]:
    resources = container.get("resources") or {}
    # The API server defaults requests to limits; pods built by hand may only carry limits.
    merged = {**resource_list(resources.get("limits")), **resource_list(resources.get("requests"))}
    return merged


def pod_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    """Effective requests as kube-scheduler computes them:
    max(sum of containers + sidecars, largest init container) + pod overhead, plus
    `pods: 1` (every pod takes one of the node's allocatable pods, so summing the
    requests of a node's pods counts them)."""
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in spec.get("containers") or []:
        for name, v in _container_requests(c).items():
            total[name] = total.get(name, 0) + v
    for c in spec.get("initContainers") or []:
        reqs = _container_requests(c)
        if c.get("restartPolicy") == "Always":       # sidecar: runs alongside the containers
            for name, v in reqs.items():
                total[name] = total.get(name, 0) + v
        else:
            for name, v in reqs.items():
                init_max[name] = max(init_max.get(name, 0), v)
    result = {name: max(total.get(name, 0), init_max.get(name, 0))
              for name in total.keys() | init_max.keys()}
    for name, v in resource_list(spec.get("overhead")).items():
        result[name] = result.get(name, 0) + v
    result[PODS] = 1
    return result


def assigned_addresses(pod: Mapping[str, Any]) -> frozenset[str]:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        return frozenset(d.address for d in
                         parse_devices(annotations.get(k.ASSIGNED_DEVICES)))
    except ValueError:
        return frozenset()
