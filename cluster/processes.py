"""Background processes of the local control plane: start, probe, stop.

Each component runs in its own session (process group) with stdout+stderr in a log file,
so `down` can stop it together with any children (gunicorn workers) even from another
shell, and its log survives for diagnosis.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class ComponentError(RuntimeError):
    """A component exited or did not become healthy; the message carries its log tail."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports on 127.0.0.1 that nothing listens on right now, from below the
    kernel's ephemeral range: a port the kernel handed out for a bind to port 0 is also one
    it hands to outgoing connections, and the many client connections a starting cluster
    makes took such a port before its server bound it (kube-scheduler then died at start
    while its readiness probe was answered by whatever held the port)."""
    low = max(1024, _ephemeral_range()[0] - 12000)
    high = _ephemeral_range()[0] - 1
    picked: list[int] = []
    for port in random.sample(range(low, high), k=min(high - low, 50 * count)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        picked.append(port)
        if len(picked) == count:
            return picked
    raise RuntimeError(f"no {count} free TCP ports between {low} and {high}")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if there is no such pid.

    Recorded with each pid, it tells our process from an unrelated one that got the same
    pid after ours exited, so `down` never signals a stranger.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may contain spaces, so count after its ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[int, int]:
    """Start argv detached in a new session: (pid = its process-group id, start ticks)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, close_fds=True)
    return proc.pid, start_ticks(proc.pid) or 0


def ours(pid: int, started: int) -> bool:
    """The recorded process is still running (not merely some process with its pid)."""
    return alive(pid) and start_ticks(pid) == started


def alive(pid: int) -> bool:
    try:
        # A zombie child of ours still "exists"; reap it so it reads as dead.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_all(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM each process group, then SIGKILL the groups still alive after `grace` s.
    Callers pass only pids that `ours` confirmed."""
    def signal_groups(sig: signal.Signals, targets: list[int]) -> None:
        for pid in targets:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass

    signal_groups(signal.SIGTERM, pids)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    # Also reaches children left in a group whose leader already exited (gunicorn workers).
    signal_groups(signal.SIGKILL, pids)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)


@dataclass(frozen=True)
class Probe:
    """An HTTP(S) health endpoint, verified against ca_file, optionally with a client cert."""
    url: str
    ca_file: str | None = None
    client_cert: tuple[str, str] | None = None

    def ok(self) -> bool:
        context = None
        if self.url.startswith("https"):
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.ca_file is None:   # self-signed serving certs (kube-scheduler)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.client_cert:
                context.load_cert_chain(*self.client_cert)
        try:
            with urllib.request.urlopen(self.url, timeout=2, context=context) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False


def wait_until(name: str, ready: Callable[[], bool], pid: int | None, log: Path | None,
               timeout: float) -> float:
    """Poll `ready` until true; fail early if the process died. Returns seconds waited."""
    start = time.monotonic()
    while True:
        if ready():
            return time.monotonic() - start
        if pid is not None and not alive(pid):
            raise ComponentError(f"{name} exited during startup; last log lines "
                                 f"({log}):\n{log_tail(log) if log else ''}")
        if time.monotonic() - start > timeout:
            raise ComponentError(f"{name} not ready after {timeout:.0f}s; last log lines "
                                 f"({log}):\n{log_tail(log) if log else ''}")
        time.sleep(0.1)
