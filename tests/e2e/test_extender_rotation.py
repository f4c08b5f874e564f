"""The extender's certificate rotated twice while the real kube-scheduler schedules VM pods
through it over HTTP/2: every pod is bound without one failed scheduling attempt, and the
new certificate is what the port serves (extender/serve.py hands the port over).

kube-scheduler keeps one HTTP/2 connection, so what this shows is the old server's GOAWAY
and its calls in flight finishing, and the client moving to the new server. New
connections racing the handover (a TLS handshake each) are tests/hardening/test_tls.py's
rotation test; the steering that keeps them is tests/unit/test_reuseport.py's."""

from __future__ import annotations

import os
import threading
import time

from cryptography import x509

from podvirt.vmspec import keys as k

from tests.e2e.test_extender import vm_pod
from tests.hardening.services import served_serial

PODS = 40


def _rotate(cluster) -> int:
    """A new extender pair from the same CA, written as a Secret volume update would."""
    from podvirt.certs import issue_cert
    from podvirt.cluster.pki import LOOPBACK_SANS
    pki = cluster.layout.pki
    crt, key = issue_cert((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes(),
                          "podvirt-extender", LOOPBACK_SANS)
    for path, data in ((pki / "extender.key", key), (pki / "extender.crt", crt)):
        tmp = path.with_suffix(".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return x509.load_pem_x509_certificate(crt).serial_number


def _wait_served(port: int, ca: str, serial: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while served_serial(port, ca) != serial:
        assert time.monotonic() < deadline, "the rotated certificate was never served"
        time.sleep(0.2)


def test_rotation_while_scheduling_loses_no_call(cluster, core, namespace):
    port, ca = cluster.port("extender"), str(cluster.ca_file)
    core.create_namespaced_pod(namespace, vm_pod("warm"))    # the scheduler's connection open
    created, errors = [], []

    def create_pods() -> None:
        for i in range(PODS):
            try:
                core.create_namespaced_pod(namespace, vm_pod(f"vm-{i:02d}", **{
                    k.MEMORY: "256Mi"}))
                created.append(i)
            except Exception as exc:    # noqa: BLE001 - reported by the assertion below
                errors.append(repr(exc))
            time.sleep(0.1)

    creator = threading.Thread(target=create_pods)
    creator.start()
    try:
        for _ in range(2):
            time.sleep(1.0)
            _wait_served(port, ca, _rotate(cluster))
    finally:
        creator.join()
    assert not errors, errors[:3]

    deadline = time.monotonic() + 60
    while True:
        pods = core.list_namespaced_pod(namespace).items
        unbound = [p.metadata.name for p in pods if not p.spec.node_name]
        if not unbound or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(pods) == PODS + 1 and not unbound, unbound
    failures = core.list_namespaced_event(namespace, field_selector="reason=FailedScheduling")
    assert not failures.items, [e.message for e in failures.items][:5]
