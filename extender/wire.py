"""k8s.io/kube-scheduler/extender/v1 shapes: decode requests, encode results.

The Go types carry no JSON tags, so the scheduler sends Go field names (Pod, NodeNames,
PodName ...), and Go's decoder matches names case-insensitively; we accept any case too.
Every shape problem is a WireError, which the HTTP layer answers with 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from podvirt.extender.binding import BindRequest
from podvirt.extender.scheduling import FilterOutcome


class WireError(ValueError):
    pass


@dataclass(frozen=True)
class ExtenderArgs:
    pod: Mapping[str, Any]
    names: list[str]
    nodes: list[Mapping[str, Any]] | None    # whole Node objects (nodeCacheCapable false)


def _fields(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise WireError(f"{what} must be a JSON object, got {type(body).__name__}")
    return {str(key).lower(): value for key, value in body.items()}


def decode_args(body: Any) -> ExtenderArgs:
    f = _fields(body, "ExtenderArgs")
    pod = f.get("pod")
    if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
        raise WireError("ExtenderArgs.Pod must be a Pod object with metadata")
    meta = pod["metadata"]
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, dict)
                                      and all(isinstance(v, str) for v in value.values())):
            raise WireError(f"Pod metadata.{key} must map strings to strings")
    names_raw, nodes_raw = f.get("nodenames"), f.get("nodes")
    if names_raw is not None:
        # set(map(type, ...)) checks thousands of names at C speed.
        if not isinstance(names_raw, list) or set(map(type, names_raw)) - {str}:
            raise WireError("ExtenderArgs.NodeNames must be a list of strings")
        return ExtenderArgs(pod, names_raw, None)
    if nodes_raw is None:
        return ExtenderArgs(pod, [], None)
    items = nodes_raw.get("items") if isinstance(nodes_raw, dict) else None
    if not isinstance(items, list):
        raise WireError("ExtenderArgs.Nodes must be a NodeList with items")
    names = []
    for item in items:
        name = ((item.get("metadata") if isinstance(item, dict) else None) or {}).get("name")
        if not isinstance(name, str) or not name:
            raise WireError("every node in ExtenderArgs.Nodes needs metadata.name")
        names.append(name)
    return ExtenderArgs(pod, names, items)


def decode_binding(body: Any) -> BindRequest:
    f = _fields(body, "ExtenderBindingArgs")
    values = {}
    for key, required in (("podname", True), ("podnamespace", False), ("poduid", False),
                          ("node", True)):
        value = f.get(key)
        if value is None and not required:
            value = ""
        if not isinstance(value, str) or (required and not value):
            raise WireError(f"ExtenderBindingArgs needs {key!s} as a "
                            f"{'non-empty ' if required else ''}string")
        values[key] = value
    return BindRequest(values["podname"], values["podnamespace"] or "default",
                       values["poduid"], values["node"])


def filter_result(args: ExtenderArgs | None, outcome: FilterOutcome | None,
                  error: str = "") -> dict[str, Any]:
    """ExtenderFilterResult answering in the shape asked: NodeNames or Nodes."""
    result: dict[str, Any] = {"Nodes": None, "NodeNames": None, "FailedNodes": {},
                              "FailedAndUnresolvableNodes": {}, "Error": error}
    if args is None or outcome is None:
        return result
    if args.nodes is None:
        result["NodeNames"] = outcome.passed
    else:
        passed = set(outcome.passed)
        result["Nodes"] = {"apiVersion": "v1", "kind": "NodeList", "metadata": {},
                           "items": [n for n in args.nodes if n["metadata"]["name"] in passed]}
    result["FailedNodes"] = outcome.failed
    result["FailedAndUnresolvableNodes"] = outcome.unresolvable
    return result


def priority_list(scores: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"Host": host, "Score": score} for host, score in scores]
