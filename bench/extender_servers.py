"""podvirt's extender verbs on other servers than gunicorn, gevent and Flask: granian's
embedded RSGI server (HTTP/1.1 and HTTP/2 in Rust, rustls TLS), or uvicorn (ASGI; httptools'
C parser, uvloop, Python's ssl: HTTP/1.1 only).

The same decisions (extender/app.py's SchedulingVerbs, or with `--decisions none` the
Python floor's FloorVerbs), the same watch-fed state (sync.py, state.py) and the same
Binding call (apiconn.py); only the HTTP server differs. Binds run on a thread pool (they
wait on the API server); filter and prioritize run on the event loop, between watch
threads, as they run between greenlets in the shipped server. Routing and error statuses
are one coroutine (`Routes.respond`) both servers' adapters call.

A bench stand-in, not the shipped server: it lacks what the product's server has (drain
on SIGTERM, certificates reloaded when rotated, /metrics). scheduler_bench.py swaps it in
for the extender, as it does the floors, to measure what the serving stack costs:
`extender (granian)` against `extender` is the same decisions on two stacks.

    python bench/extender_servers.py --port P --cert F --key F --kubeconfig F
        [--server granian|uvicorn] [--decisions podvirt|none]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

from granian.constants import Interfaces, SSLProtocols
from granian.log import LogLevels
from granian.server.embed import Server
from prometheus_client import CollectorRegistry

from podvirt import wirejson
from podvirt.extender import wire
from podvirt.extender.app import Settings, SchedulingVerbs
from podvirt.extender.kube import KubeClient
from podvirt.extender.state import WatchedCluster
from podvirt.extender.sync import start_watches
from podvirt.httpbody import BodyTooLarge, NotJSON, parse_json

sys.path.insert(0, str(Path(__file__).parent))
from extender_python_floor import FloorVerbs  # noqa: E402

ROUTES = {("POST", "/filter"): "filter", ("POST", "/prioritize"): "prioritize",
          ("POST", "/bind"): "bind"}
JSON = [("content-type", "application/json")]


class Routes:
    """The extender's HTTP surface over verbs with SchedulingVerbs' interface."""

    def __init__(self, verbs: Any, state: WatchedCluster, max_body: int):
        self.verbs, self.state, self.max_body = verbs, state, max_body
        # Binds wait on the API server: off the event loop, several at once.
        self.binds = ThreadPoolExecutor(16, thread_name_prefix="bind")

    async def respond(self, method: str, path: str, declared: str | None,
                      chunks: AsyncIterator[bytes]) -> tuple[int, bytes]:
        """(status, JSON body) for a request; `declared` is its Content-Length."""
        route = (method, path)
        if route in (("GET", "/healthz"), ("GET", "/readyz")):
            ready = path == "/healthz" or self.state.ready
            return 200 if ready else 503, wirejson.dumps({"status": "ok" if ready
                                                          else "not ready"})
        verb = ROUTES.get(route)
        if verb is None:
            return 404, wirejson.dumps({"error": "not found"})
        try:
            raw = await self._body(declared, chunks)
            if verb == "bind":
                out = await asyncio.get_running_loop().run_in_executor(
                    self.binds, self.verbs.answer, verb, lambda: parse_json(raw))
            else:
                out = self.verbs.answer(verb, lambda: parse_json(raw))
        except BodyTooLarge as exc:
            return 413, wirejson.dumps({"error": str(exc)})
        except (NotJSON, wire.WireError) as exc:
            return 400, wirejson.dumps({"error": str(exc)})
        return 200, wirejson.dumps(out)

    async def _body(self, declared: str | None, chunks: AsyncIterator[bytes]) -> bytes:
        """The whole body, or BodyTooLarge past the cap (declared or streamed)."""
        too_large = BodyTooLarge(f"request body exceeds the {self.max_body}-byte limit")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise too_large
        parts, size = [], 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self.max_body:
                raise too_large
            parts.append(chunk)
        return b"".join(parts)


class RSGIExtender(Routes):
    """granian's RSGI interface."""

    async def __call__(self, scope: Any, proto: Any) -> None:
        status, body = await self.respond(scope.method, scope.path,
                                          scope.headers.get("content-length"), proto)
        proto.response_bytes(status, JSON, body)


class ASGIExtender(Routes):
    """uvicorn's ASGI interface (no lifespan: the watches start before the server)."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        status, body = await self.respond(scope["method"], scope["path"],
                                          (headers.get(b"content-length") or b"").decode(),
                                          chunks())
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


async def serve_granian(app: RSGIExtender, args: argparse.Namespace) -> None:
    server = Server(app, address=args.bind, port=args.port, interface=Interfaces.RSGI,
                    websockets=False, ssl_cert=Path(args.cert), ssl_key=Path(args.key),
                    ssl_protocol_min=SSLProtocols.tls12, log_level=LogLevels.warning)

    def interrupt() -> None:
        server.interrupt_signal = True
        server.main_loop_interrupt.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, interrupt)
    await server.serve()


def serve_uvicorn(app: ASGIExtender, args: argparse.Namespace) -> None:
    import uvicorn
    uvicorn.run(app, host=args.bind, port=args.port, ssl_certfile=args.cert,
                ssl_keyfile=args.key, http="httptools", loop="uvloop", lifespan="off",
                log_level="warning", access_log=False, timeout_keep_alive=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True, help="PEM key (PKCS#8, as podvirt certs writes)")
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--decisions", choices=("podvirt", "none"), default="podvirt")
    ap.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings()
    client = KubeClient.connect(args.kubeconfig)
    state = WatchedCluster(failure_retention=settings.policy.quarantine_window)
    verbs = (SchedulingVerbs(state, settings, client, CollectorRegistry())
             if args.decisions == "podvirt" else FloorVerbs(client))
    start_watches(client, state, threading.Event())
    if args.server == "granian":
        asyncio.run(serve_granian(RSGIExtender(verbs, state, settings.max_body_bytes), args))
    else:
        serve_uvicorn(ASGIExtender(verbs, state, settings.max_body_bytes), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
