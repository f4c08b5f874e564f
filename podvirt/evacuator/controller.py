"""The evacuator's I/O: a watch of VM pods, and one thread per migration it runs.

The migration itself is the one `kubectl podvirt migrate` runs (podvirt.plugin.migrate):
a target pod placed by the scheduler and the extender (off the source's node unless
--same-node), the live migration between the two launchers, the source pod deleted at the
end; on failure the target is removed and the VM stays where it was.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from podvirt.evacuator.plan import Candidate, Schedule
from podvirt.kubeclient import pod_event
from podvirt.plugin.kubeapi import KubePods
from podvirt.plugin.migrate import Migration
from podvirt.plugin.target import PluginError
from podvirt.vmspec import keys as k

log = logging.getLogger("podvirt.evacuator")
SELECTOR = f"{k.OPT_IN_LABEL}={k.OPT_IN_VALUE}"


class Evacuator:
    def __init__(self, core: Any, schedule: Schedule, *, namespaces: tuple[str, ...] = (),
                 same_node: bool = False, timeout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        """`namespaces`: where VM pods may run (one watch each); empty: all namespaces."""
        self.core, self.schedule, self.same_node, self.timeout = core, schedule, same_node, timeout
        self.clock = clock
        self.pods: dict[str | None, dict[str, dict]] = {}   # namespace -> uid -> pod
        self.lock = threading.Lock()
        self.synced: dict[str | None, threading.Event] = {
            ns: threading.Event() for ns in (namespaces or (None,))}
        self.threads: list[threading.Thread] = []

    # --- the watch -------------------------------------------------------------------------
    def watch_forever(self, stop: threading.Event, namespace: str | None) -> None:
        from kubernetes import watch
        failures = 0
        while not stop.is_set():
            try:
                version = self._relist(namespace)
                failures = 0
                for event in watch.Watch().stream(
                        *self._lister(namespace), label_selector=SELECTOR,
                        resource_version=version, timeout_seconds=300,
                        allow_watch_bookmarks=True):
                    if stop.is_set():
                        return
                    self._apply(namespace, event["type"], event["raw_object"])
            except Exception as exc:    # noqa: BLE001 - any API trouble: relist after a pause
                failures += 1
                log.warning("pod watch (%s) failed (%s); relisting", namespace or "all", exc)
                stop.wait(min(30.0, 0.5 * 2 ** failures))

    def _lister(self, namespace: str | None) -> tuple:
        if namespace is None:
            return (self.core.list_pod_for_all_namespaces,)
        return (self.core.list_namespaced_pod, namespace)

    def _relist(self, namespace: str | None) -> str:
        lister, *args = self._lister(namespace)
        reply = lister(*args, label_selector=SELECTOR, _preload_content=False)
        doc = json.loads(reply.data)
        with self.lock:
            self.pods[namespace] = {p["metadata"]["uid"]: p for p in doc.get("items", [])}
        self.synced[namespace].set()
        return doc["metadata"]["resourceVersion"]

    def _apply(self, namespace: str | None, kind: str, pod: dict) -> None:
        if kind == "ERROR":
            raise RuntimeError(f"watch error: {pod.get('message')}")
        if kind == "BOOKMARK":
            return
        uid = pod["metadata"]["uid"]
        with self.lock:
            pods = self.pods.setdefault(namespace, {})
            if kind == "DELETED":
                pods.pop(uid, None)
            else:
                pods[uid] = pod

    # --- the migrations --------------------------------------------------------------------
    def tick(self) -> list[Candidate]:
        with self.lock:
            pods = [p for by_uid in self.pods.values() for p in by_uid.values()]
        self.schedule.forget({p["metadata"]["uid"] for p in pods})
        started = self.schedule.due(pods, self.clock())
        self.threads = [t for t in self.threads if t.is_alive()]
        for c in started:
            thread = threading.Thread(target=self.evacuate, args=(c,), daemon=True,
                                      name=f"evacuate-{c.name}")
            thread.start()
            self.threads.append(thread)
        return started

    def join(self, timeout: float) -> None:
        deadline = self.clock() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - self.clock()))

    def evacuate(self, c: Candidate) -> bool:
        self.event(c, k.EVENT_EVACUATING, f"evicted: migrating the VM off node {c.node}")
        log.info("evacuating %s off %s", c.ref, c.node)
        try:
            pods = KubePods(self.core, c.namespace)
            result = Migration(pods, c.name, timeout=self.timeout, same_node=self.same_node,
                               progress=lambda m: log.info("%s: %s", c.ref, m)).run()
        except PluginError as exc:
            log.warning("evacuating %s failed: %s", c.ref, exc)
            self.event(c, k.EVENT_EVACUATION_FAILED,
                       f"{exc}; retried in {self.schedule.retry_seconds:g}s while evicted",
                       warning=True)
            self.schedule.finished(c, False, self.clock())
            return False
        except Exception:   # a bug: logged, retried like a failure
            log.exception("evacuating %s failed", c.ref)
            self.schedule.finished(c, False, self.clock())
            return False
        log.info("%s", result)
        self.schedule.finished(c, True, self.clock())
        return True

    def event(self, c: Candidate, reason: str, message: str, *, warning: bool = False) -> None:
        from kubernetes.client.exceptions import ApiException
        body = pod_event(c.namespace, c.name, reason, message, component="podvirt-evacuator",
                         warning=warning, uid=c.uid)
        try:
            self.core.create_namespaced_event(c.namespace, body)
        except ApiException as exc:
            log.warning("cannot record event %s on %s: %s %s", reason, c.ref, exc.status,
                        exc.reason)

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        for namespace in self.synced:
            threading.Thread(target=self.watch_forever, args=(stop, namespace), daemon=True,
                             name=f"pod-watch-{namespace or 'all'}").start()
        for synced in self.synced.values():
            while not synced.wait(1.0):
                if stop.is_set():
                    return
        log.info("watching VM pods; evacuating at most %d at once", self.schedule.parallel)
        while not stop.wait(interval):
            self.tick()
