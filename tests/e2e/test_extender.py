"""The extender through the real kube-scheduler of the local control plane: VM pods go to
the VM profile (no in-tree resource fit), so every rejected node carries the extender's
reason; plain pods never reach it; concurrent binds never hand out a device twice."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from podvirt.quantity import parse_bytes
from podvirt.vmspec import keys as k

from tests.e2e.support import DATA

DISK = "root=containerdisk:quay.io/containerdisks/debian:12"


def vm_pod(name: str, **annotations: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE},
                         "annotations": {k.VCPUS: "1", k.MEMORY: "1Gi", k.DISKS: DISK,
                                         **annotations}},
            "spec": {"containers": []}}


def plain_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                     "resources": {"requests": {"cpu": "10m",
                                                                "memory": "16Mi"}}}]}}


def filter_calls(cluster) -> float:
    """How many filter requests the extender has answered (its Prometheus histogram)."""
    text = requests.get(f"https://127.0.0.1:{cluster.port('extender')}/metrics",
                        verify=str(cluster.ca_file), timeout=10).text
    m = re.search(r"^podvirt_extender_filter_seconds_count (\S+)$", text, re.M)
    assert m, "no filter histogram in the extender's /metrics"
    return float(m.group(1))


def failed_scheduling(core, namespace: str, name: str, timeout: float = 20) -> str:
    """The message of the pod's first FailedScheduling event."""
    deadline = time.monotonic() + timeout
    selector = f"involvedObject.name={name},reason=FailedScheduling"
    while time.monotonic() < deadline:
        events = core.list_namespaced_event(namespace, field_selector=selector).items
        if events:
            return events[0].message
        time.sleep(0.2)
    raise AssertionError(f"no FailedScheduling event for {namespace}/{name} in {timeout}s")


def _running(pod) -> bool:
    return pod.status.phase == "Running"


def test_pinned_vm_with_sidecar_lands_on_its_node(namespace, apply, wait_pod):
    pod = vm_pod("pinned", **{k.NODE_NAMES: "small"})
    pod["spec"]["containers"] = [{"name": "agent", "image": "registry.example/agent:1",
                                  "resources": {"requests": {"memory": "100Mi"}}}]
    apply(pod, namespace, check=True)
    placed = wait_pod(namespace, "pinned", _running)
    assert placed.spec.node_name == "small"
    assert placed.spec.scheduler_name == "podvirt-scheduler"


def test_too_large_vm_pends_with_the_extenders_reason_per_node(namespace, apply, core):
    apply(vm_pod("huge", **{k.MEMORY: "200Gi"}), namespace, check=True)
    message = failed_scheduling(core, namespace, "huge")
    # One memory reason per node that has KVM: each names the VM's demand and that
    # node's free memory, instead of the in-tree "Insufficient memory".
    free = re.findall(r"needs [\d.]+Gi \(200Gi guest \+ [\d.]+Mi overhead\), ([\d.]+[GM]i) free",
                      message)
    assert len(set(free)) >= 2, message
    assert "Insufficient memory" not in message
    assert "KVM is not usable" in message          # no-kvm: the root cause, not memory
    assert core.read_namespaced_pod("huge", namespace).spec.node_name is None
    # A pending VM is filtered again on every cluster change: gone, it cannot blur the
    # filter count of the next test.
    core.delete_namespaced_pod("huge", namespace, grace_period_seconds=0)


def test_vm_pinned_to_labels_no_node_has_pends_with_the_in_tree_affinity_reason(
        namespace, apply, core):
    # The webhook renders podvirt.io/node-labels as required node affinity, which
    # kube-scheduler's NodeAffinity filter checks before any extender: the nodes it
    # rejects never reach the extender, so its "node lacks label" reason is not shown.
    apply(vm_pod("nowhere", **{k.NODE_LABELS: "podvirt.io/zone=nowhere"}), namespace,
          check=True)
    message = failed_scheduling(core, namespace, "nowhere")
    assert "didn't match Pod's node affinity/selector" in message, message
    assert "node lacks label" not in message, message
    core.delete_namespaced_pod("nowhere", namespace, grace_period_seconds=0)


def test_scratch_disks_are_fitted_against_each_nodes_ephemeral_storage(namespace, apply, core,
                                                                       wait_pod):
    # A 100Ti scratch disk fits no node: each KVM node says what the VM's disks ask and how
    # much of its ephemeral-storage is free (the inventory gives them 90Gi to 800Gi).
    apply(vm_pod("hoarder", **{k.DISKS: "scratch=scratch:100Ti"}), namespace, check=True)
    message = failed_scheduling(core, namespace, "hoarder")
    free = re.findall(r"needs 100Ti ephemeral-storage \(disk scratch 100Ti \+ launcher 256Mi\), "
                      r"([\d.]+Gi) free", message)
    assert len(set(free)) >= 3, message
    assert "KVM is not usable" in message
    core.delete_namespaced_pod("hoarder", namespace, grace_period_seconds=0)

    # Pinned to `small`, whose free ephemeral-storage other tests' VMs share: learn it from
    # the reason, fill all but 1.5Gi of it, and the next VM finds what the first requests.
    def pinned(name: str, disk: str) -> dict:
        return vm_pod(name, **{k.NODE_NAMES: "small", k.MEMORY: "256Mi",
                               k.DISKS: f"data=scratch:{disk}"})

    apply(pinned("probe", "100Ti"), namespace, check=True)
    m = re.search(r"ephemeral-storage .*?, ([\d.]+[GM]i) free", failed_scheduling(core, namespace,
                                                                                "probe"))
    core.delete_namespaced_pod("probe", namespace, grace_period_seconds=0)
    free = parse_bytes(m.group(1))
    size = f"{(free - 3 * 2**29) // 2**20}Mi"
    assert free >= 2 * 2**30, f"small has {m.group(1)} free; other tests took the rest"
    apply(pinned("first", size), namespace, check=True)
    assert wait_pod(namespace, "first", _running).spec.node_name == "small"
    apply(pinned("second", size), namespace, check=True)
    message = failed_scheduling(core, namespace, "second")
    m = re.search(r"needs [\d.]+Gi ephemeral-storage \(disk data [\d.]+Gi \+ launcher 256Mi\), "
                  r"([\d.]+[GM]i) free", message)
    assert m and parse_bytes(m.group(1)) < 2 * 2**30, message
    for name in ("first", "second"):    # the next tests pin VMs to small too
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)


def test_plain_pods_never_reach_the_extender(cluster, core, namespace, apply, wait_pod):
    pending_vms = [p.metadata.name for p in core.list_pod_for_all_namespaces(
        label_selector=f"{k.OPT_IN_LABEL}={k.OPT_IN_VALUE}", field_selector="spec.nodeName=").items]
    assert pending_vms == [], "pending VM pods would be filtered again meanwhile"
    before = filter_calls(cluster)
    for i in range(3):
        apply(plain_pod(f"plain-{i}"), namespace, check=True)
    for i in range(3):
        assert wait_pod(namespace, f"plain-{i}", _running).spec.scheduler_name == \
            "default-scheduler"
    assert filter_calls(cluster) == before
    # The counter is live: a VM pod is filtered by the extender.
    apply(vm_pod("vm", **{k.NODE_NAMES: "small", k.MEMORY: "256Mi"}), namespace, check=True)
    wait_pod(namespace, "vm", _running)
    assert filter_calls(cluster) > before


# --- a cluster of its own: the device nodes of race-nodes.yaml among 300 plain ones -------

VMS, DEVICES = 20, 8
FILLER_NODES = 300
RARE = ("rare-a", "rare-b", "rare-c")     # one node each has a device nobody else has


@pytest.fixture(scope="module")
def race_cluster(tmp_path_factory):
    from podvirt.cluster.binaries import BinaryError, locate
    from podvirt.cluster.cluster import Cluster, UpOptions
    try:
        locate()
    except BinaryError as exc:
        pytest.skip(f"control-plane binaries unavailable: {exc}")
    inventory = yaml.safe_load((DATA / "race-nodes.yaml").read_text())
    inventory["nodes"] += [{"name": f"filler-{i:03d}"} for i in range(FILLER_NODES)]
    inventory["nodes"] += [
        {"name": name, "pciDevices": [{"address": "0000:65:00.0", "vendor": "10de",
                                       "device": "1db6", "resource": f"example.com/{name}",
                                       "numaNode": 0, "iommuGroup": 40}]}
        for name in RARE]
    tmp = tmp_path_factory.mktemp("race-cluster")
    (tmp / "nodes.yaml").write_text(yaml.safe_dump(inventory))
    c = Cluster(tmp / "state")
    try:
        c.up(UpOptions(inventory=tmp / "nodes.yaml", timeout=120, node=False))
        yield c
    finally:
        c.down()


def test_vm_finds_the_one_node_with_its_device_at_the_first_attempt(race_cluster):
    """kube-scheduler samples nodes (48% of 305 here) with its own filters before it asks
    an extender; the VM profile turns sampling off, or a VM whose device one node has
    would miss that node in about half of its scheduling cycles (all three: ~1 in 9)."""
    from kubernetes import client
    core = client.CoreV1Api(race_cluster.api_client())
    ns = "rare"
    core.create_namespace({"metadata": {"name": ns}})
    for name in RARE:
        core.create_namespaced_pod(ns, vm_pod(f"vm-{name}", **{k.DEVICES: f"example.com/{name}=1"}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bound = {p.metadata.name: p.spec.node_name for p in core.list_namespaced_pod(ns).items}
        if all(bound.values()):
            break
        time.sleep(0.3)
    assert bound == {f"vm-{name}": name for name in RARE}
    failures = core.list_namespaced_event(ns, field_selector="reason=FailedScheduling").items
    assert not failures, [e.message for e in failures]


def _settled(pods) -> bool:
    """Every pod is bound or was found unschedulable at least once."""
    return all(p.spec.node_name or any(c.type == "PodScheduled" and c.status == "False"
                                       for c in p.status.conditions or ())
               for p in pods)


def test_vms_racing_for_devices_never_share_one(race_cluster):
    from kubernetes import client
    core = client.CoreV1Api(race_cluster.api_client())
    ns = "race"
    core.create_namespace({"metadata": {"name": ns}})
    pods = [vm_pod(f"vm-{i:02d}", **{k.DEVICES: "example.com/nic=1"}) for i in range(VMS)]
    with ThreadPoolExecutor(8) as pool:    # all at once: binds to one node overlap
        list(pool.map(lambda p: core.create_namespaced_pod(ns, p), pods))

    deadline = time.monotonic() + 30
    while True:
        listed = core.list_namespaced_pod(ns).items
        bound = [p for p in listed if p.spec.node_name]
        if len(bound) >= DEVICES and _settled(listed) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    time.sleep(1)   # a late, wrong bind would show up now
    listed = core.list_namespaced_pod(ns).items
    bound = [p for p in listed if p.spec.node_name]

    assert len(bound) == DEVICES
    claims = [(p.spec.node_name, d["address"]) for p in bound
              for d in json.loads(p.metadata.annotations[k.ASSIGNED_DEVICES])]
    assert len(claims) == DEVICES and len(set(claims)) == DEVICES
    pending = [p for p in listed if not p.spec.node_name]
    reason = failed_scheduling(core, ns, pending[0].metadata.name)
    assert "needs 1 example.com/nic, all 4 claimed" in reason, reason
