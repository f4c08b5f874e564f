"""`kubectl podvirt` through the real API server against a VM in a real launcher pod:
the serial console (pexpect in a real terminal, kubectl exec), VNC through kubectl
port-forward (a real RFB handshake), and pause/resume acknowledged by the launcher.

kubectl finds the plugin as `kubectl-podvirt` on PATH (the venv's bin), as a user's
kubectl would. One VM serves every test: examples/vm-console.yaml, the test guest with
podvirt.shell=1 (a shell on its serial port) and a VNC display.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from podvirt.vmspec import keys as k
from tests.node.conftest import NAMESPACE
from tests.node.vmpods import console_session, delete as _delete, gone as _gone, \
    wait_console as _wait_console

pexpect = pytest.importorskip("pexpect")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vm-console.yaml"
NAME = "vm-console"
PROMPT = r"# "


@pytest.fixture(scope="module")
def shell_vm(cluster, core):
    """examples/vm-console.yaml, as a user applies it."""
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLE))
    try:
        _wait_console(lambda name: cluster.kubectl("logs", "-n", NAMESPACE, name, "-c",
                                                   "launcher", check=False).stdout, NAME)
        yield NAME
    finally:
        _delete(core, NAME)
        _gone(core, NAME, 60)


def _plugin(plugin_env, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "podvirt", *args], env=plugin_env, capture_output=True,
                          text=True, timeout=timeout)


def _vm_logs(cluster, name: str) -> str:
    return cluster.kubectl("logs", "-n", NAMESPACE, name, "-c", "launcher").stdout


def test_console_through_the_api_server_and_the_log_keeps_it(cluster, plugin_env, shell_vm):
    session = console_session(plugin_env, shell_vm)
    session.send("\r")
    session.expect(PROMPT)
    session.send("echo $((6*7))\r")
    session.expect(r"\n42\r*\n")
    session.send("\x1d")    # Ctrl-]
    session.expect("Disconnected")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0
    deadline = time.monotonic() + 20
    while not re.search(r"(?m)^42\r?$", _vm_logs(cluster, shell_vm)):
        assert time.monotonic() < deadline, "the session's output never reached kubectl logs"
        time.sleep(1)
    assert "echo $((6*7))" in _vm_logs(cluster, shell_vm)


def test_vnc_forward_speaks_rfb(plugin_env, shell_vm):
    proc = subprocess.Popen(["kubectl", "podvirt", "vnc", shell_vm, "-n", NAMESPACE],
                            env=plugin_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stdout.readline()
        m = re.search(r"is on 127\.0\.0\.1:(\d+)", first)
        assert m, (first, proc.stderr.read() if proc.poll() is not None else "")
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=30) as s:
            version = _recv_exactly(s, 12)
            assert re.fullmatch(rb"RFB 003\.00[3-8]\n", version), version
            s.sendall(b"RFB 003.008\n")
            count = _recv_exactly(s, 1)[0]
            assert count > 0, _recv_all(s)     # 0: the server refuses, with a reason
            types = set(_recv_exactly(s, count))
            assert 1 in types, types           # None: no password, as libvirt sets it here
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0, proc.stderr.read()


def test_pause_and_resume_are_acknowledged_by_the_launcher(cluster, core, plugin_env, shell_vm):
    paused = _plugin(plugin_env, "pause", shell_vm, "-n", NAMESPACE)
    assert paused.returncode == 0, paused.stderr
    assert f"VM {NAMESPACE}/{shell_vm} paused" in paused.stdout
    ann = core.read_namespaced_pod(shell_vm, NAMESPACE).metadata.annotations
    assert ann[k.ACTION_ACK].startswith("pause:") and ann[k.ACTION_ACK].endswith(":ok")
    _wait_annotation(core, shell_vm, k.DOMAIN_STATE, "paused")

    resumed = _plugin(plugin_env, "resume", shell_vm, "-n", NAMESPACE)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    _wait_annotation(core, shell_vm, k.PHASE, "Running")
    # A second pause is a new request (the launcher's ack already named pause once).
    again = _plugin(plugin_env, "pause", shell_vm, "-n", NAMESPACE)
    assert again.returncode == 0, again.stderr
    _wait_annotation(core, shell_vm, k.DOMAIN_STATE, "paused")
    assert _plugin(plugin_env, "resume", shell_vm, "-n", NAMESPACE).returncode == 0

    # The guest runs again: its shell still answers.
    session = console_session(plugin_env, shell_vm)
    session.send("echo resumed-$((6*7))\r")
    session.expect(r"\nresumed-42\r*\n")
    session.send("\x1d")
    session.expect(pexpect.EOF)


def test_errors_are_clear(plugin_env, shell_vm):
    missing = _plugin(plugin_env, "console", "no-such-vm", "-n", NAMESPACE)
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: pod {NAMESPACE}/no-such-vm: not found"
    assert "Traceback" not in missing.stderr


def _wait_annotation(core, name: str, key: str, value: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (ann := core.read_namespaced_pod(name, NAMESPACE).metadata.annotations).get(key) \
            != value:
        assert time.monotonic() < deadline, f"{key} is {ann.get(key)!r}, not {value!r}"
        time.sleep(0.5)


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _recv_all(s: socket.socket) -> bytes:
    s.settimeout(2)
    try:
        return s.recv(4096)
    except OSError:
        return b""
