"""podvirt/reuseport.py on real sockets: which member of a port's group gets new connections."""

from __future__ import annotations

import socket

import pytest

from podvirt import reuseport


def _connect_all(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(n)]


def _queued(listener: socket.socket) -> int:
    """Connections waiting in `listener`'s accept queue."""
    listener.setblocking(False)
    n = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


@pytest.fixture
def pair():
    old = reuseport.listen("127.0.0.1", 0)
    port = old.getsockname()[1]
    new = None
    try:
        reuseport.steer(old, 0)
        new = reuseport.listen("127.0.0.1", port)
        yield port, old, new
    finally:
        old.close()
        if new is not None:
            new.close()


@pytest.mark.parametrize("member, split", [(0, (20, 0)), (1, (0, 20))], ids=["old", "new"])
def test_steered_to_one_member_the_other_gets_nothing(pair, member, split):
    port, old, new = pair
    reuseport.steer(new, member)    # any member's handle sets the whole group's program
    clients = _connect_all(port, 20)
    assert (_queued(old), _queued(new)) == split
    for c in clients:
        c.close()


def test_once_the_old_member_closes_the_new_one_gets_all(pair):
    # The program still says "member 1", which no longer exists: the kernel's hash decides,
    # among the one member left.
    port, old, new = pair
    reuseport.steer(new, 1)
    old.close()
    clients = _connect_all(port, 10)
    assert _queued(new) == 10
    for c in clients:
        c.close()


def test_unsteered_both_members_get_connections():
    # The control: without a program the kernel spreads connections over the group, so a
    # server stopping on the old socket would lose its share (what steering prevents).
    old = reuseport.listen("127.0.0.1", 0)
    port = old.getsockname()[1]
    new = reuseport.listen("127.0.0.1", port)
    try:
        clients = [socket.socket() for _ in range(64)]
        for c in clients:       # distinct source ports: the hash varies
            c.connect(("127.0.0.1", port))
        assert _queued(old) > 0 and _queued(new) > 0
        for c in clients:
            c.close()
    finally:
        old.close()
        new.close()


def test_accepted_connections_send_small_writes_at_once():
    # TCP_NODELAY, inherited from the listener: granian does not set it per connection.
    with reuseport.listen("127.0.0.1", 0) as listener, \
            socket.create_connection(listener.getsockname(), timeout=2):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_port_taken_without_reuseport_is_an_error():
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        with pytest.raises(OSError):
            reuseport.listen("127.0.0.1", plain.getsockname()[1])
