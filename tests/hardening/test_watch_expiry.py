"""The extender's pod watch expires (410 Gone) against a real API server: it must re-list,
and its state must then match the cluster, including what changed while it was not
watching. The sync loop runs in-process on the real KubeClient. A partition pauses its
pod watch; meanwhile the test changes the cluster and restarts kube-apiserver, whose new
watch cache starts after the extender's last-seen resourceVersion, so the resumed watch
is refused by the API server itself with 410 "too old resource version"."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from podvirt.extender.decide import DEFAULT_POLICY
from podvirt.extender.kube import Kind, KubeClient
from podvirt.extender.scheduling import filter_pod
from podvirt.extender.state import WatchedCluster
from podvirt.extender.sync import start_watches
from podvirt.vmspec import DEFAULT_COSTS, keys as k

from tests.hardening import fuzzlib
from tests.hardening.figures import figure
from tests.support import restart_component

pytestmark = pytest.mark.timeout(120)


class PartitionedReader:
    """The real KubeClient, whose next pods watch after `partition()` waits for `heal()`
    before it connects; the resourceVersion it resumes from is the sync loop's own."""

    def __init__(self, real: KubeClient):
        self.real = real
        self.lists: Counter[str] = Counter()
        self.watch_errors: list[int] = []       # API statuses the watches raised
        self._partitioned, self.paused, self._healed = (threading.Event(), threading.Event(),
                                                   threading.Event())

    def partition(self) -> None:
        self._partitioned.set()

    def heal(self) -> None:
        self._healed.set()

    def list(self, kind: Kind) -> tuple[list[dict[str, Any]], str]:
        self.lists[kind] += 1
        return self.real.list(kind)

    def watch(self, kind: Kind, resource_version: str,
              timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        if kind == "pods" and self._partitioned.is_set():
            self._partitioned.clear()
            self.paused.set()
            self._healed.wait(60)
        try:
            yield from self.real.watch(kind, resource_version, timeout_seconds)
        except ApiException as exc:
            self.watch_errors.append(exc.status)
            raise


def _filler(name: str, namespace: str, node: str) -> k8s.V1Pod:
    """A plain (non-VM) pod placed directly on a node, holding 15 of its 16Gi."""
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
        spec=k8s.V1PodSpec(node_name=node, containers=[k8s.V1Container(
            name="c", image="registry.k8s.io/pause:3.9",
            resources=k8s.V1ResourceRequirements(requests={"memory": "15Gi", "cpu": "100m"}))]))


def _usage(state: WatchedCluster) -> dict[str, Any]:
    return {name: view.usage for name, view in state.views().items()}


def _fresh_usage(real: KubeClient) -> dict[str, Any]:
    truth = WatchedCluster()
    truth.replace_nodes(real.list("nodes")[0])
    truth.replace_pods(real.list("pods")[0])
    return _usage(truth)


def _wait(what: str, ok, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_pod_watch_410_relists_and_state_stays_right(fresh_cluster) -> None:
    namespace, core = "watch-410", k8s.CoreV1Api(fresh_cluster.api_client())
    fresh_cluster.kubectl("create", "namespace", namespace)
    real = KubeClient(fresh_cluster.api_client())
    reader, state, stop = PartitionedReader(real), WatchedCluster(), threading.Event()
    vm = fuzzlib.rendered_pod({k.MEMORY: "2Gi", k.DISKS: "root=scratch:1Gi"})
    nodes = ["hw-0", "hw-1", "hw-2", "hw-3"]

    def placeable() -> list[str]:
        return filter_pod(state, vm, nodes, now=time.time(), policy=DEFAULT_POLICY,
                          costs=DEFAULT_COSTS).passed

    threads = start_watches(reader, state, stop, watch_timeout=1)
    try:
        _wait("the first list", lambda: state.ready)
        core.create_namespaced_pod(namespace, _filler("fill-hw-1", namespace, "hw-1"))
        _wait("hw-1 to fill up (seen by the watch)", lambda: "hw-1" not in placeable())
        assert reader.lists["pods"] == 1

        print("\n  partitioned the pod watch; changing the cluster, restarting kube-apiserver",
              flush=True)
        reader.partition()
        _wait("the pod watch to pause", reader.paused.is_set)
        core.create_namespaced_pod(namespace, _filler("fill-hw-0", namespace, "hw-0"))
        core.delete_namespaced_pod("fill-hw-1", namespace, grace_period_seconds=0)
        restart_component(fresh_cluster, "kube-apiserver", down_seconds=0)
        reader.heal()

        _wait("a re-list after 410", lambda: reader.lists["pods"] >= 2)
        _wait("state to match a fresh list", lambda: _usage(state) == _fresh_usage(real), 15)
        after = placeable()
        errors = reader.watch_errors
        figure("watch_410", f"watch_errors={errors} pod_lists={reader.lists['pods']} "
               f"placeable_after={','.join(after)}")
        assert 410 in errors, f"the resumed watch was not refused with 410: {errors}"
        # hw-0 filled and hw-1 freed while nobody watched: only a re-list can know both.
        assert after == ["hw-1", "hw-2", "hw-3"]
    finally:
        stop.set()
        for t in threads:
            t.join(10)
