"""Fakes of the device plugin tests: device nodes, a fake kubelet Registration server,
a ListAndWatch reader with bounded waits.

The gRPC stubs are generated and git-ignored: hack/deviceplugin/gen.sh runs first (it does
nothing when they are current), so a fresh checkout's test run makes them itself.
"""

import os
import queue
import stat
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import pytest

from tests import REPO

_gen = subprocess.run(["bash", str(REPO / "hack/deviceplugin/gen.sh")], capture_output=True,
                      text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
if _gen.returncode != 0:
    raise RuntimeError(f"hack/deviceplugin/gen.sh failed:\n{_gen.stdout}{_gen.stderr}")

import grpc  # noqa: E402

from podvirt.launcher.deviceplugin.api import pb, rpc  # noqa: E402

WAIT = 5.0  # seconds any one expected event may take; ticks are 50 ms


def make_char_device(path: Path) -> None:
    """A character device node: /dev/null's numbers (we run as root); where mknod is not
    allowed, a symlink to /dev/null, which the health check (stat follows links) accepts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        os.symlink("/dev/null", path)


class FakeKubelet(rpc.RegistrationServicer):
    """kubelet's Registration service on <plugin-dir>/kubelet.sock: records each request;
    refuses the first `refuse` of them as a kubelet that has the resource taken would."""

    def __init__(self, socket: Path, refuse: int = 0) -> None:
        self.socket = socket
        self.requests: queue.Queue = queue.Queue()
        self.refuse = refuse
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        rpc.add_RegistrationServicer_to_server(self, self._server)
        assert self._server.add_insecure_port(f"unix://{socket}")
        self._server.start()

    def Register(self, request, context):
        if self.refuse > 0:
            self.refuse -= 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "resource already registered")
        self.requests.put(request)
        return pb.Empty()

    def registered(self, count: int) -> list:
        """The next `count` accepted registrations, sorted by resource name."""
        got = []
        for _ in range(count):
            try:
                got.append(self.requests.get(timeout=WAIT))
            except queue.Empty:
                pytest.fail(f"{len(got)} of {count} registrations within {WAIT}s: {got}")
        return sorted(got, key=lambda r: r.resource_name)

    def stop(self) -> None:
        self._server.stop(0).wait(WAIT)


def plugin_stub(socket: Path):
    channel = grpc.insecure_channel(f"unix://{socket}")
    return channel, rpc.DevicePluginStub(channel)


_END = object()


class Watch:
    """ListAndWatch as kubelet holds it open; next() returns [(id, health)] or fails."""

    def __init__(self, socket: Path) -> None:
        self.channel, stub = plugin_stub(socket)
        self.call = stub.ListAndWatch(pb.Empty(), timeout=30)
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self._queue.put([(d.ID, d.health) for d in response.devices])
        except grpc.RpcError as e:
            self._queue.put(e)
        else:
            self._queue.put(_END)

    def next(self, timeout: float = WAIT):
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no ListAndWatch update within {timeout}s")
        if item is _END or isinstance(item, Exception):
            pytest.fail(f"ListAndWatch ended: {item}")
        return item

    def quiet(self, duration: float) -> None:
        """No update for `duration` seconds."""
        try:
            item = self._queue.get(timeout=duration)
        except queue.Empty:
            return
        pytest.fail(f"unexpected ListAndWatch update: {item}")

    def ended(self, timeout: float = WAIT) -> None:
        """Wait for the stream to end, by the server finishing it or an error."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"ListAndWatch still open after {timeout}s")
        assert item is _END or isinstance(item, grpc.RpcError), f"another update: {item}"

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()
