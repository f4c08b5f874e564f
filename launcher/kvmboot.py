"""The boot stage of the KVM check: does a real Linux guest come up under `qemu -accel kvm`?

Tiny ioctl-level guests can pass where a Linux kernel crawls (see kvm.py), so the final
word is a direct-kernel boot of the test guest (hack/guest/build.sh): usable only if its
marker line reaches the serial console before a hard deadline. The launcher image ships
that payload; here it is found through PODVIRT_KVM_CHECK_GUEST or the build cache.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

GUEST_ENV = "PODVIRT_KVM_CHECK_GUEST"      # directory holding vmlinuz + initramfs.cpio.gz
MARKER = b"PODVIRT-GUEST-UP"
BOOT_STAGE = "Linux boot"
KERNEL_NAME, INITRD_NAME = "vmlinuz", "initramfs.cpio.gz"

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class StageResult:
    name: str
    status: Status
    detail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict:
        return {"stage": self.name, "status": self.status, "detail": self.detail,
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class BootPayload:
    kernel: Path
    initrd: Path


def default_guest_dirs(env: Mapping[str, str] = os.environ) -> tuple[Path, ...]:
    """Where to look for the payload: the explicit setting, else the test-guest cache."""
    if env.get(GUEST_ENV):
        return (Path(env[GUEST_ENV]),)
    cache = env.get("PODVIRT_GUEST_DIR") or str(Path(env.get("HOME", "/root"))
                                                 / ".cache/podvirt/guest")
    return (Path(cache),)


def find_payload(dirs: tuple[Path, ...]) -> BootPayload | None:
    for d in dirs:
        kernel, initrd = d / KERNEL_NAME, d / INITRD_NAME
        if kernel.is_file() and initrd.is_file():
            return BootPayload(kernel, initrd)
    return None


def qemu_command(payload: BootPayload, qemu: str, accel: str = "kvm") -> list[str]:
    # Nothing but a CPU, RAM and a serial port on stdout: no NIC (no iPXE ROM), no disks.
    return [qemu, "-accel", accel, "-nodefaults", "-nographic", "-serial", "stdio",
            "-monitor", "none", "-no-reboot", "-m", "128",
            "-kernel", str(payload.kernel), "-initrd", str(payload.initrd),
            "-append", "console=ttyS0 quiet panic=-1 podvirt.sleep=0"]


def boot_check(payload: BootPayload, *, timeout: float = 15.0,
               qemu: str = "qemu-system-x86_64", accel: str = "kvm") -> StageResult:
    """Boot the payload; passed as soon as the marker appears, failed at the deadline."""
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(qemu_command(payload, qemu, accel), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        return StageResult(BOOT_STAGE, "failed", f"cannot run {qemu}: {exc.strerror}")
    try:
        booted, errors = _watch(proc, t0 + timeout)
        exited = proc.poll()      # before _stop: did QEMU end on its own?
    finally:
        _stop(proc)
    elapsed = time.monotonic() - t0
    if booted:
        return StageResult(BOOT_STAGE, "passed",
                           f"a Linux guest booted under {accel.upper()} in {elapsed:.1f}s", elapsed)
    if exited is not None:
        last = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no error output"]
        return StageResult(BOOT_STAGE, "failed", f"QEMU exited with code {exited} before the "
                                                 f"guest came up: {last[0][:200]}", elapsed)
    return StageResult(BOOT_STAGE, "failed", f"a Linux guest did not boot within {timeout:g}s "
                                             f"under {accel.upper()}", elapsed)


def _watch(proc: subprocess.Popen, deadline: float) -> tuple[bool, bytes]:
    """Read QEMU's console until the marker, EOF on both streams, or the deadline."""
    console, errors = b"", b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map() and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    console = (console + chunk)[-65536:]
                    if MARKER in console:
                        return True, errors
                else:
                    errors = (errors + chunk)[-4096:]
        eof = not sel.get_map()
    if eof:   # both pipes closed: QEMU is exiting; collect its code
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return False, errors


def _stop(proc: subprocess.Popen) -> None:
    # QEMU spinning in KVM_RUN may ignore SIGTERM for a while; the check must not wait.
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
