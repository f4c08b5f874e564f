"""pyflakes over every Python file of the project: unused imports, undefined names and
shadowed fixtures are bugs waiting, and this keeps them out."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
TREES = ["podvirt", "webhook", "extender", "launcher", "cluster", "certs", "tests", "bench",
         "hack", "charts/podvirt/files"]


def test_pyflakes_clean():
    proc = subprocess.run([sys.executable, "-m", "pyflakes", *TREES], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
