"""Kept-alive HTTPS connections to the API server, for the writes on the bind path.

Every VM pod the scheduler binds costs the extender one POST (the Binding, and a PATCH
before it for passthrough devices). Through the generated client each took ~0.9-1.1 ms of
CPU (argument validation, serialization, urllib3's pool and connection checks); a plain
http.client request on a connection kept open takes ~0.5-0.6 ms (bench/README.md). The
connection settings (server, CA, client certificate, credentials) are the generated
client's own Configuration, read per request for credentials, so a rotated in-cluster
token is used as soon as the client would use it.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from podvirt import wirejson


class ApiError(Exception):
    """A non-2xx answer; `status` and `body` (the API's Status JSON) as ApiException has."""

    def __init__(self, status: int, reason: str, body: bytes):
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.body = status, reason, body


class ApiConnections:
    """Idle connections kept for reuse; each request takes one (or opens one) and puts it
    back when the answer is read, so concurrent binds never share a connection."""

    def __init__(self, configuration: Any, *, timeout: float = 30.0, keep: int = 8):
        url = urlsplit(configuration.host)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"API server URL must be http(s)://host[:port], got "
                             f"{configuration.host!r}")
        for setting in ("proxy", "tls_server_name"):
            if getattr(configuration, setting, None):
                raise ValueError(f"the extender does not support a kubeconfig {setting}")
        self._config = configuration
        self._host, self._port = url.hostname, url.port
        self._prefix = url.path.rstrip("/")
        self._context = _tls_context(configuration) if url.scheme == "https" else None
        self._timeout, self._keep = timeout, keep
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(self, method: str, path: str, body: Any, content_type: str) -> bytes:
        """The answer's body; ApiError for a non-2xx status. A kept connection the server
        closed meanwhile (nothing was answered on it) is retried once on a new one."""
        payload = wirejson.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json",
                   **self._credentials()}
        conn, reused = self._take()
        try:
            try:
                response = self._send(conn, method, path, payload, headers)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    ssl.SSLEOFError):
                if not reused:
                    raise
                conn.close()
                conn = self._open()
                response = self._send(conn, method, path, payload, headers)
            data = response.read()
        except BaseException:
            conn.close()
            raise
        self._give_back(conn, response)
        if not 200 <= response.status < 300:
            raise ApiError(response.status, response.reason, data)
        return data

    def _send(self, conn: http.client.HTTPConnection, method: str, path: str, payload: bytes,
              headers: dict[str, str]) -> http.client.HTTPResponse:
        conn.request(method, self._prefix + path, body=payload, headers=headers)
        return conn.getresponse()

    def _credentials(self) -> dict[str, str]:
        # auth_settings() runs the client's token refresh hook, as the generated client does.
        return {auth["key"]: auth["value"] for auth in self._config.auth_settings().values()
                if auth.get("in") == "header" and auth.get("value")}

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._open(), False

    def _open(self) -> http.client.HTTPConnection:
        if self._context is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        else:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                               context=self._context)
        conn.connect()
        # http.client writes the headers and the body with two send()s: with Nagle's
        # algorithm the body then waited for the server's delayed ACK (~40 ms per bind).
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _give_back(self, conn: http.client.HTTPConnection,
                   response: http.client.HTTPResponse) -> None:
        with self._lock:
            if not response.will_close and len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        conn.close()


def _tls_context(configuration: Any) -> ssl.SSLContext:
    """The generated client's TLS settings: CA, client certificate, verification."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context
