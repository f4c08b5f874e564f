"""Fuzz the real webhook (TLS) and the real extender (ready, watching the tier's cluster)
over HTTP: no 5xx, no traceback in either log, every denial names its key or field,
every patch applies, oversized bodies get 413.

CI runs a few hundred inputs per endpoint; bench/fuzz_bench.py runs 10,000+.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

import fuzzlib
import services
from conftest import figure
from podvirt.vmspec import keys as k

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


@pytest.mark.parametrize("endpoint, cap", [
    pytest.param("/mutate", 3 * 2**20, id="webhook"),
    pytest.param("/filter", EXTENDER_BODY_CAP, id="extender-filter"),
    pytest.param("/bind", EXTENDER_BODY_CAP, id="extender-bind"),
])
@pytest.mark.parametrize("chunked", [pytest.param(False, id="content-length"),
                                     pytest.param(True, id="chunked")])
def test_oversized_body_refused_with_413(endpoint: str, cap: int, chunked: bool,
                                         request: pytest.FixtureRequest,
                                         session: requests.Session) -> None:
    svc = _target(endpoint, request)
    padding = "x" * (cap + 1)
    body = fuzzlib.json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                               "padding": padding}).encode()
    resp = session.post(svc.url + endpoint, data=_chunks(body) if chunked else body,
                        headers={"Content-Type": "application/json"}, verify=svc.verify,
                        timeout=30)
    assert resp.status_code == 413, resp.text[:300]
    # ... and the service still answers afterwards.
    assert session.get(svc.url + "/healthz", verify=svc.verify, timeout=5).status_code == 200
