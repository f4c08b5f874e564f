"""Run the extender: one process, one asyncio loop, granian's embedded server.

One process, because the cluster state and the bind assumptions live in its memory; the
watches are threads next to the loop. granian does the HTTP (HTTP/1.1 and HTTP/2, which
kube-scheduler takes over TLS: one connection, no handshake per call) and the TLS in
Rust; the loop runs filter and prioritize, a thread pool the binds (extender/app.py).

Certificate rotation: granian reads the cert and key once, when its server starts. When
either file changes, a new server starts on the new pair, the port is handed over to it
(podvirt/reuseport.py), and the old one finishes what it has in flight and stops. The
pair is copied to a private directory first, and checked there, so a half-written
rotation (new key, old cert) keeps the old pair serving instead of failing a server.

SIGTERM: /readyz fails and HTTP/1.1 replies close their connections for --drain-seconds,
then the server stops taking requests and waits up to --graceful-timeout for those in
flight (HTTP/2 clients get a GOAWAY), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from granian.constants import Interfaces, SSLProtocols
from granian.log import LogLevels
from granian.net import SocketHolder
from granian.server.embed import Server

from podvirt import drain, reuseport
from podvirt.tls import file_stamp, server_context

from podvirt.extender.app import ExtenderApp, Settings

log = logging.getLogger(__name__)
# granian's own records go through podvirt's log format, warnings and up.
_GRANIAN_LOGGING = {"loggers": {"_granian": {"handlers": [], "propagate": True},
                                "granian.access": {"handlers": [], "propagate": False}}}


@dataclass(frozen=True)
class ServeOptions:
    bind: str = "127.0.0.1"
    port: int = 8888
    cert: str | None = None
    key: str | None = None
    kubeconfig: str | None = None
    threads: int = 16       # binds at once, and the API connection pool
    watch_timeout: int = 300
    drain_seconds: int = 0
    graceful_timeout: int = drain.GRACEFUL_TIMEOUT
    rotation_poll: float = 1.0      # seconds between looks at the cert and key files
    handover_seconds: float = 1.0   # the old server's last handshakes finish meanwhile
    switch_interval: float = 0.0005  # seconds a thread may hold the GIL (see run)


class _OnSocket(Server):
    """granian's embedded server on a listening socket made here (granian would bind its
    own, which could not be steered)."""

    def __init__(self, target: Any, sock: socket.socket, **kwargs: Any):
        super().__init__(target, **kwargs)
        self._given = sock

    def _init_shared_socket(self) -> None:
        fd = self._given.detach()       # granian's listener owns and closes it
        self._shd = SocketHolder(fd, False, self.backlog)
        self._sfd, self._ssp = fd, None


@dataclass
class _Generation:
    """One server on one socket with one certificate pair."""
    server: Server
    task: asyncio.Task
    member: socket.socket       # a handle on its socket's reuseport group, for steering
    pair: Path | None           # the private copy of the pair it serves

    async def stop(self) -> None:
        self.server.stop()
        self.member.close()     # the socket closes (leaves the group) with granian's listener
        (outcome,) = await asyncio.gather(self.task, return_exceptions=True)
        if isinstance(outcome, asyncio.TimeoutError):   # granian's wait for in-flight ran out
            log.warning("requests still in flight after the graceful timeout were cut")
        elif isinstance(outcome, BaseException):
            log.error("the server ended with %r", outcome)
        if self.pair is not None:
            shutil.rmtree(self.pair, ignore_errors=True)


class ExtenderServer:
    def __init__(self, app: ExtenderApp, options: ServeOptions):
        self.app, self.options = app, options
        self.generations: list[_Generation] = []     # the newest serves new connections
        self._stamp: tuple[int, ...] | None = None      # of the pair served
        self._refused: tuple[int, ...] | None = None    # of the last pair not usable

    def _copy_pair(self) -> Path | None:
        """The cert and key, copied as one consistent pair; None while they do not match."""
        o = self.options
        assert o.cert and o.key
        pair = Path(tempfile.mkdtemp(prefix="podvirt-extender-tls-"))
        try:
            shutil.copyfile(o.cert, pair / "tls.crt")
            shutil.copyfile(o.key, pair / "tls.key")
            server_context(str(pair / "tls.crt"), str(pair / "tls.key"))
        except (OSError, ssl.SSLError) as exc:
            shutil.rmtree(pair, ignore_errors=True)
            log.warning("TLS pair %s, %s not usable: %s", o.cert, o.key, exc)
            return None
        return pair

    def _start(self, sock: socket.socket, pair: Path | None) -> _Generation:
        o = self.options
        tls: dict[str, Any] = {}
        if pair is not None:
            tls = {"ssl_cert": pair / "tls.crt", "ssl_key": pair / "tls.key",
                   "ssl_protocol_min": SSLProtocols.tls12}
        member = sock.dup()
        server = _OnSocket(self.app, sock, address=o.bind, port=o.port,
                           interface=Interfaces.RSGI, websockets=False,
                           log_level=LogLevels.warning, log_dictconfig=_GRANIAN_LOGGING, **tls)
        server.workers_kill_timeout = o.graceful_timeout
        return _Generation(server, asyncio.create_task(server.serve()), member, pair)

    async def start(self) -> None:
        pair = None
        if self.options.cert:
            self._stamp = self._file_stamp()
            pair = self._copy_pair()
            if pair is None:
                raise SystemExit(f"podvirt extender: TLS pair {self.options.cert}, "
                                 f"{self.options.key} not usable")
        try:
            sock = reuseport.listen(self.options.bind, self.options.port)
        except OSError as exc:
            raise SystemExit(f"podvirt extender: cannot listen on {self.options.bind}:"
                             f"{self.options.port}: {exc}") from None
        self.generations.append(self._start(sock, pair))
        log.info("serving %s on %s:%d", "HTTPS" if pair else "HTTP", self.options.bind,
                 self.options.port)

    def _file_stamp(self) -> tuple[int, ...] | None:
        try:
            return file_stamp(self.options.cert, self.options.key)
        except OSError:
            return None     # mid-rotation (a file briefly missing): look again later

    async def follow_rotation(self) -> None:
        while True:
            await asyncio.sleep(self.options.rotation_poll)
            stamp = self._file_stamp()
            if stamp is None or stamp in (self._stamp, self._refused):
                continue
            pair = self._copy_pair()
            if pair is None:    # e.g. the new key written, the cert not yet: look again
                self._refused = stamp       # (said once, in _copy_pair's warning)
                continue
            self._stamp = stamp
            try:
                await self._hand_over(pair)
            except OSError as exc:      # no second socket, or no steering: keep the old
                shutil.rmtree(pair, ignore_errors=True)
                log.error("cannot hand the port over to the rotated certificate: %s", exc)
                continue
            log.info("reloaded TLS certificate %s", self.options.cert)

    async def _hand_over(self, pair: Path) -> None:
        old = self.generations[-1]
        reuseport.steer(old.member, 0)          # the old socket keeps every connection...
        new = self._start(reuseport.listen(self.options.bind, self.options.port), pair)
        self.generations.append(new)
        await asyncio.sleep(0.2)
        if new.task.done():                     # it failed to start: keep the old one
            self.generations.remove(new)
            await new.stop()
            log.error("the server on the rotated certificate did not start; keeping the old")
            return
        reuseport.steer(new.member, 1)          # ...until the new, member 1, takes them all
        await asyncio.sleep(self.options.handover_seconds)
        self.generations.remove(old)
        await old.stop()

    async def stop(self) -> None:
        while self.generations:
            await self.generations.pop().stop()


async def run(options: ServeOptions, settings: Settings,
              floor_verbs: Callable[[Any], Any] | None = None) -> int:
    """Serve until SIGTERM. `floor_verbs(api)`: the bench's floor, verbs deciding nothing."""
    from podvirt.extender.kube import KubeClient
    from podvirt.extender.state import WatchedCluster
    from podvirt.extender.sync import start_watches
    from kubernetes.config import ConfigException
    try:
        client = KubeClient.connect(options.kubeconfig, pool_size=options.threads)
    except (ConfigException, OSError) as exc:
        raise SystemExit(f"podvirt extender: no usable Kubernetes API configuration: {exc}") \
            from None
    state = WatchedCluster(failure_retention=settings.policy.quarantine_window)
    app = ExtenderApp(state, settings, api=client, bind_threads=options.threads,
                      verbs=floor_verbs and floor_verbs(client))
    server = ExtenderServer(app, options)
    await server.start()
    # While a watch thread parses a burst of pod events, the loop waits for the GIL up to
    # the switch interval (default 5 ms) at each hand-off, inside kube-scheduler's serial
    # cycle. Measured with 0.5 ms (scheduler_bench --runs 3): 0.68x -> 0.93x the Go floor,
    # cycles 9.4-11.2 -> 7.2-11.2 ms.
    sys.setswitchinterval(options.switch_interval)
    stop_watches = threading.Event()
    start_watches(client, state, stop_watches, watch_timeout=options.watch_timeout)
    log.info("watching nodes and pods")

    terminated, loop = asyncio.Event(), asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, terminated.set)
    rotation = asyncio.create_task(server.follow_rotation()) if options.cert else None
    await terminated.wait()
    terminated.clear()
    if rotation is not None:
        rotation.cancel()
        await asyncio.gather(rotation, return_exceptions=True)
    app.draining = True
    log.info("draining for %d s", options.drain_seconds)
    try:    # a second signal ends the drain early
        await asyncio.wait_for(terminated.wait(), options.drain_seconds)
    except asyncio.TimeoutError:
        pass
    await server.stop()
    app.binds.shutdown(wait=True)
    stop_watches.set()
    log.info("stopped")
    return 0


def serve(options: ServeOptions, settings: Settings) -> int:
    if bool(options.cert) != bool(options.key):
        raise SystemExit("podvirt extender: give both --cert and --key, or neither")
    return asyncio.run(run(options, settings))
