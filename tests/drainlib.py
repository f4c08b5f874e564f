"""Client side of the shutdown tests and bench/shutdown_bench.py: idle keep-alive TLS
connections, a request held in flight by sending its body slowly, and the wait for a
server to close a connection. Plain http.client, so the tests see exactly what is on
the wire (status, the Connection header, EOF)."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass


def _context(ca: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca) if ca else None


def connect(port: int, ca: str | None, timeout: float = 10) -> http.client.HTTPConnection:
    if ca:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                           context=_context(ca))
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


@dataclass
class Answer:
    status: int
    connection: str       # the response's Connection header, lower case
    body: bytes


def get(conn: http.client.HTTPConnection, path: str) -> Answer:
    conn.request("GET", path)
    resp = conn.getresponse()
    return Answer(resp.status, (resp.getheader("Connection") or "").lower(), resp.read())


def readiness_after_sigterm(port: int, ca: str | None, within: float) -> Answer:
    """The first /readyz answer that is not 200, each on a new connection, as the kubelet
    probes; the signal takes a moment to reach the workers."""
    deadline = time.monotonic() + within
    while True:
        answer = get(connect(port, ca), "/readyz")
        if answer.status != 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def idle_connections(port: int, ca: str | None, n: int) -> list[http.client.HTTPConnection]:
    """n connections that each served one request and were kept alive by the server
    (HTTP/1.1's default: granian says nothing, gunicorn says keep-alive)."""
    conns = []
    for _ in range(n):
        conn = connect(port, ca)
        answer = get(conn, "/healthz")
        assert answer.status == 200 and answer.connection in ("", "keep-alive"), answer
        conns.append(conn)
    return conns


class SlowPost:
    """A POST whose headers and first half of the body are sent now, the rest later: the
    server is inside the request (reading its body) until finish() is called."""

    def __init__(self, port: int, ca: str | None, path: str, body: bytes):
        self.conn = connect(port, ca, timeout=30)
        self.conn.putrequest("POST", path)
        self.conn.putheader("Content-Type", "application/json")
        self.conn.putheader("Content-Length", str(len(body)))
        self.conn.endheaders()
        half = len(body) // 2
        self.conn.send(body[:half])
        self._rest = body[half:]

    def finish(self) -> Answer:
        self.conn.send(self._rest)
        resp = self.conn.getresponse()
        return Answer(resp.status, (resp.getheader("Connection") or "").lower(), resp.read())


def closed_at(conn: http.client.HTTPConnection, timeout: float) -> float | None:
    """When (monotonic) the peer closed this idle connection (EOF or a reset), or None if
    it stayed open for timeout. Compared with the process's exit time, it tells a server
    that closed its connections from one that exited with them open."""
    sock = conn.sock
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
        data = b""
    except (TimeoutError, ssl.SSLError):
        return None
    return time.monotonic() if data == b"" else None


def terminate(proc: subprocess.Popen) -> float:
    """SIGTERM to the server's main process only, as the kubelet sends it; the monotonic
    time it was sent."""
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    return sent


def exit_seconds(proc: subprocess.Popen, sent: float, timeout: float = 60) -> float:
    proc.wait(timeout)
    return time.monotonic() - sent


def drain_in_flight(proc: subprocess.Popen, port: int, ca: str | None,
                    conns: list[http.client.HTTPConnection], slow: SlowPost) -> tuple[Answer, float]:
    """SIGTERM a server holding idle keep-alive `conns` and the in-flight `slow` request,
    and check the drain as a client sees it: readiness fails while the listener still
    takes connections; a request on a kept-alive connection is served and told to
    reconnect; the other idle ones are closed by the server while the process still runs
    (the slow request holds it); new connections are refused. Returns the in-flight
    request's answer (200, Connection: close) and when SIGTERM was sent."""
    import socket
    sent = terminate(proc)
    ready = readiness_after_sigterm(port, ca, within=1)
    assert ready.status == 503 and b"shutting down" in ready.body, ready
    late = get(conns[0], "/healthz")
    assert (late.status, late.connection) == (200, "close")
    assert all(closed_at(c, 15) for c in conns[1:])
    assert proc.poll() is None
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("a new connection was accepted after SIGTERM")
    answer = slow.finish()
    assert (answer.status, answer.connection) == (200, "close"), answer
    return answer, sent
