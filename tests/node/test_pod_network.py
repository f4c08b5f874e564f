"""The pod NIC on the real node: the guest behind the pod's IP through passt.

The tiny guest (hack/guest/init.sh) takes its address by DHCP, serves HTTP on a declared
port and fetches a URL on the node's side of the pod bridge; the test reaches the guest
through the pod IP and through a ClusterIP Service (kube-proxy's rules), from the host.
"""

from __future__ import annotations

import http.server
import secrets
import threading
import time
import urllib.request

import pytest

from podvirt.cluster.node import POD_SUBNET
from podvirt.vmspec import keys as k
from tests.node.conftest import NAMESPACE
from tests.node.vmpods import CONSOLE_TIMEOUT, console_value, delete, gone, phase, to_yaml, \
    wait_console

GUEST_PORT = 8080
GATEWAY = str(next(POD_SUBNET.hosts()))    # the node's address on the pod bridge


@pytest.fixture
def outside_server():
    """An HTTP server outside the pod (the node, on the bridge) answering a fresh token."""
    token = secrets.token_hex(8)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(f"outside-{token}".encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((GATEWAY, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{GATEWAY}:{server.server_address[1]}/", f"outside-{token}"
    server.shutdown()
    server.server_close()


def _get(url: str, timeout: float = 60) -> str:
    """GET with retries: passt and the guest's httpd come up a moment after the console."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} never answered: {exc}") from None
            time.sleep(1)


def test_guest_behind_the_pod_ip_by_dhcp_reached_by_pod_ip_and_service(
        cluster, core, vm_pod, wait_pod, logs, outside_server):
    from kubernetes import client
    name = "vm-net"
    url, token = outside_server
    manifest = vm_pod(name, nics="eth0", ports=f"{GUEST_PORT}/tcp",
                      kernel_args=f"console=ttyS0 quiet podvirt.sleep=wait podvirt.net=dhcp "
                                  f"podvirt.serve={GUEST_PORT} podvirt.reach={url}")
    manifest["metadata"]["labels"]["app"] = name
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(selector={"app": name}, ports=[client.V1ServicePort(
            port=80, target_port=f"tcp-{GUEST_PORT}", protocol="TCP")]))
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=to_yaml(manifest))
    core.create_namespaced_service(NAMESPACE, service)
    try:
        pod = wait_pod(name, lambda p: phase(p) in ("Running", "Failed"), CONSOLE_TIMEOUT)
        ann = pod.metadata.annotations
        assert phase(pod) == "Running", (ann.get(k.FAILURE_REASON), ann.get(k.FAILURE_MESSAGE))
        launcher = next(c for c in pod.spec.containers if c.name == "launcher")
        assert "NET_ADMIN" not in launcher.security_context.capabilities.add
        assert [(p.name, p.container_port) for p in launcher.ports] == \
            [("metrics", 9101), (f"tcp-{GUEST_PORT}", GUEST_PORT)]

        console = wait_console(logs, name, "PODVIRT-GUEST-UP")
        # DHCP inside the pod gave the guest the pod's own address, and the launcher
        # reports that address.
        pod_ip = pod.status.pod_ip
        assert console_value(console, "PODVIRT-GUEST-IP").split("/")[0] == pod_ip, console
        assert ann[k.GUEST_IP] == pod_ip

        # Out: the guest reached the node across the pod network (NAT through passt).
        assert console_value(console, "PODVIRT-GUEST-REACHED") == token, console

        # In: the declared port, through the pod IP and through the Service's ClusterIP.
        assert _get(f"http://{pod_ip}:{GUEST_PORT}/").strip() == f"PODVIRT-GUEST-HTTP {pod_ip}/24"
        cluster_ip = core.read_namespaced_service(name, NAMESPACE).spec.cluster_ip
        assert _get(f"http://{cluster_ip}:80/").strip() == f"PODVIRT-GUEST-HTTP {pod_ip}/24"

        # The launcher's metrics where the pod's prometheus.io/* annotations say.
        assert ann["prometheus.io/scrape"] == "true"
        metrics = _get(f"http://{pod_ip}:{ann['prometheus.io/port']}{ann['prometheus.io/path']}")
        from prometheus_client.parser import text_string_to_metric_families
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(metrics) for s in family.samples}
        assert samples[("podvirt_vm_up", (("vm", name),))] == 1
        assert samples[("podvirt_vm_state", (("state", "running"), ("vm", name)))] == 1
    finally:
        core.delete_namespaced_service(name, NAMESPACE)
        delete(core, name)
        gone(core, name, 60)
