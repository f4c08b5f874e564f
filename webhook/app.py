"""Flask application: HTTP around admission.decide and admission.respond. Decode (size-capped by
podvirt.httpbody, not by Flask), decide, encode.

A well-formed review always gets HTTP 200 (the API server reads the verdict from the
body); only a body that is not a review gets 400/413.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from podvirt import drain, wirejson
from podvirt.httpbody import BodyTooLarge, read_body
from podvirt.vmspec import keys as k
from podvirt.webhook.admission import decide, respond
from podvirt.webhook.eviction import TOO_MANY_REQUESTS, decide_eviction
from podvirt.webhook.kube import PodAccess
from podvirt.webhook.metrics import AdmissionMetrics
from podvirt.webhook.settings import RenderSettings
from podvirt.webhook.wire import (AdmissionRequest, AdmissionReview, BadReview, build_response,
                                  parse_review, wrap)

MAX_BODY = 3 * 2**20    # the API server caps objects near 1.5 MiB; old+new object fit in 3 MiB
log = logging.getLogger("podvirt.webhook")


# A review's JSON line is logged at INFO when the VM pod was refused (an operator acts on
# it), else at DEBUG (--log-level debug logs every review). The API server's audit log
# records each admission with its patch already, and at 1000 reviews/s a line per review
# took ~6% of the worker's CPU and flooded the log (bench/README.md, the webhook).
LOGGED_AT_INFO = frozenset({"denied", "error"})


def _review_line(req: AdmissionRequest, outcome: str, seconds: float) -> str:
    meta = (req.get("object") or req.get("oldObject") or {}).get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return wirejson.dumps({
        "uid": req["uid"], "operation": req.get("operation"), "outcome": outcome,
        "namespace": req.get("namespace") or meta.get("namespace"),
        "name": req.get("name") or meta.get("name") or meta.get("generateName"),
        "duration_ms": round(seconds * 1000, 3)}).decode()


def _json(payload: object, status: int = 200) -> Response:
    return Response(wirejson.dumps(payload), status=status,
                    mimetype="application/json")


def create_app(settings: RenderSettings | None = None, *, noop_route: bool = False,
               pods: PodAccess | None = None) -> Flask:
    """`pods` (API access) enables POST /evict, the pods/eviction webhook (eviction.py)."""
    settings = settings or RenderSettings()
    app = Flask("podvirt.webhook")
    metrics = AdmissionMetrics()

    def review_body() -> AdmissionReview:
        """The decoded review; the error handlers below answer BadReview and BodyTooLarge."""
        return parse_review(read_body(request.environ, MAX_BODY))

    @app.post("/mutate")
    def mutate() -> Response:
        started = time.perf_counter()
        doc = review_body()
        req = doc["request"]
        try:
            decision = decide(req, settings)
            response = respond(req["uid"], decision)
            outcome = decision.outcome
        except Exception:   # last resort: a bug must not look like an unreachable webhook
            log.exception("review %s failed", req["uid"])
            response = build_response(uid=req["uid"], allowed=False, code=500,
                                      message="internal error")
            outcome = "error"
        seconds = time.perf_counter() - started
        metrics.observe(outcome, seconds)
        level = logging.INFO if outcome in LOGGED_AT_INFO else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(level, _review_line(req, outcome, seconds))
        return _json(wrap(response, doc["apiVersion"]))

    if pods is not None:
        @app.post("/evict")
        def evict() -> Response:
            doc = review_body()
            req = doc["request"]
            namespace, name = req.get("namespace") or "", req.get("name") or ""
            try:
                verdict = decide_eviction(req, pods.get(namespace, name))
                if verdict.mark is not None and not req.get("dryRun"):
                    pods.annotate(namespace, name, {k.EVACUATE: verdict.mark})
                response = build_response(uid=req["uid"], allowed=verdict.allowed,
                                          code=verdict.code, message=verdict.message)
                outcome = verdict.rule
            except Exception as exc:    # the API unreachable: refuse for now, clients retry
                log.exception("eviction review %s failed", req["uid"])
                response = build_response(uid=req["uid"], allowed=False, code=TOO_MANY_REQUESTS,
                                          message=f"podvirt could not decide on evicting pod "
                                          f"{namespace}/{name}: {type(exc).__name__}")
                outcome = "error"
            log.info(wirejson.dumps({"uid": req["uid"], "operation": "EVICT", "outcome": outcome,
                                     "namespace": namespace, "name": name}).decode())
            return _json(wrap(response, doc["apiVersion"]))

    if noop_route:
        # Same stack minus the decision: the bench's ceiling for the HTTP/TLS/JSON path.
        @app.post("/noop")
        def noop() -> Response:
            doc = review_body()
            return _json(wrap(build_response(uid=doc["request"]["uid"], allowed=True)))

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        if drain.draining(request.environ):
            return _json({"status": "not ready", "reason": drain.REASON}, 503)
        return _json({"status": "ok"})

    @app.get("/metrics")
    def metrics_route() -> Response:
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(BadReview)
    def bad_review(exc: BadReview) -> Response:
        return _json({"error": str(exc)}, 400)

    @app.errorhandler(BodyTooLarge)
    def too_large(exc: BodyTooLarge) -> Response:
        return _json({"error": str(exc)}, 413)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _json({"error": exc.description}, exc.code or 500)

    return app
