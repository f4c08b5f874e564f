"""`kubectl podvirt console NAME`: the guest's serial console in this terminal.

`kubectl exec -i` (no remote tty: the guest's own tty does line discipline and echo)
runs `podvirt launcher console` in the launcher container, which attaches to the
guest's serial socket. This side puts the terminal in raw mode, relays bytes both ways
and leaves on Ctrl-], which it also sends on so the pod side lets go of the socket.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import TextIO

from podvirt.plugin import kubectl
from podvirt.plugin.kubeapi import Connection, KubePods
from podvirt.plugin.target import LAUNCHER_CONTAINER, PodFacts, require_running
from podvirt.terminal import ESCAPE, ESCAPE_NAME, raw_terminal, relay

ATTACH = ("podvirt", "launcher", "console")


def exec_command(kubectl_bin: str, base: list[str], pod: str) -> list[str]:
    return [kubectl_bin, *base, "exec", "-i", pod, "-c", LAUNCHER_CONTAINER, "--", *ATTACH]


def remote_errors(text: str) -> str:
    """kubectl's stderr without its own `command terminated with exit code N` line,
    which only repeats what the pod side already said."""
    return "\n".join(line for line in text.splitlines()
                     if line.strip() and not line.startswith("command terminated with exit code"))


def run_console(pods: KubePods, conn: Connection, name: str, *, stdin: int = 0,
                stdout: int = 1, err: TextIO = sys.stderr) -> int:
    pod: PodFacts = pods.read(name)
    require_running(pod)
    proc = subprocess.Popen(exec_command(kubectl.binary(), kubectl.base_args(conn, pod.namespace),
                                         pod.name),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdin and proc.stdout and proc.stderr
    collected: list[bytes] = []
    reader = threading.Thread(target=lambda: collected.extend(iter(proc.stderr.readline, b"")),
                              daemon=True)
    reader.start()
    try:
        paused = " The VM is paused: it answers after `kubectl podvirt resume`." \
            if pod.vm_phase == "Paused" else ""
        err.write(f"Serial console of VM {pod.ref}; {ESCAPE_NAME} leaves.{paused}\n")
        err.flush()
        with kubectl.signals_unwind(), raw_terminal(stdin):
            end = relay(stdin, stdout, proc.stdin.fileno(), proc.stdout.fileno())
        if end != "peer-closed":
            try:
                proc.stdin.write(ESCAPE)   # the pod side ends its relay too
                proc.stdin.close()
            except OSError:
                pass
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    reader.join(timeout=2)
    problems = remote_errors(b"".join(collected).decode(errors="replace"))
    if end == "peer-closed" and code != 0:
        err.write(f"\n{problems or f'kubectl exec exited with {code}'}\n")
        return code
    err.write(f"\nDisconnected from VM {pod.ref}.\n")
    return 0
