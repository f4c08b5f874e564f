"""`podvirt cluster up|status|down` as a user runs it: a second, minimal cluster (no webhook,
no extender) in its own state dir, taken through up -> refused up -> down -> up -> down."""

from __future__ import annotations

import os
import subprocess
import sys


def podvirt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podvirt.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_up_down_up_cycle(tmp_path, cluster):   # `cluster`: built binaries, e2e ordering
    state_dir = str(tmp_path / "state")
    (tmp_path / "keep.txt").write_text("not ours")
    cycle = ("--state-dir", state_dir)

    first = podvirt("cluster", "up", *cycle, "--no-node", "--no-webhook", "--no-extender")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "kube-apiserver ready in" in first.stderr

    status = podvirt("cluster", "status", *cycle)
    assert status.returncode == 0, status.stdout
    assert {"etcd", "kube-apiserver", "kube-scheduler", "kwok"} <= {
        line.split()[0] for line in status.stdout.splitlines()[5:]}

    again = podvirt("cluster", "up", *cycle)
    assert again.returncode == 1 and "already up" in again.stdout

    assert podvirt("cluster", "down", *cycle).returncode == 0
    assert not (tmp_path / "state").exists()
    assert podvirt("cluster", "status", *cycle).returncode == 1

    second = podvirt("cluster", "up", *cycle, "--no-node", "--no-webhook", "--no-extender")
    assert second.returncode == 0, second.stdout + second.stderr
    assert podvirt("cluster", "down", *cycle).returncode == 0
    assert "nothing to stop" in podvirt("cluster", "down", *cycle).stdout
    assert (tmp_path / "keep.txt").read_text() == "not ours"


def test_component_that_dies_fails_up_with_its_log_and_stops_the_rest(tmp_path, cluster):
    state_dir = tmp_path / "s"
    fake_etcd = tmp_path / "etcd"
    fake_etcd.write_text("#!/bin/sh\necho 'etcd: cannot bind' >&2\nexit 3\n")
    fake_etcd.chmod(0o755)
    result = subprocess.run([sys.executable, "-m", "podvirt.cli", "cluster", "up",
                             "--no-node", "--state-dir", str(state_dir)],
                            capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PODVIRT_ETCD": str(fake_etcd)})
    assert result.returncode == 1
    assert "etcd exited during startup" in result.stdout
    assert "etcd: cannot bind" in result.stdout
    status = podvirt("cluster", "status", "--state-dir", str(state_dir))
    assert "running" not in status.stdout.split("LOG", 1)[-1]
    assert podvirt("cluster", "down", "--state-dir", str(state_dir)).returncode == 0
