"""The console byte relay (podvirt/terminal.py) over real pipes, sockets and a pty."""

import os
import pty
import socket
import termios
import threading

import pytest

from podvirt.terminal import ESCAPE, raw_terminal, relay, split_escape


@pytest.mark.parametrize("data,expected", [
    pytest.param(b"ls\r", (b"ls\r", False), id="plain"),
    pytest.param(b"ab\x1dcd", (b"ab", True), id="escape-mid"),
    pytest.param(b"\x1d", (b"", True), id="escape-only"),
    pytest.param(b"", (b"", False), id="empty"),
])
def test_split_escape(data, expected):
    assert split_escape(data) == expected


class Ends:
    """user_in/user_out pipes for the relay, a socketpair as its peer."""

    def __init__(self):
        self.user_in_r, self.user_in_w = os.pipe()
        self.user_out_r, self.user_out_w = os.pipe()
        self.peer, self.guest = socket.socketpair()
        self.result: list[str] = []
        self.thread = threading.Thread(target=lambda: self.result.append(relay(
            self.user_in_r, self.user_out_w, self.peer.fileno(), self.peer.fileno())))
        self.thread.start()

    def end(self) -> str:
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "relay did not end"
        return self.result[0]


def test_relay_both_ways_until_the_escape_which_is_not_forwarded():
    ends = Ends()
    os.write(ends.user_in_w, b"echo hi\r")
    assert ends.guest.recv(100) == b"echo hi\r"
    ends.guest.sendall(b"hi\r\n")
    assert os.read(ends.user_out_r, 100) == b"hi\r\n"
    os.write(ends.user_in_w, b"x" + ESCAPE + b"never")
    assert ends.end() == "escape"
    ends.guest.settimeout(1)
    assert ends.guest.recv(100) == b"x"


def test_relay_ends_when_the_guest_side_closes():
    ends = Ends()
    ends.guest.close()
    assert ends.end() == "peer-closed"


def test_relay_ends_when_input_closes():
    ends = Ends()
    os.close(ends.user_in_w)
    assert ends.end() == "input-closed"


def test_raw_terminal_is_restored():
    leader, follower = pty.openpty()
    try:
        before = termios.tcgetattr(follower)
        with raw_terminal(follower) as is_tty:
            assert is_tty
            assert not termios.tcgetattr(follower)[3] & termios.ECHO
        assert termios.tcgetattr(follower) == before
        with pytest.raises(RuntimeError):
            with raw_terminal(follower):
                raise RuntimeError("the session failed")
        assert termios.tcgetattr(follower) == before
    finally:
        os.close(leader)
        os.close(follower)


def test_raw_terminal_leaves_pipes_alone():
    r, w = os.pipe()
    with raw_terminal(r) as is_tty:
        assert not is_tty
    os.close(r)
    os.close(w)
