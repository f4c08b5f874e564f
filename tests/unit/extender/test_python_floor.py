"""bench/extender_python_floor.py, the no-decision Python extender scheduler_bench swaps in:
it must pass every node it is offered (even one the extender would refuse), bind by the
Binding alone, and speak the protocol as the extender does, or its numbers mean nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from podvirt.extender.app import ExtenderApp
from podvirt.extender.state import WatchedCluster
from tests.unit.extender.objects import FakeApi, node_json, vm_pod
from tests.unit.extender.rsgi import Client

FLOOR = Path(__file__).parents[3] / "bench" / "extender_python_floor.py"


@pytest.fixture(scope="module")
def floor():
    spec = importlib.util.spec_from_file_location("extender_python_floor", FLOOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synced(nodes=(), pods=()) -> WatchedCluster:
    state = WatchedCluster()
    state.replace_nodes(nodes)
    state.replace_pods(pods)
    return state


def floor_client(floor, state: WatchedCluster, api: FakeApi) -> Client:
    """The floor as extender_python_floor.main serves it: podvirt's app with its verbs."""
    return Client(ExtenderApp(state, api=api, verbs=floor.FloorVerbs(api)))


def post(client, path, body):
    resp = client.post(path, data=json.dumps(body).encode())
    return resp.status_code, resp.get_json()


def test_filter_passes_every_node_offered_without_deciding(floor):
    # 1Gi nodes: the real extender refuses a 4Gi VM on both, and knows neither "ghost".
    state = synced([node_json("small-a", memory="1Gi"), node_json("small-b", memory="1Gi")])
    client = floor_client(floor, state, FakeApi())
    names = ["small-a", "small-b", "ghost"]
    status, body = post(client, "/filter", {"Pod": vm_pod("vm-1"), "NodeNames": names})
    assert status == 200
    # The extender's reply to a pod every node fits, byte for byte.
    assert body == {"Nodes": None, "NodeNames": names, "FailedNodes": {},
                    "FailedAndUnresolvableNodes": {}, "Error": ""}


def test_filter_decodes_as_the_extender_does(floor):
    client = floor_client(floor, synced(), FakeApi())
    status, body = post(client, "/filter", {"Pod": {"metadata": "x"}, "NodeNames": []})
    assert status == 400 and "metadata" in body["error"]


def test_bind_creates_the_binding_and_nothing_else(floor):
    api = FakeApi()
    client = floor_client(floor, synced([node_json("n1", memory="1Gi")]), api)
    status, body = post(client, "/bind", {"PodName": "vm-1", "PodNamespace": "ns",
                                          "PodUID": "uid-1", "Node": "n1"})
    assert (status, body) == (200, {"Error": ""})
    assert api.bindings == [("ns", "vm-1", "n1")] and api.patches == []


def test_bind_failure_reaches_the_scheduler(floor):
    client = floor_client(floor, synced(), FakeApi(fail_binding=True))
    status, body = post(client, "/bind", {"PodName": "vm-1", "PodNamespace": "ns",
                                          "Node": "n1"})
    assert status == 200 and body["Error"] == "binding ns/vm-1: apiserver unavailable"


def test_ready_once_nodes_and_pods_are_listed(floor):
    state = WatchedCluster()
    client = floor_client(floor, state, FakeApi())
    assert client.get("/readyz").status_code == 503
    state.replace_nodes([])
    state.replace_pods([])
    assert client.get("/readyz").status_code == 200
