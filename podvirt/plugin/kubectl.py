"""Running kubectl for the streams the API server serves (exec, port-forward): kubectl
already speaks them (SPDY or WebSocket, whichever the server offers) and honours the
user's kubeconfig exactly as every other kubectl command does."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from podvirt.plugin.kubeapi import Connection
from podvirt.plugin.target import PluginError


def binary() -> str:
    """$KUBECTL if set, else kubectl on PATH (where kubectl found this plugin too)."""
    name = os.environ.get("KUBECTL") or "kubectl"
    path = shutil.which(name)
    if path is None:
        raise PluginError(f"{name} not found on PATH: kubectl podvirt runs kubectl for "
                          "console and VNC streams")
    return path


def base_args(conn: Connection, namespace: str) -> list[str]:
    """kubectl's global flags for this connection; the namespace is always explicit."""
    args = []
    if conn.kubeconfig:
        args.append(f"--kubeconfig={conn.kubeconfig}")
    if conn.context:
        args.append(f"--context={conn.context}")
    return [*args, f"--namespace={namespace}"]


def _exit_on(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def signals_unwind() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C: `finally` blocks restore the terminal and
    stop the kubectl child instead of leaving a raw terminal or an orphaned forward."""
    if threading.current_thread() is not threading.main_thread():
        yield               # handlers can only be set from the main thread
        return
    previous = {sig: signal.signal(sig, _exit_on) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
