"""A KubeVirt user's first hour with a real distribution, on the real node: the Debian 12
containerdisk built here boots under TCG in a launcher pod, cloud-init creates a user with
an SSH key from a Secret's user data, `ssh` through the pod IP logs in, the console is in
`kubectl logs` and `kubectl podvirt console` logs in on it, and `kubectl delete` shuts the
guest down over ACPI."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from podvirt.vmspec import keys as k
from tests.node.conftest import NAMESPACE
from tests.node.vmpods import console_session, delete, gone, phase, to_yaml, wait_console

pytestmark = [pytest.mark.skipif(not shutil.which("ssh"), reason="needs an ssh client")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vm-debian.yaml"
BOOT_TIMEOUT = 600       # systemd + cloud-init under TCG on 2 shared cores


def _ssh(key: Path, host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
         f"debian@{host}", command], capture_output=True, text=True, timeout=timeout)


def _console_login(plugin_env, name: str) -> None:
    pexpect = pytest.importorskip("pexpect")
    session = console_session(plugin_env, name)
    try:
        session.send("\r")
        session.expect("login: ")
        session.send("debian\r")
        session.expect("Password: ")
        session.send("podvirt\r")
        session.expect(r"\$ ")
        session.send("echo console-$((6*7)) $(id -un)\r")
        session.expect(r"console-42 debian\r*\n")     # the answer, not the echoed line
        session.send("exit\r")
        session.send("\x1d")    # Ctrl-] leaves
        session.expect(pexpect.EOF)
    finally:
        session.close(force=True)


def test_debian_boots_takes_its_user_from_cloud_init_and_answers_ssh(cluster, core, wait_pod,
                                                                     logs, plugin_env, tmp_path):
    from kubernetes import client
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user_data = ("#cloud-config\nusers:\n  - name: debian\n    sudo: ALL=(ALL) NOPASSWD:ALL\n"
                 "    shell: /bin/bash\n    lock_passwd: false\n    plain_text_passwd: podvirt\n"
                 f"    ssh_authorized_keys: [\"{key.with_suffix('.pub').read_text().strip()}\"]\n")
    manifest = yaml.safe_load(EXAMPLE.read_text())
    name = manifest["metadata"]["name"]
    secret = manifest["metadata"]["annotations"][k.CLOUD_INIT_SECRET]
    core.create_namespaced_secret(NAMESPACE, client.V1Secret(
        metadata=client.V1ObjectMeta(name=secret), string_data={"userdata": user_data}))
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=to_yaml(manifest))
    try:
        pod = wait_pod(name, lambda p: phase(p) in ("Running", "Failed"), 300)
        ann = pod.metadata.annotations
        assert phase(pod) == "Running", (ann.get(k.FAILURE_REASON), ann.get(k.FAILURE_MESSAGE))
        pod_ip = pod.status.pod_ip

        deadline = time.monotonic() + BOOT_TIMEOUT
        while (out := _ssh(key, pod_ip, "cloud-init status --wait >/dev/null; hostname; "
                                        "id -un; . /etc/os-release; echo $VERSION_ID")) \
                .returncode != 0:
            assert time.monotonic() < deadline, f"no SSH login in {BOOT_TIMEOUT}s: {out.stderr}"
            time.sleep(5)
        assert out.stdout.split() == [name, "debian", "12"], out.stdout
        # The serial console (systemd's getty on ttyS0) is mirrored to the container log,
        # and `kubectl podvirt console` logs in on it through the API server.
        wait_console(logs, name, f"{name} login:", timeout=60)
        _console_login(plugin_env, name)

        started = time.monotonic()
        delete(core, name)
        gone(core, name, 120)
        # Shut down over ACPI within the grace, not destroyed at its end (90 s).
        assert time.monotonic() - started < 90
    finally:
        delete(core, name)
        core.delete_namespaced_secret(secret, NAMESPACE)
