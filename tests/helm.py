"""The chart as `helm template` renders it, shared by the unit chart tests and the e2e
chart test (tests/e2e/test_chart.py): where the chart and the helm/kubectl binaries are."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests import REPO

CHART = REPO / "charts" / "podvirt"
NAMESPACE = "podvirt"
RELEASE = "pv"
KUBE_VERSION = "1.34.4"   # helm built from source defaults to 1.20, below the chart's kubeVersion


def k8s_bin(name: str) -> Path | None:
    """A binary from hack/k8s/build.sh's cache (or PATH)."""
    cache = Path(os.environ.get("PODVIRT_CACHE", Path.home() / ".cache" / "podvirt"))
    for found in sorted(cache.glob(f"k8s-*/bin/{name}"), reverse=True):
        return found
    on_path = shutil.which(name)
    return Path(on_path) if on_path else None


def k8s_bin_or_skip(name: str) -> Path:
    """k8s_bin(name), or the test skipped when hack/k8s/build.sh has not built it."""
    import pytest
    path = k8s_bin(name)
    if path is None:
        pytest.skip(f"{name} not built (bash hack/k8s/build.sh)")
    return path


Objects = list[dict[str, Any]]


def helm_template(helm: Path, values: dict[str, Any], *extra: str) -> str:
    """`helm template` of the chart with these values (as a values file, so types survive)."""
    proc = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--kube-version", KUBE_VERSION, "--values", "-", *extra],
        input=yaml.safe_dump(values), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RenderError(proc.stderr.strip())
    return proc.stdout


class RenderError(RuntimeError):
    pass


def find(objects: Objects, kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of this kind (and name suffix); fails listing what exists."""
    hits = [o for o in objects if o["kind"] == kind
            and (name is None or o["metadata"]["name"].endswith(name))]
    assert len(hits) == 1, (f"want one {kind} {name or ''}, have "
                            f"{[(o['kind'], o['metadata']['name']) for o in objects]}")
    return hits[0]


def kinds(objects: Objects) -> set[str]:
    return {o["kind"] for o in objects}
