"""Fuzz the real webhook (TLS) and the real extender (ready, watching the tier's cluster)
over HTTP: no 5xx, no traceback in either log, every denial names its key or field,
every patch applies, oversized bodies get 413.

CI runs a few hundred inputs per endpoint; bench/fuzz_bench.py runs 10,000+.
"""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from podvirt.vmspec import keys as k

from tests.hardening import fuzzlib, services
from tests.hardening.figures import figure

INPUTS = int(os.environ.get("PODVIRT_FUZZ_INPUTS", "250"))
EXTENDER_BODY_CAP = 2 * 2**20     # small cap so the 413 test sends little


@pytest.fixture(scope="module")
def webhook(certs, tmp_path_factory) -> Iterator[services.Service]:
    log = tmp_path_factory.mktemp("webhook") / "webhook.log"
    with services.running(services.webhook(certs, log, workers=1)) as svc:
        yield svc


@pytest.fixture(scope="module")
def extender(hcluster, certs, tmp_path_factory) -> Iterator[services.Service]:
    log = tmp_path_factory.mktemp("extender") / "extender.log"
    svc = services.extender(log, kubeconfig=Path(hcluster.kubeconfig), certs=certs,
                            max_body_bytes=EXTENDER_BODY_CAP)
    with services.running(svc, ready_path="/readyz") as svc:   # ready: watches have listed
        yield svc


@pytest.fixture(scope="module")
def session() -> requests.Session:
    return requests.Session()


def _target(endpoint: str, request: pytest.FixtureRequest) -> services.Service:
    return request.getfixturevalue("webhook" if endpoint == "/mutate" else "extender")


def _assert_clean(tally: fuzzlib.Tally, svc: services.Service, tracebacks_before: int) -> None:
    new_tracebacks = svc.tracebacks()[tracebacks_before:]
    assert not new_tracebacks, f"{len(new_tracebacks)} tracebacks, first:\n{new_tracebacks[0]}"
    bad = (tally.total(tally.server_errors) + tally.total(tally.unnamed_denials)
           + tally.total(tally.bad_answers))
    assert bad == 0, "\n".join(tally.problems)


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=e.strip("/")) for e in fuzzlib.GENERATORS])
def test_structured_mutations(endpoint: str, request: pytest.FixtureRequest,
                              session: requests.Session) -> None:
    svc = _target(endpoint, request)
    before = len(svc.tracebacks())
    tally, rng = fuzzlib.Tally(), random.Random(f"ci{endpoint}")
    for i in range(INPUTS):
        body = fuzzlib.GENERATORS[endpoint](rng, i)
        fuzzlib.judge(tally, endpoint, body, fuzzlib.post(session, svc.url + endpoint, body,
                                                          svc.verify))
    figure(f"fuzz{endpoint.replace('/', '_')}",
           f"tried={tally.tried[endpoint]} 5xx={tally.server_errors[endpoint]} "
           f"tracebacks={len(svc.tracebacks()) - before} "
           f"unnamed_denials={tally.unnamed_denials[endpoint]}")
    _assert_clean(tally, svc, before)


# Annotation maps from hypothesis: real keys with arbitrary or near-valid values.
_values = st.one_of(st.text(max_size=80), st.sampled_from(fuzzlib._STRINGS),
                    st.from_regex(r"[a-z0-9]{1,8}=[a-z]{1,12}:[a-zA-Z0-9/._-]{0,20}", fullmatch=True),
                    st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{1,3})?(Ki|Mi|Gi|Ti|m|k|e9)?", fullmatch=True))
_annotations = st.dictionaries(
    st.one_of(st.sampled_from(sorted(k.USER_KEYS)), st.just(k.RENDERED),
              st.text(max_size=20).map(lambda s: k.PREFIX + s)),
    _values, max_size=8).map(lambda a: {k.MEMORY: "1Gi", **a} if len(a) % 2 else a)

_HYPOTHESIS = settings(max_examples=max(50, INPUTS // 2), deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.function_scoped_fixture,
                                              HealthCheck.too_slow])


def test_hypothesis_annotations_webhook(webhook: services.Service,
                                        session: requests.Session) -> None:
    before, tally = len(webhook.tracebacks()), fuzzlib.Tally()

    @_HYPOTHESIS
    @given(annotations=_annotations, operation=st.sampled_from(["CREATE", "UPDATE"]))
    def one(annotations: dict, operation: str) -> None:
        old = fuzzlib.pod(fuzzlib.SEED_ANNOTATIONS[0]) if operation == "UPDATE" else None
        body = fuzzlib.json.dumps(fuzzlib.review(fuzzlib.pod(annotations), operation=operation,
                                                 old=old)).encode()
        fuzzlib.judge(tally, "/mutate", body, fuzzlib.post(session, webhook.url + "/mutate",
                                                           body, webhook.verify))

    one()
    figure("fuzz_hypothesis_mutate", f"tried={tally.tried['/mutate']} "
           f"5xx={tally.server_errors['/mutate']}")
    _assert_clean(tally, webhook, before)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.sampled_from(["Pod", "NodeNames", "Nodes", "items",
                                                        "metadata", "name", "annotations",
                                                        "PodName", "Node", "PodUID"]),
                                       children, max_size=4),
                     max_leaves=25)


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=e.strip("/"))
                                      for e in ("/filter", "/prioritize", "/bind")])
def test_hypothesis_json_extender(endpoint: str, extender: services.Service,
                                  session: requests.Session) -> None:
    before, tally = len(extender.tracebacks()), fuzzlib.Tally()

    @_HYPOTHESIS
    @given(doc=_json, annotations=_annotations)
    def one(doc: object, annotations: dict) -> None:
        if isinstance(doc, dict) and "Pod" in doc:   # often a pod-shaped pod, too
            doc["Pod"] = fuzzlib.pod(annotations)
        body = fuzzlib.json.dumps(doc).encode()
        fuzzlib.judge(tally, endpoint, body, fuzzlib.post(session, extender.url + endpoint, body,
                                                          extender.verify))

    one()
    figure(f"fuzz_hypothesis{endpoint.replace('/', '_')}",
           f"tried={tally.tried[endpoint]} 5xx={tally.server_errors[endpoint]}")
    _assert_clean(tally, extender, before)


def _chunks(data: bytes, size: int = 2**16) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


# Sizes: just over the cap, and far enough over that the unread rest would not fit the
# socket buffers (gunicorn alone drains 64 KiB, then resets); both within the drain bound.
@pytest.mark.parametrize("endpoint, cap", [
    pytest.param("/mutate", 3 * 2**20, id="webhook"),
    pytest.param("/filter", EXTENDER_BODY_CAP, id="extender-filter"),
    pytest.param("/bind", EXTENDER_BODY_CAP, id="extender-bind"),
])
@pytest.mark.parametrize("chunked", [pytest.param(False, id="content-length"),
                                     pytest.param(True, id="chunked")])
@pytest.mark.parametrize("factor", [pytest.param(1, id="cap+1"), pytest.param(3, id="3xcap")])
def test_oversized_body_refused_with_413(endpoint: str, cap: int, chunked: bool, factor: int,
                                         request: pytest.FixtureRequest,
                                         session: requests.Session) -> None:
    svc = _target(endpoint, request)
    padding = "x" * (factor * cap + 1)
    body = fuzzlib.json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "padding": padding}).encode()
    resp = session.post(svc.url + endpoint, data=_chunks(body) if chunked else body,
                        headers={"Content-Type": "application/json"}, verify=svc.verify,
                        timeout=30)
    assert resp.status_code == 413, resp.text[:300]
    assert "limit" in resp.json()["error"]
    # ... and the service still answers afterwards.
    assert session.get(svc.url + "/healthz", verify=svc.verify, timeout=5).status_code == 200


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


_REVIEW = fuzzlib.review(fuzzlib.pod(fuzzlib.SEED_ANNOTATIONS[0]))
_PENDING = fuzzlib.rendered_pod(fuzzlib.SEED_ANNOTATIONS[0])


def _json_body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _with(doc: dict, path: tuple, value: object) -> dict:
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


# Each finding of the first hardening run, pinned: the body, the answer, what it must say.
# `code` is the HTTP status, or for /mutate's 200s the review's status code.
@pytest.mark.parametrize("endpoint, body, code, says", [
    pytest.param("/mutate", _nested(5000), 400, "nested deeper", id="mutate-deep-json"),
    pytest.param("/mutate", _nested(150), 400, "nested deeper", id="mutate-deep-under-decoder"),
    pytest.param("/filter", b"[" * 200000 + b"]" * 200000, 400, "nested deeper",
                 id="filter-deep-json"),
    pytest.param("/bind", _nested(20000), 400, "nested deeper", id="bind-deep-json"),
    pytest.param("/mutate", _json_body(_with(_REVIEW, ("request", "object"), None)), 400,
                 "request.object (the pod) is missing", id="mutate-no-object"),
    pytest.param("/mutate", _json_body(_with(_with(_REVIEW, ("request", "operation"), "UPDATE"),
                                             ("request", "oldObject"), None)), 400,
                 "request.oldObject (the pod) is missing", id="mutate-update-no-old-object"),
    pytest.param("/mutate", _json_body(_with(_REVIEW, ("request", "object", "spec"), [])), 400,
                 "request.object.spec must be an object", id="mutate-spec-list"),
    pytest.param("/mutate", _json_body(_with(_REVIEW, ("request", "object", "metadata",
                                                       "labels"), "x")), 400,
                 "request.object.metadata.labels must be a map", id="mutate-labels-string"),
    pytest.param("/filter", _json_body({"Pod": _PENDING, "Nodes": {"items": [
        {"metadata": ["hw-0"]}]}}), 400, "ExtenderArgs.Nodes.items[0].metadata must be an object",
                 id="filter-node-metadata-list"),
    pytest.param("/prioritize", _json_body({"Pod": _PENDING, "Nodes": {"items": [
        {"metadata": {"name": "hw-0"}}, {"metadata": "hw-1"}]}}), 400,
                 "ExtenderArgs.Nodes.items[1].metadata must be an object",
                 id="prioritize-node-metadata-string"),
    pytest.param("/filter", _json_body({"Pod": _PENDING, "Nodes": {"items": [
        {"metadata": {"name": "hw-0"}, "status": ["Ready"]}]}}), 400,
                 "ExtenderArgs.Nodes.items[0].status", id="filter-node-status-list"),
    pytest.param("/filter", _json_body({"Pod": _PENDING, "Nodes": {"items": [
        {"metadata": {"name": "hw-0", "labels": ["a"]}}]}}), 400,
                 "items[0].metadata.labels must map strings to strings",
                 id="filter-node-labels-list"),
    pytest.param("/filter", _json_body({"Pod": _with(_PENDING, ("spec", "initContainers"), ["c"]),
                                        "NodeNames": ["hw-0"]}), 400,
                 "ExtenderArgs.Pod.spec.initContainers[0] must be an object",
                 id="filter-init-container-string"),
    pytest.param("/prioritize", _json_body({"Pod": _with(_PENDING, ("spec", "containers", 0,
                                                                    "resources"), ["x"]),
                                            "NodeNames": ["hw-0"]}), 400,
                 "ExtenderArgs.Pod.spec.containers[0] must be an object whose resources",
                 id="prioritize-resources-list"),
])
def test_findings_answered_with_named_errors(endpoint: str, body: bytes, code: int, says: str,
                                             request: pytest.FixtureRequest,
                                             session: requests.Session) -> None:
    svc = _target(endpoint, request)
    before = len(svc.tracebacks())
    resp = fuzzlib.post(session, svc.url + endpoint, body, svc.verify)
    if endpoint == "/mutate" and resp.status_code == 200:
        status = resp.json()["response"]["status"]
        assert (status["code"], resp.json()["response"]["allowed"]) == (code, False)
        message = status["message"]
    else:
        assert resp.status_code == code, resp.text[:300]
        message = resp.json()["error"]
    assert says in message, message
    assert len(svc.tracebacks()) == before, svc.tracebacks()[-1]
