"""The pod NIC: passt puts the guest behind the pod's IP.

passt (passt.top) copies the pod's network identity into the guest: its DHCP server
offers the address, netmask and gateway of the pod interface that holds the default
route, guest traffic leaves through ordinary sockets of the pod (so the pod's IP is the
source, as for any container), and the declared ports are listened on in the pod and
forwarded in. No tap device, no bridge, no NET_ADMIN.

Debian 12's libvirt 9.0 predates its passt backend (libvirt 9.2), so the launcher runs
passt itself and hands QEMU 7.2 the socket with `-netdev stream` (domain.py).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

from podvirt.vmspec.model import Port

log = logging.getLogger("launcher")

# Any routable address: connect() on a UDP socket only picks a route and a source
# address, nothing is sent.
_PROBE = ("198.51.100.1", 9)   # TEST-NET-2 (RFC 5737)


class PasstError(RuntimeError):
    pass


def passt_guest_address() -> str | None:
    """The IPv4 address passt's DHCP gives the guest: the default route's source address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(_PROBE)
        except OSError:
            return None      # no default route: passt has no address to hand out either
        return s.getsockname()[0]


def passt_argv(sock: Path, log_file: Path, ports: tuple[Port, ...],
               binary: str = "passt") -> list[str]:
    """passt in the foreground (the launcher supervises it), serving one QEMU at a time
    on `sock`; passt forwards no port unless told (-t/-u).

    --runas 0:0: started as root passt switches to `nobody` before it binds the socket,
    which then cannot be created in the launcher's directory, nor opened by QEMU (root
    without DAC_OVERRIDE) if it could. passt still drops every capability and confines
    itself (user namespace, seccomp) after binding; root here is the pod's own.
    --no-map-gw: the gateway stays the pod's gateway (by default passt maps connections
    to it onto the pod's loopback)."""
    argv = [binary, "--foreground", "--quiet", "--runas", "0:0", "--no-map-gw",
            "--socket", str(sock), "--log-file", str(log_file)]
    for flag, proto in (("-t", "tcp"), ("-u", "udp")):
        numbers = [str(p.number) for p in ports if p.protocol == proto]
        if numbers:
            argv += [flag, ",".join(numbers)]
    return argv


class Passt:
    """One passt process for the pod NIC, started before the domain, stopped after it."""

    def __init__(self, work: Path, ports: tuple[Port, ...], binary: str = "passt"):
        self.sock, self.log_file = work / "passt.sock", work / "passt.log"
        self.stderr_file = work / "passt.stderr"
        self.argv = passt_argv(self.sock, self.log_file, ports, binary)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.sock.unlink(missing_ok=True)
        self.log_file.unlink(missing_ok=True)
        try:
            with open(self.stderr_file, "wb") as stderr:
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=stderr)
        except OSError as exc:
            raise PasstError(f"cannot run passt: {exc}") from None
        deadline = time.monotonic() + timeout
        while not self.sock.exists():
            if self.proc.poll() is not None:
                raise PasstError(f"passt exited with {self.proc.returncode}: {self._why()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PasstError(f"passt did not create {self.sock} within {timeout:.0f}s")
            time.sleep(0.02)
        log.info("passt serving the pod NIC on %s (%s)", self.sock, " ".join(self.argv[10:]) or
                 "no ports forwarded")

    def _why(self) -> str:
        err = ""
        for path in (self.stderr_file, self.log_file):
            try:
                err += path.read_text(errors="replace")
            except OSError:
                pass
        return " ".join(err.split())[-500:] or "no message"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
