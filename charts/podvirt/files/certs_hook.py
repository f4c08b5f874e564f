"""Helm hook of the podvirt chart: the webhook's serving certificate without cert-manager.

    certs_hook.py secret ...   pre-install/pre-upgrade: make sure the TLS Secret holds a
                               certificate that covers the Services' names and is not
                               about to expire; otherwise issue one with `podvirt certs`.
    certs_hook.py inject ...   post-install/post-upgrade: write the Secret's ca.crt into
                               the MutatingWebhookConfiguration's caBundle. Post, because
                               the configuration exists only once Helm has installed it.

The CA (ca.crt + ca.key) lives in its own Secret, <secret>-ca, which no pod mounts:
a renewal signs the new serving certificate with the same CA, so the webhook's
caBundle and the scheduler's caFile stay valid. Only a CA close to its own expiry is
replaced (and the inject step re-publishes it).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509


def renewal_reason(cert_pem: bytes, names: list[str], now: dt.datetime,
                   renew_before: dt.timedelta) -> str:
    """Why the stored certificate must be replaced; "" keeps it. No names: only expiry
    counts (a CA certificate)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        return f"stored certificate is not valid PEM ({exc})"
    if cert.not_valid_after_utc - renew_before <= now:
        return f"certificate expires {cert.not_valid_after_utc:%Y-%m-%d}"
    if not names:
        return ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "certificate has no subjectAltName"
    missing = sorted(set(names) - set(san.get_values_for_type(x509.DNSName)))
    return f"certificate lacks names {', '.join(missing)}" if missing else ""


def ca_bundle_patch(webhooks: list[dict], ca_b64: str) -> list[dict]:
    """JSON patch setting every webhook's caBundle; empty when all already match."""
    return [
        {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca_b64}
        for i, hook in enumerate(webhooks)
        if hook.get("clientConfig", {}).get("caBundle") != ca_b64
    ]


def issue(service: str, namespace: str, sans: list[str],
          ca: dict[str, str] | None) -> dict[str, str]:
    """Run `podvirt certs` (which signs with the CA already in --out, if any) and return
    every file it wrote, base64-encoded as Secret data."""
    with tempfile.TemporaryDirectory() as out:
        for name, data in (ca or {}).items():
            Path(out, name).write_bytes(base64.b64decode(data))
        cmd = [os.environ.get("PODVIRT_BIN", "podvirt"), "certs", "--out", out,
               "--service", service, "--namespace", namespace]
        for name in sans:
            cmd += ["--san", name]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return {name: base64.b64encode(Path(out, name).read_bytes()).decode()
                for name in ("ca.crt", "ca.key", "tls.crt", "tls.key")}


def _core_and_admission():
    from kubernetes import client, config
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()   # outside a pod: $KUBECONFIG (tests, manual runs)
    return client, client.CoreV1Api(), client.AdmissionregistrationV1Api()


def _read_secret(core, namespace: str, name: str):
    from kubernetes.client.exceptions import ApiException
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _write_secret(client, core, namespace: str, name: str, kind: str,
                  data: dict[str, str], current) -> None:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace,
                                     labels={"app.kubernetes.io/managed-by": "podvirt-certs-hook"}),
        type=kind, data=data)
    if current is None:
        core.create_namespaced_secret(namespace, body)
        print(f"secret {namespace}/{name}: created")
    else:
        # resourceVersion makes a concurrent writer a 409 instead of a silent overwrite.
        body.metadata.resource_version = current.metadata.resource_version
        core.replace_namespaced_secret(name, namespace, body)
        print(f"secret {namespace}/{name}: replaced")


def _pem(secret, key: str) -> bytes:
    return base64.b64decode((secret.data or {}).get(key, "")) if secret is not None else b""


def ensure_secret(args: argparse.Namespace) -> int:
    client, core, _ = _core_and_admission()
    now, margin = dt.datetime.now(dt.timezone.utc), dt.timedelta(days=args.renew_before_days)
    names = [args.service, f"{args.service}.{args.namespace}.svc", *args.san]
    ca_name = f"{args.secret}-ca"
    serving, ca_secret = (_read_secret(core, args.namespace, n) for n in (args.secret, ca_name))

    if ca_secret is None or not _pem(ca_secret, "ca.key"):
        ca_reason = "no CA yet"
    else:
        ca_reason = renewal_reason(_pem(ca_secret, "ca.crt"), [], now, margin)
    reason = ca_reason or renewal_reason(_pem(serving, "tls.crt"), names, now, margin)
    if serving is not None and _pem(serving, "ca.crt") != _pem(ca_secret, "ca.crt"):
        reason = reason or "serving certificate is not from the stored CA"
    if not reason:
        print(f"secret {args.namespace}/{args.secret}: certificate still good, kept")
        return 0
    print(f"secret {args.namespace}/{args.secret}: issuing, {reason}")
    keep_ca = None if ca_reason else {k: ca_secret.data[k] for k in ("ca.crt", "ca.key")}
    files = issue(args.service, args.namespace, args.san, keep_ca)
    if keep_ca is None:
        _write_secret(client, core, args.namespace, ca_name, "Opaque",
                      {k: files[k] for k in ("ca.crt", "ca.key")}, ca_secret)
    _write_secret(client, core, args.namespace, args.secret, "kubernetes.io/tls",
                  {k: files[k] for k in ("ca.crt", "tls.crt", "tls.key")}, serving)
    return 0


def inject_ca(args: argparse.Namespace) -> int:
    _, core, admission = _core_and_admission()
    secret = core.read_namespaced_secret(args.secret, args.namespace)
    ca = (secret.data or {}).get("ca.crt")
    if not ca:
        print(f"secret {args.namespace}/{args.secret} has no ca.crt", file=sys.stderr)
        return 1
    targets = [("mutating", args.webhook_configuration)]
    if args.validating_configuration:
        targets.append(("validating", args.validating_configuration))
    for kind, name in targets:
        config = getattr(admission, f"read_{kind}_webhook_configuration")(name)
        hooks = admission.api_client.sanitize_for_serialization(config).get("webhooks", [])
        patch = ca_bundle_patch(hooks, ca)
        if patch:
            getattr(admission, f"patch_{kind}_webhook_configuration")(name, patch)
        print(f"{kind}webhookconfiguration {name}: {len(patch)} caBundle(s) updated")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sec = sub.add_parser("secret", help="create or renew the TLS Secret")
    sec.add_argument("--namespace", required=True)
    sec.add_argument("--secret", required=True)
    sec.add_argument("--service", required=True, help="the webhook Service")
    sec.add_argument("--san", action="append", default=[], help="further DNS names")
    sec.add_argument("--renew-before-days", type=int, default=30)
    sec.set_defaults(func=ensure_secret)
    inj = sub.add_parser("inject", help="copy ca.crt into the webhook configuration")
    inj.add_argument("--namespace", required=True)
    inj.add_argument("--secret", required=True)
    inj.add_argument("--webhook-configuration", required=True, help="the mutating one")
    inj.add_argument("--validating-configuration", default=None,
                     help="the pods/eviction webhook's, when evacuation is enabled")
    inj.set_defaults(func=inject_ca)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kubernetes.client.exceptions import ApiException
    try:
        return args.func(args)
    except ApiException as exc:
        print(f"certs hook ({args.mode}): API server said {exc.status} {exc.reason}: "
              f"{exc.body}", file=sys.stderr)
    except subprocess.CalledProcessError as exc:
        print(f"certs hook ({args.mode}): {' '.join(exc.cmd)} exited {exc.returncode}",
              file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
