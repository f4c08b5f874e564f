"""bench/extender_servers.py, podvirt's verbs on granian (RSGI) and uvicorn (ASGI): each must
answer every request exactly as the shipped Flask app does (same verbs, same bodies, same
statuses), or scheduler_bench's comparison of the stacks measures something else."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from podvirt.extender.app import Settings, SchedulingVerbs, create_app
from podvirt.extender.state import WatchedCluster
from tests.unit.extender.objects import FakeApi, http_cluster, plain_pod, vm_pod

BENCH = Path(__file__).parents[3] / "bench"
CAP = 64 * 1024


@pytest.fixture(scope="module")
def servers():
    pytest.importorskip("granian")
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("extender_servers",
                                                      BENCH / "extender_servers.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


class Headers(dict):
    """RSGI headers: lower-case names, get()."""


class Scope:
    def __init__(self, method: str, path: str, headers: dict[str, str]):
        self.method, self.path, self.headers = method, path, Headers(headers)


def chunked(raw: bytes, size: int = 4096) -> list[bytes]:
    return [raw[i:i + size] for i in range(0, len(raw), size)]


class Proto:
    """The RSGI HTTP protocol: the body in chunks, one response."""

    def __init__(self, body: bytes):
        self.chunks = chunked(body)
        self.response: tuple[int, dict, bytes] | None = None

    def __aiter__(self):
        async def chunks():
            for c in self.chunks:
                yield c
        return chunks()

    def response_bytes(self, status: int, headers: list, body: bytes) -> None:
        assert self.response is None, "answered twice"
        self.response = (status, dict(headers), body)


state = http_cluster


def rsgi(app, raw: bytes, method: str, path: str,
         headers: dict[str, str]) -> tuple[int, dict, bytes]:
    proto = Proto(raw)
    asyncio.run(app(Scope(method, path, headers), proto))
    assert proto.response is not None, "no response"
    return proto.response


def asgi(app, raw: bytes, method: str, path: str,
         headers: dict[str, str]) -> tuple[int, dict, bytes]:
    parts = chunked(raw) or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                for i, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    start, body = sent
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body["body"]


@pytest.fixture(params=[("RSGIExtender", rsgi), ("ASGIExtender", asgi)], ids=["rsgi", "asgi"])
def serve(request, servers):
    app_class, adapter = getattr(servers, request.param[0]), request.param[1]

    def call(raw: bytes, method: str = "POST", path: str = "/filter",
             declared: int | None = None, cluster: WatchedCluster | None = None,
             api: FakeApi | None = None) -> tuple[int, object]:
        cluster = cluster or state()
        verbs = SchedulingVerbs(cluster, Settings(max_body_bytes=CAP), api or FakeApi(),
                                CollectorRegistry())
        app = app_class(verbs, cluster, CAP)
        headers = {} if declared is None else {"content-length": str(declared)}
        try:
            status, headers, body = adapter(app, raw, method, path, headers)
        finally:
            app.binds.shutdown()
        assert headers["content-type"] == "application/json"
        return status, json.loads(body)
    return call


def flask(raw: bytes, path: str = "/filter", api: FakeApi | None = None) -> tuple[int, object]:
    client = create_app(state(), Settings(max_body_bytes=CAP), api=api or FakeApi()).test_client()
    r = client.post(path, data=raw, content_type="application/json")
    return r.status_code, r.get_json()


NAMES = ["big", "small", "nokvm", "ghost"]


@pytest.mark.parametrize("path, body", [
    pytest.param("/filter", {"Pod": vm_pod("a"), "NodeNames": NAMES}, id="filter-vm"),
    pytest.param("/filter", {"Pod": plain_pod("web"), "NodeNames": NAMES}, id="filter-plain"),
    pytest.param("/prioritize", {"Pod": vm_pod("a"), "NodeNames": NAMES}, id="prioritize"),
    pytest.param("/filter", {"Pod": vm_pod("a")}, id="no-nodes"),
    pytest.param("/filter", [1, 2], id="not-args"),
    pytest.param("/bind", {"PodName": "a", "PodNamespace": "default", "PodUID": "",
                           "Node": "big"}, id="bind-unknown-pod"),
])
def test_answers_as_the_shipped_app(serve, path, body):
    raw = json.dumps(body).encode()
    assert serve(raw, path=path) == flask(raw, path=path)


def test_bind_binds_through_the_api(serve):
    cluster, api = state(), FakeApi()
    cluster.apply_pod("ADDED", vm_pod("a"))
    raw = json.dumps({"PodName": "a", "PodNamespace": "default", "PodUID": "uid-a",
                      "Node": "big"}).encode()
    assert serve(raw, path="/bind", cluster=cluster, api=api) == (200, {"Error": ""})
    assert api.bindings == [("default", "a", "big")]


@pytest.mark.parametrize("raw, declared, status", [
    pytest.param(b"{not json", None, 400, id="not-json"),
    pytest.param(b"x" * (CAP + 1), None, 413, id="streamed-over-cap"),
    pytest.param(b"{}", CAP + 1, 413, id="declared-over-cap"),
])
def test_bad_bodies(serve, raw, declared, status):
    got, out = serve(raw, declared=declared)
    assert got == status and out["error"]


def test_routes(serve):
    assert serve(b"", method="GET", path="/nothing")[0] == 404
    assert serve(b"", method="GET", path="/readyz") == (200, {"status": "ok"})
    assert serve(b"", method="GET", path="/readyz", cluster=WatchedCluster())[0] == 503
