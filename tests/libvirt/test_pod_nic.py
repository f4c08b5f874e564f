"""The pod NIC (passt) with real libvirtd + QEMU, the launcher in a network namespace of
its own: a veth pair stands in for the pod's interface, its host end for the node.

The tiny guest takes its address by DHCP, serves HTTP on a forwarded port and fetches
a URL on the "node"; the launcher reports the address and, when passt is gone, says so.
"""

import http.server
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

from tests.libvirt.realguest import LauncherProcess

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("libvirtd")
                       or not shutil.which("passt") or not shutil.which("ip"),
                       reason="needs root, libvirtd, passt and iproute2"),
]

GUEST_PORT = 18080


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def pod_netns():
    """(netns name, pod address, node address): a /30 on a veth pair, default route to
    the node end, as the CNI bridge plugin gives a pod."""
    tag = uuid.uuid4().hex[:6]
    name, host_if = f"podvirt-t-{tag}", f"pvt{tag}"
    octet = int(tag[:2], 16) % 250 + 1
    node, pod = f"10.251.{octet}.1", f"10.251.{octet}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{node}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for args in (("link", "set", "lo", "up"), ("addr", "add", f"{pod}/30", "dev", "eth0"),
                     ("link", "set", "eth0", "up"), ("route", "add", "default", "via", node)):
            _ip("-n", name, *args)
        yield name, pod, node
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


@pytest.fixture
def node_server(pod_netns):
    _, _, node = pod_netns
    token = secrets.token_hex(8)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(token.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((node, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{node}:{server.server_address[1]}/", token
    server.shutdown()
    server.server_close()


def _console(launcher: LauncherProcess, marker: str) -> str:
    launcher.wait_for_output(marker, timeout=90)
    line = next(line for line in launcher.stdout if marker in line)
    return line.split(marker, 1)[1].strip()


def _get(url: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode().strip()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_guest_gets_the_pod_address_serves_a_forwarded_port_and_reaches_out(
        pod, pod_netns, node_server):
    path, procs = pod
    netns, pod_ip, _ = pod_netns
    url, token = node_server
    launcher = LauncherProcess(
        path, f"podvirt.sleep=wait podvirt.net=dhcp podvirt.serve={GUEST_PORT} "
              f"podvirt.reach={url}",
        annotations={"podvirt.io/nics": "eth0", "podvirt.io/ports": str(GUEST_PORT)},
        netns=netns)
    procs.append(launcher)

    assert _console(launcher, "PODVIRT-GUEST-IP") == f"{pod_ip}/30"
    assert _console(launcher, "PODVIRT-GUEST-REACHED") == token
    # From the "node", the pod's address and the declared port reach the guest's server.
    assert _get(f"http://{pod_ip}:{GUEST_PORT}/") == f"PODVIRT-GUEST-HTTP {pod_ip}/30"
    running = next(s for s in launcher.statuses() if s.get("podvirt.io/phase") == "Running")
    assert running["podvirt.io/guest-ip"] == pod_ip

    # A port nobody declared is not forwarded: passt listens on the declared ones only.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{pod_ip}:{GUEST_PORT + 1}/", timeout=3)

    launcher.proc.terminate()
    assert launcher.wait(60) == 0, "".join(launcher.stderr)
    assert _passt_pids(path) == [], "passt outlived its launcher"


def test_a_passt_that_dies_is_reported_as_a_lost_pod_network(pod, pod_netns):
    path, procs = pod
    netns, _, _ = pod_netns
    launcher = LauncherProcess(path, "podvirt.sleep=wait podvirt.net=dhcp",
                               annotations={"podvirt.io/nics": "eth0"}, netns=netns)
    procs.append(launcher)
    launcher.wait_for_output("PODVIRT-GUEST-IP", timeout=90)
    pids = _passt_pids(path)
    assert len(pids) == 1, pids
    os.kill(pids[0], 9)
    deadline = time.monotonic() + 30
    while not any("passt exited" in line for line in launcher.stderr):
        assert time.monotonic() < deadline, "".join(launcher.stderr)
        time.sleep(0.5)
    launcher.proc.terminate()
    launcher.wait(60)


def _passt_pids(path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"passt.*{re.escape(str(path))}"], capture_output=True,
                         text=True).stdout
    return [int(pid) for pid in out.split()]
