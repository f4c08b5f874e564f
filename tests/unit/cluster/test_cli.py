"""`podvirt cluster up` refusals that come before any component starts (no binaries needed;
the up/down cycle itself is tests/e2e/test_cli.py)."""

from __future__ import annotations

import subprocess
import sys


def test_bad_inventory_fails_before_anything_starts(tmp_path):
    bad = tmp_path / "nodes.yaml"
    bad.write_text("nodes:\n- name: n1\n")
    result = subprocess.run([sys.executable, "-m", "podvirt.cli", "cluster", "up", "--state-dir",
                             str(tmp_path / "s"), "--inventory", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "capacity.cpu is required" in result.stdout
    assert not (tmp_path / "s" / "state.json").exists()
