"""The shutdown contract of the webhook and the extender, without gunicorn: their
`--drain-seconds`/`--graceful-timeout` options, and the WSGI environ key podvirt's gunicorn
workers (podvirt/workers.py) set from SIGTERM on, so /readyz fails while requests are
still being served."""

from __future__ import annotations

import argparse
from typing import Mapping

ENVIRON_KEY = "podvirt.draining"
REASON = "shutting down: draining connections, new requests go to other replicas"
GRACEFUL_TIMEOUT = 30           # gunicorn's default
# Once a worker stops, an idle keep-alive connection stays open this long for a request
# already on its way: gunicorn's gthread worker does so (STOP_KEEPALIVE_LINGER), podvirt's
# gevent worker the same.
LINGER = 2


def draining(environ: Mapping[str, object]) -> bool:
    return bool(environ.get(ENVIRON_KEY))


def _seconds(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"want whole seconds >= {minimum}, got {text!r}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drain-seconds", type=_seconds(0), default=0, metavar="SECONDS",
        help="after SIGTERM, keep serving this long with /readyz failing and every "
             "response saying Connection: close, so that endpoints and kept-alive clients "
             "move to other replicas (default 0; the chart sets 5)")
    parser.add_argument(
        "--graceful-timeout", type=_seconds(1), default=GRACEFUL_TIMEOUT, metavar="SECONDS",
        help="then, how long in-flight requests may still take before the workers are "
             f"killed (default {GRACEFUL_TIMEOUT}); idle connections close within {LINGER} s")
