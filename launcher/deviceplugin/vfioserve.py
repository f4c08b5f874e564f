"""One VFIO resource's device plugin answers (a service.Served), and the pod source its
GetPreferredAllocation consults; the decisions are vfio.py's."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from podvirt.launcher.deviceplugin import vfio
from podvirt.launcher.deviceplugin.api import pb
from podvirt.launcher.deviceplugin.service import Health, container_response

log = logging.getLogger("podvirt.deviceplugin")

# The pods bound to this node that are still Pending, as API JSON.
PodSource = Callable[[], Sequence[Mapping[str, Any]]]


def api_pod_source(node: str, kubeconfig: str | None = None) -> PodSource:
    """Pending pods on `node` from the API server (the probe's ServiceAccount may list
    pods; a field selector keeps the answer to this node)."""
    from kubernetes import client, config
    if kubeconfig:
        config.load_kube_config(kubeconfig)
    else:
        config.load_incluster_config()
    core = client.CoreV1Api()
    selector = f"spec.nodeName={node},status.phase=Pending"

    def pending() -> Sequence[Mapping[str, Any]]:
        raw = core.list_pod_for_all_namespaces(field_selector=selector,
                                               _preload_content=False, _request_timeout=5)
        return json.loads(raw.data).get("items") or []
    return pending


class VfioResource:
    def __init__(self, resource: str, host_vfio_dir: str, pods: PodSource | None) -> None:
        self.resource = resource
        self.name = resource
        self.socket_name = vfio.socket_name(resource)
        self._host_vfio_dir = host_vfio_dir
        self._pods = pods

    def options(self) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions(pre_start_required=False,
                                      get_preferred_allocation_available=True)

    def list_response(self, value: tuple[vfio.VfioDevice, ...]) -> pb.ListAndWatchResponse:
        return pb.ListAndWatchResponse(devices=[
            pb.Device(ID=d.address, health=vfio.health(d),
                      topology=pb.TopologyInfo(nodes=[pb.NUMANode(ID=d.numa_node)])
                      if d.numa_node >= 0 else None)
            for d in value])

    def _pending(self) -> tuple[vfio.PendingAssignment, ...]:
        if self._pods is None:
            return ()
        try:
            return vfio.pending_assignments(self._pods(), self.resource)
        except Exception as e:   # the API being away must not fail kubelet's admission
            log.warning("%s: cannot list pending pods (%s); preferring any free devices",
                        self.name, e)
            return ()

    def preferred(self, request, value) -> pb.PreferredAllocationResponse:
        pending = self._pending()
        answers = []
        for r in request.container_requests:
            ids, pod = vfio.preferred_allocation(list(r.available_deviceIDs),
                                                 list(r.must_include_deviceIDs),
                                                 r.allocation_size, pending)
            if pod:
                log.info("%s: preferring %s, assigned to %s", self.name, ",".join(ids), pod)
            else:
                log.warning("%s: no pending pod is assigned %d of the available %s; "
                            "preferring %s (the launcher will refuse a mismatch)", self.name,
                            r.allocation_size, ",".join(r.available_deviceIDs),
                            ",".join(ids))
            answers.append(pb.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return pb.PreferredAllocationResponse(container_responses=answers)

    def allocate(self, request, health: Health) -> pb.AllocateResponse:
        requests = [list(r.devices_ids) for r in request.container_requests]
        allocations = vfio.allocate(self.resource, requests, health.snapshot()[1],
                                    self._host_vfio_dir)
        log.info("%s: allocate %s -> %s", self.name, requests,
                 [[m.host_path for m in a.mounts] for a in allocations])
        return pb.AllocateResponse(container_responses=[
            container_response(a.mounts, a.env) for a in allocations])
