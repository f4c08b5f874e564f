"""`podvirt launcher console`: attach this process's stdin/stdout to the guest's serial
socket, inside the launcher pod (what `kubectl podvirt console` runs through
`kubectl exec`).

QEMU serves the socket to one client at a time and leaves a second one waiting without
a word, so a lock file next to the socket turns a second session into a clear refusal.
The console log (and `kubectl logs`) is QEMU's own and unaffected by sessions.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path

from podvirt.terminal import ESCAPE_NAME, raw_terminal, relay


class AttachError(Exception):
    pass


def _not_open(path: Path) -> AttachError:
    return AttachError(f"the VM's serial console is not open at {path}: the VM is not "
                       "running (yet)")


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise _not_open(path) from None
    except OSError as exc:
        sock.close()
        raise AttachError(f"cannot connect to the VM's serial console at {path}: "
                          f"{exc.strerror}") from None
    return sock


def lock_session(path: Path) -> int:
    """An exclusive lock held for the session; the kernel drops it when we exit."""
    lock = Path(f"{path}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AttachError(f"cannot open {lock}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AttachError("another console session is attached to this VM; only one can "
                          "be (leave it with " + ESCAPE_NAME + ")") from None
    return fd


def attach(path: Path, stdin: int = 0, stdout: int = 1) -> str:
    """Relay until Ctrl-], the end of stdin or the guest's console closing; returns
    which of them ended the session."""
    if not path.exists():    # before the lock, whose file would sit in a missing directory
        raise _not_open(path)
    lock = lock_session(path)
    try:
        sock = connect(path)
        with sock, raw_terminal(stdin) as is_tty:
            if is_tty:   # run by hand with `kubectl exec -it`: say how to leave
                os.write(stdout, f"Connected to the VM's serial console; {ESCAPE_NAME} "
                                 "leaves.\r\n".encode())
            return relay(stdin, stdout, sock.fileno(), sock.fileno())
    finally:
        os.close(lock)


def main(socket_path: str) -> int:
    try:
        end = attach(Path(socket_path))
    except AttachError as exc:
        print(f"podvirt launcher console: {exc}", file=sys.stderr)
        return 1
    if end == "peer-closed":
        print("podvirt launcher console: the VM's console closed (the VM stopped)",
              file=sys.stderr)
        return 3
    return 0
