"""Builders for Node and launcher Pod JSON, shaped like the API server's."""

from __future__ import annotations

import json
import threading
from typing import Any

from podvirt.extender.state import WatchedCluster
from podvirt.vmspec import PassthroughDevice, parse_vm
from podvirt.webhook.render import render_launcher_pod
from podvirt.vmspec import keys as k

GiB = 2**30
MiB = 2**20
BASE_VM = {k.MEMORY: "4Gi", k.VCPUS: "2", k.DISKS: "root=containerdisk:quay.io/x/cirros"}


def gpu(address: str, numa: int = 0, resource: str = "nvidia.com/gpu") -> PassthroughDevice:
    return PassthroughDevice(address=address, vendor="10de", device="1db6", resource=resource,
                             numa_node=numa, iommu_group=int(address[5:7], 16))


def node_json(name: str, *, memory: str = "16Gi", cpu: str = "8", labels: dict | None = None,
              devices: list[PassthroughDevice] = (), extra: dict | None = None,
              annotations: dict | None = None) -> dict[str, Any]:
    alloc = {"memory": memory, "cpu": cpu, "pods": "110", "ephemeral-storage": "100Gi",
             "devices.podvirt.io/kvm": "110",
             "devices.podvirt.io/tun": "110", "devices.podvirt.io/vhost-net": "110",
             "podvirt.io/vm": "110", **(extra or {})}
    ann = dict(annotations or {})
    if devices:
        ann[k.NODE_PCI_DEVICES] = json.dumps([d.to_json() for d in devices])
    return {"metadata": {"name": name, "labels": {k.NODE_KVM_LABEL: "true", **(labels or {})},
                         "annotations": ann, "resourceVersion": "1"},
            "status": {"allocatable": alloc, "capacity": alloc}}


def vm_pod(name: str, vm: dict | None = None, *, node: str | None = None, phase: str = "Pending",
           uid: str | None = None, annotations: dict | None = None,
           namespace: str = "default") -> dict[str, Any]:
    """A launcher pod with the requests the webhook renders for its VM annotations."""
    a = {**BASE_VM, **(vm or {})}
    rendered = render_launcher_pod({"metadata": {"name": name}, "spec": {"containers": []}},
                                   parse_vm(a, name=name))
    launcher = rendered["spec"]["containers"][0]
    spec: dict[str, Any] = {"containers": [{"name": "launcher", "resources": {
        "requests": launcher["resources"]["requests"]}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}",
                         "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE},
                         "annotations": {**a, **(annotations or {})}, "resourceVersion": "1"},
            "spec": spec, "status": {"phase": phase}}


def plain_pod(name: str, *, node: str | None = None, memory: str = "1Gi", cpu: str = "500m",
              phase: str = "Running") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {
        "requests": {"memory": memory, "cpu": cpu}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": spec, "status": {"phase": phase}}


class FakeApi:
    """ApiWriter recording calls; `fail_binding` makes create_binding raise."""

    def __init__(self, state=None, *, fail_binding: bool = False, fail_patch: bool = False):
        self.state = state
        self.fail_binding = fail_binding
        self.fail_patch = fail_patch
        self.patches: list[tuple[str, str, dict]] = []
        self.bindings: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def get_pod(self, namespace, name):
        return None

    def patch_pod_annotations(self, namespace, name, uid, annotations):
        if self.fail_patch:
            raise RuntimeError("patch refused")
        with self.lock:
            self.patches.append((namespace, name, annotations))

    def create_binding(self, namespace, name, uid, node):
        if self.fail_binding:
            raise RuntimeError("apiserver unavailable")
        with self.lock:
            self.bindings.append((namespace, name, node))


def http_cluster() -> WatchedCluster:
    """The synced cluster the HTTP tests answer from: a 64Gi node, a 2Gi node, one without
    KVM."""
    s = WatchedCluster()
    s.replace_nodes([node_json("big", memory="64Gi"), node_json("small", memory="2Gi"),
                     node_json("nokvm", labels={k.NODE_KVM_LABEL: "false"})])
    s.replace_pods([])
    return s
