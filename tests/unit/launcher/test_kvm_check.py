"""The KVM usability check: the pure verdict and accelerator decision with injected stage
results, the child's output protocol, and the boot stage against fake emulators (the full
check on this machine, cross-checked against a real boot: tests/libvirt/test_kvm_check.py)."""

import json
from pathlib import Path

import pytest

from podvirt.launcher import kvm as kvmcheck
from podvirt.launcher.kvm import AccelUnavailable, choose_accel, parse_child_output, \
    verdict_from_stages
from podvirt.launcher.kvmboot import BOOT_STAGE, BootPayload, StageResult, boot_check, \
    default_guest_dirs, find_payload, qemu_command
from podvirt.launcher.run import decide_accel
from podvirt.vmspec import parse_vm

IOCTL_OK = tuple(StageResult(n, "passed", "halted", 0.001) for n in kvmcheck.IOCTL_STAGES)
BOOTED = StageResult(BOOT_STAGE, "passed", "a Linux guest booted under KVM in 1.2s", 1.2)
BOOT_HUNG = StageResult(BOOT_STAGE, "failed", "a Linux guest did not boot within 15s under KVM", 15)
NO_PAYLOAD = StageResult(BOOT_STAGE, "skipped", "no boot payload to confirm (looked in /x)")
SLOW = StageResult("compute loop", "failed", "ran 0.9M iterations per CPU-second", 0.34)
# What a healthy KVM host reports, and what this machine (kvm_pvm) reports.
WORKING = verdict_from_stages(IOCTL_OK + (BOOTED,))
THIS_MACHINE = verdict_from_stages(IOCTL_OK[:3] + (SLOW,))


@pytest.mark.parametrize("stages,usable,reason,failed", [
    pytest.param(IOCTL_OK + (BOOTED,), True,
                 "a Linux guest booted under KVM in 1.2s (ioctl checks passed)", None,
                 id="all-stages-pass"),
    pytest.param(IOCTL_OK + (BOOT_HUNG,), False,
                 "a Linux guest did not boot within 15s under KVM (ioctl checks passed)",
                 BOOT_STAGE, id="boot-times-out-after-ioctl-passed"),
    pytest.param(IOCTL_OK + (NO_PAYLOAD,), True,
                 "ioctl checks passed; no boot payload to confirm (looked in /x)", None,
                 id="no-payload-labelled"),
    pytest.param(IOCTL_OK, True, "ioctl checks passed; no boot payload to confirm", None,
                 id="no-boot-stage-labelled"),
    pytest.param(IOCTL_OK[:3] + (SLOW,), False,
                 "compute loop test guest: ran 0.9M iterations per CPU-second", "compute loop",
                 id="slow-guest-fails-before-boot"),
    pytest.param((StageResult("real mode", "failed", "cannot open /dev/kvm: Permission denied"),),
                 False, "real mode test guest: cannot open /dev/kvm: Permission denied",
                 "real mode", id="device-unopenable"),
    pytest.param(IOCTL_OK[:2] + (BOOTED,), False,
                 "ioctl checks did not run: real-to-long mode switch, compute loop", None,
                 id="boot-alone-is-not-enough"),
    pytest.param((), False, "ioctl checks did not run: real mode, 64-bit long mode, "
                 "real-to-long mode switch, compute loop", None, id="nothing-ran"),
])
def test_verdict_from_stages(stages, usable, reason, failed):
    verdict = verdict_from_stages(stages)
    assert (verdict.usable, verdict.reason, verdict.failed_stage) == (usable, reason, failed)
    assert verdict.summary.startswith("KVM usable: " if usable else "KVM unusable: ")
    assert verdict.to_json()["stages"] == [st.to_json() for st in stages]


@pytest.mark.parametrize("kvm,allow,expected", [
    pytest.param(WORKING, False, "kvm", id="working-kvm"),
    pytest.param(WORKING, True, "kvm", id="kvm-preferred-even-if-emulation-allowed"),
    pytest.param(THIS_MACHINE, True, "tcg", id="this-machine-falls-back-to-tcg"),
    pytest.param(THIS_MACHINE, False, None, id="this-machine-without-emulation-fails"),
    pytest.param(verdict_from_stages(IOCTL_OK + (BOOT_HUNG,)), False, None,
                 id="boot-hang-without-emulation-fails"),
])
def test_choose_accel(kvm, allow, expected):
    if expected is None:
        with pytest.raises(AccelUnavailable,
                           match=r"^KVM unusable: .+; the VM does not set .*allow-emulation=true"):
            choose_accel(kvm, allow_emulation=allow)
    else:
        assert choose_accel(kvm, allow_emulation=allow) == expected


@pytest.mark.parametrize("mode,allow,kvm,expected", [
    pytest.param("auto", True, THIS_MACHINE, "tcg", id="auto-follows-check-to-tcg"),
    pytest.param("auto", False, WORKING, "kvm", id="auto-follows-check-to-kvm"),
    pytest.param("kvm", False, None, "kvm", id="forced-kvm-skips-check"),
    pytest.param("tcg", True, None, "tcg", id="forced-tcg"),
    pytest.param("tcg", False, None, None, id="forced-tcg-needs-allow-emulation"),
])
def test_decide_accel(mode, allow, kvm, expected):
    vm = parse_vm({"podvirt.io/memory": "128Mi", "podvirt.io/kernel": "/tmp/podvirt/k",
                   "podvirt.io/allow-emulation": str(allow).lower()})
    if expected is None:
        with pytest.raises(AccelUnavailable):
            decide_accel(mode, vm, kvm)
    else:
        assert decide_accel(mode, vm, kvm) == expected


def _lines(*records: str) -> str:
    return "\n".join(records) + "\n"


_DONE = _lines(*(f'{{"begin": "{st.name}"}}\n{json.dumps(st.to_json())}'
                 for st in IOCTL_OK))


@pytest.mark.parametrize("stdout,kwargs,expected", [
    pytest.param(_DONE, {}, [(n, "passed") for n in kvmcheck.IOCTL_STAGES], id="all-reported"),
    pytest.param(_lines('{"begin": "real mode"}', '{"stage": "real mode", "status": "passed", '
                        '"detail": "halted", "seconds": 0.01}', '{"begin": "64-bit long mode"}'),
                 {"timed_out": 5.0}, [("real mode", "passed"), ("64-bit long mode", "failed")],
                 id="hung-in-second-stage"),
    pytest.param("", {"timed_out": 5.0}, [("real mode", "failed")], id="hung-before-output"),
    pytest.param("not json\n", {"exit_code": -11, "stderr": "Segmentation fault"},
                 [("real mode", "failed")], id="crashed"),
    pytest.param(_lines('{"stage": "real mode", "status": "failed", "detail": "exit reason 8", '
                        '"seconds": 0.0}'), {"exit_code": 0}, [("real mode", "failed")],
                 id="reported-failure-kept"),
])
def test_parse_child_output(stdout, kwargs, expected):
    stages = parse_child_output(stdout, **kwargs)
    assert [(st.name, st.status) for st in stages] == expected
    if "timed_out" in kwargs:
        assert stages[-1].detail == "did not halt within 5s (KVM_RUN hangs)"
    if "stderr" in kwargs:
        assert stages[-1].detail == "check crashed (exit -11): Segmentation fault"


def test_missing_device_is_a_failed_first_stage(tmp_path):
    verdict = kvmcheck.check_kvm(str(tmp_path / "kvm"), guest_dirs=())
    assert not verdict.usable and verdict.failed_stage == "real mode"
    assert verdict.reason == f"real mode test guest: {tmp_path / 'kvm'} does not exist"


@pytest.mark.parametrize("env,expected", [
    pytest.param({"PODVIRT_KVM_CHECK_GUEST": "/opt/g", "HOME": "/h"}, ("/opt/g",), id="explicit"),
    pytest.param({"PODVIRT_GUEST_DIR": "/c", "HOME": "/h"}, ("/c",), id="build-cache-override"),
    pytest.param({"HOME": "/h"}, ("/h/.cache/podvirt/guest",), id="build-cache-default"),
])
def test_default_guest_dirs(env, expected):
    assert default_guest_dirs(env) == tuple(Path(p) for p in expected)


@pytest.mark.parametrize("files,found", [
    pytest.param(("b/vmlinuz", "b/initramfs.cpio.gz"), "b", id="second-dir"),
    pytest.param(("a/vmlinuz", "a/initramfs.cpio.gz", "b/vmlinuz", "b/initramfs.cpio.gz"), "a",
                 id="first-wins"),
    pytest.param(("a/vmlinuz",), None, id="initrd-missing"),
    pytest.param((), None, id="nothing"),
])
def test_find_payload(tmp_path, files, found):
    for f in files:
        (tmp_path / f).parent.mkdir(exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    payload = find_payload((tmp_path / "a", tmp_path / "b"))
    expected = None if found is None else BootPayload(tmp_path / found / "vmlinuz",
                                                      tmp_path / found / "initramfs.cpio.gz")
    assert payload == expected


def _fake_qemu(tmp_path: Path, body: str) -> str:
    """A stand-in emulator: checks it was asked for KVM, then behaves as `body` says."""
    script = tmp_path / "qemu"
    script.write_text(f'#!/bin/sh\necho $$ > "{tmp_path}/pid"\n'
                      '[ "$1 $2" = "-accel kvm" ] || { echo "bad args: $*" >&2; exit 9; }\n'
                      + body + "\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("body,status,detail", [
    pytest.param("echo SeaBIOS; echo PODVIRT-GUEST-UP; exec sleep 60", "passed",
                 "a Linux guest booted under KVM in", id="marker-then-killed"),
    pytest.param("printf PODVIRT-GUEST; sleep 0.3; printf '%s\\n' -UP; exec sleep 60", "passed",
                 "a Linux guest booted under KVM in", id="marker-split-across-writes"),
    pytest.param("echo Booting from ROM...; exec sleep 60", "failed",
                 "a Linux guest did not boot within 1s under KVM", id="hang-times-out"),
    pytest.param("echo 'could not access KVM kernel module' >&2; exit 1", "failed",
                 "QEMU exited with code 1 before the guest came up: could not access KVM",
                 id="qemu-exits"),
])
def test_boot_check_with_fake_emulator(tmp_path, body, status, detail):
    payload = BootPayload(tmp_path / "vmlinuz", tmp_path / "initramfs.cpio.gz")
    result = boot_check(payload, timeout=1.0, qemu=_fake_qemu(tmp_path, body))
    assert (result.name, result.status) == (BOOT_STAGE, status)
    assert result.detail.startswith(detail), result.detail
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists(), "the emulator outlived the check"


def test_qemu_command_boots_payload_on_serial():
    cmd = qemu_command(BootPayload(Path("/g/vmlinuz"), Path("/g/initrd")), "qemu")
    assert cmd[:3] == ["qemu", "-accel", "kvm"]
    assert cmd[cmd.index("-kernel") + 1] == "/g/vmlinuz"
    assert cmd[cmd.index("-initrd") + 1] == "/g/initrd"
    assert "-no-reboot" in cmd and "console=ttyS0" in cmd[cmd.index("-append") + 1]


@pytest.mark.parametrize("payload_present,body,usable,reason", [
    pytest.param(False, None, True, "ioctl checks passed; no boot payload to confirm", id="no-payload"),
    pytest.param(True, "echo PODVIRT-GUEST-UP", True, "a Linux guest booted under KVM",
                 id="boots"),
    pytest.param(True, "exec sleep 60", False, "a Linux guest did not boot within 1s under KVM "
                 "(ioctl checks passed)", id="boot-hangs"),
])
def test_check_kvm_boot_stage_after_injected_ioctl_pass(tmp_path, monkeypatch, payload_present,
                                                         body, usable, reason):
    monkeypatch.setattr(kvmcheck, "run_ioctl_stages", lambda device, timeout: IOCTL_OK)
    guest = tmp_path / "guest"
    guest.mkdir()
    if payload_present:
        (guest / "vmlinuz").write_bytes(b"k")
        (guest / "initramfs.cpio.gz").write_bytes(b"i")
    qemu = _fake_qemu(tmp_path, body) if body else "/nonexistent/qemu"
    verdict = kvmcheck.check_kvm(guest_dirs=(guest,), boot_timeout=1.0, qemu=qemu)
    assert verdict.usable is usable and verdict.reason.startswith(reason), verdict.reason
    assert verdict.stages[-1].name == BOOT_STAGE
    assert verdict.stages[-1].status == ("passed" if body and usable else
                                         "skipped" if not payload_present else "failed")
