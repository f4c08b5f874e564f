"""`podvirt webhook` as a process: start-up errors are said plainly, with an exit code."""

from __future__ import annotations

import subprocess
import sys

from tests.hardening.services import free_port, make_certs


def test_evictions_without_api_credentials_stop_the_server_with_the_reason(tmp_path):
    certs = make_certs(tmp_path / "certs")
    proc = subprocess.run(
        [sys.executable, "-m", "podvirt.cli", "webhook", f"--port={free_port()}",
         f"--cert={certs.cert}", f"--key={certs.key}", "--evictions",
         f"--kubeconfig={tmp_path / 'missing'}"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "--evictions needs API access" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreadable_certificate_is_refused_before_serving(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "podvirt.cli", "webhook", f"--port={free_port()}",
         f"--cert={tmp_path / 'none.crt'}", f"--key={tmp_path / 'none.key'}"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr and "Traceback" not in proc.stderr
