"""The pod QoS class as the kubelet computes it, to prove dedicated-CPU pods are Guaranteed.

The CPU manager gives exclusive CPUs only to containers of Guaranteed pods, so a
dedicated-CPU VM whose pod slipped into Burstable would silently share its cores.
"""

from __future__ import annotations

from typing import Any, Mapping

from podvirt.quantity import QuantityError, parse_decimal

_QOS_RESOURCES = ("cpu", "memory")


def _same(a: Any, b: Any) -> bool:
    try:
        return parse_decimal(str(a)) == parse_decimal(str(b))
    except QuantityError:
        return False


def not_guaranteed(pod: Mapping[str, Any]) -> list[str]:
    """Containers (incl. init containers) that keep the pod from Guaranteed QoS, with why."""
    problems = []
    spec = pod.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        res = c.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        for r in _QOS_RESOURCES:
            if r not in limits:
                problems.append(f"container {c.get('name')!r} has no {r} limit")
            elif r in requests and not _same(requests[r], limits[r]):
                problems.append(f"container {c.get('name')!r} has {r} request "
                                f"{requests[r]} != limit {limits[r]}")
    return problems
