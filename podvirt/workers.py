"""gunicorn workers for the webhook and the extender that stop the way a rolling update
needs: quickly, and without dropping a request.

On SIGTERM (the kubelet's) each worker
  1. drains for `drain_seconds`: the listener stays open for clients whose endpoints have
     not caught up yet, /readyz answers 503 (podvirt.drain), and every response, those of
     requests already in flight included, says `Connection: close`, so kept-alive clients
     (the API server, kube-scheduler) reconnect to another replica;
  2. then stops: closes the listener, gives each idle keep-alive connection at most
     drain.LINGER seconds for a request already on its way (answered with `Connection:
     close`), closes it, and lets in-flight requests finish within the graceful timeout.

Why the gevent subclass: gunicorn's gevent worker waits at stop until every connection
greenlet has ended, and an idle keep-alive one ends only with its keepalive timeout (75 s
webhook, 120 s extender), so every SIGTERM with one connection open cost the whole
graceful_timeout (30 s). gunicorn's gthread worker already closes idle connections after
drain.LINGER at stop; it only gets the drain.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable

import gevent
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker

from podvirt import drain


class _Draining:
    drain_seconds = 0        # per server: gunicorn_settings() makes a subclass

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.draining = False
        self._drain_started = False
        self._early_term = False
        # Requests between gunicorn's pre_request and post_request hooks; the lock is for
        # gthread's pool threads (gevent never yields while holding it).
        self._in_flight: set[Any] = set()
        self._lock = threading.Lock()

    def init_process(self) -> None:
        # Until gunicorn installs the worker's handlers the child runs the arbiter's,
        # inherited at fork, which swallow a SIGTERM: the worker then lived until the
        # arbiter's SIGKILL. Noted here, it starts the drain once they are installed.
        signal.signal(signal.SIGTERM, lambda sig, frame: setattr(self, "_early_term", True))
        super().init_process()

    def init_signals(self) -> None:
        super().init_signals()
        if self._early_term:
            self.handle_exit(signal.SIGTERM, None)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app = self.wsgi

        def wsgi(environ: dict, start_response: Callable) -> Any:
            environ[drain.ENVIRON_KEY] = self.draining
            return app(environ, start_response)
        self.wsgi = wsgi

    def request_started(self, req: Any) -> None:
        with self._lock:
            if self.draining:
                req.force_close()
            else:
                self._in_flight.add(req)

    def request_finished(self, req: Any) -> None:
        with self._lock:
            self._in_flight.discard(req)

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: drain first. SIGINT and SIGQUIT still stop at once (gunicorn's)."""
        if not self._drain_started:
            self._drain_started = True
            self._spawn(self._drain)     # out of the signal handler: _drain takes the lock

    def _drain(self) -> None:
        with self._lock:
            self.draining = True
            for req in self._in_flight:
                req.force_close()        # read when its response headers go out
        self._sleep(self.drain_seconds)
        self._stop()

    def _stop(self) -> None:
        super().handle_exit(signal.SIGTERM, None)    # gunicorn's stop: alive = False

    def _spawn(self, fn: Callable[[], None]) -> None:
        raise NotImplementedError

    def _sleep(self, seconds: float) -> None:
        raise NotImplementedError


class _IdleWait:
    """A gevent connection's wait for its next request: gunicorn's keepalive timeout while
    the worker runs, drain.LINGER once it stops; listed in the worker so the stop can end
    it."""

    def __init__(self, worker: "DrainingGeventWorker"):
        self._worker = worker
        seconds = worker.cfg.keepalive if worker.alive else drain.LINGER
        self._timeout = gevent.Timeout(seconds, False)

    def __enter__(self) -> "_IdleWait":
        self._timeout.__enter__()
        self._worker.idle[gevent.getcurrent()] = self._timeout
        return self

    def __exit__(self, *exc: Any) -> bool:
        self._worker.idle.pop(gevent.getcurrent(), None)
        # The Timeout, raised into the wait when it fires (or by _end_idle_wait), ends the
        # with-block quietly: gunicorn then sees no request and closes the connection.
        return bool(self._timeout.__exit__(*exc))


class DrainingGeventWorker(_Draining, GeventWorker):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.idle: dict[Any, gevent.Timeout] = {}

    def timeout_ctx(self) -> _IdleWait:
        return _IdleWait(self)

    def _spawn(self, fn: Callable[[], None]) -> None:
        gevent.spawn(fn)

    def _sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def _stop(self) -> None:
        # gunicorn's run loop notices within a second, closes the listener and waits for
        # the connection pool to empty; the idle waits are what kept it full.
        super()._stop()
        gevent.sleep(drain.LINGER)
        loop = gevent.get_hub().loop
        for glet in list(self.idle):
            loop.run_callback(self._end_idle_wait, glet)

    def _end_idle_wait(self, glet: Any) -> None:
        # Runs in the hub, where every other greenlet is parked: one still listed is
        # blocked inside its idle wait, never inside a request.
        timeout = self.idle.get(glet)
        if timeout is not None:
            glet.throw(timeout)


class DrainingThreadWorker(_Draining, ThreadWorker):
    def _spawn(self, fn: Callable[[], None]) -> None:
        # Through gunicorn's queue to the main loop, as its own SIGTERM handler does: a
        # thread started inside a signal handler could deadlock on threading's locks.
        self.method_queue.defer(lambda: threading.Thread(target=fn, name="drain",
                                                         daemon=True).start())

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # gunicorn stops polling the listener but closes it only at exit: meanwhile the
            # kernel completes handshakes nobody accepts, reset at exit. Closed, they are
            # refused at once (what the gevent worker does), and the client tries elsewhere.
            for listener in self.sockets:
                listener.close()


_BASES: dict[str, type] = {"gevent": DrainingGeventWorker, "gthread": DrainingThreadWorker}
WORKER_CLASSES = tuple(_BASES)


def gunicorn_settings(worker_class: str, *, drain_seconds: int,
                      graceful_timeout: int) -> dict[str, Any]:
    """The gunicorn settings of this shutdown, for both servers. graceful_timeout is what
    in-flight requests get after the drain; gunicorn's arbiter counts its own deadline
    (then SIGKILL) from SIGTERM, so it gets the sum."""
    if worker_class not in _BASES:
        raise ValueError(f"worker class must be one of {', '.join(WORKER_CLASSES)}")
    if drain_seconds < 0 or graceful_timeout < 1:
        raise ValueError("drain seconds must be >= 0 and the graceful timeout >= 1")
    base = _BASES[worker_class]
    cls = type(base.__name__, (base,), {"drain_seconds": drain_seconds,
                                         "__module__": __name__})
    return {
        "worker_class": cls,
        "graceful_timeout": drain_seconds + graceful_timeout,
        "pre_request": lambda worker, req: worker.request_started(req),
        "post_request": lambda worker, req, environ, resp: worker.request_finished(req),
    }
