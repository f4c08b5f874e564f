"""The KVM usability check on this machine, cross-checked against a real boot under KVM
(the pure verdict and the stages with injected results: tests/unit/launcher/test_kvm_check.py)."""

import os
import shutil
import time

import pytest

from podvirt.launcher import kvm as kvmcheck
from podvirt.launcher.kvm import verdict_from_stages
from podvirt.launcher.kvmboot import BOOT_STAGE, BootPayload, boot_check


@pytest.mark.skipif(not os.path.exists("/dev/kvm") or not shutil.which("qemu-system-x86_64"),
                    reason="needs /dev/kvm and qemu-system-x86_64")
def test_full_check_on_this_machine_agrees_with_a_real_boot():
    """Whatever the check says here must match what a Linux guest actually does under KVM."""
    from tests.guest import ensure_guest
    guest = ensure_guest()
    t0 = time.monotonic()
    verdict = kvmcheck.check_kvm(guest_dirs=(guest.kernel.parent,))
    took = time.monotonic() - t0
    print(f"\n{verdict.summary}\ncheck took {took:.2f}s")
    for st in verdict.stages:
        print(f"  {st.name:26} {st.status:7} {st.seconds:6.3f}s  {st.detail}")
    # The verdict is the stages' verdict, the stages ran in order and stopped at a failure.
    assert verdict == verdict_from_stages(verdict.stages)
    names = [st.name for st in verdict.stages]
    assert names == list(kvmcheck.IOCTL_STAGES + (BOOT_STAGE,))[:len(names)]
    assert all(st.passed for st in verdict.stages[:-1])
    # Independent observation: boot the guest under KVM regardless of the verdict.
    observed = boot_check(BootPayload(guest.kernel, guest.initrd), timeout=15.0)
    print(f"direct boot under KVM: {observed.status} ({observed.detail}, {observed.seconds:.1f}s)")
    assert verdict.usable == observed.passed, (
        f"the check says {verdict.summary!r} but a real boot {observed.status}: "
        f"{observed.detail}")
