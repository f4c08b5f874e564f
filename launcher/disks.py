"""Disks as QEMU opens them: overlays over read-only bases, scratch images, the seed ISO.

containerdisk and file sources get a qcow2 overlay in the launcher's scratch space, so
the base image (shared, or baked into the pod) is never written; a pvc is the VM's own
volume and is used directly; scratch disks are fresh qcow2 images of the asked size.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from podvirt.launcher.hostcontext import DiskAttachment
from podvirt.vmspec.model import POD_ROOT, CloudInit, Disk

PVC_IMAGE = "disk.img"   # KubeVirt's convention for a filesystem-mode PVC
# A blank claim gets a sparse raw disk.img filling its filesystem but this share, which
# filesystem metadata needs (KubeVirt's default filesystemOverhead).
FILESYSTEM_OVERHEAD = 0.055
MiB = 2**20


class DiskError(RuntimeError):
    pass


@dataclass(frozen=True)
class DiskLayout:
    """Where disks are mounted and where scratch files go. `pod_root` stands for the
    pod's POD_ROOT (tests point it at a temporary directory)."""
    pod_root: Path
    work_dir: Path

    def mount_dir(self, disk: Disk) -> Path:
        """Disk.mount_dir, the directory the webhook mounts the disk at, under `pod_root`."""
        return self.pod_root / PurePosixPath(disk.mount_dir).relative_to(POD_ROOT)


def _qemu_img(*args: str) -> str:
    try:
        out = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise DiskError("qemu-img is not installed") from None
    if out.returncode != 0:
        raise DiskError(f"qemu-img {args[0]} failed: {out.stderr.strip()}")
    return out.stdout


def image_format(path: Path) -> str:
    info = json.loads(_qemu_img("info", "--output=json", str(path)))
    return str(info["format"])


def create_overlay(base: Path, overlay: Path) -> Path:
    if not base.is_file():
        raise DiskError(f"base image {base} does not exist")
    fmt = image_format(base)
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.unlink(missing_ok=True)   # a restarted launcher starts from the base again
    _qemu_img("create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", fmt, str(overlay))
    return overlay


def _containerdisk_image(directory: Path) -> Path:
    # The init container copied the image's /disk/* here; the disk is its one image file.
    files = sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
    if not files:
        raise DiskError(f"containerdisk directory {directory} holds no image file")
    return files[0]


def prepare_disk(disk: Disk, layout: DiskLayout) -> DiskAttachment:
    overlay = layout.work_dir / "overlays" / f"{disk.name}.qcow2"
    if disk.kind == "containerdisk":
        base = _containerdisk_image(layout.mount_dir(disk))
        return DiskAttachment(disk.name, str(create_overlay(base, overlay)), "qcow2")
    if disk.kind == "file":
        return DiskAttachment(disk.name, str(create_overlay(Path(disk.source), overlay)), "qcow2")
    if disk.kind == "pvc":
        path = layout.mount_dir(disk) / PVC_IMAGE
        if not path.is_file():
            create_blank_image(path, disk)
        fmt = image_format(path)
        return DiskAttachment(disk.name, str(path), "qcow2" if fmt == "qcow2" else "raw")
    # scratch: the emptyDir's sizeLimit bounds it; qcow2 grows only as the guest writes.
    path = layout.mount_dir(disk) / "disk.qcow2"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _qemu_img("create", "-q", "-f", "qcow2", str(path), str(disk.size_bytes))
    return DiskAttachment(disk.name, str(path), "qcow2")


def blank_image_size(fs_bytes: int) -> int:
    """The disk a blank claim of `fs_bytes` gets: what its filesystem can hold, whole MiB."""
    return int(fs_bytes * (1 - FILESYSTEM_OVERHEAD)) // MiB * MiB


def create_blank_image(path: Path, disk: Disk) -> None:
    """A new claim holds no disk.img: make a sparse one as large as the volume allows
    (the claim's size on a real volume; hostPath volumes report their host filesystem)."""
    if not path.parent.is_dir():
        raise DiskError(f"pvc disk {disk.name}: claim {disk.source!r} is not mounted at "
                        f"{path.parent}")
    st = os.statvfs(path.parent)
    size = blank_image_size(st.f_blocks * st.f_frsize)
    if size < MiB:
        raise DiskError(f"pvc disk {disk.name}: claim {disk.source!r} has no room for a disk "
                        f"image ({st.f_blocks * st.f_frsize} bytes)")
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            f.truncate(size)
        os.replace(tmp, path)
    except OSError as exc:
        raise DiskError(f"pvc disk {disk.name}: cannot create {path}: {exc.strerror}") from None


def cloud_init_userdata(ci: CloudInit, cloud_init_dir: Path) -> str:
    """Inline user data, or the Secret/ConfigMap the webhook mounted as `userdata`."""
    if ci.inline is not None:
        return ci.inline
    path = cloud_init_dir / "userdata"
    try:
        return path.read_text()
    except OSError as exc:
        source = f"Secret {ci.secret}" if ci.secret else f"ConfigMap {ci.configmap}"
        raise DiskError(f"cloud-init user data from {source} is not mounted at {path}: "
                        f"{exc.strerror}") from None


def seed_iso_bytes(*, user_data: str, instance_id: str, hostname: str) -> bytes:
    """A NoCloud seed: ISO9660 + Joliet + Rock Ridge, volume id `cidata`."""
    import pycdlib
    meta_data = f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, content in (("user-data", user_data), ("meta-data", meta_data)):
        data = content.encode()
        iso_name = name.upper().replace("-", "_") + ".;1"
        iso.add_fp(io.BytesIO(data), len(data), f"/{iso_name}", rr_name=name,
                   joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def write_seed_iso(path: Path, **kwargs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(seed_iso_bytes(**kwargs))
    os.replace(tmp, path)
    return path
