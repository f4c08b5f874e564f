"""HTTP surface: decode (with a body-size cap), call the scheduling functions, encode.

POST /filter, /prioritize, /bind speak k8s.io/kube-scheduler/extender/v1. A request
that is understood but cannot be served (state not synced yet, API failure) gets 200
with Error set, as the protocol expects; malformed bodies get 400, oversized 413.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from flask import Flask, Response, request
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)
from werkzeug.exceptions import HTTPException

from podvirt.extender import wire
from podvirt.extender.binding import bind
from podvirt.extender.decide import DEFAULT_POLICY, Policy
from podvirt.extender.facts import node_offer
from podvirt.extender.kube import ApiWriter
from podvirt.extender.scheduling import VerdictMemo, filter_pod, prioritize_pod
from podvirt.extender.state import WatchedCluster
from podvirt import drain, wirejson
from podvirt.httpbody import BodyTooLarge, NotJSON, parse_json, read_body
from podvirt.vmspec.contract import DEFAULT_CONTRACT, Contract

log = logging.getLogger(__name__)
NOT_READY = "podvirt extender not ready: waiting for the first full list of nodes and pods"
_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class Settings:
    policy: Policy = DEFAULT_POLICY
    # Limits, costs and device resources: the very contract the webhook admits pods under.
    contract: Contract = DEFAULT_CONTRACT
    # A NodeList of 5000 nodes (nodeCacheCapable false) is ~25 MB; NodeNames far less.
    max_body_bytes: int = 32 * 2**20
    clock: Callable[[], float] = field(default=time.time)


class _Metrics:
    def __init__(self, registry: CollectorRegistry):
        self.seconds = {verb: Histogram(f"podvirt_extender_{verb}_seconds",
                                        f"Time to answer a {verb} request", registry=registry,
                                        buckets=_BUCKETS)
                        for verb in ("filter", "prioritize", "bind")}
        self.rejected = Counter("podvirt_extender_nodes_rejected",
                                "Nodes a filter rejected, by reason category", ["category"],
                                registry=registry)
        self.binds = Counter("podvirt_extender_binds", "Bind requests by result", ["result"],
                             registry=registry)
        self.ready = Gauge("podvirt_extender_ready", "1 once nodes and pods are listed",
                           registry=registry)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(state: WatchedCluster, settings: Settings = Settings(), *,
               api: ApiWriter | None = None) -> Flask:
    # An explicit instance_path: Flask's lookup fails for podvirt.extender, whose folder
    # (extender/) lies outside podvirt/'s, when run from another directory.
    app = Flask(__name__, instance_path=os.path.dirname(os.path.abspath(__file__)))
    registry = CollectorRegistry()
    metrics = _Metrics(registry)
    memo, score_memo = VerdictMemo(), VerdictMemo()
    metrics.ready.set_function(lambda: 1.0 if state.ready else 0.0)
    app.extensions["podvirt.extender"] = {"state": state, "registry": registry}

    def body() -> Any:
        try:
            return parse_json(read_body(request.environ, settings.max_body_bytes))
        except BodyTooLarge as exc:
            raise _BadRequest(413, str(exc)) from None
        except NotJSON as exc:
            raise _BadRequest(400, str(exc)) from None

    def reply(payload: Any, status: int = 200) -> Response:
        return Response(wirejson.dumps(payload), status=status, mimetype="application/json")

    def decoded(decode: Callable[[Any], Any]) -> Any:
        try:
            return decode(body())
        except wire.WireError as exc:
            raise _BadRequest(400, str(exc)) from None

    def node_overrides(args: wire.ExtenderArgs):
        return None if args.nodes is None else {n["metadata"]["name"]: node_offer(n)
                                                for n in args.nodes}

    def serve(verb: str, decode: Callable[[Any], Any], answer: Callable[[Any], Any],
              fallback: Callable[[Any, str], Any]) -> Response:
        """What every scheduling verb shares: timed, decoded, answered by `answer` once the
        state is synced; otherwise, and when `answer` fails, by `fallback(args, error)`
        (the protocol wants 200 with Error set)."""
        with metrics.seconds[verb].time():
            args = decoded(decode)
            if not state.ready:
                return reply(fallback(args, NOT_READY))
            try:
                return reply(answer(args))
            except Exception as exc:
                log.exception("%s failed", verb)
                return reply(fallback(args, f"podvirt extender error: {exc}"))

    def filter_answer(args: wire.ExtenderArgs) -> Any:
        outcome = filter_pod(state, args.pod, args.names, now=settings.clock(),
                             policy=settings.policy, costs=settings.contract.costs,
                             limits=settings.contract.limits, facts=node_overrides(args),
                             memo=memo)
        for category, n in outcome.rejected.items():
            metrics.rejected.labels(category).inc(n)
        return wire.filter_result(args, outcome)

    def prioritize_answer(args: wire.ExtenderArgs) -> Any:
        return wire.priority_list(prioritize_pod(
            state, args.pod, args.names, policy=settings.policy, costs=settings.contract.costs,
            limits=settings.contract.limits, facts=node_overrides(args), memo=score_memo))

    def bind_answer(req: Any) -> Any:
        if api is None:
            return bind_result(req, "podvirt extender has no Kubernetes API client configured")
        return bind_result(req, bind(state, api, req, policy=settings.policy,
                                     costs=settings.contract.costs, now=settings.clock,
                                     limits=settings.contract.limits))

    def bind_result(req: Any, error: str) -> Any:
        metrics.binds.labels("error" if error else "bound").inc()
        return {"Error": error}

    @app.post("/filter")
    def filter_() -> Response:
        return serve("filter", wire.decode_args, filter_answer,
                     lambda args, error: wire.filter_result(args, None, error))

    @app.post("/prioritize")
    def prioritize() -> Response:
        # HostPriorityList has no Error: score everyone alike.
        return serve("prioritize", wire.decode_args, prioritize_answer,
                     lambda args, _: wire.priority_list([(n, 0) for n in args.names]))

    @app.post("/bind")
    def bind_() -> Response:
        return serve("bind", wire.decode_binding, bind_answer, bind_result)

    @app.get("/healthz")
    def healthz() -> Response:
        return reply({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        if drain.draining(request.environ):
            return reply({"status": "not ready", "reason": drain.REASON}, 503)
        if state.ready:
            return reply({"status": "ready"})
        return reply({"status": "not ready", "reason": NOT_READY}, 503)

    @app.get("/metrics")
    def metrics_() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(_BadRequest)
    def bad_request(exc: _BadRequest) -> Response:
        return reply({"error": str(exc)}, exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return reply({"error": exc.description or exc.name}, exc.code or 400)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")   # the traceback goes to the log, not the client
        return reply({"error": f"internal error: {type(exc).__name__}"}, 503)

    return app
