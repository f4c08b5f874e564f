"""gunicorn, run programmatically: gevent workers (gthread on request), TLS >= 1.2 with
live cert reload, prometheus multiprocess bookkeeping, and podvirt's drain on SIGTERM
(podvirt/workers.py).

Why gevent: a review is ~0.3 ms of pure CPU, so a worker gains nothing from threads but
pays for them. gthread hands every request from the polling thread to a pool thread and
back (keep-alive re-registration), and those hand-offs wait on the GIL: at 1000 reviews/s
its p99 was 2-3x gevent's, where one greenlet per connection reads, decides and answers
without a thread switch.
"""

from __future__ import annotations

import gc
from typing import Any, Callable

from gunicorn.app.base import BaseApplication

from podvirt import drain
from podvirt.tls import gunicorn_ssl_context
from podvirt.workers import gunicorn_settings


def _post_fork(server: Any, worker: Any) -> None:
    # What the master preloaded (modules, the app) lives as long as the worker. Frozen, a
    # full collection no longer walks it: unfrozen, each one stopped the worker for
    # 20-30 ms here (~48k objects), the tail of the latency at 1000 reviews/s.
    gc.freeze()


def _worker_exit(server: Any, worker: Any) -> None:
    # Back to normal collection before the interpreter tears down: frozen logging handlers
    # were otherwise collected after gevent's modules were gone, and their weakref callback
    # printed a traceback on every worker exit.
    gc.unfreeze()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


# Settings newer gunicorns have; older ones simply lack the feature they turn off.
_OPTIONAL = frozenset({"control_socket_disable"})


class WebhookServer(BaseApplication):
    def __init__(self, app_factory: Callable[[], Any], options: dict[str, Any]):
        self._factory = app_factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings or key not in _OPTIONAL:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self._factory()


def gunicorn_options(*, bind: str, port: int, cert: str, key: str, workers: int,
                     on_exit: Callable[[Any], None], worker_class: str = "gevent",
                     threads: int = 4, drain_seconds: int = 0,
                     graceful_timeout: int = drain.GRACEFUL_TIMEOUT) -> dict[str, Any]:
    return {
        **gunicorn_settings(worker_class, drain_seconds=drain_seconds,
                             graceful_timeout=graceful_timeout),
        "bind": [f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"],
        "workers": workers,
        "threads": threads if worker_class == "gthread" else 1,
        # The API server keeps connections to webhooks open; 75s outlives its idle timeout
        # (90s in Go's default transport is for idle pooled conns it may close first).
        "keepalive": 75,
        "certfile": cert,
        "keyfile": key,
        "ssl_context": gunicorn_ssl_context,
        "preload_app": True,        # settings errors fail once, in the master
        "accesslog": None,          # one JSON line per review comes from the app instead
        "errorlog": "-",
        "post_fork": _post_fork,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        "on_exit": on_exit,
        "proc_name": "podvirt-webhook",
        # gunicorn >= 25.1 opens a management socket at one fixed per-user path, which
        # a second gunicorn (the extender) would fight over; nothing here uses it.
        "control_socket_disable": True,
    }
