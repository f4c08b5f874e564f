"""Run the extender under gunicorn: ONE gthread worker, because the cluster state and the
bind assumptions live in that worker's memory. The watches start in the worker
(post_worker_init), never in the master, so they run where the state is."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from podvirt.tls import gunicorn_ssl_context

from podvirt.extender.app import Settings, create_app
from podvirt.extender.state import ClusterState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    bind: str = "127.0.0.1"
    port: int = 8888
    cert: str | None = None
    key: str | None = None
    kubeconfig: str | None = None
    threads: int = 16
    watch_timeout: int = 300


class ExtenderApplication(BaseApplication):
    def __init__(self, options: ServeOptions, settings: Settings):
        self.options = options
        self.settings = settings
        self.state: ClusterState | None = None
        self.client: Any = None
        self.stop = threading.Event()
        super().__init__()

    def load_config(self) -> None:
        o = self.options
        cfg = {
            "bind": f"{o.bind}:{o.port}" if ":" not in o.bind else f"[{o.bind}]:{o.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": o.threads,
            "preload_app": False,   # load() runs in the worker, next to the watches
            "accesslog": None,
            "post_worker_init": self._post_worker_init,
            "worker_exit": lambda server, worker: self.stop.set(),
            "proc_name": "podvirt-extender",
        }
        # gunicorn >= 25.1 opens a management socket at one fixed per-user path that two
        # servers on a machine would fight over; nothing here uses it.
        if "control_socket_disable" in self.cfg.settings:
            cfg["control_socket_disable"] = True
        if o.cert and o.key:
            cfg.update(certfile=o.cert, keyfile=o.key, ssl_context=gunicorn_ssl_context)
        for name, value in cfg.items():
            self.cfg.set(name, value)

    def load(self):
        from podvirt.extender.kube import KubeClient
        self.client = KubeClient.connect(self.options.kubeconfig, pool_size=self.options.threads)
        self.state = ClusterState(failure_retention=self.settings.policy.quarantine_window)
        return create_app(self.state, self.settings, api=self.client)

    def _post_worker_init(self, worker: Any) -> None:
        from podvirt.extender.sync import start_watches
        assert self.state is not None
        start_watches(self.client, self.state, self.stop,
                      watch_timeout=self.options.watch_timeout)
        log.info("watching nodes and pods")


def serve(options: ServeOptions, settings: Settings) -> int:
    if bool(options.cert) != bool(options.key):
        raise SystemExit("podvirt extender: give both --cert and --key, or neither")
    ExtenderApplication(options, settings).run()
    return 0
