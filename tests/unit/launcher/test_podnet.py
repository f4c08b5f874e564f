"""The pod NIC's passt: its command line, and a start that fails is reported with
passt's own words (unit tier: a stand-in passt binary, no network)."""

import stat
import subprocess
from pathlib import Path

import pytest

from podvirt.launcher.podnet import Passt, PasstError, passt_argv, passt_guest_address
from podvirt.vmspec.model import Port


@pytest.mark.parametrize("ports, forwards", [
    pytest.param((), [], id="nothing-forwarded-by-default"),
    pytest.param((Port(22), Port(80), Port(53, "udp")), ["-t", "22,80", "-u", "53"],
                 id="tcp-and-udp"),
])
def test_argv(ports, forwards):
    argv = passt_argv(Path("/w/passt.sock"), Path("/w/passt.log"), ports)
    assert argv[:10] == ["passt", "--foreground", "--quiet", "--runas", "0:0", "--no-map-gw",
                         "--socket", "/w/passt.sock", "--log-file", "/w/passt.log"]
    assert argv[10:] == forwards


def _fake_passt(tmp_path: Path, script: str) -> str:
    path = tmp_path / "passt"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_start_waits_for_the_socket_and_stop_ends_it(tmp_path):
    # Parses --socket like passt and creates it, then runs until stopped.
    binary = _fake_passt(tmp_path, 'while [ "$1" != --socket ]; do shift; done\n'
                                   ': > "$2"\nexec sleep 60\n')
    passt = Passt(tmp_path, (Port(22),), binary=binary)
    passt.start(timeout=10)
    assert passt.alive() and passt.sock.exists()
    passt.stop()
    assert not passt.alive()


def test_a_passt_that_exits_is_reported_with_its_message(tmp_path):
    binary = _fake_passt(tmp_path, "echo \"Failed to bind any port for '-t 22', exiting\" >&2\n"
                                   "exit 1\n")
    with pytest.raises(PasstError, match="exited with 1: Failed to bind any port for '-t 22'"):
        Passt(tmp_path, (Port(22),), binary=binary).start(timeout=10)


def test_a_missing_passt_is_named(tmp_path):
    with pytest.raises(PasstError, match="cannot run passt"):
        Passt(tmp_path, (), binary=str(tmp_path / "nope")).start(timeout=1)


def test_guest_address_is_an_address_of_this_namespace():
    address = passt_guest_address()
    if address is None:
        pytest.skip("no default route here")
    local = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                           check=True).stdout
    assert f" {address}/" in local
