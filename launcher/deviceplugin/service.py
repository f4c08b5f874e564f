"""One resource's DevicePlugin gRPC service and the unix-socket server it runs on.

The handlers only translate: the answers come from a Served (SharedNode here, VfioResource
in vfioserve.py) built on the pure devices.py and vfio.py, the state from a shared Health
that the manager's poller updates.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol

import grpc

from podvirt.launcher.deviceplugin import devices
from podvirt.launcher.deviceplugin.api import pb, rpc
from podvirt.launcher.deviceplugin.devices import PluginSpec

log = logging.getLogger("podvirt.deviceplugin")

# How often an idle ListAndWatch stream checks that its client and server are still there.
_STREAM_CHECK = 0.5


class Health:
    """What a plugin serves right now (a shared node's health, or a VFIO resource's device
    list), written by the poller (and Allocate), read by the streams.

    A version number counts changes, so a stream that wakes up knows whether it has
    anything new to send."""

    def __init__(self, value: Any) -> None:
        self._cond = threading.Condition()
        self._value = value
        self._version = 0

    def snapshot(self) -> tuple[int, Any]:
        with self._cond:
            return self._version, self._value

    def set(self, value: Any) -> bool:
        """Record the value; True when it changed (and the streams were woken)."""
        with self._cond:
            if value == self._value:
                return False
            self._value = value
            self._version += 1
            self._cond.notify_all()
            return True

    def wait_change(self, version: int, timeout: float) -> tuple[int, Any]:
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout=timeout)
            return self._version, self._value

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Served(Protocol):
    """One resource's answers; the servicer below only translates them to gRPC."""
    resource: str
    name: str                       # for logs and thread names
    socket_name: str

    def options(self) -> pb.DevicePluginOptions: ...
    def list_response(self, value: Any) -> pb.ListAndWatchResponse: ...
    def allocate(self, request: pb.AllocateRequest, health: Health) -> pb.AllocateResponse:
        """Raises devices.AllocationError (DeviceAbsent: the node's state is wrong)."""
    def preferred(self, request: pb.PreferredAllocationRequest,
                  value: Any) -> pb.PreferredAllocationResponse: ...


def list_response(spec: PluginSpec, slots: int, healthy: bool) -> pb.ListAndWatchResponse:
    return pb.ListAndWatchResponse(devices=[
        pb.Device(ID=device_id, health=health)
        for device_id, health in devices.device_list(spec, slots, healthy)])


def plugin_options() -> pb.DevicePluginOptions:
    """Neither PreStartContainer nor GetPreferredAllocation has anything to add for a shared
    node, so kubelet is told not to call them (both still answer correctly)."""
    return pb.DevicePluginOptions(pre_start_required=False,
                                  get_preferred_allocation_available=False)


def container_response(mounts, env=()) -> pb.ContainerAllocateResponse:
    return pb.ContainerAllocateResponse(
        devices=[pb.DeviceSpec(container_path=m.container_path, host_path=m.host_path,
                               permissions=m.permissions) for m in mounts],
        envs=dict(env))


class SharedNode:
    """A host device node (/dev/kvm, ...) shared by `slots` interchangeable device IDs."""

    def __init__(self, spec: PluginSpec, slots: int, node: Path) -> None:
        self.spec, self.resource, self.name = spec, spec.resource, spec.name
        self.socket_name = spec.socket_name
        self.node = node
        self._slots = slots
        self._ids = frozenset(spec.device_ids(slots))

    def refresh(self) -> bool:
        return devices.device_present(self.node)

    def options(self) -> pb.DevicePluginOptions:
        return plugin_options()

    def list_response(self, value: bool) -> pb.ListAndWatchResponse:
        return list_response(self.spec, self._slots, value)

    def preferred(self, request, value) -> pb.PreferredAllocationResponse:
        return pb.PreferredAllocationResponse(container_responses=[
            pb.ContainerPreferredAllocationResponse(deviceIDs=devices.preferred_allocation(
                r.available_deviceIDs, r.must_include_deviceIDs, r.allocation_size))
            for r in request.container_requests])

    def allocate(self, request, health: Health) -> pb.AllocateResponse:
        requests = [list(r.devices_ids) for r in request.container_requests]
        present = devices.device_present(self.node)
        if not present and health.set(False):
            # The API: fail the allocation and send a ListAndWatch update.
            log.warning("%s: health Healthy -> Unhealthy: %s is gone (seen by Allocate)",
                        self.name, self.node)
        mounts = devices.allocate(self.spec, requests, known_ids=self._ids, present=present)
        log.info("%s: allocate %d container(s) %s -> %s %s", self.name, len(requests),
                 requests, self.spec.device_path, self.spec.permissions)
        return pb.AllocateResponse(container_responses=[container_response([m])
                                                        for m in mounts])


class DevicePluginService(rpc.DevicePluginServicer):
    def __init__(self, served: Served, health: Health, stopping: threading.Event) -> None:
        self._served = served
        self._health = health
        self._stopping = stopping

    def GetDevicePluginOptions(self, request, context):
        return self._served.options()

    def ListAndWatch(self, request, context):
        """The device list now, then again on every change, until kubelet hangs up or
        this server stops."""
        version, value = self._health.snapshot()
        yield self._served.list_response(value)
        while context.is_active() and not self._stopping.is_set():
            new_version, value = self._health.wait_change(version, _STREAM_CHECK)
            if new_version != version and not self._stopping.is_set():
                version = new_version
                yield self._served.list_response(value)

    def GetPreferredAllocation(self, request, context):
        return self._served.preferred(request, self._health.snapshot()[1])

    def Allocate(self, request, context):
        try:
            return self._served.allocate(request, self._health)
        except devices.AllocationError as e:
            log.warning("%s: allocate %s refused: %s", self._served.name,
                        [list(r.devices_ids) for r in request.container_requests], e)
            code = (grpc.StatusCode.FAILED_PRECONDITION if isinstance(e, devices.DeviceAbsent)
                    else grpc.StatusCode.INVALID_ARGUMENT)
            context.abort(code, str(e))

    def PreStartContainer(self, request, context):
        return pb.PreStartContainerResponse()


class ServeError(RuntimeError):
    """The plugin's socket could not be served."""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class PluginServer:
    """One plugin's gRPC server on <plugin-dir>/<socket name>. Kubelet deletes the sockets
    in its directory when it starts, so `intact()` tells whether ours is still there."""

    def __init__(self, served: Served, plugin_dir: Path, health: Health) -> None:
        self.served = served
        self.socket = plugin_dir / served.socket_name
        self._health = health
        self._server: grpc.Server | None = None
        self._stopping = threading.Event()
        self._identity: tuple[int, int] | None = None

    def start(self) -> None:
        if self._server is not None:
            raise ServeError(f"{self.socket} is already being served")
        try:
            self.socket.unlink(missing_ok=True)  # a previous run's, or kubelet already removed it
        except OSError as e:
            raise ServeError(f"cannot remove the old {self.socket}: {e.strerror}") from e
        self._stopping = threading.Event()
        server = grpc.server(futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix=f"dp-{self.served.name}"))
        rpc.add_DevicePluginServicer_to_server(
            DevicePluginService(self.served, self._health, self._stopping), server)
        try:
            bound = server.add_insecure_port(f"unix://{self.socket}")
        except RuntimeError as e:  # grpc raises on bind failures (older versions return 0)
            raise ServeError(f"cannot listen on {self.socket}: {e}") from e
        if not bound:
            raise ServeError(f"cannot listen on {self.socket}")
        server.start()
        self._server = server
        self._identity = _identity(self.socket)

    @property
    def serving(self) -> bool:
        return self._server is not None

    def intact(self) -> bool:
        """Serving, and the socket file is still the one this server created."""
        return self._server is not None and self._identity is not None \
            and _identity(self.socket) == self._identity

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving (ending open ListAndWatch streams) and remove our socket file,
        never one that replaced it."""
        if self._server is None:
            return
        self._stopping.set()
        self._health.wake()
        self._server.stop(grace).wait(grace + 1.0)
        self._server = None
        if self._identity is not None and _identity(self.socket) == self._identity:
            self.socket.unlink(missing_ok=True)
        self._identity = None
