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
