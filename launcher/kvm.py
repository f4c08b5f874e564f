"""Is KVM usable here? A staged functional check, then the accelerator decision.

/dev/kvm existing proves little. On the machines this was written on, /dev/kvm is served
by kvm_pvm (software nested virtualization): every ioctl works and tiny guests halt, but
an ordinary guest executes about 1000x slower than native, so a Linux kernel seems to hang
in its decompressor. The check therefore runs, each stage only if the previous passed:

1. ioctl stages in a child process (a broken KVM_RUN can block forever in the kernel):
   tiny guests that must reach `hlt` in real mode, in long mode and across the real-to-long
   mode switch, then a compute loop whose speed must be hardware-like;
2. the boot stage (kvmboot.py): the test guest's kernel must print its marker under
   `qemu -accel kvm` within a deadline. Without a payload the verdict rests on the ioctl
   stages and says so.

`verdict_from_stages` and `choose_accel` are pure; `python -m podvirt.launcher.kvm` is the
child, printing one JSON line per stage event.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from podvirt.launcher.kvmboot import BOOT_STAGE, StageResult, boot_check, default_guest_dirs, \
    find_payload

Accel = Literal["kvm", "tcg"]

# ioctl numbers from <linux/kvm.h> (x86-64): _IO/_IOR/_IOW(0xAE, nr, size).
_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01
_KVM_GET_VCPU_MMAP_SIZE = 0xAE04
_KVM_CREATE_VCPU = 0xAE41
_KVM_SET_USER_MEMORY_REGION = 0x4020AE46   # struct kvm_userspace_memory_region, 32 bytes
_KVM_SET_REGS = 0x4090AE82                 # struct kvm_regs, 144 bytes
_KVM_GET_SREGS = 0x8138AE83                # struct kvm_sregs, 312 bytes
_KVM_SET_SREGS = 0x4138AE84
_KVM_RUN = 0xAE80
_KVM_GET_SUPPORTED_CPUID = 0xC008AE05      # struct kvm_cpuid2 header, 8 bytes
_KVM_SET_CPUID2 = 0x4008AE90
_CPUID_ENTRIES = 128                       # struct kvm_cpuid_entry2 is 40 bytes
_KVM_API_VERSION = 12
_KVM_EXIT_HLT = 5
_MEM_SIZE = 0x10000          # guest RAM at guest-physical 0
_CODE = 0x1000               # the hlt instruction
_PML4, _PDPT, _PD = 0x2000, 0x3000, 0x4000
_HLT = bytes.fromhex("f4")
# What a kernel's setup code does, in miniature: from real mode load a GDT, enter
# protected mode, enable PAE + paging + EFER.LME, far-jump to 64-bit code, hlt.
# Assembled with GNU as (.code16/.code32/.code64) linked at 0x1000; the page tables
# the code points CR3 at (0x2000) are written by _write_page_tables.
_MODE_SWITCH = bytes.fromhex(
    "fa660f011678100f20c06683c8010f22c066ea19100000080066b810008ed88ed00f20e083c820"
    "0f22e0b8002000000f22d8b9800000c00f320d000100000f300f20c00d000000800f22c0ea5210"
    "00001800f40f1f4400000000000000000000ffff0000009acf00ffff00000092cf00ffff000000"
    "9aaf001f0058100000")
# A counted loop (mov rcx, N; dec rcx; jnz; hlt): hardware virtualization runs it at
# hundreds of millions of iterations per CPU-second; kvm_pvm ran it at about 1 million.
_LOOP_ITERATIONS = 300_000
MIN_LOOP_RATE = 20e6          # iterations per CPU-second: 20x above what hung, far below native
_LOOP = (bytes.fromhex("48b9") + struct.pack("<Q", _LOOP_ITERATIONS)
         + bytes.fromhex("48ffc975fbf4"))
# (name, start in long mode?, code): each stage must end in KVM_EXIT_HLT.
_HALT_STAGES = (("real mode", False, _HLT), ("64-bit long mode", True, _HLT),
                ("real-to-long mode switch", False, _MODE_SWITCH))
SPEED_STAGE = "compute loop"
IOCTL_STAGES = tuple(name for name, _, _ in _HALT_STAGES) + (SPEED_STAGE,)


@dataclass(frozen=True)
class KvmVerdict:
    usable: bool
    reason: str                                   # why not, or what worked
    stages: tuple[StageResult, ...] = field(default=(), compare=False)

    @property
    def failed_stage(self) -> str | None:
        return next((st.name for st in self.stages if st.status == "failed"), None)

    @property
    def summary(self) -> str:
        return f"KVM {'usable' if self.usable else 'unusable'}: {self.reason}"

    def to_json(self) -> dict:
        return {"usable": self.usable, "reason": self.reason, "failedStage": self.failed_stage,
                "stages": [st.to_json() for st in self.stages]}


def verdict_from_stages(stages: Sequence[StageResult]) -> KvmVerdict:
    """The decision: usable only if no stage failed and the ioctl stages all ran;
    a skipped boot stage is allowed but named in the reason."""
    stages = tuple(stages)
    by_name = {st.name: st for st in stages}
    missing = [n for n in IOCTL_STAGES if n not in by_name or not by_name[n].passed]
    failed = next((st for st in stages if st.status == "failed"), None)
    if failed is not None:
        note = "" if missing else " (ioctl checks passed)"
        return KvmVerdict(False, f"{_sentence(failed)}{note}", stages)
    if missing:
        return KvmVerdict(False, f"ioctl checks did not run: {', '.join(missing)}", stages)
    boot = by_name.get(BOOT_STAGE)
    if boot is None or not boot.passed:
        why = boot.detail if boot is not None and boot.detail else "no boot payload to confirm"
        return KvmVerdict(True, f"ioctl checks passed; {why}", stages)
    return KvmVerdict(True, f"{boot.detail} (ioctl checks passed)", stages)


def _sentence(stage: StageResult) -> str:
    # The boot stage's detail is already a sentence; ioctl details need their stage named.
    return stage.detail if stage.name == BOOT_STAGE else f"{stage.name} test guest: {stage.detail}"


def _segment(selector: int, code: bool) -> bytes:
    # struct kvm_segment: base, limit, selector, type, present, dpl, db, s, l, g, avl,
    # unusable, padding. Flat 64-bit segment.
    return struct.pack("=QIHBBBBBBBBBB", 0, 0xFFFFFFFF, selector, 11 if code else 3,
                       1, 0, 0, 1, 1 if code else 0, 1, 0, 0, 0)


def _write_page_tables(mem: mmap.mmap) -> None:
    # Identity-map the first 2 MiB with one large page.
    for table, entry in ((_PML4, _PDPT | 0x7), (_PDPT, _PD | 0x7), (_PD, 0x87)):
        mem[table:table + 8] = struct.pack("=Q", entry)


def _setup_registers(vcpu: int, long_mode: bool) -> None:
    sregs = bytearray(312)
    fcntl.ioctl(vcpu, _KVM_GET_SREGS, sregs)
    if long_mode:
        struct.pack_into("=24s", sregs, 0, _segment(1 << 3, True))            # cs
        for index in range(1, 6):                                             # ds es fs gs ss
            struct.pack_into("=24s", sregs, 24 * index, _segment(2 << 3, False))
        cr0 = 0x1 | 0x2 | 0x10 | 0x20 | 0x10000 | 0x40000 | 0x80000000      # PE MP ET NE WP AM PG
        struct.pack_into("=QQQ", sregs, 224, cr0, 0, _PML4)                  # cr0 cr2 cr3
        struct.pack_into("=Q", sregs, 248, 0x20)                             # cr4.PAE
        struct.pack_into("=Q", sregs, 264, 0x500)                            # efer LME|LMA
    else:
        struct.pack_into("=Q", sregs, 0, 0)     # cs.base
        struct.pack_into("=H", sregs, 12, 0)    # cs.selector
    fcntl.ioctl(vcpu, _KVM_SET_SREGS, bytes(sregs))
    regs = bytearray(144)
    struct.pack_into("=Q", regs, 48, _MEM_SIZE)                  # rsp
    struct.pack_into("=QQ", regs, 128, _CODE, 0x2)               # rip, rflags
    fcntl.ioctl(vcpu, _KVM_SET_REGS, bytes(regs))


def _supported_cpuid(kvm: int) -> bytearray:
    buf = bytearray(8 + 40 * _CPUID_ENTRIES)
    struct.pack_into("=I", buf, 0, _CPUID_ENTRIES)
    fcntl.ioctl(kvm, _KVM_GET_SUPPORTED_CPUID, buf)
    return buf   # mutable: fcntl.ioctl copies immutable arguments only up to 1 KiB


def _run_stage(kvm: int, long_mode: bool, code: bytes) -> tuple[str | None, float]:
    """Run one test guest to its hlt: (None on success else what went wrong, CPU seconds
    spent in KVM_RUN). CPU time, not wall time, so a busy host does not look slow."""
    vm = fcntl.ioctl(kvm, _KVM_CREATE_VM, 0)
    try:
        mem = mmap.mmap(-1, _MEM_SIZE)
        mem[_CODE:_CODE + len(code)] = code
        _write_page_tables(mem)
        region = struct.pack("=IIQQQ", 0, 0, 0, _MEM_SIZE, _buffer_address(mem))
        fcntl.ioctl(vm, _KVM_SET_USER_MEMORY_REGION, region)
        vcpu = fcntl.ioctl(vm, _KVM_CREATE_VCPU, 0)
        # Without a CPUID that advertises long mode, writing EFER.LME faults, as it
        # would on a real CPU without it; QEMU does the same before every guest.
        fcntl.ioctl(vcpu, _KVM_SET_CPUID2, _supported_cpuid(kvm))
        run_size = fcntl.ioctl(kvm, _KVM_GET_VCPU_MMAP_SIZE, 0)
        run = mmap.mmap(vcpu, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        _setup_registers(vcpu, long_mode)
        t0 = time.thread_time()
        fcntl.ioctl(vcpu, _KVM_RUN, 0)
        cpu = time.thread_time() - t0
        exit_reason = struct.unpack_from("=I", run, 8)[0]
        if exit_reason != _KVM_EXIT_HLT:
            return f"exit reason {exit_reason}, expected KVM_EXIT_HLT ({_KVM_EXIT_HLT})", cpu
        return None, cpu
    finally:
        os.close(vm)


def _speed_problem(cpu_seconds: float) -> str | None:
    rate = _LOOP_ITERATIONS / max(cpu_seconds, 1e-9)
    if rate >= MIN_LOOP_RATE:
        return None
    hint = " (/dev/kvm is served by kvm_pvm)" if Path("/sys/module/kvm_pvm").exists() else ""
    return (f"ran {rate / 1e6:.1f}M iterations per CPU-second (need at least "
            f"{MIN_LOOP_RATE / 1e6:.0f}M): guest code does not run at hardware speed{hint}")


def _ioctl_stages(device: str, emit) -> None:
    """The child's work: emit({"begin": name}) before and a StageResult after each stage."""
    def stage(name: str, status: str, detail: str, seconds: float = 0.0) -> None:
        emit(StageResult(name, status, detail, seconds).to_json())
    try:
        kvm = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return stage(IOCTL_STAGES[0], "failed", f"cannot open {device}: {exc.strerror}")
    try:
        version = fcntl.ioctl(kvm, _KVM_GET_API_VERSION, 0)
        if version != _KVM_API_VERSION:
            return stage(IOCTL_STAGES[0], "failed",
                         f"KVM API version {version}, expected {_KVM_API_VERSION}")
        for name, long_mode, code in _HALT_STAGES + ((SPEED_STAGE, True, _LOOP),):
            emit({"begin": name})
            t0 = time.monotonic()
            try:
                problem, cpu = _run_stage(kvm, long_mode, code)
            except OSError as exc:
                return stage(name, "failed", f"KVM ioctl failed: {exc.strerror or exc}")
            if problem is None and name == SPEED_STAGE:
                problem = _speed_problem(cpu)
            detail = (f"{_LOOP_ITERATIONS / max(cpu, 1e-9) / 1e6:.0f}M loop iterations per "
                      "CPU-second" if name == SPEED_STAGE else "halted")
            stage(name, "failed" if problem else "passed", problem or detail,
                  time.monotonic() - t0)
            if problem:
                return
    finally:
        os.close(kvm)


def _buffer_address(mem: mmap.mmap) -> int:
    import ctypes
    return ctypes.addressof(ctypes.c_char.from_buffer(mem))


def parse_child_output(stdout: str, *, timed_out: float | None = None,
                       exit_code: int = 0, stderr: str = "") -> tuple[StageResult, ...]:
    """Turn the child's JSON lines into stage results. A stage that began and never
    reported hung in KVM_RUN (if the child timed out) or crashed the child."""
    results: list[StageResult] = []
    begun = None
    for line in stdout.splitlines():
        try:
            data = json.loads(line)
            if "begin" in data:
                begun = str(data["begin"])
            else:
                results.append(StageResult(str(data["stage"]), data["status"],
                                           str(data["detail"]), float(data["seconds"])))
                begun = None
        except (ValueError, KeyError, TypeError):
            continue
    if results and not results[-1].passed or len(results) == len(IOCTL_STAGES):
        return tuple(results)
    name = begun or IOCTL_STAGES[len(results)]
    if timed_out is not None:
        detail = f"did not halt within {timed_out:g}s (KVM_RUN hangs)"
    else:
        detail = f"check crashed (exit {exit_code}): {stderr.strip()[-200:] or 'no output'}"
    return tuple(results) + (StageResult(name, "failed", detail),)


def run_ioctl_stages(device: str = "/dev/kvm", timeout: float = 10.0) -> tuple[StageResult, ...]:
    """The ioctl stages in a child process, so a hanging KVM_RUN cannot hang us."""
    if not os.path.exists(device):
        return (StageResult(IOCTL_STAGES[0], "failed", f"{device} does not exist"),)
    try:
        out = subprocess.run([sys.executable, "-m", "podvirt.launcher.kvm", device],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return parse_child_output(stdout, timed_out=timeout)
    return parse_child_output(out.stdout, exit_code=out.returncode, stderr=out.stderr)


def check_kvm(device: str = "/dev/kvm", *, ioctl_timeout: float = 10.0,
              boot_timeout: float = 15.0, guest_dirs: tuple[Path, ...] | None = None,
              qemu: str = "qemu-system-x86_64") -> KvmVerdict:
    """The full check; the boot stage runs only after every ioctl stage passed."""
    stages = run_ioctl_stages(device, ioctl_timeout)
    if all(st.passed for st in stages):
        dirs = guest_dirs if guest_dirs is not None else default_guest_dirs()
        payload = find_payload(dirs)
        if payload is None:
            looked = ", ".join(map(str, dirs))
            stages += (StageResult(BOOT_STAGE, "skipped",
                                   f"no boot payload to confirm (looked in {looked}; "
                                   f"set PODVIRT_KVM_CHECK_GUEST)"),)
        else:
            stages += (boot_check(payload, timeout=boot_timeout, qemu=qemu),)
    return verdict_from_stages(stages)


class AccelUnavailable(RuntimeError):
    """KVM is unusable and the VM does not allow software emulation."""


def choose_accel(kvm: KvmVerdict, *, allow_emulation: bool) -> Accel:
    if kvm.usable:
        return "kvm"
    if allow_emulation:
        return "tcg"
    raise AccelUnavailable(f"{kvm.summary}; the VM does not set "
                           "podvirt.io/allow-emulation=true, so it cannot fall back to TCG")


if __name__ == "__main__":
    _ioctl_stages(sys.argv[1] if len(sys.argv) > 1 else "/dev/kvm",
                  lambda record: print(json.dumps(record), flush=True))
