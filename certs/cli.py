"""`podvirt certs`: write DIR/ca.crt, ca.key, tls.crt, tls.key (and optional client certs).

Re-running with the same --out keeps the existing CA and issues a fresh serving cert,
which is how a running webhook's certificate is rotated without changing the CA bundle.
"""

from __future__ import annotations

import argparse
import re
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("certs", help="generate a CA and TLS certificates",
                              description=__doc__)
    p.add_argument("--out", required=True, help="directory for the PEM files")
    p.add_argument("--service", default="podvirt-webhook", help="Service name (for SANs)")
    p.add_argument("--namespace", default="podvirt", help="Service namespace (for SANs)")
    p.add_argument("--san", action="append", default=[], help="extra SAN (DNS name or IP)")
    p.add_argument("--new-ca", action="store_true", help="replace an existing CA in --out")
    p.add_argument("--client", action="append", default=[], metavar="NAME",
                   help="also issue a client certificate with this common name (repeatable)")
    p.add_argument("--client-org", default=None,
                   help="organization (Kubernetes group) of the client certificates")
    p.add_argument("--print-ca-bundle", action="store_true",
                   help="print the base64 CA bundle (for a webhook's caBundle) on stdout")
    p.set_defaults(func=run)


def client_file_stem(name: str) -> str:
    """A file name for a client cert's common name ("system:admin" -> "system-admin")."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).strip(".") or "client"


def run(args: argparse.Namespace) -> int:
    import base64
    from pathlib import Path

    from podvirt.certs import CertError, generate_ca, issue_cert, serving_sans, write_pem_files

    out = Path(args.out)
    ca_crt, ca_key = out / "ca.crt", out / "ca.key"
    try:
        if ca_crt.exists() and ca_key.exists() and not args.new_ca:
            ca = (ca_crt.read_bytes(), ca_key.read_bytes())
            print(f"reusing CA {ca_crt}", file=sys.stderr)
        else:
            ca = generate_ca("podvirt-ca")
        sans = serving_sans(args.service, args.namespace, args.san)
        files = {"ca.crt": ca[0], "ca.key": ca[1]}
        files["tls.crt"], files["tls.key"] = issue_cert(
            *ca, f"{args.service}.{args.namespace}.svc", sans)
        for name in args.client:
            stem = client_file_stem(name)
            files[f"{stem}.crt"], files[f"{stem}.key"] = issue_cert(
                *ca, name, [], client=True, organization=args.client_org)
        for path in write_pem_files(out, files):
            print(f"wrote {path}", file=sys.stderr)
    except (CertError, OSError) as exc:
        print(f"podvirt certs: {exc}", file=sys.stderr)
        return 1
    if args.print_ca_bundle:
        print(base64.b64encode(ca[0]).decode())
    return 0
