"""The console and VNC commands' handling of their kubectl child, with a fake kubectl
($KUBECTL, a shell script) standing in for the API server's exec and port-forward."""

import io
import os
import stat
import threading
import time

import pytest

from podvirt.plugin.console import run_console
from podvirt.plugin.kubeapi import Connection
from podvirt.plugin.target import PluginError
from podvirt.plugin.vnc import run_vnc
from podvirt.vmspec import keys as k
from tests.unit.plugin.fakes import FakePods, vm_facts


@pytest.fixture
def fake_kubectl(tmp_path, monkeypatch):
    def install(body: str) -> None:
        script = tmp_path / "kubectl"
        script.write_text("#!/bin/sh\n" + body + "\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("KUBECTL", str(script))
    return install


def _pods(**annotations):
    return FakePods(vm_facts(**annotations), lambda pod: None)


class Session:
    """run_console in a thread, with pipes for the user's terminal."""

    def __init__(self, pods=None):
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.err = io.StringIO()
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(run_console(
            pods or _pods(), Connection(), "vm1", stdin=self.in_r, stdout=self.out_w,
            err=self.err)))
        self.thread.start()

    def type(self, data: bytes) -> None:
        os.write(self.in_w, data)

    def read(self) -> bytes:
        return os.read(self.out_r, 100)

    def end(self) -> int:
        self.thread.join(timeout=15)
        assert self.result, "the console did not end"
        for fd in (self.in_r, self.in_w, self.out_r, self.out_w):
            os.close(fd)
        return self.result[0]


def test_console_relays_through_kubectl_and_sends_the_escape_on(fake_kubectl, tmp_path):
    seen = tmp_path / "seen"
    # The pod side: echo back what arrives, and keep all it got.
    fake_kubectl(f"exec tee {seen}")
    session = Session()
    session.type(b"echo hi\n")
    assert session.read() == b"echo hi\n"
    session.type(b"\x1dignored")
    assert session.end() == 0
    assert seen.read_bytes() == b"echo hi\n\x1d"     # the pod side is told to leave too
    assert "Serial console of VM vms/vm1; Ctrl-] leaves." in session.err.getvalue()
    assert "Disconnected from VM vms/vm1." in session.err.getvalue()


def test_console_reports_the_pod_sides_error(fake_kubectl):
    fake_kubectl("echo 'podvirt launcher console: another console session is attached' >&2\n"
                 "echo 'command terminated with exit code 1' >&2; exit 1")
    session = Session()
    assert session.end() == 1
    assert "another console session is attached" in session.err.getvalue()
    assert "command terminated" not in session.err.getvalue()


def test_console_refuses_a_vm_that_does_not_run(fake_kubectl):
    fake_kubectl("exit 99")
    with pytest.raises(PluginError, match="is Starting"):
        run_console(FakePods(vm_facts("Starting"), lambda p: None), Connection(), "vm1")


def test_vnc_prints_where_to_connect_and_stops_its_forward(fake_kubectl, tmp_path):
    pidfile = tmp_path / "pid"
    fake_kubectl(f"echo $$ > {pidfile}; echo \"args: $*\" >&2\n"
                 "echo 'Forwarding from 127.0.0.1:40123 -> 5900'; exec sleep 30")
    out = io.StringIO()
    result = []
    t = threading.Thread(target=lambda: result.append(run_vnc(
        _pods(**{k.GRAPHICS: "vnc"}), Connection(namespace="vms"), "vm1", port=0,
        address="127.0.0.1", out=out, err=io.StringIO())))
    t.start()
    deadline = time.monotonic() + 10
    while "40123" not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.05)
    assert "VNC of VM vms/vm1 is on 127.0.0.1:40123" in out.getvalue()
    pid = int(pidfile.read_text())
    os.kill(pid, 15)                       # kubectl ends: so does the command, with its code
    t.join(timeout=10)
    assert result == [-15]


def test_vnc_reports_a_forward_that_fails(fake_kubectl):
    fake_kubectl("echo 'error: unable to listen on any of the requested ports' >&2; exit 1")
    with pytest.raises(PluginError, match="port-forward failed: error: unable to listen"):
        run_vnc(_pods(**{k.GRAPHICS: "vnc"}), Connection(), "vm1", port=5901,
                address="127.0.0.1", out=io.StringIO(), err=io.StringIO())


def test_vnc_without_graphics_never_starts_kubectl(fake_kubectl, tmp_path):
    marker = tmp_path / "ran"
    fake_kubectl(f"touch {marker}")
    with pytest.raises(PluginError, match="has no graphics"):
        run_vnc(_pods(), Connection(), "vm1", port=0, address="127.0.0.1")
    assert not marker.exists()


def test_sigterm_restores_the_terminal_and_stops_kubectl(fake_kubectl, tmp_path):
    import pty
    import signal
    import termios
    pidfile = tmp_path / "pid"
    fake_kubectl(f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 30")
    leader, follower = pty.openpty()
    before = termios.tcgetattr(follower)

    def terminate_once_attached():
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)                       # into the relay, with the terminal raw
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=terminate_once_attached, daemon=True).start()
    try:
        with pytest.raises(SystemExit) as exc:
            run_console(_pods(), Connection(), "vm1", stdin=follower, stdout=leader,
                        err=io.StringIO())
        assert exc.value.code == 128 + signal.SIGTERM
        assert termios.tcgetattr(follower) == before
        with pytest.raises(ProcessLookupError):          # stopped and reaped
            os.kill(int(pidfile.read_text()), 0)
    finally:
        os.close(leader)
        os.close(follower)


def test_console_of_a_paused_vm_says_it_will_not_answer_yet(fake_kubectl):
    fake_kubectl("exec cat")
    session = Session(FakePods(vm_facts("Paused"), lambda p: None))
    session.type(b"\x1d")
    assert session.end() == 0
    assert "The VM is paused: it answers after `kubectl podvirt resume`." in \
        session.err.getvalue()
