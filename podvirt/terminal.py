"""Byte relays between a terminal and a serial console, for both ends of
`kubectl podvirt console`: the client (the user's terminal <-> `kubectl exec`) and the
launcher (`kubectl exec`'s streams <-> the guest's serial socket).

Ctrl-] ends a session, as in telnet and `virsh console`; it is never sent to the guest.
"""

from __future__ import annotations

import errno
import os
import select
import termios
import tty
from contextlib import contextmanager
from typing import Iterator, Literal

ESCAPE = b"\x1d"          # Ctrl-]
ESCAPE_NAME = "Ctrl-]"

RelayEnd = Literal["escape", "input-closed", "peer-closed"]


def split_escape(data: bytes, escape: bytes = ESCAPE) -> tuple[bytes, bool]:
    """The bytes to forward, and whether the escape came (what follows it is dropped)."""
    head, found, _ = data.partition(escape)
    return head, bool(found)


@contextmanager
def raw_terminal(fd: int) -> Iterator[bool]:
    """Raw mode on `fd` if it is a terminal (every key goes to the guest, no local echo),
    restored however the block ends; yields whether it was a terminal."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_CLOSED = (errno.EPIPE, errno.ECONNRESET, errno.EIO)   # EIO: a pty whose other side left


def relay(user_in: int, user_out: int, peer_in: int, peer_out: int, *,
          escape: bytes = ESCAPE) -> RelayEnd:
    """Copy user_in -> peer_in and peer_out -> user_out until the escape arrives on
    user_in or either side closes. peer_in and peer_out may be one socket."""
    while True:
        readable, _, _ = select.select([user_in, peer_out], [], [])
        if user_in in readable:
            try:
                data = os.read(user_in, 4096)
            except OSError as exc:
                if exc.errno in _CLOSED:
                    return "input-closed"
                raise
            if not data:
                return "input-closed"
            data, escaped = split_escape(data, escape)
            try:
                if data:
                    _write_all(peer_in, data)
            except OSError as exc:
                if exc.errno in _CLOSED:
                    return "peer-closed"
                raise
            if escaped:
                return "escape"
        if peer_out in readable:
            try:
                data = os.read(peer_out, 65536)
            except OSError as exc:
                if exc.errno in _CLOSED:
                    return "peer-closed"
                raise
            if not data:
                return "peer-closed"
            _write_all(user_out, data)
