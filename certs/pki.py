"""Certificates for podvirt's TLS endpoints, as pure functions from names to PEM bytes.

ECDSA P-256 keys: the kube-apiserver accepts them, and they make TLS handshakes cheaper
than RSA, which matters when the API server opens fresh connections under load.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365
# Backdating absorbs clock skew between the machine that issues and the one that verifies.
_BACKDATE = dt.timedelta(minutes=5)


class CertError(ValueError):
    """Input that cannot become a certificate (bad SAN, key that does not match)."""


def serving_sans(service: str, namespace: str, extra: Iterable[str] = ()) -> list[str]:
    """Every name the API server or a local client may use to reach a Service."""
    names = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local",
             service, f"{service}.{namespace}", "localhost", "127.0.0.1", *extra]
    return list(dict.fromkeys(n.strip() for n in names if n.strip()))


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _general_name(san: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        pass
    if not san or any(c.isspace() for c in san) or len(san) > 253:
        raise CertError(f"SAN {san!r} is neither an IP address nor a DNS name")
    return x509.DNSName(san)


def generate_ca(common_name: str, *, days: int = CA_DAYS) -> tuple[bytes, bytes]:
    """A self-signed CA that may only sign leaf certificates: (cert_pem, key_pem)."""
    key = _new_key()
    now = dt.datetime.now(dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_cert(ca_cert_pem: bytes, ca_key_pem: bytes, common_name: str, sans: Iterable[str],
               *, client: bool = False, organization: str | None = None,
               days: int = LEAF_DAYS) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the CA: a server cert, or with client=True a client cert
    whose organization is the Kubernetes group (e.g. system:masters)."""
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except ValueError as exc:
        raise CertError(f"unreadable CA certificate or key: {exc}") from None
    if ca_cert.public_key().public_numbers() != ca_key.public_key().public_numbers():
        raise CertError("the CA key does not belong to the CA certificate")
    key = _new_key()
    now = dt.datetime.now(dt.timezone.utc)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name, organization)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - _BACKDATE).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                            crl_sign=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_cert.public_key()), critical=False))
    names = [_general_name(s) for s in dict.fromkeys(sans)]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    elif not client:
        raise CertError("a serving certificate needs at least one SAN")
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)
