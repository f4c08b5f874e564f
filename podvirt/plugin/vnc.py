"""`kubectl podvirt vnc NAME`: forward the VM's VNC display to a local port.

QEMU's VNC server listens on the pod's loopback at VNC_PORT, so only the API server's
port-forward (which dials inside the pod's network namespace) reaches it; this runs
`kubectl port-forward` and says where to point a viewer.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from typing import TextIO

from podvirt.plugin import kubectl
from podvirt.plugin.kubeapi import Connection, KubePods
from podvirt.plugin.target import PluginError, require_vnc
from podvirt.vmspec.model import VNC_PORT

_FORWARDING = re.compile(r"^Forwarding from (\S+):(\d+) -> (\d+)")
START_TIMEOUT = 30.0


def forward_command(kubectl_bin: str, base: list[str], pod: str, local_port: int,
                    address: str) -> list[str]:
    local = str(local_port) if local_port else ""    # empty: kubectl picks a free port
    return [kubectl_bin, *base, "port-forward", f"--address={address}", f"pod/{pod}",
            f"{local}:{VNC_PORT}"]


def forwarded_to(line: str) -> tuple[str, int] | None:
    """(local address, local port) from kubectl's `Forwarding from A:P -> 5900` line."""
    m = _FORWARDING.match(line.strip())
    return (m.group(1).strip("[]"), int(m.group(2))) if m else None


def how_to_connect(ref: str, address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return (f"VNC of VM {ref} is on {host}:{port}\n"
            f"  connect a viewer: vncviewer {host}::{port}   or   "
            f"remote-viewer vnc://{host}:{port}\n"
            "  Ctrl-C stops the forward.")


class _Forward:
    """A running `kubectl port-forward`: its stdout lines in a queue, its stderr lines
    collected, and passed straight through once the forward is up."""

    def __init__(self, cmd: list[str], err: TextIO):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.errors: list[str] = []
        self.up = threading.Event()
        self.err = err
        self._pumps = [threading.Thread(target=pump, daemon=True)
                       for pump in (self._stdout, self._stderr)]
        for pump in self._pumps:
            pump.start()

    def _stdout(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:          # "Handling connection for ..." is dropped
            self.lines.put(line)
        self.lines.put(None)

    def _stderr(self) -> None:
        assert self.proc.stderr
        for line in self.proc.stderr:          # errors of later connections reach the user
            self.errors.append(line)
            if self.up.is_set():
                self.err.write(line)
                self.err.flush()

    def wait_up(self) -> tuple[str, int]:
        """The local (address, port) once kubectl listens; PluginError if it gives up."""
        while True:
            try:
                line = self.lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                raise PluginError(f"kubectl port-forward did not start in "
                                  f"{START_TIMEOUT:g}s") from None
            if line is None:
                self.proc.wait()
                self._pumps[1].join(timeout=2)     # all of kubectl's error, not a part
                raise PluginError("kubectl port-forward failed: " + (
                    "".join(self.errors).strip() or f"exit {self.proc.returncode}"))
            if target := forwarded_to(line):
                self.up.set()
                return target

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def run_vnc(pods: KubePods, conn: Connection, name: str, *, port: int, address: str,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    pod = pods.read(name)
    require_vnc(pod)
    forward = _Forward(forward_command(kubectl.binary(), kubectl.base_args(conn, pod.namespace),
                                       pod.name, port, address), err)
    try:
        with kubectl.signals_unwind():
            out.write(how_to_connect(pod.ref, *forward.wait_up()) + "\n")
            out.flush()
            return forward.proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        forward.stop()
