"""bench/loadgen's own Go tests (percentiles, pacing, the no-op and extender floors): the
benchmarks' numbers are only as good as the tool measuring them. Standard library only,
so this builds offline."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

LOADGEN = Path(__file__).parents[2] / "bench" / "loadgen"


def test_loadgen_go_tests_pass():
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        pytest.skip("no Go toolchain (the local control plane build, hack/k8s/build.sh, needs one too)")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
    proc = subprocess.run([go, "test", "-count=1", "./..."], cwd=LOADGEN, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
