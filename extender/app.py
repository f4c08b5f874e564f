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


class SchedulingVerbs:
    """filter, prioritize and bind, framework-free: `answer(verb, read)` takes a function
    that reads the request's JSON and gives the reply's JSON. The HTTP layer around it
    (create_app) only reads bodies, maps errors to statuses and writes replies, so a
    different server can carry the same verbs (bench/extender_servers.py).

    Every verb is timed, decoded, and answered once the state is synced; otherwise, and
    when answering fails, by the verb's fallback (the protocol wants 200 with Error set).
    A body that is not a request raises NotJSON, wire.WireError or BodyTooLarge."""

    def __init__(self, state: WatchedCluster, settings: Settings, api: ApiWriter | None,
                 registry: CollectorRegistry):
        self.state, self.settings, self.api = state, settings, api
        self.metrics = _Metrics(registry)
        self.metrics.ready.set_function(lambda: 1.0 if state.ready else 0.0)
        self._memo, self._score_memo = VerdictMemo(), VerdictMemo()
        self._verbs: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any],
                                     Callable[[Any, str], Any]]] = {
            "filter": (wire.decode_args, self._filter,
                       lambda args, error: wire.filter_result(args, None, error)),
            # HostPriorityList has no Error: score everyone alike.
            "prioritize": (wire.decode_args, self._prioritize,
                           lambda args, _: wire.priority_list([(n, 0) for n in args.names])),
            "bind": (wire.decode_binding, self._bind, self._bind_result),
        }

    def answer(self, verb: str, read: Callable[[], Any]) -> Any:
        decode, answer, fallback = self._verbs[verb]
        with self.metrics.seconds[verb].time():
            args = decode(read())
            if not self.state.ready:
                return fallback(args, NOT_READY)
            try:
                return answer(args)
            except Exception as exc:
                log.exception("%s failed", verb)
                return fallback(args, f"podvirt extender error: {exc}")

    @staticmethod
    def _node_overrides(args: wire.ExtenderArgs):
        return None if args.nodes is None else {n["metadata"]["name"]: node_offer(n)
                                                for n in args.nodes}

    def _filter(self, args: wire.ExtenderArgs) -> Any:
        s = self.settings
        outcome = filter_pod(self.state, args.pod, args.names, now=s.clock(), policy=s.policy,
                             costs=s.contract.costs, limits=s.contract.limits,
                             facts=self._node_overrides(args), memo=self._memo)
        for category, n in outcome.rejected.items():
            self.metrics.rejected.labels(category).inc(n)
        return wire.filter_result(args, outcome)

    def _prioritize(self, args: wire.ExtenderArgs) -> Any:
        s = self.settings
        return wire.priority_list(prioritize_pod(
            self.state, args.pod, args.names, policy=s.policy, costs=s.contract.costs,
            limits=s.contract.limits, facts=self._node_overrides(args), memo=self._score_memo))

    def _bind(self, req: Any) -> Any:
        if self.api is None:
            return self._bind_result(req, "podvirt extender has no Kubernetes API client "
                                          "configured")
        s = self.settings
        return self._bind_result(req, bind(self.state, self.api, req, policy=s.policy,
                                           costs=s.contract.costs, now=s.clock,
                                           limits=s.contract.limits))

    def _bind_result(self, req: Any, error: str) -> Any:
        self.metrics.binds.labels("error" if error else "bound").inc()
        return {"Error": error}


def create_app(state: WatchedCluster, settings: Settings = Settings(), *,
               api: ApiWriter | None = None) -> Flask:
    # An explicit instance_path: Flask's lookup fails for podvirt.extender, whose folder
    # (extender/) lies outside podvirt/'s, when run from another directory.
    app = Flask(__name__, instance_path=os.path.dirname(os.path.abspath(__file__)))
    registry = CollectorRegistry()
    verbs = SchedulingVerbs(state, settings, api, registry)
    app.extensions["podvirt.extender"] = {"state": state, "registry": registry}

    def body() -> Any:
        return parse_json(read_body(request.environ, settings.max_body_bytes))

    def reply(payload: Any, status: int = 200) -> Response:
        return Response(wirejson.dumps(payload), status=status, mimetype="application/json")

    @app.post("/filter")
    def filter_() -> Response:
        return reply(verbs.answer("filter", body))

    @app.post("/prioritize")
    def prioritize() -> Response:
        return reply(verbs.answer("prioritize", body))

    @app.post("/bind")
    def bind_() -> Response:
        return reply(verbs.answer("bind", body))

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

    @app.errorhandler(NotJSON)
    @app.errorhandler(wire.WireError)
    def bad_request(exc: Exception) -> Response:
        return reply({"error": str(exc)}, 400)

    @app.errorhandler(BodyTooLarge)
    def too_large(exc: BodyTooLarge) -> Response:
        return reply({"error": str(exc)}, 413)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return reply({"error": exc.description or exc.name}, exc.code or 400)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")   # the traceback goes to the log, not the client
        return reply({"error": f"internal error: {type(exc).__name__}"}, 503)

    return app
