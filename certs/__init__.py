"""`podvirt certs`: a CA plus serving and client certificates for podvirt's TLS endpoints."""

from podvirt.certs.files import write_pem_files
from podvirt.certs.pki import CertError, generate_ca, issue_cert, serving_sans

__all__ = ["CertError", "generate_ca", "issue_cert", "serving_sans", "write_pem_files"]
