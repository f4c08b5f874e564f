"""Certificate generation (pure) and `podvirt certs` (files, modes, CA reuse)."""

from __future__ import annotations

import base64
import ipaddress
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from podvirt.certs import CertError, generate_ca, issue_cert, serving_sans


@pytest.fixture(scope="module")
def ca():
    return generate_ca("test-ca")


def _verify(ca_pem: bytes, leaf_pem: bytes) -> x509.Certificate:
    ca_cert, leaf = x509.load_pem_x509_certificate(ca_pem), x509.load_pem_x509_certificate(leaf_pem)
    leaf.verify_directly_issued_by(ca_cert)
    return leaf


def test_serving_cert_sans_and_usage(ca):
    sans = serving_sans("hook", "ns", ["extra.example", "10.0.0.1"])
    leaf = _verify(ca[0], issue_cert(*ca, "hook.ns.svc", sans)[0])
    ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ext.get_values_for_type(x509.DNSName) == [
        "hook.ns.svc", "hook.ns.svc.cluster.local", "hook", "hook.ns", "localhost",
        "extra.example"]
    assert ext.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                      ipaddress.ip_address("10.0.0.1")]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_cert_carries_group(ca):
    leaf = _verify(ca[0], issue_cert(*ca, "system:admin", [], client=True,
                                     organization="system:masters")[0])
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value \
        == "system:masters"
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize("mutate, error", [
    pytest.param(lambda ca, other: (ca[0], other[1]), "does not belong", id="mismatched-ca-key"),
    pytest.param(lambda ca, other: (b"junk", ca[1]), "unreadable", id="garbage-ca"),
])
def test_bad_ca_rejected(ca, mutate, error):
    with pytest.raises(CertError, match=error):
        issue_cert(*mutate(ca, generate_ca("other")), "x", ["x"])


@pytest.mark.parametrize("san", [pytest.param("has space", id="space"),
                                 pytest.param("", id="empty")])
def test_bad_san_rejected(ca, san):
    with pytest.raises(CertError):
        issue_cert(*ca, "x", [san])


def run_certs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podvirt.cli", "certs", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_writes_files_and_reuses_ca(tmp_path):
    first = run_certs("--out", str(tmp_path), "--print-ca-bundle", "--client", "system:admin")
    assert first.returncode == 0, first.stderr
    ca_pem = (tmp_path / "ca.crt").read_bytes()
    assert base64.b64decode(first.stdout.strip()) == ca_pem
    for name in ("ca.key", "tls.key", "system-admin.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    old_tls = (tmp_path / "tls.crt").read_bytes()
    second = run_certs("--out", str(tmp_path))
    assert second.returncode == 0 and "reusing CA" in second.stderr
    assert (tmp_path / "ca.crt").read_bytes() == ca_pem
    new_tls = (tmp_path / "tls.crt").read_bytes()
    assert new_tls != old_tls
    _verify(ca_pem, new_tls)


def test_cli_reports_bad_san(tmp_path):
    result = run_certs("--out", str(tmp_path), "--san", "bad name")
    assert result.returncode == 1 and "SAN" in result.stderr and "Traceback" not in result.stderr
