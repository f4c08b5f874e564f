"""The real node itself and the chart's pods on it."""

from __future__ import annotations

from podvirt.cluster import chart
from podvirt.cluster.inventory import KWOK_ANNOTATION
from podvirt.cluster.node import NODE_NAME
from podvirt.vmspec import keys as k
from podvirt.vmspec.overhead import DEFAULT_COSTS


def test_real_node_is_ready_with_facts_from_the_probe(core):
    node = core.read_node(NODE_NAME)
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert KWOK_ANNOTATION not in (node.metadata.annotations or {}), "kwok must not manage it"
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    labels = node.metadata.labels
    # /dev/kvm exists here but guests under kvm_pvm are far too slow: the functional check says no.
    assert labels[k.NODE_KVM_LABEL] == "false"
    assert labels.get(k.NODE_CPU_MODEL_LABEL)


def test_device_plugin_advertises_the_device_nodes_this_machine_has(core):
    from pathlib import Path
    allocatable = core.read_node(NODE_NAME).status.allocatable
    names = DEFAULT_COSTS.resources
    assert allocatable[k.VM_MARKER_RESOURCE] == "110"
    # A device node the machine lacks is served as unhealthy devices: kubelet counts them
    # in capacity but never allocates them.
    for resource, device in ((names.kvm, "/dev/kvm"), (names.tun, "/dev/net/tun"),
                             (names.vhost_net, "/dev/vhost-net")):
        expected = "110" if Path(device).exists() else "0"
        assert allocatable.get(resource, "0") == expected, (resource, allocatable)


def test_chart_pods_run_on_the_real_node_from_local_images(core):
    pods = core.list_namespaced_pod(chart.NAMESPACE).items
    kinds = {p.metadata.labels.get("app.kubernetes.io/component") for p in pods}
    assert {"webhook", "extender", "probe"} <= kinds, kinds
    for pod in pods:
        assert pod.spec.node_name == NODE_NAME, pod.metadata.name
        assert pod.status.phase in ("Running", "Succeeded"), (pod.metadata.name, pod.status.phase)
        for c in pod.spec.containers + (pod.spec.init_containers or []):
            assert c.image.startswith("localhost/podvirt/"), (pod.metadata.name, c.image)


def test_plain_pod_lands_on_the_real_node_and_serves_logs(cluster, core):
    """kwok's nodes are tainted beside the real one: a pod that does not tolerate that
    lands where it really runs, and kubectl logs reaches its kubelet."""
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "main", "image": f"{chart.LAUNCHER_REPOSITORY}:{chart.IMAGE_TAG}",
                    "imagePullPolicy": "Never", "command": ["/bin/echo", "hello from a pod"]}]}}
    import time
    import yaml
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    try:
        deadline = time.monotonic() + 60
        while (pod := core.read_namespaced_pod("plain", "default")).status.phase != "Succeeded":
            assert pod.status.phase != "Failed" and time.monotonic() < deadline, pod.status
            time.sleep(0.5)
        assert pod.spec.node_name == NODE_NAME
        assert cluster.kubectl("logs", "plain").stdout.strip() == "hello from a pod"
    finally:
        cluster.kubectl("delete", "pod", "plain", "--wait=true", check=False)
