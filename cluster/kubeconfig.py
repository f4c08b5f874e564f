"""The admin kubeconfig: a plain document, rendered from paths so tests can read it back."""

from __future__ import annotations

from pathlib import Path

import yaml

CONTEXT = "podvirt"


def render(server: str, ca: Path, client_cert: Path, client_key: Path) -> dict:
    """A kubeconfig with one cluster/user/context, referring to the PEM files by path."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": CONTEXT, "cluster": {"server": server,
                                                   "certificate-authority": str(ca)}}],
        "users": [{"name": "admin", "user": {"client-certificate": str(client_cert),
                                             "client-key": str(client_key)}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "admin"}}],
    }


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
