"""WatchedCluster fed with synthetic watch events, and the list/watch loop's recovery."""

from __future__ import annotations

import threading

import pytest
from kubernetes.client.exceptions import ApiException

from podvirt.extender.state import WatchedCluster
from podvirt.extender.sync import Backoff, sync_forever
from podvirt.vmspec import keys as k
from podvirt.vmspec import demand, parse_vm

from tests.unit.extender.objects import BASE_VM, GiB, gpu, node_json, plain_pod, vm_pod

# 4Gi guest + overhead, as the webhook requests it (from the core, never restated here).
VM_MEMORY = demand(parse_vm(BASE_VM)).memory


def synced(*nodes) -> WatchedCluster:
    state = WatchedCluster(clock=lambda: 1_000_000.0)
    state.replace_nodes(list(nodes) or [node_json("n1")])
    state.replace_pods([])
    return state


def test_ready_only_after_both_lists():
    state = WatchedCluster()
    state.replace_nodes([node_json("n1")])
    assert not state.ready
    state.replace_pods([])
    assert state.ready


POD_LIFECYCLE = [
    pytest.param([("ADDED", vm_pod("a"))], 0, id="pending-pod-charges-nothing"),
    pytest.param([("ADDED", vm_pod("a", node="n1"))], VM_MEMORY, id="bound-pod-charges"),
    pytest.param([("ADDED", vm_pod("a", node="n1")), ("MODIFIED", vm_pod("a", node="n1",
                                                                      phase="Succeeded"))],
                 0, id="succeeded-pod-releases"),
    pytest.param([("ADDED", vm_pod("a", node="n1")), ("MODIFIED", vm_pod("a", node="n1",
                                                                      phase="Failed"))],
                 0, id="failed-pod-releases"),
    pytest.param([("ADDED", vm_pod("a", node="n1")), ("DELETED", vm_pod("a", node="n1"))],
                 0, id="deleted-pod-releases"),
    pytest.param([("ADDED", vm_pod("a", node="n1")), ("ADDED", plain_pod("web", node="n1")),
                  ("MODIFIED", vm_pod("a", node="n1", phase="Running"))],
                 VM_MEMORY + GiB, id="non-vm-pods-count-too"),
]


@pytest.mark.parametrize("events, memory", POD_LIFECYCLE)
def test_usage_follows_pod_events(events, memory):
    state = synced()
    for event_type, pod in events:
        state.apply_pod(event_type, pod)
    assert state.usage("n1").memory == memory


def test_assumed_pod_counts_until_seen_bound():
    state = synced()
    pod = vm_pod("a")
    state.apply_pod("ADDED", pod)
    state.assume(pod, "n1", ["0000:3b:00.0"])
    assert state.usage("n1").memory == VM_MEMORY
    assert state.usage("n1").claimed == {"0000:3b:00.0"}
    # The annotation patch arrives first: still unbound, the assumption must hold.
    patched = vm_pod("a", annotations={k.ASSIGNED_DEVICES: '[{"address": "0000:3b:00.0", '
                                                           '"vendor": "10de", "device": "1db6"}]'})
    state.apply_pod("MODIFIED", patched)
    assert state.usage("n1").memory == VM_MEMORY
    # Then the binding: the observed pod replaces the assumption, nothing is counted twice.
    bound = vm_pod("a", node="n1", annotations=patched["metadata"]["annotations"])
    state.apply_pod("MODIFIED", bound)
    assert state.usage("n1").memory == VM_MEMORY
    assert state.usage("n1").claimed == {"0000:3b:00.0"}
    state.forget("default/a")                 # a late forget must not undo an observed binding
    assert state.usage("n1").memory == VM_MEMORY


def test_forget_releases_assumption():
    state = synced()
    pod = vm_pod("a")
    state.assume(pod, "n1", ["0000:3b:00.0"])
    state.forget("default/a")
    assert state.usage("n1").memory == 0
    assert state.usage("n1").claimed == frozenset()


def test_relist_keeps_assumption_of_listed_pending_pod_and_drops_vanished():
    state = synced()
    state.assume(vm_pod("a"), "n1", [])
    state.assume(vm_pod("gone"), "n1", [])
    state.replace_pods([vm_pod("a"), plain_pod("web", node="n1")])
    assert state.usage("n1").memory == VM_MEMORY + GiB


def test_start_failures_survive_pod_deletion():
    state = synced()
    failed = vm_pod("a", node="n1", phase="Failed",
                    annotations={k.FAILURE_REASON: k.REASON_START_FAILED})
    failed["status"]["conditions"] = [{"type": "podvirt.io/VMReady", "status": "False",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    state.apply_pod("ADDED", failed)
    state.apply_pod("DELETED", failed)
    assert state.usage("n1").memory == 0
    assert state.usage("n1").failures == (1767225600.0,)


def test_failure_time_falls_back_to_first_seen():
    state = synced()
    failed = vm_pod("a", node="n1", annotations={k.FAILURE_REASON: k.REASON_START_FAILED})
    state.apply_pod("ADDED", failed)
    assert state.usage("n1").failures == (1_000_000.0,)


def test_node_events_update_facts():
    state = synced()
    state.apply_node("MODIFIED", node_json("n1", devices=[gpu("0000:3b:00.0")]))
    assert [d.address for d in state.node("n1").devices] == ["0000:3b:00.0"]
    state.apply_node("DELETED", node_json("n1"))
    assert state.node("n1") is None


# --- list/watch recovery ---------------------------------------------------------------------

class FakeReader:
    """Lists and watch streams scripted per call; each stream is a list of events or an
    exception to raise after its events."""

    def __init__(self, lists, streams, stop):
        self.lists, self.streams, self.stop = list(lists), list(streams), stop
        self.calls: list[tuple] = []

    def list(self, kind):
        self.calls.append(("list", kind))
        return self.lists.pop(0)

    def watch(self, kind, resource_version, timeout_seconds):
        self.calls.append(("watch", kind, resource_version))
        if not self.streams:
            self.stop.set()
            return
        events, error = self.streams.pop(0)
        yield from events
        if error:
            raise error


def test_watch_410_relists_and_resumes():
    stop = threading.Event()
    state = WatchedCluster()
    pod_b = vm_pod("b", node="n1")
    pod_b["metadata"]["resourceVersion"] = "12"
    reader = FakeReader(
        lists=[([vm_pod("a", node="n1")], "10"), ([pod_b], "20")],
        streams=[([("MODIFIED", vm_pod("a", node="n1", phase="Succeeded"))],
                  ApiException(status=410, reason="Gone")),
                 ([("BOOKMARK", {"metadata": {"resourceVersion": "25"}})], None),
                 ([("ADDED", vm_pod("c"))], None)],
        stop=stop)
    sleeps = []
    sync_forever(reader, state, "pods", stop, sleep=lambda s: sleeps.append(s))
    assert reader.calls == [("list", "pods"), ("watch", "pods", "10"), ("list", "pods"),
                            ("watch", "pods", "20"), ("watch", "pods", "25"),
                            ("watch", "pods", "1")]
    assert sleeps == []                           # 410 re-lists at once
    assert state.usage("n1").memory == VM_MEMORY  # pod b from the re-list; a is gone
    assert state.pod("default", "a") is None and state.pod("default", "c") is not None


def test_watch_errors_back_off_then_relist():
    stop = threading.Event()
    reader = FakeReader(lists=[([], "1"), ([], "2"), ([], "3")],
                        streams=[([], ConnectionResetError("peer reset")),
                                 ([], ApiException(status=500, reason="boom"))],
                        stop=stop)
    sleeps = []
    sync_forever(reader, WatchedCluster(), "nodes", stop, backoff=Backoff(base=1, cap=30),
                 sleep=lambda s: sleeps.append(s))
    assert [c[0] for c in reader.calls] == ["list", "watch", "list", "watch", "list", "watch"]
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1 and 1 <= sleeps[1] <= 2
