"""A real `podvirt webhook` (gunicorn, 2 gevent workers, TLS) on a loopback port."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography import x509

from podvirt.vmspec import keys as k
from tests import drainlib

pytestmark = pytest.mark.timeout(120)


def post_review(wp, review: dict, session=requests) -> dict:
    resp = session.post(wp.url + "/mutate", json=review, verify=wp.certs / "ca.crt", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["response"]


def metric(wp, name: str) -> float:
    text = requests.get(wp.url + "/metrics", verify=wp.certs / "ca.crt", timeout=10).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def served_serial(wp, *, max_version=None) -> int:
    ctx = ssl.create_default_context(cafile=str(wp.certs / "ca.crt"))
    if max_version:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")   # let the client offer old protocols
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = max_version
    with socket.create_connection(("127.0.0.1", wp.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_review_over_https(live_webhook, make_pod, make_review):
    review = make_review(make_pod())
    r = post_review(live_webhook, review)
    assert r["uid"] == review["request"]["uid"] and r["allowed"] is True
    ops = json.loads(base64.b64decode(r["patch"]))
    assert any(op["path"] == "/spec/containers" for op in ops)
    denied = post_review(live_webhook, make_review(make_pod({k.MEMORY: "x"})))
    assert denied["allowed"] is False and k.MEMORY in denied["status"]["message"]


def test_one_json_log_line_per_review(live_webhook, make_pod, make_review):
    # Lines from two workers share one stderr; each must arrive whole (loglines.LineHandler).
    uids = set()
    for _ in range(20):
        review = make_review(make_pod())
        uids.add(review["request"]["uid"])
        post_review(live_webhook, review)
    lines = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not uids <= lines.keys():
        for raw in live_webhook.log.read_text().splitlines():
            if raw.startswith("{"):
                line = json.loads(raw)
                lines[line["uid"]] = line
        time.sleep(0.05)
    assert uids <= lines.keys()
    assert {lines[uid]["outcome"] for uid in uids} == {"mutated"}
    assert all(lines[uid]["duration_ms"] >= 0 for uid in uids)


def test_default_level_logs_only_refused_reviews(webhook_process, cert_dir, make_pod,
                                                 make_review):
    wp = webhook_process(cert_dir, workers=1)
    admitted, denied = make_review(make_pod()), make_review(make_pod({k.MEMORY: "x"}))
    assert post_review(wp, admitted)["allowed"] and not post_review(wp, denied)["allowed"]
    deadline, lines = time.monotonic() + 5, []
    while time.monotonic() < deadline and not lines:
        lines = [json.loads(raw) for raw in wp.log.read_text().splitlines() if raw.startswith("{")]
        time.sleep(0.05)
    assert [(line["uid"], line["outcome"]) for line in lines] == [
        (denied["request"]["uid"], "denied")]


def test_metrics_add_up_across_workers(live_webhook, make_pod, make_review):
    before = metric(live_webhook, 'podvirt_webhook_reviews_total{outcome="mutated"}')
    n = 60

    def one(_):   # a fresh connection each: the two workers race to accept them
        return post_review(live_webhook, make_review(make_pod()))["allowed"]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(n)))
    after = metric(live_webhook, 'podvirt_webhook_reviews_total{outcome="mutated"}')
    assert after - before == n
    # Each worker keeps its own value files: both must have served, and been summed.
    files = list(Path(live_webhook.tmp).glob("podvirt-webhook-metrics-*/counter_*.db"))
    worker_pids = {f.stem.split("_")[1] for f in files} - {str(live_webhook.proc.pid)}
    assert len(worker_pids) == 2
    reviews = [json.loads(line) for line in live_webhook.log.read_text().splitlines()
               if line.startswith("{")]
    assert sum(r["outcome"] == "mutated" for r in reviews) >= n


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
@pytest.mark.parametrize("version, accepted", [
    pytest.param(ssl.TLSVersion.TLSv1_1, False, id="tls1.1-refused"),
    pytest.param(ssl.TLSVersion.TLSv1_2, True, id="tls1.2-accepted"),
])
def test_minimum_tls_version(live_webhook, version, accepted):
    if accepted:
        assert served_serial(live_webhook, max_version=version)
    else:
        # The server's alert, not the client's own refusal to offer TLS 1.1.
        with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
            served_serial(live_webhook, max_version=version)


def test_certificate_rotation_without_restart(live_webhook):
    old = served_serial(live_webhook)
    # `podvirt certs` on the same directory keeps the CA and issues a new serving cert.
    subprocess.run([sys.executable, "-m", "podvirt.cli", "certs", "--out",
                    str(live_webhook.certs)], check=True, capture_output=True, timeout=60)
    new = x509.load_pem_x509_certificate((live_webhook.certs / "tls.crt").read_bytes())
    assert new.serial_number != old
    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline:
        seen = [served_serial(live_webhook) for _ in range(6)]   # reaches both workers
        if set(seen) == {new.serial_number}:
            break
        time.sleep(0.2)
    assert set(seen) == {new.serial_number}
    assert live_webhook.proc.poll() is None


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_sigterm_drains_then_exits(webhook_process, cert_dir, make_pod, make_review,
                                   worker_class):
    """Readiness fails first, a review in flight is answered, idle keep-alive connections
    are closed by the server and the process exits within seconds: with one idle
    connection open it used to wait for gunicorn's graceful timeout (30 s)."""
    wp = webhook_process(cert_dir, f"--worker-class={worker_class}", "--drain-seconds=2")
    ca = str(cert_dir / "ca.crt")
    conns = drainlib.idle_connections(wp.port, ca, 10)
    review = make_review(make_pod())
    slow = drainlib.SlowPost(wp.port, ca, "/mutate", json.dumps(review).encode())

    answer, sent = drainlib.drain_in_flight(wp.proc, wp.port, ca, conns, slow)
    response = json.loads(answer.body)["response"]
    assert response["uid"] == review["request"]["uid"] and response["allowed"] is True
    seconds = drainlib.exit_seconds(wp.proc, sent)
    assert wp.proc.returncode == 0, wp.log.read_text()[-2000:]
    assert seconds < 10, f"exited {seconds:.1f}s after SIGTERM"
    assert "Traceback" not in wp.log.read_text()
