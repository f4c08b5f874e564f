"""ApiConnections against a real HTTP/1.1 server on loopback: reuse, credentials per
request, errors, and a kept connection the server closed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from podvirt.extender.apiconn import ApiConnections, ApiError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.seen.append((self.command, self.path, self.headers.get("Authorization"),
                            self.headers.get("Content-Type"), body,
                            self.client_address[1]))
        status, reply = server.answers.pop(0) if server.answers else (201, {"kind": "Binding"})
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if server.close_after_reply:
            self.close_connection = True

    do_PATCH = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.seen, srv.answers, srv.close_after_reply = [], [], False
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _config(port: int, token: list[str]) -> SimpleNamespace:
    return SimpleNamespace(
        host=f"http://127.0.0.1:{port}", proxy=None, tls_server_name=None,
        ssl_ca_cert=None, verify_ssl=True, cert_file=None, key_file=None,
        auth_settings=lambda: {"BearerToken": {"in": "header", "key": "authorization",
                                               "value": f"Bearer {token[0]}"}})


def test_requests_reuse_one_connection_and_read_credentials_each_time(server):
    token = ["first"]
    conns = ApiConnections(_config(server.server_address[1], token))
    conns.request("POST", "/api/v1/namespaces/a/bindings", {"n": 1}, "application/json")
    token[0] = "rotated"
    conns.request("PATCH", "/api/v1/namespaces/a/pods/p", {"n": 2}, "application/merge-patch+json")
    (m1, p1, auth1, ct1, b1, port1), (m2, p2, auth2, ct2, b2, port2) = server.seen
    assert (m1, p1, auth1, ct1, b1) == ("POST", "/api/v1/namespaces/a/bindings",
                                        "Bearer first", "application/json", {"n": 1})
    assert (m2, auth2, ct2, b2) == ("PATCH", "Bearer rotated", "application/merge-patch+json",
                                    {"n": 2})
    assert port1 == port2       # the same client socket: kept alive, reused


def test_a_non_2xx_answer_is_an_api_error_with_the_status_body(server):
    server.answers.append((409, {"kind": "Status", "message": "pod p is already assigned"}))
    conns = ApiConnections(_config(server.server_address[1], ["t"]))
    with pytest.raises(ApiError) as err:
        conns.request("POST", "/x", {}, "application/json")
    assert err.value.status == 409
    assert json.loads(err.value.body)["message"] == "pod p is already assigned"
    conns.request("POST", "/x", {}, "application/json")     # the connection is still usable
    assert len(server.seen) == 2


def test_a_kept_connection_the_server_closed_is_retried_once_on_a_new_one(server):
    conns = ApiConnections(_config(server.server_address[1], ["t"]))
    conns.request("POST", "/x", {"try": 1}, "application/json")
    # The server drops the kept connection (an idle timeout) without telling the client.
    server.close_after_reply = True
    conns.request("POST", "/x", {"try": 2}, "application/json")    # closes after answering
    server.close_after_reply = False
    conns.request("POST", "/x", {"try": 3}, "application/json")
    assert [seen[4]["try"] for seen in server.seen] == [1, 2, 3]   # each sent exactly once


def test_unsupported_kubeconfig_settings_are_refused():
    with pytest.raises(ValueError, match="proxy"):
        ApiConnections(SimpleNamespace(**{**vars(_config(1, ["t"])), "proxy": "http://p:3128"}))
    with pytest.raises(ValueError, match="http"):
        ApiConnections(SimpleNamespace(**{**vars(_config(1, ["t"])), "host": "ftp://x"}))
