"""Talking to kubelet: Registration.Register over <plugin-dir>/kubelet.sock, and telling
one kubelet.sock from the next."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from podvirt.launcher.deviceplugin.api import pb, rpc
from podvirt.launcher.deviceplugin.devices import API_VERSION
from podvirt.launcher.deviceplugin.service import Served


class RegistrationError(RuntimeError):
    """Kubelet did not answer, or refused the plugin."""


def socket_identity(path: Path) -> tuple[int, int, int] | None:
    """Which kubelet.sock this is, None while there is none. A restarted kubelet creates a
    new socket; the inode alone could be reused at once by the new file, its change time
    (nanoseconds) could not."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def register(kubelet_socket: Path, spec: Served, *, timeout: float = 5.0) -> None:
    """Register the plugin's socket (a name relative to kubelet's directory, as the API wants)
    under its resource name. Fails fast when nothing listens on kubelet.sock."""
    request = pb.RegisterRequest(version=API_VERSION, endpoint=spec.socket_name,
                                 resource_name=spec.resource, options=spec.options())
    with grpc.insecure_channel(f"unix://{kubelet_socket}") as channel:
        try:
            rpc.RegistrationStub(channel).Register(request, timeout=timeout)
        except grpc.RpcError as e:
            raise RegistrationError(f"{e.code().name}: {e.details()}") from e
