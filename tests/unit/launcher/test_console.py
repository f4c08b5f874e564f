"""The launcher's console pieces without a guest: the session lock and errors of
`podvirt launcher console`, and the log tail following virtlogd's rotation."""

import io
import os
import socket
import threading
import time

import pytest

from podvirt.launcher.attach import AttachError, attach, lock_session
from podvirt.launcher.console import ConsoleTail


@pytest.fixture
def guest_socket(tmp_path):
    """A unix socket server standing in for QEMU's serial chardev: answers 'ok:<input>'."""
    path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def serve():
        try:
            conn, _ = server.accept()
        except OSError:          # closed at teardown by a test that never connected
            return
        with conn:
            while data := conn.recv(100):
                conn.sendall(b"ok:" + data)
    threading.Thread(target=serve, daemon=True).start()
    yield path
    server.close()


def test_attach_relays_and_leaves_on_escape(guest_socket):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, b"hello")
    result = []
    t = threading.Thread(target=lambda: result.append(attach(guest_socket, in_r, out_w)))
    t.start()
    assert os.read(out_r, 100) == b"ok:hello"
    os.write(in_w, b"\x1d")
    t.join(timeout=5)
    assert result == ["escape"]


def test_second_session_is_refused_while_one_holds_the_lock(guest_socket):
    held = lock_session(guest_socket)
    try:
        with pytest.raises(AttachError, match="another console session"):
            attach(guest_socket, 0, 1)
    finally:
        os.close(held)
    os.close(lock_session(guest_socket))    # free again once the first session ends


def test_attach_without_a_socket_says_the_vm_is_not_running(tmp_path):
    with pytest.raises(AttachError, match="not open at .*not running"):
        attach(tmp_path / "missing" / "console.sock", 0, 1)


def test_attach_to_a_dead_socket_says_the_vm_is_not_running(tmp_path):
    path = tmp_path / "console.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()                            # the file stays, nobody listens: QEMU is gone
    with pytest.raises(AttachError, match="not running"):
        attach(path, 0, 1)


def _wait_for(out: io.BytesIO, text: bytes, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while text not in out.getvalue():
        assert time.monotonic() < deadline, f"{text!r} not in {out.getvalue()!r}"
        time.sleep(0.02)


def test_tail_follows_a_rotated_log_from_its_start(tmp_path):
    log = tmp_path / "serial.log"
    out = io.BytesIO()
    tail = ConsoleTail(log, out=out, interval=0.01).start()
    try:
        log.write_bytes(b"boot line 1\n" * 50)
        _wait_for(out, b"boot line 1\n" * 50)
        with open(log, "ab") as f:
            f.write(b"last of the old file\n")
        log.rename(tmp_path / "serial.log.0")          # what virtlogd does at its size limit
        log.write_bytes(b"new file\n")
        _wait_for(out, b"new file\n")
        with open(log, "ab") as f:
            f.write(b"more\n")
        _wait_for(out, b"more\n")
    finally:
        tail.stop()
    assert out.getvalue() == b"boot line 1\n" * 50 + b"last of the old file\nnew file\nmore\n"


def test_tail_starts_over_after_truncation(tmp_path):
    log = tmp_path / "serial.log"
    out = io.BytesIO()
    log.write_bytes(b"a long first life of the log\n")
    tail = ConsoleTail(log, out=out, interval=0.01).start()
    try:
        _wait_for(out, b"first life")
        log.write_bytes(b"short\n")
        _wait_for(out, b"short\n")
    finally:
        tail.stop()
    assert out.getvalue() == b"a long first life of the log\nshort\n"
