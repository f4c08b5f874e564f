"""Bind: re-check the node, pick concrete devices, record them on the pod, create the Binding.

Binds to one node run one at a time (a per-node lock held for the whole bind), and the
pod is assumed onto the node before any API call; so concurrent binds never hand out
the same device or the last free memory twice. Any failure drops the assumption.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from podvirt.extender.decide import DevicesUnavailable, Policy, choose_devices, filter_node
from podvirt.extender.kube import ApiWriter
from podvirt.extender.scheduling import vm_shape
from podvirt.extender.state import WatchedCluster
from podvirt.vmspec import DEFAULT_LIMITS, CostSettings, Limits, SpecInvalid
from podvirt.vmspec import keys as k

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BindRequest:
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


def bind(state: WatchedCluster, api: ApiWriter, req: BindRequest, *, policy: Policy,
         costs: CostSettings, now: Callable[[], float], limits: Limits = DEFAULT_LIMITS) -> str:
    """Error text for the scheduler ("" when the pod is bound)."""
    where = f"pod {req.pod_namespace}/{req.pod_name} on node {req.node}"
    pod = state.pod(req.pod_namespace, req.pod_name)
    if pod is None or (req.pod_uid and (pod.get("metadata") or {}).get("uid") != req.pod_uid):
        try:
            pod = api.get_pod(req.pod_namespace, req.pod_name)
        except Exception as exc:  # API errors of any kind become the scheduler's Error
            return f"binding {where}: cannot read the pod: {exc}"
        if pod is None:
            return f"binding {where}: pod not found"
    uid = str((pod.get("metadata") or {}).get("uid") or "")
    if req.pod_uid and uid != req.pod_uid:
        return f"binding {where}: pod UID is {uid}, the scheduler asked for {req.pod_uid}"
    try:
        shape = vm_shape(pod, costs, limits)
    except SpecInvalid as exc:
        return f"binding {where}: invalid VM spec: {exc}"

    with state.node_lock(req.node):
        devices = ()
        if shape is not None:
            node = state.node(req.node)
            if node is None:
                return f"binding {where}: node is not known to the extender"
            usage = state.usage(req.node)
            verdict = filter_node(node, usage, shape, now(), policy)
            if not verdict.fits:
                return f"binding {where}: no longer fits: {verdict.reason}"
            try:
                devices = choose_devices(node, usage, shape.devices)
            except DevicesUnavailable as exc:
                return f"binding {where}: {exc}"
        key = state.assume(pod, req.node, (d.address for d in devices))
        try:
            if devices:
                api.patch_pod_annotations(req.pod_namespace, req.pod_name, uid, {
                    k.ASSIGNED_DEVICES: json.dumps([d.to_json() for d in devices]),
                    k.ASSIGNED_AT: _rfc3339_micros(now())})
            api.create_binding(req.pod_namespace, req.pod_name, uid, req.node)
        except Exception as exc:
            state.forget(key)
            log.warning("bind %s failed: %s", where, exc)
            return f"binding {where}: {_api_error(exc)}"
    log.info("bound %s%s", where,
             f" with devices {', '.join(d.address for d in devices)}" if devices else "")
    return ""


def _rfc3339_micros(t: float) -> str:
    """Sortable as text: the device plugin orders a node's pending pods by it."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _api_error(exc: Exception) -> str:
    """ApiException carries the API's Status JSON in body; show its message."""
    body = getattr(exc, "body", None)
    if body:
        try:
            return f"{getattr(exc, 'status', '')} {json.loads(body).get('message', '')}".strip()
        except (ValueError, AttributeError):
            pass
    return str(exc) or type(exc).__name__
