"""One resource's DevicePlugin gRPC service and the unix-socket server it runs on.

The handlers only translate: the answers come from podvirt.launcher.deviceplugin.devices,
the device node's health from a shared Health that the manager's poller updates.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent import futures
from pathlib import Path

import grpc

from podvirt.launcher.deviceplugin import devices
from podvirt.launcher.deviceplugin.api import pb, rpc
from podvirt.launcher.deviceplugin.devices import PluginSpec

log = logging.getLogger("podvirt.deviceplugin")

# How often an idle ListAndWatch stream checks that its client and server are still there.
_STREAM_CHECK = 0.5


class Health:
    """A device node's health, written by the poller (and Allocate), read by the streams.

    A version number counts changes, so a stream that wakes up knows whether it has
    anything new to send."""

    def __init__(self, healthy: bool) -> None:
        self._cond = threading.Condition()
        self._healthy = healthy
        self._version = 0

    def snapshot(self) -> tuple[int, bool]:
        with self._cond:
            return self._version, self._healthy

    def set(self, healthy: bool) -> bool:
        """Record the health; True when it changed (and the streams were woken)."""
        with self._cond:
            if healthy == self._healthy:
                return False
            self._healthy = healthy
            self._version += 1
            self._cond.notify_all()
            return True

    def wait_change(self, version: int, timeout: float) -> tuple[int, bool]:
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout=timeout)
            return self._version, self._healthy

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def list_response(spec: PluginSpec, slots: int, healthy: bool) -> pb.ListAndWatchResponse:
    return pb.ListAndWatchResponse(devices=[
        pb.Device(ID=device_id, health=health)
        for device_id, health in devices.device_list(spec, slots, healthy)])


def plugin_options() -> pb.DevicePluginOptions:
    """Neither PreStartContainer nor GetPreferredAllocation has anything to add for a shared
    node, so kubelet is told not to call them (both still answer correctly)."""
    return pb.DevicePluginOptions(pre_start_required=False,
                                  get_preferred_allocation_available=False)


class DevicePluginService(rpc.DevicePluginServicer):
    def __init__(self, spec: PluginSpec, slots: int, node: Path, health: Health,
                 stopping: threading.Event) -> None:
        self._spec = spec
        self._slots = slots
        self._node = node
        self._health = health
        self._stopping = stopping
        self._ids = frozenset(spec.device_ids(slots))

    def GetDevicePluginOptions(self, request, context):
        return plugin_options()

    def ListAndWatch(self, request, context):
        """The device list now, then again on every health change, until kubelet hangs up
        or this server stops."""
        version, healthy = self._health.snapshot()
        yield list_response(self._spec, self._slots, healthy)
        while context.is_active() and not self._stopping.is_set():
            new_version, healthy = self._health.wait_change(version, _STREAM_CHECK)
            if new_version != version and not self._stopping.is_set():
                version = new_version
                yield list_response(self._spec, self._slots, healthy)

    def GetPreferredAllocation(self, request, context):
        return pb.PreferredAllocationResponse(container_responses=[
            pb.ContainerPreferredAllocationResponse(deviceIDs=devices.preferred_allocation(
                r.available_deviceIDs, r.must_include_deviceIDs, r.allocation_size))
            for r in request.container_requests])

    def Allocate(self, request, context):
        requests = [list(r.devices_ids) for r in request.container_requests]
        present = devices.device_present(self._node)
        if not present and self._health.set(False):
            # The API: fail the allocation and send a ListAndWatch update.
            log.warning("%s: health Healthy -> Unhealthy: %s is gone (seen by Allocate)",
                        self._spec.name, self._node)
        try:
            mounts = devices.allocate(self._spec, requests, known_ids=self._ids, present=present)
        except devices.AllocationError as e:
            log.warning("%s: allocate %s refused: %s", self._spec.name, requests, e)
            code = (grpc.StatusCode.FAILED_PRECONDITION if isinstance(e, devices.DeviceAbsent)
                    else grpc.StatusCode.INVALID_ARGUMENT)
            context.abort(code, str(e))
        log.info("%s: allocate %d container(s) %s -> %s %s", self._spec.name, len(requests),
                 requests, self._spec.device_path, self._spec.permissions)
        return pb.AllocateResponse(container_responses=[
            pb.ContainerAllocateResponse(devices=[pb.DeviceSpec(
                container_path=m.container_path, host_path=m.host_path,
                permissions=m.permissions)])
            for m in mounts])

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

    def __init__(self, spec: PluginSpec, slots: int, plugin_dir: Path, node: Path,
                 health: Health) -> None:
        self.spec = spec
        self.socket = plugin_dir / spec.socket_name
        self._slots = slots
        self._node = node
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
            max_workers=8, thread_name_prefix=f"dp-{self.spec.name}"))
        rpc.add_DevicePluginServicer_to_server(
            DevicePluginService(self.spec, self._slots, self._node, self._health,
                                self._stopping), server)
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
