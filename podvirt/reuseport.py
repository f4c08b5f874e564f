"""Hand a listening port from one server to the next without losing a connection.

Both servers listen on their own SO_REUSEPORT socket of the same port, which makes the two
sockets one group in the kernel. A connection the kernel puts in the old socket's queue
while that server is stopping is lost (reset, or an EOF in the TLS handshake), so the
group's selection is steered instead: a one-instruction classic BPF program
(SO_ATTACH_REUSEPORT_CBPF, Linux 4.5, no privilege needed) returns the index of the socket
every new connection goes to. Index 0 is the oldest member; a socket that joins is
appended, and when a member closes the last one takes its place. An index past the end
falls back to the kernel's usual hash, so one program can stay attached.
"""

from __future__ import annotations

import ctypes
import os
import socket

SO_ATTACH_REUSEPORT_CBPF = 51        # linux/asm-generic/socket.h
_BPF_RET_K = 0x06                    # BPF_RET | BPF_K: "return the constant k"


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


_libc = ctypes.CDLL(None, use_errno=True)


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening socket that can share `port` with the next server's; the connections
    it accepts send small writes at once (TCP_NODELAY, as granian's own listener)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Accepted connections inherit it. An HTTP/2 reply is several small writes
        # (headers, data); with Nagle's algorithm the later ones wait for the client's
        # delayed ACK: kube-scheduler's cycle took 18-20 ms instead of 10.7 (bench/README).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def steer(member: socket.socket, index: int) -> None:
    """From now on, new connections to `member`'s group go to its member number `index`."""
    program = (_SockFilter * 1)(_SockFilter(_BPF_RET_K, 0, 0, index))
    fprog = _SockFprog(1, program)
    if _libc.setsockopt(member.fileno(), socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                        ctypes.byref(fprog), ctypes.sizeof(fprog)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"SO_ATTACH_REUSEPORT_CBPF: {os.strerror(err)}")
