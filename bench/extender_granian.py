"""podvirt's extender verbs on another server: granian's embedded RSGI server (HTTP/1.1
and HTTP/2 in Rust, rustls TLS) instead of gunicorn, gevent and Flask.

The same decisions (extender/app.py's SchedulingVerbs, or with `--decisions none` the
Python floor's FloorVerbs), the same watch-fed state (sync.py, state.py) and the same
Binding call (apiconn.py); only the HTTP server differs. Binds run on a thread pool (they
wait on the API server); filter and prioritize run on the event loop, between watch
threads, as they run between greenlets in the shipped server.

A bench stand-in, not the shipped server: it lacks what the product's server has (drain
on SIGTERM, certificates reloaded when rotated, /metrics). scheduler_bench.py swaps it in
for the extender, as it does the floors, to measure what the serving stack costs:
`extender (granian)` against `extender` is the same decisions on two stacks.

    python bench/extender_granian.py --port P --cert F --key F --kubeconfig F
        [--decisions podvirt|none]
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
from typing import Any

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


async def read_capped(proto: Any, headers: Any, cap: int) -> bytes:
    """The whole body, or BodyTooLarge past `cap` bytes (declared or streamed)."""
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge(f"request body exceeds the {cap}-byte limit")
    chunks, size = [], 0
    async for chunk in proto:
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge(f"request body exceeds the {cap}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


class RSGIExtender:
    """An RSGI application around verbs with SchedulingVerbs' interface."""

    def __init__(self, verbs: Any, state: WatchedCluster, max_body: int):
        self.verbs, self.state, self.max_body = verbs, state, max_body
        # Binds wait on the API server: off the event loop, several at once.
        self.binds = ThreadPoolExecutor(16, thread_name_prefix="bind")

    async def __call__(self, scope: Any, proto: Any) -> None:
        route = (scope.method, scope.path)
        if route in (("GET", "/healthz"), ("GET", "/readyz")):
            ready = route[1] == "/healthz" or self.state.ready
            proto.response_bytes(200 if ready else 503, JSON,
                                 wirejson.dumps({"status": "ok" if ready else "not ready"}))
            return
        verb = ROUTES.get(route)
        if verb is None:
            proto.response_bytes(404, JSON, wirejson.dumps({"error": "not found"}))
            return
        try:
            raw = await read_capped(proto, scope.headers, self.max_body)
            if verb == "bind":
                out = await asyncio.get_running_loop().run_in_executor(
                    self.binds, self.verbs.answer, verb, lambda: parse_json(raw))
            else:
                out = self.verbs.answer(verb, lambda: parse_json(raw))
        except BodyTooLarge as exc:
            proto.response_bytes(413, JSON, wirejson.dumps({"error": str(exc)}))
            return
        except (NotJSON, wire.WireError) as exc:
            proto.response_bytes(400, JSON, wirejson.dumps({"error": str(exc)}))
            return
        proto.response_bytes(200, JSON, wirejson.dumps(out))


async def serve(app: RSGIExtender, args: argparse.Namespace) -> None:
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True, help="PEM key (PKCS#8, as podvirt certs writes)")
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--decisions", choices=("podvirt", "none"), default="podvirt")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings()
    client = KubeClient.connect(args.kubeconfig)
    state = WatchedCluster(failure_retention=settings.policy.quarantine_window)
    verbs = (SchedulingVerbs(state, settings, client, CollectorRegistry())
             if args.decisions == "podvirt" else FloorVerbs(client))
    start_watches(client, state, threading.Event())
    asyncio.run(serve(RSGIExtender(verbs, state, settings.max_body_bytes), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
