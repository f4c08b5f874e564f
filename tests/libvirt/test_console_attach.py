"""`podvirt launcher console` against a real guest: the busybox test guest with
podvirt.shell=1 runs a shell on its serial port, reached through the launcher's console
socket in a real terminal (pexpect), while the console log keeps everything."""

import os
import shutil
import sys

import pytest

from tests.libvirt.realguest import LauncherProcess

pexpect = pytest.importorskip("pexpect")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd")
                       or not shutil.which("qemu-system-x86_64"),
                       reason="needs root, libvirtd and qemu-system-x86_64"),
]

PROMPT = r"# "
FORTY_TWO = r"\n42\r*\n"   # the answer on a line of its own, not the echoed command


def _attach(path):
    return pexpect.spawn(sys.executable, ["-m", "podvirt.cli", "launcher", "console",
                                          "--socket", str(path / "launcher/console.sock")],
                         timeout=30)


def test_console_session_reaches_the_guest_shell_and_the_log_keeps_it(pod):
    path, procs = pod
    launcher = LauncherProcess(path, "podvirt.shell=1")
    procs.append(launcher)
    launcher.wait_for_output("PODVIRT-GUEST-UP", timeout=120)

    session = _attach(path)
    session.expect("Ctrl-] leaves")
    session.send("\r")
    session.expect(PROMPT)
    session.send("echo $((6*7))\r")
    session.expect(FORTY_TWO)
    session.expect(PROMPT)

    # One session at a time: a second one is refused, the first keeps working.
    second = _attach(path)
    second.expect("another console session is attached")
    second.expect(pexpect.EOF)
    second.close()
    assert second.exitstatus == 1
    session.send("echo second-$((40+2))\r")
    session.expect(r"\nsecond-42\r*\n")

    session.send("\x1d")    # Ctrl-]
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0

    # The launcher's stdout (the pod's log) got the session's output from QEMU's log.
    launcher.wait_for_output("second-42", timeout=10)
    log = (path / "launcher/serial.log").read_text(errors="replace")
    assert "echo $((6*7))" in log and "\n42" in log

    # After leaving, the socket takes a new session (QEMU listens again).
    again = _attach(path)
    again.expect("Ctrl-] leaves")
    again.send("echo again-$((6*7))\r")
    again.expect(r"\nagain-42\r*\n")
    again.send("\x1d")
    again.expect(pexpect.EOF)


def test_console_of_a_vm_that_is_not_running_says_so(pod):
    path, _ = pod
    session = _attach(path)
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 1
    assert b"not running" in session.before
