"""HTTP surface: decode (with a body-size cap), call the scheduling functions, encode.

POST /filter, /prioritize, /bind speak k8s.io/kube-scheduler/extender/v1. A request
that is understood but cannot be served (state not synced yet, API failure) gets 200
with Error set, as the protocol expects; malformed bodies get 400, oversized 413, and
GET /healthz, /readyz, /metrics serve the probes and Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, AsyncIterable, Callable

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest)

from podvirt.extender import wire
from podvirt.extender.binding import bind
from podvirt.extender.decide import DEFAULT_POLICY, Policy
from podvirt.extender.facts import node_offer
from podvirt.extender.kube import ApiWriter
from podvirt.extender.scheduling import VerdictMemo, filter_pod, prioritize_pod
from podvirt.extender.state import WatchedCluster
from podvirt import drain, wirejson
from podvirt.httpbody import BodyTooLarge, NotJSON, parse_json, read_body_async
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
    (ExtenderApp) only reads bodies, maps errors to statuses and writes replies.

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


Reply = tuple[int, str, bytes]        # status, content type, body
_JSON = "application/json"
_VERBS = {"/filter": "filter", "/prioritize": "prioritize", "/bind": "bind"}


def _json(payload: Any, status: int = 200) -> Reply:
    return status, _JSON, wirejson.dumps(payload)


class ExtenderApp:
    """The extender's HTTP surface, an RSGI application (granian; extender/serve.py).

    filter and prioritize are answered on the event loop: short CPU bursts, between the
    watch threads. A bind waits on the API server, so binds run on a thread pool, several
    at once. Set `draining` from SIGTERM on: /readyz fails and HTTP/1.1 replies close
    their connection, so that clients move to another replica."""

    def __init__(self, state: WatchedCluster, settings: Settings = Settings(), *,
                 api: ApiWriter | None = None, bind_threads: int = 16, verbs: Any = None):
        self.state, self.max_body = state, settings.max_body_bytes
        self.registry = CollectorRegistry()
        # The bench's floor passes verbs that decide nothing, to measure this surface.
        self.verbs = verbs or SchedulingVerbs(state, settings, api, self.registry)
        self.binds = ThreadPoolExecutor(bind_threads, thread_name_prefix="bind")
        self.draining = False

    async def __call__(self, scope: Any, proto: Any) -> None:
        status, content_type, body = await self.respond(
            scope.method, scope.path, scope.headers.get("content-length"), proto)
        headers = [("content-type", content_type)]
        if self.draining and scope.http_version.startswith("1"):
            headers.append(("connection", "close"))    # HTTP/2 ends with the server's GOAWAY
        proto.response_bytes(status, headers, body)

    async def respond(self, method: str, path: str, declared: str | None,
                      chunks: AsyncIterable[bytes]) -> Reply:
        """The reply to a request; `declared` is its Content-Length, `chunks` its body."""
        try:
            return await self._route(method, path, declared, chunks)
        except BodyTooLarge as exc:
            return _json({"error": str(exc)}, 413)
        except (NotJSON, wire.WireError) as exc:
            return _json({"error": str(exc)}, 400)
        except Exception as exc:
            log.exception("unexpected error")   # the traceback goes to the log, not the client
            return _json({"error": f"internal error: {type(exc).__name__}"}, 503)

    async def _route(self, method: str, path: str, declared: str | None,
                     chunks: AsyncIterable[bytes]) -> Reply:
        verb = _VERBS.get(path)
        allowed = "POST" if verb else "GET" if path in ("/healthz", "/readyz", "/metrics") else None
        if allowed is None:
            return _json({"error": f"no such path: {path}"}, 404)
        if method != allowed:
            return _json({"error": f"{path} takes {allowed}, not {method}"}, 405)
        if verb is not None:
            raw = await read_body_async(declared, chunks, self.max_body)
            if verb == "bind":
                return _json(await asyncio.get_running_loop().run_in_executor(
                    self.binds, self.verbs.answer, verb, lambda: parse_json(raw)))
            return _json(self.verbs.answer(verb, lambda: parse_json(raw)))
        if path == "/healthz":
            return _json({"status": "ok"})
        if path == "/readyz":
            if self.draining:
                return _json({"status": "not ready", "reason": drain.REASON}, 503)
            if self.state.ready:
                return _json({"status": "ready"})
            return _json({"status": "not ready", "reason": NOT_READY}, 503)
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
