"""EFI firmware (OVMF) and an emulated TPM (swtpm) with real libvirtd + QEMU: the test
guest, booted directly under OVMF, reports that it came up under UEFI and which TPM
devices its kernel found."""

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from podvirt.launcher.domain import ovmf_files
from tests.libvirt.realguest import LauncherProcess

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd")
                       or not Path(ovmf_files(False)[0]).exists() or not shutil.which("swtpm"),
                       reason="needs root, libvirtd, ovmf and swtpm"),
]


def _console_value(launcher: LauncherProcess, marker: str) -> str:
    launcher.wait_for_output(marker, timeout=240)     # OVMF under TCG takes a while
    line = next(line for line in launcher.stdout if marker in line)
    return line.split(marker, 1)[1].strip()


@pytest.mark.parametrize("annotations, firmware, tpm", [
    pytest.param({"podvirt.io/firmware": "efi", "podvirt.io/tpm": "true",
                  "podvirt.io/memory": "256Mi"}, "efi", "tpm0 none",
                 id="efi-with-tpm"),
    pytest.param({}, "bios", "none", id="bios-without-tpm"),
])
def test_guest_sees_its_firmware_and_tpm(pod, annotations, firmware, tpm):
    path, procs = pod
    launcher = LauncherProcess(path, "podvirt.sleep=0 podvirt.firmware", annotations=annotations)
    procs.append(launcher)
    assert _console_value(launcher, "PODVIRT-GUEST-FIRMWARE") == firmware
    assert _console_value(launcher, "PODVIRT-GUEST-TPM") == tpm
    assert launcher.wait(120) == 0, "".join(launcher.stderr)
    if firmware == "efi":
        # The variable store was the pod's own copy of OVMF's template, gone with the VM.
        nvram = ET.parse(path / "launcher" / "domain.xml").findtext("os/nvram")
        assert nvram == str(path / "launcher" / "nvram.fd") and not Path(nvram).exists()
