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


def run_vnc(pods: KubePods, conn: Connection, name: str, *, port: int, address: str,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    pod = pods.read(name)
    require_vnc(pod)
    proc = subprocess.Popen(forward_command(kubectl.binary(), kubectl.base_args(conn, pod.namespace),
                                            pod.name, port, address),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout and proc.stderr
    lines: "queue.Queue[str | None]" = queue.Queue()
    errors: list[str] = []

    def pump_stdout() -> None:
        for line in proc.stdout:          # "Handling connection for ..." lines are dropped
            lines.put(line)
        lines.put(None)

    def pump_stderr() -> None:
        for line in proc.stderr:          # errors of later connections reach the user too
            errors.append(line)
            if started.is_set():
                err.write(line)
                err.flush()

    started = threading.Event()
    for pump in (pump_stdout, pump_stderr):
        threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                proc.terminate()
                raise PluginError(f"kubectl port-forward did not start in {START_TIMEOUT:g}s")
            if line is None:
                proc.wait()
                raise PluginError("kubectl port-forward failed: "
                                  + ("".join(errors).strip() or f"exit {proc.returncode}"))
            target = forwarded_to(line)
            if target:
                break
        started.set()
        out.write(how_to_connect(pod.ref, *target) + "\n")
        out.flush()
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
