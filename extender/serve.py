"""Run the extender under gunicorn: ONE worker, because the cluster state and the bind
assumptions live in that worker's memory. The watches start in the worker
(post_worker_init), never in the master, so they run where the state is.

The worker is gevent by default: filter and prioritize are short CPU bursts, and with
threads each one crossed several GIL hand-offs (poll loop, pool thread, watch threads
parsing a burst of bind events), which showed as milliseconds of kube-scheduler's
serial scheduling cycle. gthread stays available (--worker-class gthread). Both drain on
SIGTERM (podvirt/workers.py); the watches keep the state current until the worker exits.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from podvirt import drain
from podvirt.tls import gunicorn_ssl_context
from podvirt.workers import gunicorn_settings

from podvirt.extender.app import Settings, create_app
from podvirt.extender.state import WatchedCluster

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    bind: str = "127.0.0.1"
    port: int = 8888
    cert: str | None = None
    key: str | None = None
    kubeconfig: str | None = None
    worker_class: str = "gevent"
    threads: int = 16       # gthread's threads; both models: the API connection pool
    watch_timeout: int = 300
    keepalive: int = 120    # seconds an idle client connection stays open
    switch_interval: float = 0.0005   # gthread: seconds a thread may hold the GIL
    drain_seconds: int = 0
    graceful_timeout: int = drain.GRACEFUL_TIMEOUT


class ExtenderApplication(BaseApplication):
    def __init__(self, options: ServeOptions, settings: Settings):
        self.options = options
        self.settings = settings
        self.state: WatchedCluster | None = None
        self.client: Any = None
        self.stop: threading.Event | None = None    # made in the worker, after gevent patched
        super().__init__()

    def load_config(self) -> None:
        o = self.options
        cfg = {
            **gunicorn_settings(o.worker_class, drain_seconds=o.drain_seconds,
                                graceful_timeout=o.graceful_timeout),
            "bind": f"{o.bind}:{o.port}" if ":" not in o.bind else f"[{o.bind}]:{o.port}",
            "workers": 1,
            "threads": o.threads if o.worker_class == "gthread" else 1,
            "preload_app": False,   # load() runs in the worker, next to the watches
            "accesslog": None,
            # kube-scheduler's extender client keeps idle connections for 90 s; gunicorn's
            # default 2 s closed them after any pause, and the next filter paid a new TLS
            # handshake. Longer than the client's, so that the client, never the server
            # racing a new request, closes an idle connection.
            "keepalive": o.keepalive,
            "post_worker_init": self._post_worker_init,
            "worker_exit": lambda server, worker: self.stop and self.stop.set(),
            "proc_name": "podvirt-extender",
        }
        # gunicorn >= 25.1 opens a management socket at one fixed per-user path that two
        # servers on a machine would fight over; nothing here uses it.
        if "control_socket_disable" in self.cfg.settings:
            cfg["control_socket_disable"] = True
        # The gthread loop touches its heartbeat file on every wake-up (a request, a
        # returned connection); on tmpfs that is not a filesystem metadata write.
        if os.path.isdir("/dev/shm"):
            cfg["worker_tmp_dir"] = "/dev/shm"
        if o.cert and o.key:
            cfg.update(certfile=o.cert, keyfile=o.key, ssl_context=gunicorn_ssl_context)
        for name, value in cfg.items():
            self.cfg.set(name, value)

    def load(self):
        from podvirt.extender.kube import KubeClient
        self.client = KubeClient.connect(self.options.kubeconfig, pool_size=self.options.threads)
        self.state = WatchedCluster(failure_retention=self.settings.policy.quarantine_window)
        self.stop = threading.Event()
        return create_app(self.state, self.settings, api=self.client)

    def _post_worker_init(self, worker: Any) -> None:
        from podvirt.extender.sync import start_watches
        # While the watch threads parse a burst of pod events, a request thread waits up
        # to the switch interval (default 5 ms) for the GIL at each hand-off, and every
        # request crosses several (poll loop, request thread, back). Measured at 1000
        # nodes: kube-scheduler's mean cycle 23 -> 15 ms with 0.5 ms.
        # gevent runs requests and watches as greenlets of one thread: nothing to hand off.
        if self.options.worker_class == "gthread":
            sys.setswitchinterval(self.options.switch_interval)
        assert self.state is not None and self.stop is not None
        start_watches(self.client, self.state, self.stop,
                      watch_timeout=self.options.watch_timeout)
        log.info("watching nodes and pods")


def serve(options: ServeOptions, settings: Settings) -> int:
    if bool(options.cert) != bool(options.key):
        raise SystemExit("podvirt extender: give both --cert and --key, or neither")
    ExtenderApplication(options, settings).run()
    return 0
