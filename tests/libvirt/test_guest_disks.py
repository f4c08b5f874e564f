"""What the guest sees of its disks, with real libvirtd + QEMU: the cloud-init NoCloud seed
(a read-only virtio disk labelled cidata) and a disk image the VM names."""

import os
import secrets
import shutil

import pytest

from tests.libvirt.realguest import LauncherProcess

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd"),
                       reason="needs root and libvirtd"),
]


def _console_value(launcher: LauncherProcess, marker: str) -> str:
    launcher.wait_for_output(marker, timeout=90)
    line = next(line for line in launcher.stdout if marker in line)
    return line.split(marker, 1)[1].strip()


def test_guest_reads_its_user_data_from_the_seed(pod):
    path, procs = pod
    token = secrets.token_hex(8)
    launcher = LauncherProcess(path, "podvirt.sleep=0 podvirt.seed=podvirt_marker",
                               annotations={"podvirt.io/cloud-init":
                                            f"#cloud-config\npodvirt_marker: {token}\n"})
    procs.append(launcher)
    assert _console_value(launcher, "PODVIRT-GUEST-SEED") == token
    assert launcher.wait() == 0, "".join(launcher.stderr)
