"""Filter and prioritize one pod against the cluster state: state lookups + pure decisions."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from podvirt.extender.decide import Policy, Verdict, VMShape, filter_node, numa_scores
from podvirt.extender.facts import EMPTY_USAGE, NodeOffer, pod_requests
from podvirt.extender.state import WatchedCluster, NodeView
from podvirt.vmspec import (DEFAULT_LIMITS, CostSettings, Limits, SpecInvalid, demand,
                            is_vm_pod, parse_vm)

UNKNOWN_NODE = Verdict("node is not known to the extender yet (no watch event for it)",
                       False, "unknown-node")


@dataclass(frozen=True)
class FilterOutcome:
    passed: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    unresolvable: dict[str, str] = field(default_factory=dict)
    rejected: Counter = field(default_factory=Counter)   # category -> nodes


class VerdictMemo:
    """Verdicts (or scores) by VM shape and node, reused while the node's NodeView is the
    very same object (WatchedCluster replaces it whenever the node's facts or usage change).

    The scheduler filters and then scores every pod against hundreds of nodes; without
    this a 5000-node filter costs ~30 ms of Python, with it only nodes that changed since
    the last pod of the same shape are decided again. Verdicts that depend on the clock
    (a node with recent start failures) are never stored; scores never read the clock.
    Filter and prioritize each keep their own memo."""

    def __init__(self, shapes: int = 16):
        self._shapes: OrderedDict[tuple[VMShape, Policy], dict[str, tuple]] = OrderedDict()
        self._limit = shapes
        self._lock = threading.Lock()

    def table(self, shape: VMShape, policy: Policy) -> dict[str, tuple]:
        # The decisions' whole input but the node and the clock: nothing else can change
        # a verdict, so nothing else needs to be in the key.
        key = (shape, policy)
        with self._lock:
            table = self._shapes.get(key)
            if table is None:
                table = self._shapes[key] = {}
                if len(self._shapes) > self._limit:
                    self._shapes.popitem(last=False)
            else:
                self._shapes.move_to_end(key)
            return table


def vm_shape(pod: Mapping[str, Any], costs: CostSettings,
             limits: Limits = DEFAULT_LIMITS) -> VMShape | None:
    """The shape of the VM a launcher pod carries, with the pod's whole requests (the
    launcher plus sidecars: the whole resource fit); None for other pods, SpecInvalid if
    the VM is broken. `limits` and `costs`: the contract's, the webhook's own."""
    meta = pod.get("metadata") or {}
    if not is_vm_pod(meta.get("labels")):
        return None
    spec = parse_vm(meta.get("annotations"), name=str(meta.get("name") or "vm"), limits=limits,
                    tcg_cache_bytes=costs.overhead.tcg_cache)
    # pci: requests match only devices of the resource the pod requests (devicemap.py).
    spec = replace(spec, devices=costs.devices.resolve(spec.devices))
    return VMShape.of(spec, demand(spec, costs), pod_requests(pod))


def _views(state: WatchedCluster, facts: Mapping[str, NodeOffer] | None) -> dict[str, NodeView]:
    views = state.views()
    for name, node in (facts or {}).items():
        usage = views[name].usage if name in views else EMPTY_USAGE
        views[name] = NodeView(node, usage)
    return views


def filter_pod(state: WatchedCluster, pod: Mapping[str, Any], names: Sequence[str], *,
               now: float, policy: Policy, costs: CostSettings,
               limits: Limits = DEFAULT_LIMITS,
               facts: Mapping[str, NodeOffer] | None = None,
               memo: VerdictMemo | None = None) -> FilterOutcome:
    """`facts` overrides the watched node facts (the scheduler sent whole Node objects)."""
    try:
        shape = vm_shape(pod, costs, limits)
    except SpecInvalid as exc:
        reason = f"invalid VM spec: {exc}"
        return FilterOutcome([], {}, {n: reason for n in names}, Counter({"invalid-spec": len(names)}))
    if shape is None:   # not ours (managedResources misconfigured): do not stand in the way
        return FilterOutcome(list(names))
    out = FilterOutcome([])
    # Verdicts on Node objects the scheduler sent are per request: nothing carries over.
    table = memo.table(shape, policy) if memo is not None and facts is None else {}
    views = _views(state, facts)
    for name in names:
        view, hit = views.get(name), table.get(name)
        if hit is not None and hit[0] is view:
            verdict = hit[1]
        elif view is None:
            verdict = UNKNOWN_NODE
        else:
            verdict = filter_node(view.facts, view.usage, shape, now, policy)
            if not view.usage.failures:
                table[name] = (view, verdict)
        if not verdict.reason:
            out.passed.append(name)
            continue
        (out.unresolvable if verdict.unresolvable else out.failed)[name] = verdict.reason
        out.rejected[verdict.category] += 1
    return out


def prioritize_pod(state: WatchedCluster, pod: Mapping[str, Any], names: Sequence[str], *,
                   policy: Policy, costs: CostSettings,
                   limits: Limits = DEFAULT_LIMITS,
                   facts: Mapping[str, NodeOffer] | None = None,
                   memo: VerdictMemo | None = None) -> list[tuple[str, int]]:
    """NUMA-locality scores for the nodes (decide.numa_scores); 0 for all when the pod is
    not a (valid) VM with passthrough devices or a node is unknown."""
    try:
        shape = vm_shape(pod, costs, limits)
    except SpecInvalid:
        shape = None
    if shape is None or not shape.devices:
        return [(n, 0) for n in names]
    table = memo.table(shape, policy) if memo is not None and facts is None else {}
    views = _views(state, facts)
    out: list[tuple[str, int]] = []
    stale: list[tuple[int, NodeView]] = []      # (position in out, view) to score now
    for name in names:
        view, hit = views.get(name), table.get(name)
        if hit is not None and hit[0] is view:
            out.append((name, hit[1]))
            continue
        if view is not None:
            stale.append((len(out), view))
        out.append((name, 0))
    scored = numa_scores([view for _, view in stale], shape)
    for (i, view), (name, score) in zip(stale, scored):
        out[i] = (name, score)
        table[name] = (view, score)
    return out
