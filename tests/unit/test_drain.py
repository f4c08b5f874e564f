"""The shutdown contract without processes: what /readyz answers while draining, the CLI
options of both servers, and the gunicorn settings they become. The behaviour of real
servers under SIGTERM is tested in tests/unit/webhook/test_server.py and
tests/e2e/test_extender_shutdown.py."""

from __future__ import annotations

import pytest

from podvirt import drain
from podvirt.cli import build_parser
from podvirt.extender.app import ExtenderApp
from podvirt.extender.state import WatchedCluster
from podvirt.webhook.app import create_app as webhook_app
from tests.unit.extender.rsgi import Client
from podvirt.workers import DrainingGeventWorker, DrainingThreadWorker, gunicorn_settings


def test_webhook_readiness_fails_while_draining_and_health_does_not():
    client = webhook_app().test_client()
    assert client.get("/readyz").status_code == 200
    draining = {drain.ENVIRON_KEY: True}
    resp = client.get("/readyz", environ_overrides=draining)
    assert resp.status_code == 503 and resp.get_json()["reason"] == drain.REASON
    # Liveness stays green: a draining pod must not be restarted.
    assert client.get("/healthz", environ_overrides=draining).status_code == 200


def test_extender_readiness_fails_while_draining_and_health_does_not():
    state = WatchedCluster()
    state.replace_nodes([])
    state.replace_pods([])
    app = ExtenderApp(state)
    client = Client(app)
    assert client.get("/readyz").status_code == 200
    app.draining = True
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["reason"] == drain.REASON
    assert client.get("/healthz").status_code == 200
    # HTTP/1.1 clients are told to go; an HTTP/2 connection ends with the server's GOAWAY
    # (a Connection header is not allowed there).
    assert client.get("/healthz").headers["connection"] == "close"
    assert "connection" not in client.get("/healthz", http_version="2").headers


@pytest.mark.parametrize("command", ["webhook", "extender"])
def test_cli_defaults_drain_nothing_and_keep_gunicorns_graceful_timeout(command):
    base = [command, "--port", "9443"] + (["--cert", "c", "--key", "k"] if command == "webhook"
                                          else [])
    args = build_parser().parse_args(base)
    assert (args.drain_seconds, args.graceful_timeout) == (0, drain.GRACEFUL_TIMEOUT)
    args = build_parser().parse_args(base + ["--drain-seconds", "5", "--graceful-timeout", "10"])
    assert (args.drain_seconds, args.graceful_timeout) == (5, 10)


@pytest.mark.parametrize("flag, value, message", [
    pytest.param("--drain-seconds", "-1", "want whole seconds >= 0, got '-1'", id="negative-drain"),
    pytest.param("--drain-seconds", "1.5", "want whole seconds >= 0, got '1.5'", id="fractional"),
    pytest.param("--graceful-timeout", "0", "want whole seconds >= 1, got '0'", id="no-grace"),
])
@pytest.mark.parametrize("command", ["webhook", "extender"])
def test_cli_refuses_bad_seconds_naming_the_flag(command, flag, value, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--port", "9443", flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {message}" in err


@pytest.mark.parametrize("worker_class, base", [
    pytest.param("gevent", DrainingGeventWorker, id="gevent"),
    pytest.param("gthread", DrainingThreadWorker, id="gthread"),
])
def test_gunicorn_settings(worker_class, base):
    s = gunicorn_settings(worker_class, drain_seconds=5, graceful_timeout=10)
    assert issubclass(s["worker_class"], base) and s["worker_class"].drain_seconds == 5
    # gunicorn's arbiter counts from SIGTERM: the drain and the in-flight time, then SIGKILL.
    assert s["graceful_timeout"] == 15


@pytest.mark.parametrize("kwargs, message", [
    pytest.param({"worker_class": "sync"}, "worker class must be one of gevent, gthread",
                 id="unknown-class"),
    pytest.param({"drain_seconds": -1}, "drain seconds must be >= 0", id="negative-drain"),
])
def test_gunicorn_settings_refuse(kwargs, message):
    args = {"worker_class": "gevent", "drain_seconds": 0, "graceful_timeout": 30, **kwargs}
    with pytest.raises(ValueError, match=message):
        gunicorn_settings(args.pop("worker_class"), **args)
