"""Live migration between two launcher pods on the real node (`kubectl podvirt migrate
--same-node`: this machine is the only real node). The guest prints a counter every
100 ms; after the move the counter goes on from where it was, with no reboot between.
A guest with ephemeral disks (a containerdisk's overlay, a scratch disk) writes to them
first; in the new pod it reads its writes back from that pod's disks."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from podvirt.vmspec import keys as k
from tests.node.conftest import NAMESPACE
from tests.node.test_vm_disks import TINY_DISK
from tests.node.vmpods import delete, events, gone, phase, qemu_pid, to_yaml, wait_console

COUNT = re.compile(r"^PODVIRT-COUNT (\d+)\r?$", re.M)


def _counts(text: str) -> list[int]:
    return [int(n) for n in COUNT.findall(text)]


@pytest.mark.parametrize("name, disks, writes", [
    pytest.param("vm-migrate", None, {}, id="no-disks"),
    pytest.param("vm-migrate-disks", f"root=containerdisk:{TINY_DISK},data=scratch:64Mi",
                 {"vda": "root-before-move", "vdb": "scratch-before-move"},
                 id="ephemeral-disks-copied"),
])
def test_migrated_guest_keeps_counting_in_its_new_pod(cluster, core, vm_pod, wait_pod, logs,
                                                      plugin_env, name, disks, writes):
    target = ""
    disk_args = (f"podvirt.disk-write={','.join(f'{d}:{t}' for d, t in writes.items())} "
                 f"podvirt.disk-watch={','.join(writes)} ") if writes else ""
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=to_yaml(vm_pod(
        name, memory="128Mi", disks=disks,
        kernel_args=f"console=ttyS0 quiet podvirt.sleep=wait {disk_args}podvirt.count")))
    try:
        source_text = wait_console(logs, name, "PODVIRT-COUNT 20")
        assert all(f"PODVIRT-GUEST-WROTE {dev}" in source_text for dev in writes), source_text
        source_qemu = qemu_pid(name)
        t0 = time.monotonic()
        proc = subprocess.run(["kubectl", "podvirt", "migrate", name, "-n", NAMESPACE,
                               "--same-node", "--timeout", "240"], env=plugin_env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        print(f"\nFIGURE kubectl_podvirt_migrate_seconds={time.monotonic() - t0:.1f}")
        target = re.search(r"migrated to pod \S+/(\S+)", proc.stdout).group(1)
        pod = wait_pod(target, lambda p: phase(p) == "Running", 30)
        assert pod.metadata.labels[k.VM_NAME_LABEL] == name
        seen = dict(events(core, target))
        assert "MigratedIn" in seen and "guest paused" in seen["MigratedIn"], seen
        source_events = dict(events(core, name))
        assert "Migrated" in source_events, source_events
        gone(core, name, 60)    # the plugin deletes the ended source pod
        # The domain keeps its name, so the one QEMU named after it is the target's.
        assert source_qemu is not None and qemu_pid(name) not in (None, source_qemu)
        assert not Path(f"/proc/{source_qemu}").exists(), "the source's QEMU lives on"
        text = wait_console(logs, target, "PODVIRT-COUNT", timeout=30)
        counts = _counts(text)
        assert counts and counts[0] > 20, f"the counter restarted: {counts[:5]}"
        assert "PODVIRT-GUEST-UP" not in text and "Linux version" not in text, \
            "the guest booted again in the target pod"
        for dev, written in writes.items():     # read past its cache, from this pod's disk
            wait_console(logs, target, f"PODVIRT-GUEST-READ {dev} PODVIRT-DATA {written}",
                         timeout=30)
    finally:
        delete(core, name)
        if target:
            delete(core, target)
            gone(core, target, 60)
