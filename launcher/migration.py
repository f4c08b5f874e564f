"""Live migration between two launcher pods: the channel libvirt's migration runs over.

The source launcher's libvirtd migrates its domain peer-to-peer (launcher/virt.py) over
three kinds of connection, each a *channel*: the libvirt RPC connection the source libvirtd
opens to the target's libvirtd, QEMU's migration stream (memory and device state), and
the NBD connections that copy the ephemeral disks' writable layers. Nothing listens on
the network but the target launcher: every channel is a unix socket at the same path in
both pods (`MIGRATION_DIR`, as libvirt and QEMU see it). In the source pod the
`OutgoingRelay` listens on them and carries each connection over TLS, named by a first
line, to the target pod's `IncomingRelay`, which hands it to the target's libvirtd, QEMU
or NBD server socket.

Who may connect: each launcher makes a throwaway key pair and self-signed certificate
for the migration and publishes the certificate on its own pod (podvirt.io/migration-cert,
written through the API server with the launcher's own credentials); each side trusts
exactly the other's certificate, and requires it (mutual TLS). So only the two pods
taking part can open the channel, and what crosses the pod network is encrypted.
"""

from __future__ import annotations

import datetime
import functools
import logging
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from podvirt.launcher.report import PodView
from podvirt.vmspec import keys as k
from podvirt.vmspec.model import MIGRATION_PORT

log = logging.getLogger("podvirt.launcher.migration")
_CHUNK = 256 * 1024

# The channels, and their sockets as the libvirt daemons and QEMU see them (a private
# daemon's /run/libvirt is its state dir's run/: LibvirtDaemons.path).
LIBVIRT, MEMORY, DISKS = "libvirt", "memory", "disks"
MIGRATION_DIR = "/run/libvirt/podvirt-migration"
SOCKETS = {LIBVIRT: f"{MIGRATION_DIR}/libvirt.sock", MEMORY: f"{MIGRATION_DIR}/memory.sock",
           DISKS: f"{MIGRATION_DIR}/disks.sock"}
# Where the source libvirtd reaches the target's (SOCKETS[LIBVIRT] is the relay's end).
DESTINATION_URI = f"qemu+unix:///system?socket={SOCKETS[LIBVIRT]}"
MEMORY_URI, DISKS_URI = f"unix://{SOCKETS[MEMORY]}", f"unix://{SOCKETS[DISKS]}"
TARGET_LIBVIRTD = "/run/libvirt/libvirt-sock"
_MAX_HEADER = 16


def incoming_routes(path: Callable[[str], Path]) -> dict[str, Path]:
    """Where each channel ends in the target pod: its libvirtd, and the sockets its QEMU
    (migration stream) and NBD server (disks) listen on. `path` maps a daemon's view of a
    path to ours (LibvirtDaemons.path)."""
    return {LIBVIRT: path(TARGET_LIBVIRTD), MEMORY: path(SOCKETS[MEMORY]),
            DISKS: path(SOCKETS[DISKS])}


def outgoing_sockets(path: Callable[[str], Path]) -> dict[str, Path]:
    """Where the source pod's libvirtd and QEMU connect, each channel's relay end."""
    return {channel: path(p) for channel, p in SOCKETS.items()}


def channel_header(channel: str) -> bytes:
    return channel.encode() + b"\n"


def parse_channel(header: bytes, routes: Mapping[str, Path]) -> str:
    """The channel a connection's first line names; ValueError if it names none we route."""
    name = header.removesuffix(b"\n").decode("ascii", "replace")
    if not header.endswith(b"\n") or name not in routes:
        raise ValueError(f"unknown migration channel {name[:_MAX_HEADER]!r}")
    return name


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
    if server:
        # No session tickets: nothing arrives after the handshake but data, since each
        # direction of a relayed connection is read and written by a thread of its own.
        ctx.num_tickets = 0
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
        self._listeners: list[socket.socket] = []
        self._stop = threading.Event()

    def _serve(self, listener: socket.socket, handle: Callable[[socket.socket], None],
               name: str) -> None:
        """Accept on `listener` in a thread of its own, each connection handled in another."""
        self._listeners.append(listener)

        def serve() -> None:
            while not self._stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=self._guarded, args=(handle, conn),
                                 daemon=True).start()
        threading.Thread(target=serve, name=name, daemon=True).start()

    @staticmethod
    def _guarded(handle: Callable[[socket.socket], None], conn: socket.socket) -> None:
        try:
            handle(conn)
        except (OSError, ssl.SSLError) as exc:
            log.warning("migration relay: %s", exc)
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        for listener in self._listeners:
            # close() alone leaves a thread blocked in accept(), and once the descriptor
            # number is reused, that thread takes the next relay's connections.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()


class IncomingRelay(_Relay):
    """Target side: TLS on the pod's network, requiring the source's certificate, into
    the socket in this pod that the connection's channel names (`routes`, e.g.
    incoming_routes). `source_cert()` is asked at each connection (the source publishes
    its certificate when it starts migrating, after this relay is up)."""

    def __init__(self, identity: Identity, routes: Mapping[str, Path],
                 source_cert: Callable[[], str | None], *, host: str = "0.0.0.0",
                 port: int = MIGRATION_PORT):
        super().__init__()
        self.identity, self.routes, self.source_cert = identity, dict(routes), source_cert
        self.host, self.port = host, port

    def start(self) -> "IncomingRelay":
        for sock in self.routes.values():    # QEMU and its NBD server bind there, later
            sock.parent.mkdir(parents=True, exist_ok=True)
        listener = socket.create_server((self.host, self.port), reuse_port=False)
        self.port = listener.getsockname()[1]
        self._serve(listener, self._handle, "migration-in")
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
        header = b""
        while not header.endswith(b"\n") and len(header) <= _MAX_HEADER:
            if not (byte := tls.recv(1)):
                break
            header += byte
        try:
            channel = parse_channel(header, self.routes)
        except ValueError as exc:
            log.warning("migration connection from %s refused: %s", tls.getpeername()[0], exc)
            tls.close()
            return
        tls.settimeout(None)
        local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        local.connect(str(self.routes[channel]))
        log.info("migration %s connection from %s accepted", channel, tls.getpeername()[0])
        _splice(tls, local)


class OutgoingRelay(_Relay):
    """Source side: a unix socket per channel in this pod (`sockets`, e.g.
    outgoing_sockets) for the local libvirtd and QEMU to connect to, each connection
    carried over TLS to the target pod's IncomingRelay."""

    def __init__(self, identity: Identity, target_cert: str, target: tuple[str, int],
                 sockets: Mapping[str, Path]):
        super().__init__()
        self.ctx = tls_context(identity, target_cert, server=False)
        self.target, self.sockets = target, dict(sockets)

    def start(self) -> "OutgoingRelay":
        for channel, path in self.sockets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            path.chmod(0o600)
            listener.listen(4)
            self._serve(listener, functools.partial(self._handle, channel=channel),
                        f"migration-out-{channel}")
        return self

    def _handle(self, conn: socket.socket, channel: str) -> None:
        remote = socket.create_connection(self.target, timeout=10)
        tls = self.ctx.wrap_socket(remote)
        tls.sendall(channel_header(channel))
        tls.settimeout(None)
        _splice(conn, tls)

    def stop(self) -> None:
        super().stop()
        for path in self.sockets.values():
            path.unlink(missing_ok=True)
