"""Is KVM usable here? A functional check, then the accelerator decision.

/dev/kvm existing proves little: nested or broken virtualization can accept every
ioctl and still hang the first real guest. So the check runs a tiny real-mode guest
(one `hlt` instruction) with KVM_RUN and expects a KVM_EXIT_HLT. It runs in a child
process with a timeout, because a broken KVM_RUN can block forever in the kernel.

`python -m podvirt.launcher.kvm` runs the check in-process and prints one JSON line;
that is what the child does.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

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
# (name, start in long mode?, code): each stage must end in KVM_EXIT_HLT. Broken nested
# virtualization has been seen to pass the first two and hang in the third.
_STAGES = (("real mode", False, _HLT), ("64-bit long mode", True, _HLT),
           ("real-to-long mode switch", False, _MODE_SWITCH))


@dataclass(frozen=True)
class KvmVerdict:
    usable: bool
    reason: str          # why not, or what worked


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


def _run_stage(kvm: int, long_mode: bool, code: bytes) -> str | None:
    """Run one test guest to its hlt; None on success, else what went wrong."""
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
        fcntl.ioctl(vcpu, _KVM_RUN, 0)
        exit_reason = struct.unpack_from("=I", run, 8)[0]
        if exit_reason != _KVM_EXIT_HLT:
            return f"exit reason {exit_reason}, expected KVM_EXIT_HLT ({_KVM_EXIT_HLT})"
        return None
    finally:
        os.close(vm)


def _probe_in_process(device: str = "/dev/kvm") -> KvmVerdict:
    try:
        kvm = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return KvmVerdict(False, f"cannot open {device}: {exc.strerror}")
    try:
        version = fcntl.ioctl(kvm, _KVM_GET_API_VERSION, 0)
        if version != _KVM_API_VERSION:
            return KvmVerdict(False, f"KVM API version {version}, expected {_KVM_API_VERSION}")
        for stage, long_mode, code in _STAGES:
            # Progress goes to stderr so a parent that times out can say which stage hung.
            print(f"stage: {stage}", file=sys.stderr, flush=True)
            problem = _run_stage(kvm, long_mode, code)
            if problem:
                return KvmVerdict(False, f"{stage} test guest: {problem}")
        return KvmVerdict(True, "test guests (real mode, long mode, real-to-long switch) halted under KVM")
    except OSError as exc:
        return KvmVerdict(False, f"KVM ioctl failed: {exc.strerror or exc}")
    finally:
        os.close(kvm)


def _buffer_address(mem: mmap.mmap) -> int:
    import ctypes
    return ctypes.addressof(ctypes.c_char.from_buffer(mem))


def check_kvm(device: str = "/dev/kvm", timeout: float = 5.0) -> KvmVerdict:
    """Run the functional check in a child process so a hanging KVM_RUN cannot hang us."""
    if not os.path.exists(device):
        return KvmVerdict(False, f"{device} does not exist")
    try:
        out = subprocess.run([sys.executable, "-m", "podvirt.launcher.kvm", device],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        stage = ([line[7:] for line in stderr.splitlines() if line.startswith("stage: ")]
                 or ["startup"])[-1]
        return KvmVerdict(False, f"{stage} test guest did not halt within {timeout:g}s "
                                 "(KVM_RUN hangs)")
    try:
        data = json.loads(out.stdout.strip().splitlines()[-1])
        return KvmVerdict(bool(data["usable"]), str(data["reason"]))
    except (IndexError, ValueError, KeyError):
        return KvmVerdict(False, f"KVM check crashed (exit {out.returncode}): "
                                 f"{out.stderr.strip()[-200:]}")


class AccelUnavailable(RuntimeError):
    """KVM is unusable and the VM does not allow software emulation."""


def choose_accel(kvm: KvmVerdict, *, allow_emulation: bool) -> Accel:
    if kvm.usable:
        return "kvm"
    if allow_emulation:
        return "tcg"
    raise AccelUnavailable(f"KVM is not usable on this node ({kvm.reason}) and the VM does not "
                           "set podvirt.io/allow-emulation=true")


if __name__ == "__main__":
    verdict = _probe_in_process(sys.argv[1] if len(sys.argv) > 1 else "/dev/kvm")
    print(json.dumps({"usable": verdict.usable, "reason": verdict.reason}))
