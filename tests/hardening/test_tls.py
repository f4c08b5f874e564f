"""TLS on the real webhook and extender: TLS < 1.2 and plaintext refused; certificates
rotated on disk are served to new connections while a client keeps posting, with no
request failing."""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
from cryptography import x509

from tests.hardening import fuzzlib, services
from tests.hardening.figures import figure


@pytest.fixture(params=["webhook", "extender"])
def tls_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[services.Service]:
    """A service of its own with its own certificate files, which the test may rotate."""
    certs = services.make_certs(tmp_path / "certs")
    if request.param == "webhook":
        svc = services.webhook(certs, tmp_path / "webhook.log", workers=1)
    else:
        hcluster = request.getfixturevalue("hcluster")
        svc = services.extender(tmp_path / "extender.log", kubeconfig=Path(hcluster.kubeconfig),
                                certs=certs)
    svc.certs = certs     # type: ignore[attr-defined]
    with services.running(svc):
        yield svc
    assert not svc.tracebacks(), svc.tracebacks()[0]


def _handshake(port: int, version: ssl.TLSVersion, ca: str) -> ssl.TLSVersion:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")     # let the client offer old protocols at all
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                    "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}[tls.version()]


@pytest.mark.parametrize("version, accepted", [
    pytest.param(ssl.TLSVersion.TLSv1, False, id="tls1.0"),
    pytest.param(ssl.TLSVersion.TLSv1_1, False, id="tls1.1"),
    pytest.param(ssl.TLSVersion.TLSv1_2, True, id="tls1.2"),
    pytest.param(ssl.TLSVersion.TLSv1_3, True, id="tls1.3"),
])
# The old versions are offered on purpose, to see the servers refuse them.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_protocol_versions(tls_service: services.Service, version: ssl.TLSVersion,
                           accepted: bool) -> None:
    if accepted:
        assert _handshake(tls_service.port, version, tls_service.verify) == version
        return
    with pytest.raises(ssl.SSLError) as err:
        _handshake(tls_service.port, version, tls_service.verify)
    if "NO_PROTOCOLS_AVAILABLE" in str(err.value) or "NO_CIPHERS" in str(err.value):
        pytest.skip(f"this OpenSSL cannot even offer {version.name}: {err.value}")
    # The server's refusal, not a local limitation: a protocol-version alert.
    assert "VERSION" in str(err.value).upper() or "HANDSHAKE" in str(err.value).upper(), err.value


def test_plaintext_on_tls_port_gets_no_answer(tls_service: services.Service) -> None:
    body = json.dumps(fuzzlib.review(fuzzlib.pod(fuzzlib.SEED_ANNOTATIONS[0]))).encode()
    request = (b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    with socket.create_connection(("127.0.0.1", tls_service.port), timeout=5) as s:
        s.sendall(request)
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert b"AdmissionReview" not in answer and not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    # The service survived it.
    assert requests.get(tls_service.url + "/healthz", verify=tls_service.verify,
                        timeout=5).status_code == 200


def test_rotation_without_dropped_requests(tls_service: services.Service, tmp_path: Path) -> None:
    certs: services.Certs = tls_service.certs    # type: ignore[attr-defined]
    endpoint = "/mutate" if tls_service.name == "webhook" else "/prioritize"
    body = json.dumps(fuzzlib.review(fuzzlib.pod(fuzzlib.SEED_ANNOTATIONS[0])) if endpoint == "/mutate"
                      else {"Pod": fuzzlib.pod(fuzzlib.SEED_ANNOTATIONS[0]),
                            "NodeNames": ["hw-0"]}).encode()
    ok, failures, stop = [0], [], threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:   # a new connection each time, so every request does a handshake
                r = requests.post(tls_service.url + endpoint, data=body, verify=tls_service.verify,
                                  headers={"Connection": "close"}, timeout=10)
                (ok.__setitem__(0, ok[0] + 1) if r.status_code == 200
                 else failures.append(f"HTTP {r.status_code}"))
            except requests.RequestException as exc:
                failures.append(repr(exc))

    old_serial = services.served_serial(tls_service.port, str(certs.ca))
    # The new pair from the same CA (a rotation, not a CA change).
    from podvirt.certs import issue_cert, serving_sans
    crt, key = issue_cert(certs.ca.read_bytes(), (certs.ca.parent / "ca.key").read_bytes(),
                          "podvirt-webhook", serving_sans("podvirt-webhook", "podvirt"))
    new_serial = x509.load_pem_x509_certificate(crt).serial_number
    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    before_rotation = ok[0]
    for path, data in ((certs.key, key), (certs.cert, crt)):   # as a Secret volume update would
        tmp = path.with_suffix(".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        time.sleep(0.2)     # the key is new, the cert still old: a mismatched moment
    deadline = time.monotonic() + 10
    served = old_serial
    while time.monotonic() < deadline and served != new_serial:
        served = services.served_serial(tls_service.port, str(certs.ca))
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    figure(f"tls_rotation_{tls_service.name}",
           f"requests={ok[0]} failed={len(failures)} new_cert_served={served == new_serial}")
    assert before_rotation > 0 and ok[0] > before_rotation
    assert not failures, failures[:5]
    assert served == new_serial, "the rotated certificate was never served"
