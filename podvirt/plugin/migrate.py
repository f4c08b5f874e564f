"""`kubectl podvirt migrate NAME`: move a running VM live into a new launcher pod.

1. Check the VM can move (`target_manifest` says why not).
2. Create the target pod from the source's VM definition: the webhook renders it, the
   scheduler and the extender place it, never on the source's node unless --same-node.
3. Wait until the target's launcher waits for the VM (phase Incoming).
4. Ask the source: podvirt.io/migration-target=<target>, podvirt.io/action=migrate; its
   launcher migrates the domain live (launcher/migration.py) and acknowledges.
5. Success: the source pod ends Succeeded (reason Migrated) and is deleted (its Events
   stay); the target runs the VM. Failure or timeout: the migration is cancelled, the target pod deleted, and the
   source keeps running.

The VM keeps the label podvirt.io/vm-name across moves; its pod name changes.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable, Protocol

from podvirt.plugin.actions import ActionWaiter
from podvirt.plugin.target import PluginError, PodFacts, require_running
from podvirt.vmspec import keys as k
from podvirt.vmspec.mobility import migration_refusals
from podvirt.vmspec.contract import ContractInvalid, contract_of_pod
from podvirt.vmspec.parse import SpecInvalid, vm_annotations


class MigrationPods(Protocol):
    def read(self, name: str) -> PodFacts: ...
    def manifest(self, name: str) -> dict: ...
    def create(self, manifest: dict) -> None: ...
    def delete(self, name: str) -> None: ...
    def patch_annotations(self, name: str, changes: dict[str, str | None]) -> None: ...
    def warning_events(self, name: str, reason: str) -> list[str]: ...
    def scheduling_failures(self, name: str) -> list[str]: ...


def target_name(source: str, suffix: str | None = None) -> str:
    """<source>-mig-<5 random hex>, within a pod name's 63 characters."""
    return f"{source[:50]}-mig-{suffix or secrets.token_hex(3)[:5]}"


def target_manifest(source: dict, name: str, *, same_node: bool = False) -> dict:
    """The target pod: the source's labels and VM annotations, its placement rules, and
    nothing the webhook renders (it renders the target afresh). Raises PluginError for a
    VM that cannot move."""
    meta, spec = source["metadata"], source.get("spec", {})
    ref = f"{meta.get('namespace')}/{meta['name']}"
    annotations = vm_annotations(meta.get("annotations"))
    try:
        # Under the contract the source was admitted with, as its launcher parsed it.
        vm = contract_of_pod(meta.get("annotations")).parse_vm(annotations, name=meta["name"])
    except (SpecInvalid, ContractInvalid) as exc:
        raise PluginError(f"VM pod {ref}: {exc}") from None
    if refusals := migration_refusals(vm, meta.get("ownerReferences") or []):
        raise PluginError(f"VM {ref} cannot migrate: " + "; ".join(refusals))
    # The runtime choice that travels with the VM (the evacuator's trigger, EVACUATE, does not).
    if strategy := (meta.get("annotations") or {}).get(k.EVICTION_STRATEGY):
        annotations[k.EVICTION_STRATEGY] = strategy
    labels = dict(meta.get("labels") or {})
    labels.setdefault(k.VM_NAME_LABEL, meta["name"])
    target_spec: dict = {"containers": []}
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        if spec.get(key):
            target_spec[key] = spec[key]
    if not same_node and spec.get("nodeName"):
        target_spec["affinity"] = _not_on(target_spec.get("affinity"), spec["nodeName"])
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": meta.get("namespace"), "labels": labels,
                         "annotations": {**annotations, k.MIGRATION_SOURCE: meta["name"]}},
            "spec": target_spec}


def _not_on(affinity: dict | None, node: str) -> dict:
    """`affinity` plus a required rule keeping the pod off `node` (in every term, since
    terms are alternatives)."""
    import copy
    out = copy.deepcopy(affinity or {})
    required = out.setdefault("nodeAffinity", {}).setdefault(
        "requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.setdefault("nodeSelectorTerms", []) or [{}]
    rule = {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": [node]}
    for term in terms:
        term.setdefault("matchExpressions", []).append(rule)
    required["nodeSelectorTerms"] = terms
    return out


class Migration:
    def __init__(self, pods: MigrationPods, name: str, *, timeout: float = 300.0,
                 same_node: bool = False, interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 progress: Callable[[str], None] = lambda _m: None):
        self.pods, self.name, self.timeout, self.same_node = pods, name, timeout, same_node
        self.interval, self.clock, self.sleep, self.progress = interval, clock, sleep, progress

    def run(self) -> str:
        source = self.pods.read(self.name)
        require_running(source, ("Running",))
        manifest = target_manifest(self.pods.manifest(self.name), target_name(self.name),
                                   same_node=self.same_node)
        target = manifest["metadata"]["name"]
        deadline = self.clock() + self.timeout
        self.pods.create(manifest)
        self.progress(f"created target pod {target}")
        try:
            self._wait_incoming(target, deadline)
            self.progress(f"target pod {target} waits for the VM; migrating")
            self.pods.patch_annotations(self.name, {k.MIGRATION_TARGET: target})
            ActionWaiter(self.pods, self.name, k.MIGRATE,
                         timeout=max(1.0, deadline - self.clock()), interval=self.interval,
                         clock=self.clock, sleep=self.sleep).run()
        except BaseException:
            self._abandon(target)
            raise
        arrived = self._wait(target, lambda p: p.vm_phase == "Running",
                             deadline + 30, "the VM to run in the target pod")
        # The source pod has ended (Succeeded, reason Migrated); its Events stay.
        self.pods.delete(self.name)
        return (f"VM {source.ref} migrated to pod {arrived.ref} "
                f"({k.VM_NAME_LABEL}={manifest['metadata']['labels'][k.VM_NAME_LABEL]}); "
                f"pod {self.name} deleted")

    def _wait_incoming(self, target: str, deadline: float) -> None:
        def ready(pod: PodFacts) -> bool:
            if pod.vm_phase == "Failed" or pod.phase == "Failed":
                why = pod.annotations.get(k.FAILURE_MESSAGE) or pod.vm_phase or pod.phase
                raise PluginError(f"target pod {pod.ref} failed before the migration: {why}")
            return pod.vm_phase == "Incoming"
        try:
            self._wait(target, ready, deadline, f"target pod {target} to wait for the VM")
        except PluginError as exc:
            if "timed out" not in str(exc):
                raise
            placed = self.pods.scheduling_failures(target)
            if placed:
                raise PluginError(f"target pod {target} could not be placed: "
                                  f"{placed[-1]}") from None
            pod = self.pods.read(target)
            raise PluginError(f"{exc} (target pod {pod.phase or 'unknown'}, VM "
                              f"{pod.vm_phase or 'not started'}; `kubectl logs -n "
                              f"{pod.namespace} {target}`)") from None

    def _wait(self, name: str, done: Callable[[PodFacts], bool], deadline: float,
              what: str) -> PodFacts:
        while True:
            pod = self.pods.read(name)
            if done(pod):
                return pod
            if self.clock() >= deadline:
                raise PluginError(f"timed out after {self.timeout:g}s waiting for {what}")
            self.sleep(self.interval)

    def _abandon(self, target: str) -> None:
        """Undo: cancel a running migration (the source keeps its VM), drop the target."""
        try:
            source = self.pods.read(self.name)
            if source.vm_phase == "Migrating":
                self.pods.patch_annotations(self.name, {k.ACTION: k.MIGRATE_CANCEL})
                self._wait(self.name, lambda p: p.vm_phase != "Migrating",
                           self.clock() + 60, "the source to cancel the migration")
        except PluginError:
            pass
        finally:
            self.pods.delete(target)
            self.progress(f"deleted target pod {target}; the VM stays in pod {self.name}")
