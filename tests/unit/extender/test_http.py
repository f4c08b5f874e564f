"""The HTTP surface (ExtenderApp, called as granian calls it): wire shapes, error statuses,
body caps, routes, the drain."""

from __future__ import annotations

import json

import pytest

from podvirt.extender import wire
from podvirt.extender.app import NOT_READY, ExtenderApp, Settings
from podvirt.extender.decide import NUMA_BONUS
from podvirt.extender.state import WatchedCluster
from podvirt.httpbody import DRAIN_FACTOR
from podvirt.vmspec import keys as k

from tests.unit.extender.rsgi import Client
from tests.unit.extender.objects import (FakeApi, GiB, gpu, http_cluster, node_json, plain_pod,
                                         vm_pod)


@pytest.fixture
def state() -> WatchedCluster:
    return http_cluster()


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def client(state, api):
    return Client(ExtenderApp(state, Settings(max_body_bytes=CAP), api=api))


NAMES = ["big", "small", "nokvm", "ghost"]
CAP = 64 * 1024


@pytest.mark.parametrize("body", [
    pytest.param({"Pod": vm_pod("a"), "NodeNames": NAMES}, id="go-field-names"),
    pytest.param({"pod": vm_pod("a"), "nodenames": NAMES}, id="lower-case"),
    pytest.param({"POD": vm_pod("a"), "nodeNames": NAMES, "Nodes": None}, id="mixed-case"),
])
def test_filter_node_names(client, body):
    r = client.post("/filter", json=body)
    assert r.status_code == 200
    out = r.get_json()
    assert out["NodeNames"] == ["big"] and out["Nodes"] is None and out["Error"] == ""
    assert out["FailedNodes"] == {
        "ghost": "node is not known to the extender yet (no watch event for it)"}
    # More than small's allocatable: eviction cannot help, like NodeResourcesFit says.
    assert out["FailedAndUnresolvableNodes"]["small"] == \
        "needs 4.2Gi (4Gi guest + 256Mi overhead), 2Gi free"
    assert set(out["FailedAndUnresolvableNodes"]) == {"nokvm", "small"}


def test_filter_whole_nodes_answers_with_nodes(client):
    nodes = {"items": [node_json("big", memory="64Gi"), node_json("small", memory="2Gi")]}
    out = client.post("/filter", json={"Pod": vm_pod("a"), "Nodes": nodes}).get_json()
    assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["big"]
    assert out["NodeNames"] is None and set(out["FailedAndUnresolvableNodes"]) == {"small"}


def test_filter_passes_non_vm_pods_everywhere(client):
    out = client.post("/filter", json={"Pod": plain_pod("web"), "NodeNames": NAMES}).get_json()
    assert out["NodeNames"] == NAMES and out["FailedNodes"] == {}


def test_filter_invalid_vm_spec_is_unresolvable_everywhere(client):
    pod = vm_pod("a")
    pod["metadata"]["annotations"][k.MEMORY] = "lots"
    out = client.post("/filter", json={"Pod": pod, "NodeNames": ["big"]}).get_json()
    assert out["NodeNames"] == []
    assert out["FailedAndUnresolvableNodes"]["big"].startswith("invalid VM spec: podvirt.io/memory")


def test_prioritize_ranks_nodes_by_numa_locality_relative_to_the_lowest(client, state):
    """Scores are sent relative to the lowest: the lowest-scored node is left out (the
    scheduler adds 0 for it), the others carry their lead."""
    state.apply_node("ADDED", node_json("split", devices=[gpu("0000:3b:00.0", 0),
                                                         gpu("0000:86:00.0", 1)]))
    state.apply_node("ADDED", node_json("local", devices=[gpu("0000:3b:00.0", 0),
                                                         gpu("0000:3c:00.0", 0)]))
    pod = vm_pod("a", {k.DEVICES: "nvidia.com/gpu=2"})
    r = client.post("/prioritize", json={"pod": pod, "NodeNames": ["split", "local"]})
    assert r.status_code == 200
    assert r.get_json() == [{"Host": "local", "Score": NUMA_BONUS}]


def test_prioritize_sends_nothing_for_a_vm_without_devices(client):
    """Its memory is scored in-tree (NodeResourcesFit): all nodes alike here."""
    out = client.post("/prioritize", json={"pod": vm_pod("a"), "NodeNames": ["big", "small"]})
    assert out.get_json() == []



@pytest.mark.parametrize("scores", [
    [("a", 3), ("b", 7), ("c", 3), ("d", 10)],
    [("a", 0), ("b", 0)],
    [("a", 5)],
    [],
])
def test_relative_priorities_pick_the_same_node(scores):
    """What kube-scheduler does with a HostPriorityList: each listed host's score added to
    its total, 0 for the rest. Shifted by the lowest, the ranking against any in-tree
    totals is unchanged."""
    listed = {h["Host"]: h["Score"] for h in wire.priority_list(scores)}
    in_tree = {"a": 40, "b": 5, "c": 61, "d": 0}
    full = {n: in_tree[n] + 10 * s for n, s in scores}
    relative = {n: in_tree[n] + 10 * listed.get(n, 0) for n, _ in scores}
    assert all(score > 0 for score in listed.values())
    low = min((s for _, s in scores), default=0)
    assert all(relative[n] == full[n] - 10 * low for n in full)


BAD_BODIES = [
    pytest.param("/filter", b"{not json", id="filter-not-json"),
    pytest.param("/filter", b"[]", id="filter-not-object"),
    pytest.param("/filter", b'{"Pod": "x"}', id="filter-pod-not-object"),
    pytest.param("/filter", json.dumps({"Pod": vm_pod("a"), "NodeNames": [1]}).encode(),
                 id="filter-names-not-strings"),
    pytest.param("/filter", json.dumps({"Pod": vm_pod("a"), "Nodes": {"items": [{}]}}).encode(),
                 id="filter-node-without-name"),
    pytest.param("/prioritize", b"\xff\xfe", id="prioritize-not-utf8"),
    pytest.param("/bind", b'{"PodName": "a"}', id="bind-without-node"),
    pytest.param("/bind", b'{"PodName": 3, "Node": "big"}', id="bind-name-not-string"),
]


@pytest.mark.parametrize("path, raw", BAD_BODIES)
def test_malformed_body_is_400_json(client, path, raw):
    r = client.post(path, data=raw)
    assert r.status_code == 400
    assert r.get_json()["error"]


def test_oversize_body_is_413(client):
    body = {"Pod": vm_pod("a"), "NodeNames": [f"node-{i}" for i in range(10000)]}
    r = client.post("/filter", json=body)
    assert r.status_code == 413
    assert "error" in r.get_json()


def test_not_ready_answers_200_with_error(api):
    client = Client(ExtenderApp(WatchedCluster(), Settings(), api=api))
    r = client.post("/filter", json={"Pod": vm_pod("a"), "NodeNames": ["big"]})
    assert r.status_code == 200 and r.get_json()["Error"] == NOT_READY
    r = client.post("/bind", json={"PodName": "a", "PodNamespace": "default", "Node": "big"})
    assert r.status_code == 200 and r.get_json() == {"Error": NOT_READY}
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_bind_writes_binding_and_reports_success(client, state, api):
    state.apply_pod("ADDED", vm_pod("a"))
    r = client.post("/bind", json={"PodName": "a", "PodNamespace": "default",
                                   "PodUID": "uid-a", "Node": "big"})
    assert r.get_json() == {"Error": ""}
    assert api.bindings == [("default", "a", "big")]
    assert state.usage("big").memory > 4 * GiB


def test_bind_uid_mismatch_is_an_error(client, state, api):
    state.apply_pod("ADDED", vm_pod("a"))
    out = client.post("/bind", json={"PodName": "a", "PodNamespace": "default",
                                     "PodUID": "other", "Node": "big"}).get_json()
    assert "pod not found" in out["Error"] and api.bindings == []


def test_metrics_count_rejections_by_category(client):
    client.post("/filter", json={"Pod": vm_pod("a"), "NodeNames": NAMES})
    text = client.get("/metrics").text()
    assert 'podvirt_extender_nodes_rejected_total{category="memory"} 1.0' in text
    assert 'podvirt_extender_nodes_rejected_total{category="kvm"} 1.0' in text
    assert "podvirt_extender_filter_seconds_count 1.0" in text
    assert "podvirt_extender_ready 1.0" in text


def test_memoized_verdicts_follow_state_changes(client, state):
    body = {"Pod": vm_pod("a"), "NodeNames": ["big", "small"]}
    assert client.post("/filter", json=body).get_json()["NodeNames"] == ["big"]
    state.apply_pod("ADDED", plain_pod("hog", node="big", memory="62Gi"))
    out = client.post("/filter", json=body).get_json()
    assert out["NodeNames"] == [] and out["FailedNodes"]["big"].endswith("2Gi free")
    state.apply_pod("DELETED", plain_pod("hog", node="big", memory="62Gi"))
    assert client.post("/filter", json=body).get_json()["NodeNames"] == ["big"]


def test_streamed_body_over_the_cap_is_413(client):
    # No Content-Length (chunked): the cap is found while reading.
    r = client.request("POST", "/filter", b" " * (CAP + 1))
    assert r.status_code == 413 and "exceeds" in r.get_json()["error"]


@pytest.mark.parametrize("declared, drained", [
    pytest.param(CAP + 1, True, id="over-cap-drained"),
    pytest.param(DRAIN_FACTOR * CAP + 1, False, id="far-over-cap-not-read"),
])
def test_declared_body_over_the_cap_is_413(client, declared, drained):
    # Within DRAIN_FACTOR x cap the body is read off first, so the 413 reaches a client
    # still sending; a larger one is not worth the reading.
    r = client.request("POST", "/filter", b" " * 8192, headers={"content-length": str(declared)})
    assert r.status_code == 413 and f"{declared} bytes" in r.get_json()["error"]
    assert (r.chunks_read > 0) == drained


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nothing", 404), ("GET", "/filter", 405), ("POST", "/readyz", 405),
    ("PUT", "/bind", 405),
])
def test_routes(client, method, path, status):
    r = client.request(method, path)
    assert r.status_code == status and r.get_json()["error"]


def test_an_unexpected_error_is_503_without_a_traceback(state, api, caplog):
    app = ExtenderApp(state, Settings(), api=api)
    app.verbs = None        # any verb now fails inside the HTTP layer itself
    r = Client(app).post("/filter", json={"Pod": vm_pod("a"), "NodeNames": NAMES})
    assert r.status_code == 503 and r.get_json() == {"error": "internal error: AttributeError"}
    assert "unexpected error" in caplog.text
