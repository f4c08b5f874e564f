"""Shared fixtures for the webhook and certs tests: pods, admission requests, certificates,
and a real `podvirt webhook` process."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from podvirt.vmspec import keys as k
from podvirt.webhook.settings import RenderSettings

from tests import REPO

VENV_PYTHON = Path(sys.executable)
_uids = itertools.count(1)

BASIC = {k.MEMORY: "1Gi", k.DISKS: "root=pvc:root-claim"}


def make_pod(annotations: dict[str, Any] | None = None, *, labels: dict | None = None,
             name: str | None = "vm1", containers: list | None = None, **spec: Any) -> dict:
    meta: dict[str, Any] = {"namespace": "default",
                            "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE} if labels is None else labels,
                            "annotations": dict(BASIC if annotations is None else annotations)}
    if name is not None:
        meta["name"] = name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": containers or [], **spec}}


def make_request(pod: dict | None, *, operation: str = "CREATE", old: dict | None = None,
                 **extra: Any) -> dict:
    req = {"uid": f"uid-{next(_uids)}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
           "resource": {"group": "", "version": "v1", "resource": "pods"},
           "namespace": "default", "operation": operation, "object": pod, "oldObject": old,
           "dryRun": False}
    req.update(extra)
    return req


def make_review(pod: dict | None, **kw: Any) -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": make_request(pod, **kw)}


@pytest.fixture(name="make_pod")
def make_pod_fixture() -> Callable[..., dict]:
    return make_pod


@pytest.fixture(name="make_request")
def make_request_fixture() -> Callable[..., dict]:
    return make_request


@pytest.fixture(name="make_review")
def make_review_fixture() -> Callable[..., dict]:
    return make_review


@pytest.fixture
def settings() -> RenderSettings:
    return RenderSettings()


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from podvirt.certs import generate_ca, issue_cert, serving_sans, write_pem_files
    out = tmp_path_factory.mktemp("certs")
    ca = generate_ca("test-ca")
    crt, key = issue_cert(*ca, "podvirt-webhook", serving_sans("podvirt-webhook", "podvirt"))
    write_pem_files(out, {"ca.crt": ca[0], "ca.key": ca[1], "tls.crt": crt, "tls.key": key})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookProcess:
    """A `podvirt webhook` subprocess on a free loopback port; stopped by the fixture."""

    def __init__(self, certs: Path, tmp: Path, *extra: str, workers: int = 2):
        self.certs, self.port, self.tmp = certs, free_port(), tmp
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = tmp / "webhook.log"
        env = {**os.environ, "TMPDIR": str(tmp)}   # the metrics dir lands in tmp
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "podvirt.cli", "webhook", "--port", str(self.port),
             "--cert", str(certs / "tls.crt"), "--key", str(certs / "tls.key"),
             "--workers", str(workers), *extra],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=REPO)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"webhook exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/readyz", verify=self.certs / "ca.crt",
                                timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise TimeoutError(f"webhook not ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def live_webhook(cert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> WebhookProcess:
    """One 2-worker `podvirt webhook` for a test module, on its own copy of the certs
    (tests may rotate them), logging every review (--log-level debug)."""
    import shutil
    tmp = tmp_path_factory.mktemp("webhook")
    certs = Path(shutil.copytree(cert_dir, tmp / "certs"))
    wp = WebhookProcess(certs, tmp, "--log-level", "debug", workers=2)
    try:
        wp.wait_ready()
        yield wp
    finally:
        wp.stop()


@pytest.fixture
def webhook_process(tmp_path: Path) -> Callable[..., WebhookProcess]:
    started: list[WebhookProcess] = []

    def start(certs: Path, *extra: str, workers: int = 2) -> WebhookProcess:
        wp = WebhookProcess(certs, tmp_path, *extra, workers=workers)
        started.append(wp)
        wp.wait_ready()
        return wp

    yield start
    for wp in started:
        wp.stop()
