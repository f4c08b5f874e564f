"""gunicorn, run programmatically: gthread workers, TLS >= 1.2 with live cert reload,
and prometheus multiprocess bookkeeping."""

from __future__ import annotations

from typing import Any, Callable

from gunicorn.app.base import BaseApplication

from podvirt.tls import gunicorn_ssl_context


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
                     threads: int, on_exit: Callable[[Any], None]) -> dict[str, Any]:
    return {
        "bind": [f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"],
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        # The API server keeps connections to webhooks open; 75s outlives its idle timeout
        # (90s in Go's default transport is for idle pooled conns it may close first).
        "keepalive": 75,
        "certfile": cert,
        "keyfile": key,
        "ssl_context": gunicorn_ssl_context,
        "preload_app": True,        # settings errors fail once, in the master
        "accesslog": None,          # one JSON line per review comes from the app instead
        "errorlog": "-",
        "child_exit": _child_exit,
        "on_exit": on_exit,
        "proc_name": "podvirt-webhook",
        # gunicorn >= 25.1 opens a management socket at one fixed per-user path, which
        # a second gunicorn (the extender) would fight over; nothing here uses it.
        "control_socket_disable": True,
    }
