"""Server TLS contexts that follow certificate rotation without a restart.

gunicorn asks its `ssl_context` hook for a context when it wraps a connection; the
reloader answers from a cache and rebuilds it when the cert or key file changes. Each
context also carries an SNI callback that swaps in the newest context during the
handshake, so rotation works even where a server keeps one context for its lifetime.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import threading

log = logging.getLogger("podvirt.tls")


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    ctx = _deferred_handshake_context(ssl.SSLContext)(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


@functools.cache
def _deferred_handshake_context(base: type[ssl.SSLContext]) -> type[ssl.SSLContext]:
    """`base` whose wrap_socket leaves the handshake to the caller unless told otherwise.

    gevent's server wraps each accepted socket itself, with the handshake on connect, so
    a client speaking TLS 1.0 or plain HTTP would end as a greenlet traceback in the log;
    deferred, gunicorn's connection handler does the handshake where its error handling
    sees the failure. gthread passes the flag explicitly and is unaffected. `base` is
    looked up per call: in a gevent worker `ssl.SSLContext` is gevent's cooperative one.
    """
    class DeferredHandshakeContext(base):   # type: ignore[valid-type, misc]
        def wrap_socket(self, sock, *args, do_handshake_on_connect=False, **kwargs):
            return super().wrap_socket(sock, *args, do_handshake_on_connect=do_handshake_on_connect,
                                       **kwargs)
    return DeferredHandshakeContext


# Per worker process: created on first use after the fork, so each worker watches the files.
_reloader: "CertReloader | None" = None


def gunicorn_ssl_context(conf, default_factory) -> ssl.SSLContext:
    """gunicorn's `ssl_context` hook for every podvirt server (webhook, extender)."""
    global _reloader
    if _reloader is None:
        _reloader = CertReloader(conf.certfile, conf.keyfile)
    return _reloader.current()


def file_stamp(*paths: str) -> tuple[int, ...]:
    """What changes when a file is rewritten or replaced (a Secret volume swaps a symlink)."""
    st = [os.stat(p) for p in paths]
    return tuple(x for s in st for x in (s.st_mtime_ns, s.st_size, s.st_ino))


class CertReloader:
    def __init__(self, certfile: str, keyfile: str):
        self.certfile, self.keyfile = certfile, keyfile
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._ctx = self._build()

    def _file_stamp(self) -> tuple[int, ...]:
        return file_stamp(self.certfile, self.keyfile)

    def _build(self) -> ssl.SSLContext:
        ctx = server_context(self.certfile, self.keyfile)
        ctx.sni_callback = self._on_client_hello
        return ctx

    def current(self) -> ssl.SSLContext:
        try:
            stamp = self._file_stamp()
        except OSError:
            return self._ctx        # mid-rotation (file briefly missing): keep serving
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._ctx = self._build()
                        log.info("reloaded TLS certificate %s", self.certfile)
                    except (OSError, ssl.SSLError) as exc:
                        # e.g. a new cert whose key is not written yet: retry next time.
                        log.warning("keeping the previous TLS certificate: %s", exc)
                        return self._ctx
                    self._stamp = stamp
        return self._ctx

    def _on_client_hello(self, sock: ssl.SSLObject, server_name: str | None,
                         ctx: ssl.SSLContext) -> None:
        fresh = self.current()
        if fresh is not ctx:
            sock.context = fresh
