"""The chart's certificate hook script (charts/podvirt/files/certs_hook.py): its pure decisions."""

from __future__ import annotations

import datetime as dt
import importlib.util
from functools import cache
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helm import CHART

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
MONTH = dt.timedelta(days=30)
NAMES = ["pv-podvirt-webhook", "pv-podvirt-webhook.podvirt.svc"]


@cache
def hook_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("certs_hook", CHART / "files" / "certs_hook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def self_signed(names: list[str] | None, not_after: dt.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - MONTH).not_valid_after(not_after))
    if names is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("pem, expected", [
    pytest.param(lambda: self_signed(NAMES, NOW + 12 * MONTH), "", id="good-kept"),
    pytest.param(lambda: self_signed(NAMES + ["extra"], NOW + 12 * MONTH), "", id="more-names-kept"),
    pytest.param(lambda: self_signed(NAMES, NOW + MONTH / 2), "expires", id="expiring"),
    pytest.param(lambda: self_signed(NAMES, NOW - MONTH), "expires", id="expired"),
    pytest.param(lambda: self_signed(NAMES[:1], NOW + 12 * MONTH), "lacks names pv-podvirt-webhook.podvirt.svc",
                 id="missing-name"),
    pytest.param(lambda: self_signed(None, NOW + 12 * MONTH), "no subjectAltName", id="no-san"),
    pytest.param(lambda: self_signed(None, NOW + 12 * MONTH), "", id="ca-no-names-kept"),
    pytest.param(lambda: self_signed(None, NOW + MONTH / 2), "expires", id="ca-expiring"),
    pytest.param(lambda: b"", "not valid PEM", id="empty"),
    pytest.param(lambda: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                 "not valid PEM", id="garbage"),
])
def test_renewal_reason(request, pem, expected):
    names = [] if request.node.callspec.id.startswith("ca-") else NAMES
    reason = hook_module().renewal_reason(pem(), names, NOW, MONTH)
    if expected:
        assert expected in reason
    else:
        assert reason == ""


@pytest.mark.parametrize("webhooks, expected_paths", [
    pytest.param([{"name": "a", "clientConfig": {"service": {}}}], ["/webhooks/0/clientConfig/caBundle"],
                 id="missing"),
    pytest.param([{"name": "a", "clientConfig": {"caBundle": "old"}},
                  {"name": "b", "clientConfig": {"caBundle": "Q0E="}}],
                 ["/webhooks/0/clientConfig/caBundle"], id="one-stale"),
    pytest.param([{"name": "a", "clientConfig": {"caBundle": "Q0E="}}], [], id="current"),
    pytest.param([], [], id="no-webhooks"),
])
def test_ca_bundle_patch(webhooks, expected_paths):
    patch = hook_module().ca_bundle_patch(webhooks, "Q0E=")
    assert [op["path"] for op in patch] == expected_paths
    assert all(op == {"op": "add", "path": op["path"], "value": "Q0E="} for op in patch)


@pytest.mark.parametrize("argv", [
    pytest.param([], id="no-mode"),
    pytest.param(["secret", "--namespace", "x"], id="secret-missing-flags"),
    pytest.param(["inject", "--secret", "s"], id="inject-missing-flags"),
])
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        hook_module().main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err
