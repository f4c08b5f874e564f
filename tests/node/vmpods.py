"""Helpers the node-tier tests share: VM pod phase, console waits, deletion."""

from __future__ import annotations

import re
import time

from podvirt.launcher.kvmboot import MARKER
from podvirt.vmspec import keys as k
from tests.node.conftest import NAMESPACE

CONSOLE_TIMEOUT = 180    # image copy + libvirtd start + QEMU capability probe + TCG boot


def phase(pod) -> str:
    return (pod.metadata.annotations or {}).get(k.PHASE, "")


def wait_console(logs, name: str, marker: str = MARKER.decode(),
                 timeout: float = CONSOLE_TIMEOUT) -> str:
    """The launcher's log (the guest's serial console) once it shows `marker`."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = logs(name)
        if marker in text:
            return text
        time.sleep(1)
    raise AssertionError(f"{marker} never appeared in {name}'s console; log:\n{text[-3000:]}")


def console_value(text: str, marker: str) -> str:
    """What the guest printed after `marker` on its console line (hack/guest/init.sh)."""
    # Not anchored at the line's start: firmware (OVMF) leaves terminal codes before it.
    found = re.search(rf"{re.escape(marker)} ?(.*?)\r?$", text, re.M)
    assert found, f"no {marker} line in the console:\n{text[-2000:]}"
    return found.group(1)


def delete(core, name: str) -> None:
    from kubernetes.client.exceptions import ApiException
    try:
        core.delete_namespaced_pod(name, NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise


def gone(core, name: str, timeout: float) -> float:
    from kubernetes.client.exceptions import ApiException
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            core.read_namespaced_pod(name, NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return time.monotonic() - started
            raise
        time.sleep(0.5)
    raise AssertionError(f"pod {name} still exists {timeout}s after its deletion")


def to_yaml(manifest: dict) -> str:
    import yaml
    return yaml.safe_dump(manifest)


def qemu_pid(name: str) -> int | None:
    """The pid of this VM's QEMU, seen from the host (a pod's processes are in the host's
    process table): its `-name guest=<domain>` is the pod's name, with or without the
    namespace in front."""
    from pathlib import Path
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv[0].endswith(b"qemu-system-x86_64") or b"-name" not in argv:
            continue
        value = argv[argv.index(b"-name") + 1].decode(errors="replace")
        guest = value.split(",")[0].removeprefix("guest=")
        if guest in (name, f"{NAMESPACE}_{name}", f"{NAMESPACE}-{name}"):
            return int(proc.name)
    return None


def events(core, name: str) -> list[tuple[str, str]]:
    """(reason, message) of the pod's Events, oldest first."""
    items = core.list_namespaced_event(NAMESPACE,
                                       field_selector=f"involvedObject.name={name}").items
    items.sort(key=lambda e: (e.last_timestamp or e.event_time or e.metadata.creation_timestamp))
    return [(e.reason, e.message or "") for e in items]


def container_cgroup(pod, subsystem: str, container: str = "launcher"):
    """The host directory of a container's cgroup (cgroup v1, kubelet's cgroupfs driver)."""
    from pathlib import Path
    status = next(c for c in pod.status.container_statuses if c.name == container)
    cid = status.container_id.split("://", 1)[1]
    found = list(Path("/sys/fs/cgroup", subsystem).glob(f"kubepods*/**/pod{pod.metadata.uid}/{cid}"))
    assert len(found) == 1, f"cgroup of {pod.metadata.name}/{container}: {found}"
    return found[0]


def console_session(plugin_env, name: str):
    """`kubectl podvirt console NAME` in a real terminal (pexpect), attached: its banner
    (which says how to leave) has been seen."""
    import pexpect
    session = pexpect.spawn("kubectl", ["podvirt", "console", name, "-n", NAMESPACE],
                            env=plugin_env, timeout=60)
    session.expect("leaves")
    return session
