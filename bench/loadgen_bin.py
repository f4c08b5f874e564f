"""Build bench/loadgen (the Go load client and the machine floors) once, into the cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

LOADGEN_SRC = Path(__file__).resolve().parent / "loadgen"
LOADGEN_BIN = Path.home() / ".cache" / "podvirt" / "bench" / "loadgen" / "loadgen"


def build_loadgen() -> Path:
    """`go build` the client unless the cached binary is newer than its sources."""
    sources = [*LOADGEN_SRC.glob("*.go"), LOADGEN_SRC / "go.mod"]
    if LOADGEN_BIN.exists() and all(LOADGEN_BIN.stat().st_mtime > s.stat().st_mtime
                                    for s in sources):
        print(f"loadgen: cached {LOADGEN_BIN}", flush=True)
        return LOADGEN_BIN
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        raise SystemExit("the Go toolchain (`go`) is needed to build bench/loadgen")
    print(f"loadgen: go build -> {LOADGEN_BIN} ...", end=" ", flush=True)
    started = time.monotonic()
    LOADGEN_BIN.parent.mkdir(parents=True, exist_ok=True)
    # Standard library only, so nothing is downloaded; GOTOOLCHAIN=local keeps it that way.
    done = subprocess.run([go, "build", "-o", str(LOADGEN_BIN), "."], cwd=LOADGEN_SRC,
                          capture_output=True, text=True,
                          env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"})
    if done.returncode:
        raise SystemExit(f"go build of bench/loadgen failed:\n{done.stderr}")
    print(f"{time.monotonic() - started:.1f}s", flush=True)
    return LOADGEN_BIN
