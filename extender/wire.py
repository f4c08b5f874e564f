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


def _string_map(value: Any) -> bool:
    return value is None or (isinstance(value, dict)
                             and all(isinstance(v, str) for v in value.values()))


def _check_metadata(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise WireError(f"{where}.metadata must be an object")
    for key in ("labels", "annotations"):
        if not _string_map(meta.get(key)):
            raise WireError(f"{where}.metadata.{key} must map strings to strings")


def _check_pod_spec(spec: Any) -> None:
    """The shape pod_requests reads: container lists, resources maps, overhead."""
    where = "ExtenderArgs.Pod.spec"
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise WireError(f"{where} must be an object")
    if not isinstance(spec.get("overhead") or {}, dict):
        raise WireError(f"{where}.overhead must be a map")
    for key in ("containers", "initContainers"):
        containers = spec.get(key) or []
        if not isinstance(containers, list):
            raise WireError(f"{where}.{key} must be a list of objects")
        for i, c in enumerate(containers):
            resources = (c.get("resources") or {}) if isinstance(c, dict) else None
            if not isinstance(resources, dict) or not all(
                    isinstance(resources.get(r) or {}, dict) for r in ("limits", "requests")):
                raise WireError(f"{where}.{key}[{i}] must be an object whose resources hold "
                                "limits and requests maps")


def _check_node(item: Any, i: int) -> str:
    """The shape node_offer reads: metadata (name, string maps) and status.allocatable."""
    where = f"ExtenderArgs.Nodes.items[{i}]"
    if not isinstance(item, dict):
        raise WireError(f"{where} must be a Node object")
    _check_metadata(item.get("metadata"), where)
    name = item["metadata"].get("name")
    if not isinstance(name, str) or not name:
        raise WireError(f"{where}.metadata.name must be a non-empty string")
    status = item.get("status")
    if status is not None and not (isinstance(status, dict)
                                   and isinstance(status.get("allocatable") or {}, dict)):
        raise WireError(f"{where}.status must be an object with an allocatable map")
    return name


def decode_args(body: Any) -> ExtenderArgs:
    f = _fields(body, "ExtenderArgs")
    pod = f.get("pod")
    if not isinstance(pod, dict):
        raise WireError("ExtenderArgs.Pod must be a Pod object with metadata")
    _check_metadata(pod.get("metadata"), "ExtenderArgs.Pod")
    _check_pod_spec(pod.get("spec"))
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
    return ExtenderArgs(pod, [_check_node(item, i) for i, item in enumerate(items)], items)


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
    """HostPriorityList relative to the lowest score: hosts at the lowest are left out and
    the rest carry their lead over it.

    kube-scheduler adds each listed host's Score x weight to that host's total and adds 0
    for hosts not listed, so lowering every score by the same amount lowers every total
    alike: the same node wins, and ties stay ties. Nodes scored alike (a roomy cluster)
    then cost an empty list instead of ~34 bytes per node to encode, send and decode."""
    low = min((score for _, score in scores), default=0)
    return [{"Host": host, "Score": score - low} for host, score in scores if score > low]
