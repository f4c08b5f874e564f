"""Real `podvirt webhook` / `podvirt extender` processes on loopback for the hardening tier.

Each process runs in its own session with stdout+stderr captured to a log file, so a test
can read every traceback the service printed and stop the whole process group (gunicorn
master and workers) by the pid it started. Shared by the tests and bench/fuzz_bench.py.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests
from cryptography import x509

from tests import REPO

PYTHON = sys.executable


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(out: Path, common_name: str = "podvirt-webhook") -> Certs:
    from podvirt.certs import generate_ca, issue_cert, serving_sans, write_pem_files
    out.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = generate_ca(f"{common_name}-ca")
    crt, key = issue_cert(ca_crt, ca_key, common_name, serving_sans(common_name, "podvirt"))
    write_pem_files(out, {"ca.crt": ca_crt, "ca.key": ca_key, "tls.crt": crt, "tls.key": key})
    return Certs(out / "ca.crt", out / "tls.crt", out / "tls.key")


def served_serial(port: int, ca: str) -> int:
    """The serial number of the certificate a TLS server on loopback `port` serves."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """One started process: where it listens, where it logs, how to stop it."""
    name: str
    argv: list[str]
    port: int
    log: Path
    scheme: str
    verify: str | bool
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/healthz", timeout: float = 30.0) -> "Service":
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if requests.get(self.url + ready_path, verify=self.verify, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready at {ready_path} in {timeout}s:\n"
                           f"{self.log_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tracebacks(self) -> list[str]:
        """Every traceback in the log: its innermost frames and the exception line."""
        lines, found = self.log_text().splitlines(), []
        for i, line in enumerate(lines):
            if line.startswith("Traceback (most recent call last)"):
                end = next((j for j in range(i + 1, len(lines)) if not lines[j].startswith(" ")),
                           len(lines) - 1)
                found.append("\n".join(lines[max(i, end - 6):end + 1]))   # frames + error
        return found


def webhook(certs: Certs, log: Path, *, workers: int = 2,
            port: int | None = None) -> Service:
    port = port or free_port()
    argv = [PYTHON, "-m", "podvirt.cli", "webhook", f"--port={port}", "--bind=127.0.0.1",
            f"--cert={certs.cert}", f"--key={certs.key}", f"--workers={workers}"]
    return Service("webhook", argv, port, log, "https", str(certs.ca))


def extender(log: Path, *, kubeconfig: Path | None, certs: Certs | None = None,
             port: int | None = None, max_body_bytes: int | None = None) -> Service:
    port = port or free_port()
    argv = [PYTHON, "-m", "podvirt.cli", "extender", f"--port={port}", "--bind=127.0.0.1"]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    if certs is not None:
        argv += [f"--cert={certs.cert}", f"--key={certs.key}"]
    if max_body_bytes is not None:
        argv.append(f"--max-body-bytes={max_body_bytes}")
    return Service("extender", argv, port, log, "https" if certs else "http",
                   str(certs.ca) if certs else False)


@contextmanager
def running(service: Service, ready_path: str = "/healthz") -> Iterator[Service]:
    """Start, yield, always stop: for module-scoped fixtures and the bench."""
    service.start(ready_path)
    try:
        yield service
    finally:
        service.stop()
