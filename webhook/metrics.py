"""Admission metrics, aggregated across gunicorn workers with prometheus-client's
multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (the CLI sets it), else per app."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

OUTCOMES = ("mutated", "passed", "denied", "error")
# Admission latency lives in the low milliseconds; the API server's timeout caps it at 30s.
_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class AdmissionMetrics:
    def __init__(self) -> None:
        # Each app owns its registry, so tests can build many apps in one process.
        self.registry = CollectorRegistry()
        self.duration = Histogram("podvirt_webhook_admission_duration_seconds",
                                  "Time to decide one AdmissionReview", buckets=_BUCKETS,
                                  registry=self.registry)
        self.reviews = Counter("podvirt_webhook_reviews", "AdmissionReviews answered",
                               ["outcome"], registry=self.registry)
        # Children looked up once: labels() takes a lock and builds a key on every call.
        self._by_outcome = {outcome: self.reviews.labels(outcome) for outcome in OUTCOMES}

    def observe(self, outcome: str, seconds: float) -> None:
        self._by_outcome[outcome].inc()
        self.duration.observe(seconds)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
