"""The HTTP edge: status codes, the review envelope, metrics, the last-resort handler."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from podvirt.vmspec import keys as k
from podvirt.webhook import app as app_module
from podvirt.webhook.app import MAX_BODY, create_app


@pytest.fixture
def client(settings):
    return create_app(settings, noop_route=True).test_client()


@pytest.mark.parametrize("body, error", [
    pytest.param(b"{not json", "not JSON", id="malformed-json"),
    pytest.param(b"[]", "JSON object", id="not-an-object"),
    pytest.param(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}), "kind",
                 id="wrong-kind"),
    pytest.param(json.dumps({"apiVersion": "admission.k8s.io/v1",
                             "kind": "AdmissionReview"}), "request", id="missing-request"),
    pytest.param(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                             "request": {"operation": "CREATE", "kind": {}}}), "uid",
                 id="missing-uid"),
    pytest.param(json.dumps({"apiVersion": "admission.k8s.io/v1beta1",
                             "kind": "AdmissionReview", "request": {"uid": "u"}}), "apiVersion",
                 id="unsupported-version"),
])
def test_bad_bodies_get_400(client, body, error):
    resp = client.post("/mutate", data=body)
    assert resp.status_code == 400 and error in resp.get_json()["error"]


def test_oversized_body_gets_413(client):
    resp = client.post("/mutate", data=b"x" * (MAX_BODY + 1))
    assert resp.status_code == 413 and "error" in resp.get_json()


@pytest.mark.parametrize("annotations, allowed, patched", [
    pytest.param({k.MEMORY: "1Gi", k.DISKS: "r=pvc:c"}, True, True, id="mutated"),
    pytest.param({k.MEMORY: "1"}, False, False, id="denied-still-http-200"),
])
def test_reviews_answer_200_and_echo_uid(client, make_pod, make_review, annotations, allowed,
                                         patched):
    review = make_review(make_pod(annotations))
    resp = client.post("/mutate", json=review)
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert body["response"]["uid"] == review["request"]["uid"]
    assert body["response"]["allowed"] is allowed and ("patch" in body["response"]) is patched


def test_unexpected_exception_becomes_denied_review(client, make_pod, make_review, monkeypatch):
    def boom(*_a, **_kw):
        raise RuntimeError("bug")
    monkeypatch.setattr(app_module, "decide", boom)
    review = make_review(make_pod())
    resp = client.post("/mutate", json=review)
    assert resp.status_code == 200
    r = resp.get_json()["response"]
    assert (r["uid"], r["allowed"], r["status"]["code"], r["status"]["message"]) == (
        review["request"]["uid"], False, 500, "internal error")
    assert 'outcome="error"} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_metrics_count_outcomes(client, make_pod, make_review):
    client.post("/mutate", json=make_review(make_pod()))
    client.post("/mutate", json=make_review(make_pod(labels={})))
    client.post("/mutate", json=make_review(make_pod({k.MEMORY: "x"})))
    text = client.get("/metrics").get_data(as_text=True)
    for outcome in ("mutated", "passed", "denied"):
        assert f'podvirt_webhook_reviews_total{{outcome="{outcome}"}} 1.0' in text
    assert "podvirt_webhook_admission_duration_seconds_count 3.0" in text


def test_review_log_line(client, make_pod, make_review, caplog):
    caplog.set_level("DEBUG", logger="podvirt.webhook")
    review = make_review(make_pod())
    client.post("/mutate", json=review)
    record = caplog.records[-1]
    line = json.loads(record.getMessage())
    assert record.levelname == "DEBUG"
    assert line["uid"] == review["request"]["uid"] and line["outcome"] == "mutated"
    assert (line["namespace"], line["name"], line["operation"]) == ("default", "vm1", "CREATE")
    assert line["duration_ms"] >= 0


def test_only_refused_reviews_are_logged_at_info(client, make_pod, make_review, caplog):
    caplog.set_level("INFO", logger="podvirt.webhook")
    admitted = [make_review(make_pod()), make_review(make_pod(labels={}))]
    denied = make_review(make_pod({k.MEMORY: "x"}))
    for review in (*admitted, denied):
        client.post("/mutate", json=review)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "podvirt.webhook"]
    assert [(line["uid"], line["outcome"]) for line in lines] == [
        (denied["request"]["uid"], "denied")]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes(client, path):
    assert client.get(path).status_code == 200


def test_unknown_route_is_json_404(client):
    resp = client.get("/nope")
    assert resp.status_code == 404 and "error" in resp.get_json()


def test_noop_route_answers_allowed(client, make_pod, make_review):
    review = make_review(make_pod())
    r = client.post("/noop", json=review).get_json()["response"]
    assert r == {"uid": review["request"]["uid"], "allowed": True}
    assert "/noop" not in {rule.rule for rule in create_app().url_map.iter_rules()}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.sampled_from(["true", "1Gi", "r=pvc:c"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["metadata", "spec", "labels", "annotations", "containers", "name",
                         k.OPT_IN_LABEL, k.MEMORY, k.DISKS, k.PHASE]), inner, max_size=4),
    max_leaves=12)


@hsettings(max_examples=150, deadline=None)
@given(obj=_json_values, operation=st.sampled_from(["CREATE", "UPDATE", "PATCH"]))
def test_any_object_gets_200_or_400_never_500(obj, operation):
    client = create_app().test_client()
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "operation": operation, "object": obj, "oldObject": obj}}
    resp = client.post("/mutate", json=body)
    assert resp.status_code in (200, 400)
    if resp.status_code == 200:
        assert resp.get_json()["response"]["uid"] == "u"
        assert 'outcome="error"} 0.0' in client.get("/metrics").get_data(as_text=True)


def test_overridden_launcher_container_is_a_warning_on_the_wire(client, make_pod, make_review):
    """kubectl prints response.warnings: a user's container named launcher is replaced."""
    placeholder = make_review(make_pod(containers=[{"name": "launcher", "image": "busybox"}]))
    plain = make_review(make_pod())
    warned = client.post("/mutate", json=placeholder).get_json()["response"]
    assert warned["allowed"] and warned["warnings"] == [
        "spec.containers[launcher]: your container of this name is replaced by podvirt's"]
    assert "warnings" not in client.post("/mutate", json=plain).get_json()["response"]
