"""The admission decision for one request, as a pure function naming the rule it applied.

CREATE of a VM pod: deny invalid specs and user-set status keys, otherwise patch the pod
into its launcher pod. A pod already carrying our rendered hash is left alone, which makes
reinvocation (and re-review of our own output) a no-op. UPDATE may not change the VM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from podvirt.vmspec import SpecInvalid, is_vm_pod, keys as k, vm_annotations
from podvirt.vmspec.contract import ContractInvalid, contract_of_pod
from podvirt.vmspec.mobility import strategy_problem
from podvirt.webhook.qos import not_guaranteed
from podvirt.webhook.render import (JsonPatch, diff_patch, override_warnings,
                                    render_launcher_pod, rendered_hash)
from podvirt.webhook.settings import RenderSettings
from podvirt.webhook.wire import AdmissionRequest, AdmissionResponse, build_response

UNPROCESSABLE = 422     # what the API server itself answers for an invalid object
# Status keys a user may not set. Rendering writes podvirt.io/rendered and
# podvirt.io/contract, so they are on our own output (reinvocation): the rendered hash is
# checked instead, and the contract is only accepted beside a matching one.
_USER_SET_STATUS_KEYS = k.STATUS_KEYS - {k.RENDERED, k.CONTRACT}


@dataclass(frozen=True)
class Decision:
    rule: str                       # which rule decided, for tests and logs
    allowed: bool
    patch: JsonPatch = field(default_factory=list)
    code: int | None = None
    message: str | None = None
    warnings: tuple[str, ...] = ()      # fields of the user's pod the launcher pod overrides

    @property
    def outcome(self) -> str:
        if not self.allowed:
            return "denied"
        return "mutated" if self.patch else "passed"


def _pass(rule: str) -> Decision:
    return Decision(rule, True)


def _deny(rule: str, message: str, code: int = UNPROCESSABLE) -> Decision:
    return Decision(rule, False, code=code, message=message)


def _shape_problem(pod: Any, field: str) -> str | None:
    """What makes request.<field> unusable as a Pod, naming the path; None if usable."""
    if not isinstance(pod, dict):
        return f"request.{field} (the pod) is missing"
    meta = pod.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        return f"request.{field}.metadata must be an object"
    for key in ("labels", "annotations"):
        if (meta or {}).get(key) is not None and not isinstance(meta[key], dict):
            return f"request.{field}.metadata.{key} must be a map"
    spec = pod.get("spec")
    if spec is not None and not isinstance(spec, dict):
        return f"request.{field}.spec must be an object"
    for key in ("containers", "initContainers", "volumes"):
        items = (spec or {}).get(key)
        if items is not None and not (isinstance(items, list)
                                      and all(isinstance(i, dict) for i in items)):
            return f"request.{field}.spec.{key} must be a list of objects"
    return None


def _meta(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (pod or {}).get("metadata") or {}


def decide(request: AdmissionRequest, settings: RenderSettings = RenderSettings()) -> Decision:
    kind = request.get("kind") or {}
    if kind.get("kind") != "Pod" or kind.get("group") or request.get("subResource"):
        return _pass("not-a-pod")
    pod, old = request.get("object"), request.get("oldObject")
    op = request.get("operation")
    if op not in ("CREATE", "UPDATE"):
        return _pass("operation-ignored")
    objects = [(pod, "object")] + ([(old, "oldObject")] if op == "UPDATE" else [])
    for obj, where in objects:
        if (problem := _shape_problem(obj, where)) is not None:
            return _deny("malformed-pod", problem, code=400)
    if not (is_vm_pod(_meta(pod).get("labels"))
            or (op == "UPDATE" and is_vm_pod(_meta(old).get("labels")))):
        return _pass("not-a-vm")
    annotations = _meta(pod).get("annotations") or {}

    if op == "UPDATE":
        before, after = vm_annotations(_meta(old).get("annotations")), vm_annotations(annotations)
        if before != after:
            changed = sorted(key for key in before.keys() | after.keys()
                             if before.get(key) != after.get(key))
            return _deny("immutable", "the VM annotations are immutable; delete and recreate "
                         f"the pod to change them (changed: {', '.join(changed)})")
        if (_meta(old).get("annotations") or {}).get(k.CONTRACT) != annotations.get(k.CONTRACT):
            return _deny("immutable", f"{k.CONTRACT}: is the contract the VM was admitted "
                         "under; it cannot change")
        old_strategy = (_meta(old).get("annotations") or {}).get(k.EVICTION_STRATEGY)
        if annotations.get(k.EVICTION_STRATEGY) != old_strategy:
            return _strategy_change(pod, annotations, settings)    # type: ignore[arg-type]
        return _pass("update-unchanged")

    if status_keys := sorted(_USER_SET_STATUS_KEYS.intersection(annotations)):
        return _deny("status-keys", "; ".join(f"{key}: is written by podvirt, not by users"
                                               for key in status_keys))
    if k.RENDERED in annotations:
        if annotations[k.RENDERED] == rendered_hash(annotations):
            return _pass("already-rendered")
        return _deny("rendered-mismatch", f"{k.RENDERED}: is written by podvirt and does not "
                     "match the VM annotations; remove it")
    if k.CONTRACT in annotations:
        return _deny("status-keys", f"{k.CONTRACT}: is written by podvirt, not by users")

    meta = _meta(pod)
    name = meta.get("name") or meta.get("generateName") or "vm"
    try:
        spec = settings.contract.parse_vm(annotations, name=str(name))
    except SpecInvalid as exc:
        return _deny("invalid-spec", f"invalid VM spec: {exc}")
    if problem := strategy_problem(annotations, spec, meta.get("ownerReferences") or []):
        return _deny("eviction-strategy", problem)
    rendered = render_launcher_pod(pod, spec, settings)    # type: ignore[arg-type]
    if spec.dedicated_cpus and (problems := not_guaranteed(rendered)):
        return _deny("not-guaranteed", f"{k.DEDICATED_CPUS}: exclusive CPUs need Guaranteed QoS "
                     "(every container's cpu and memory requests = limits): "
                     + "; ".join(problems))
    return Decision("render", True, patch=diff_patch(pod, rendered),  # type: ignore[arg-type]
                    warnings=tuple(override_warnings(pod, rendered)))  # type: ignore[arg-type]


def _strategy_change(pod: Mapping[str, Any], annotations: Mapping[str, str],
                     settings: RenderSettings) -> Decision:
    """A running VM's podvirt.io/eviction-strategy may change, to a value that fits it:
    the VM read under the contract it was admitted under (its podvirt.io/contract), not
    the webhook's current one, whose limits may have changed since."""
    meta = _meta(pod)
    try:
        spec = contract_of_pod(annotations).parse_vm(annotations,
                                                     name=str(meta.get("name") or "vm"))
    except (SpecInvalid, ContractInvalid):   # not a VM podvirt admitted: nothing to check
        return _pass("update-unparsable")
    if problem := strategy_problem(annotations, spec, meta.get("ownerReferences") or []):
        return _deny("eviction-strategy", problem)
    return _pass("update-strategy")


def respond(uid: str, d: Decision) -> AdmissionResponse:
    return build_response(uid=uid, allowed=d.allowed, patch=d.patch, code=d.code,
                          message=d.message, warnings=list(d.warnings))
