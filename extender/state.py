"""The extender's in-memory view of the cluster: what each node offers and what its pods use.

Fed by watch events (sync.py) and by the extender's own binds. A pod charges its node
when it is bound (spec.nodeName) and not terminal, or when the extender has *assumed*
it onto a node during bind and no watch event has shown it bound yet; so two VMs bound
back to back never both get the last free memory or device.

VM start failures (annotation podvirt.io/failure-reason=VMStartFailed) are remembered
per node, even after the pod is deleted, until they are older than `failure_retention`.
The failure time is, in order of preference: the lastTransitionTime of the pod's
podvirt.io/VMReady condition when it is False, the latest container termination time,
or when this extender first saw the failure.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from podvirt.extender.facts import (EMPTY_USAGE, NodeOffer, NodeUsage, assigned_addresses,
                                    node_offer, pod_requests, usage_from_requests)
from podvirt.vmspec import keys as k

TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodCharge:
    node: str
    requests: Mapping[str, int]
    devices: frozenset[str] = frozenset()


@dataclass
class _Pod:
    uid: str
    obj: Mapping[str, Any]
    observed: PodCharge | None = None   # bound and not terminal, per the API
    assumed: PodCharge | None = None    # bound by us, not yet seen bound

    @property
    def charge(self) -> PodCharge | None:
        return self.observed or self.assumed


class NodeView(NamedTuple):
    facts: NodeOffer
    usage: NodeUsage


class _NodeAccount:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.devices: Counter[str] = Counter()
        self.failures: dict[str, float] = {}    # pod uid -> failure time

    def add(self, charge: PodCharge, sign: int) -> None:
        for name, value in charge.requests.items():
            self.requests[name] += sign * value
        for address in charge.devices:
            self.devices[address] += sign

    def usage(self) -> NodeUsage:
        return usage_from_requests(self.requests,
                                   frozenset(a for a, n in self.devices.items() if n > 0),
                                   tuple(sorted(self.failures.values())))


def pod_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _key_of(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return pod_key(str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def failure_time(pod: Mapping[str, Any]) -> float | None:
    """When the VM in `pod` failed to start, per the API object (None: unknown)."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == k.VM_READY_CONDITION and cond.get("status") == "False":
            t = _timestamp(cond.get("lastTransitionTime"))
            if t is not None:
                return t
    ends = [_timestamp(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for cs in status.get("containerStatuses") or []]
    ends = [t for t in ends if t is not None]
    return max(ends) if ends else None


class WatchedCluster:
    """The extender's view of the cluster: nodes and pods as the watches last saw them,
    plus the pods it assumed bound."""
    def __init__(self, *, failure_retention: float = 3600.0,
                 clock: Callable[[], float] = time.time):
        self._lock = threading.RLock()
        self._nodes: dict[str, NodeOffer] = {}
        self._pods: dict[str, _Pod] = {}
        self._accounts: dict[str, _NodeAccount] = {}
        self._usage: dict[str, NodeUsage] = {}
        self._views: dict[str, NodeView] = {}
        self._node_locks: dict[str, threading.Lock] = {}
        self._synced: set[str] = set()
        self.failure_retention = failure_retention
        self.clock = clock

    # --- readiness ---------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return {"nodes", "pods"} <= self._synced

    # --- nodes -------------------------------------------------------------------------
    def replace_nodes(self, nodes: Iterable[Mapping[str, Any]]) -> None:
        facts = {f.name: f for f in map(node_offer, nodes) if f.name}
        with self._lock:
            self._nodes = facts
            self._rebuild_views()
            self._synced.add("nodes")

    def apply_node(self, event_type: str, node: Mapping[str, Any]) -> None:
        facts = node_offer(node)
        with self._lock:
            if event_type == "DELETED":
                self._nodes.pop(facts.name, None)
            elif facts.name:
                self._nodes[facts.name] = facts
            self._refresh_view(facts.name)

    # --- pods --------------------------------------------------------------------------
    def replace_pods(self, pods: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            old = self._pods
            self._pods = {}
            for account in self._accounts.values():
                account.requests.clear()
                account.devices.clear()
            for pod in pods:
                key = _key_of(pod)
                previous = old.get(key)
                entry = self._entry_for(pod, previous)
                self._pods[key] = entry
                self._record_failure(pod, entry)
                if entry.charge:
                    self._account(entry.charge.node).add(entry.charge, +1)
            self._usage = {name: a.usage() for name, a in self._accounts.items()}
            self._rebuild_views()
            self._synced.add("pods")

    def apply_pod(self, event_type: str, pod: Mapping[str, Any]) -> None:
        key = _key_of(pod)
        with self._lock:
            previous = self._pods.get(key)
            before = previous.charge if previous else None
            if event_type == "DELETED":
                self._pods.pop(key, None)
                after = None
            else:
                entry = self._entry_for(pod, previous)
                self._pods[key] = entry
                self._record_failure(pod, entry)
                after = entry.charge
            self._recharge(before, after)

    def _entry_for(self, pod: Mapping[str, Any], previous: _Pod | None) -> _Pod:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName")
        terminal = status.get("phase") in TERMINAL_PHASES
        observed = None
        if node and not terminal:
            observed = PodCharge(node, pod_requests(pod), assigned_addresses(pod))
        # An assumption lasts until the pod is seen bound or done, or is replaced.
        assumed = None
        if previous and previous.uid == uid and not node and not terminal:
            assumed = previous.assumed
        return _Pod(uid=uid, obj=pod, observed=observed, assumed=assumed)

    def _record_failure(self, pod: Mapping[str, Any], entry: _Pod) -> None:
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        if annotations.get(k.FAILURE_REASON) != k.REASON_START_FAILED or not node:
            return
        account = self._account(node)
        now = self.clock()
        when = failure_time(pod) or account.failures.get(entry.uid) or now
        account.failures[entry.uid] = when
        for uid, t in list(account.failures.items()):
            if t < now - self.failure_retention:
                del account.failures[uid]
        self._usage[node] = account.usage()
        self._refresh_view(node)

    def _account(self, node: str) -> _NodeAccount:
        account = self._accounts.get(node)
        if account is None:
            account = self._accounts[node] = _NodeAccount()
        return account

    def _recharge(self, before: PodCharge | None, after: PodCharge | None) -> None:
        if before == after:
            return
        for charge, sign in ((before, -1), (after, +1)):
            if charge:
                account = self._account(charge.node)
                account.add(charge, sign)
                self._usage[charge.node] = account.usage()
                self._refresh_view(charge.node)

    # One (facts, usage) object per node, replaced whenever either changes: the filter
    # needs one lookup per node, and a memoized verdict stays valid while it `is` the same.
    def _refresh_view(self, name: str) -> None:
        facts = self._nodes.get(name)
        if facts is None:
            self._views.pop(name, None)
        else:
            self._views[name] = NodeView(facts, self._usage.get(name, EMPTY_USAGE))

    def _rebuild_views(self) -> None:
        self._views = {name: NodeView(facts, self._usage.get(name, EMPTY_USAGE))
                       for name, facts in self._nodes.items()}

    # --- assumptions (bind) ------------------------------------------------------------
    def assume(self, pod: Mapping[str, Any], node: str, devices: Iterable[str]) -> str:
        """Charge `pod` to `node` before the Binding exists; returns the key to forget()."""
        key = _key_of(pod)
        with self._lock:
            previous = self._pods.get(key)
            entry = self._entry_for(pod, None)
            entry.observed = None
            entry.assumed = PodCharge(node, pod_requests(pod), frozenset(devices))
            self._pods[key] = entry
            self._recharge(previous.charge if previous else None, entry.charge)
        return key

    def forget(self, key: str) -> None:
        """Drop an assumption whose bind failed (an observed binding stays)."""
        with self._lock:
            entry = self._pods.get(key)
            if entry and entry.assumed:
                before = entry.charge
                entry.assumed = None
                self._recharge(before, entry.charge)

    # --- reads -------------------------------------------------------------------------
    def node(self, name: str) -> NodeOffer | None:
        return self._nodes.get(name)

    def usage(self, name: str) -> NodeUsage:
        with self._lock:
            return self._usage.get(name, EMPTY_USAGE)

    def pod(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        entry = self._pods.get(pod_key(namespace, name))
        return entry.obj if entry else None

    def views(self) -> dict[str, NodeView]:
        """Every known node's facts and usage at one instant (a copy; views are frozen)."""
        with self._lock:
            return dict(self._views)

    def node_names(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    def node_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._node_locks.setdefault(name, threading.Lock())
