"""The cluster's certificates: one CA signs every serving and client certificate.

One CA keeps trust simple: the admin kubeconfig, the API server's --client-ca-file and the
webhook's caBundle all name the same ca.crt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from podvirt.certs import generate_ca, issue_cert, write_pem_files
from podvirt.cluster.node import NODE_IP, NODE_NAME

LOOPBACK_SANS = ("127.0.0.1", "localhost")
# With a real node the API server also listens on the node's bridge address, where pods
# reach it through the `kubernetes` Service (10.96.0.1).
APISERVER_SANS = (*LOOPBACK_SANS, NODE_IP, "kubernetes", "kubernetes.default",
                  "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.96.0.1")


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files under DIR (all exist once `create` returns)."""
    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def pair(self, stem: str) -> tuple[Path, Path]:
        return self.dir / f"{stem}.crt", self.dir / f"{stem}.key"


def _service_account_keys() -> tuple[bytes, bytes]:
    # The API server signs service-account tokens with this key and verifies them with its
    # public half; it is a bare key pair, not a certificate.
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def create(directory: Path) -> Pki:
    """CA; serving certs of the API server, the webhook, the extender and the real node's
    kubelet; client certs of the admin (system:masters), the API server towards kubelets,
    kube-controller-manager, kube-proxy and the node (each the identity its default RBAC
    binding or the Node authorizer expects)."""
    ca_crt, ca_key = generate_ca("podvirt-local-ca")
    files = {"ca.crt": ca_crt, "ca.key": ca_key}
    leaves = {
        "apiserver": ("kube-apiserver", APISERVER_SANS, False, None),
        "admin": ("podvirt-admin", (), True, "system:masters"),
        "webhook": ("podvirt-webhook", LOOPBACK_SANS, False, None),
        "extender": ("podvirt-extender", LOOPBACK_SANS, False, None),
        "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", (), True, "system:masters"),
        "controller-manager": ("system:kube-controller-manager", (), True, None),
        "kube-proxy": ("system:kube-proxy", (), True, None),
        "node": (f"system:node:{NODE_NAME}", (), True, "system:nodes"),
        "kubelet": (f"system:node:{NODE_NAME}", (NODE_IP, NODE_NAME, *LOOPBACK_SANS), False, None),
    }
    for stem, (cn, sans, client, org) in leaves.items():
        crt, key = issue_cert(ca_crt, ca_key, cn, sans, client=client, organization=org)
        files[f"{stem}.crt"], files[f"{stem}.key"] = crt, key
    files["sa.key"], files["sa.pub"] = _service_account_keys()
    write_pem_files(directory, files)
    return Pki(directory)
