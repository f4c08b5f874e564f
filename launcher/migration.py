"""Live migration between two launcher pods: the channel libvirt's migration runs over.

The source launcher's libvirtd migrates its domain peer-to-peer and tunnelled
(`VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_TUNNELLED`): guest memory and device state travel
inside the one libvirt RPC connection the source libvirtd opens to the target's libvirtd.
Neither daemon listens on the network. The source libvirtd connects to a unix socket in
its own pod (`OutgoingRelay`); the source launcher carries each connection over TLS to the
target pod's `IncomingRelay`, which hands it to the target's libvirtd socket.

Who may connect: each launcher makes a throwaway key pair and self-signed certificate
for the migration and publishes the certificate on its own pod (podvirt.io/migration-cert,
written through the API server with the launcher's own credentials); each side trusts
exactly the other's certificate, and requires it (mutual TLS). So only the two pods
taking part can open the channel, and what crosses the pod network is encrypted.
"""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from podvirt.launcher.report import PodView
from podvirt.vmspec import keys as k
from podvirt.vmspec.model import MIGRATION_PORT

log = logging.getLogger("podvirt.launcher.migration")
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Identity:
    cert_pem: str
    key_pem: str


def new_identity(name: str) -> Identity:
    """A P-256 key and a self-signed certificate for one migration (valid for a day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"podvirt-migration {name}"[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return Identity(
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode())


def migration_refusal(me: PodView | None, target_name: str, target: PodView | None,
                      source_pod: str) -> str:
    """Why the pod our MIGRATION_TARGET names cannot receive this VM now; "" if it can.

    `me` is this (source) pod, `target` the pod it names, read after it."""
    if me is None:
        return "the launcher cannot read its own pod"
    if not target_name:
        return f"{k.MIGRATION_TARGET} names no target pod"
    if target is None:
        return f"target pod {target_name} cannot be read"
    if target.annotations.get(k.MIGRATION_SOURCE) != source_pod:
        return (f"pod {target_name} is not a migration target for this VM "
                f"({k.MIGRATION_SOURCE} is not {source_pod!r})")
    if target.annotations.get(k.PHASE) != "Incoming" or not target.annotations.get(
            k.MIGRATION_CERT) or not target.ip:
        return (f"target pod {target_name} is not waiting for a migration yet "
                f"(phase {target.annotations.get(k.PHASE) or 'none'})")
    return ""


def tls_context(identity: Identity, peer_cert_pem: str, *, server: bool) -> ssl.SSLContext:
    """TLS 1.3, our certificate, and the peer's as the only one trusted (pinned: the
    peer is known by its certificate, not by a name)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=peer_cert_pem)
    # load_cert_chain reads files only; the key never leaves this process otherwise.
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(identity.cert_pem + identity.key_pem)
        f.flush()
        ctx.load_cert_chain(f.name)
    return ctx


def _splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes; then close both."""
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(_CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
    t = threading.Thread(target=pump, args=(b, a), daemon=True)
    t.start()
    pump(a, b)
    t.join()
    a.close()
    b.close()


class _Relay:
    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._stop = threading.Event()

    def _serve(self, handle: Callable[[socket.socket], None]) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._guarded, args=(handle, conn), daemon=True).start()

    @staticmethod
    def _guarded(handle: Callable[[socket.socket], None], conn: socket.socket) -> None:
        try:
            handle(conn)
        except (OSError, ssl.SSLError) as exc:
            log.warning("migration relay: %s", exc)
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()


class IncomingRelay(_Relay):
    """Target side: TLS on the pod's network, requiring the source's certificate, into
    this pod's libvirtd socket. `source_cert()` is asked at each connection (the source
    publishes its certificate when it starts migrating, after this relay is up)."""

    def __init__(self, identity: Identity, libvirt_socket: Path,
                 source_cert: Callable[[], str | None], *, host: str = "0.0.0.0",
                 port: int = MIGRATION_PORT):
        super().__init__()
        self.identity, self.libvirt_socket, self.source_cert = identity, libvirt_socket, source_cert
        self.host, self.port = host, port

    def start(self) -> "IncomingRelay":
        self._listener = socket.create_server((self.host, self.port), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, args=(self._handle,), name="migration-in",
                         daemon=True).start()
        return self

    def _handle(self, conn: socket.socket) -> None:
        peer = self.source_cert()
        if not peer:
            log.warning("migration connection refused: the source has published no "
                        "certificate")
            conn.close()
            return
        conn.settimeout(10)
        tls = tls_context(self.identity, peer, server=True).wrap_socket(conn, server_side=True)
        tls.settimeout(None)
        daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        daemon.connect(str(self.libvirt_socket))
        log.info("migration connection from %s accepted", tls.getpeername()[0])
        _splice(tls, daemon)


class OutgoingRelay(_Relay):
    """Source side: a unix socket in this pod for the local libvirtd to connect to,
    carried over TLS to the target pod's IncomingRelay."""

    def __init__(self, identity: Identity, target_cert: str, target: tuple[str, int],
                 socket_path: Path):
        super().__init__()
        self.ctx = tls_context(identity, target_cert, server=False)
        self.target, self.socket_path = target, socket_path

    @property
    def uri(self) -> str:
        """Where the source libvirtd reaches the target's libvirtd."""
        return f"qemu+unix:///system?socket={self.socket_path}"

    def start(self) -> "OutgoingRelay":
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        self.socket_path.chmod(0o600)
        listener.listen(4)
        self._listener = listener
        threading.Thread(target=self._serve, args=(self._handle,), name="migration-out",
                         daemon=True).start()
        return self

    def _handle(self, conn: socket.socket) -> None:
        remote = socket.create_connection(self.target, timeout=10)
        tls = self.ctx.wrap_socket(remote)
        tls.settimeout(None)
        _splice(conn, tls)

    def stop(self) -> None:
        super().stop()
        self.socket_path.unlink(missing_ok=True)
