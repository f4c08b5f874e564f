"""SIGTERM on a real, ready `podvirt extender` (TLS, watching a local control plane):
readiness fails first, a filter in flight is answered, idle keep-alive connections are
closed by the server, and the process exits within seconds (it used to wait for the
graceful timeout, 30 s, whenever one idle connection was open)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import drainlib
from tests.hardening import services
from tests.support import local_cluster
from tests.unit.extender.objects import vm_pod

pytestmark = pytest.mark.timeout(180)

DRAIN = 2
IDLE = 10


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory):
    with local_cluster(tmp_path_factory.mktemp("cluster"), webhook=False, extender=False,
                       node=False, timeout=90) as c:
        yield c


def test_sigterm_drains_then_exits(control_plane, tmp_path: Path):
    certs = services.make_certs(tmp_path / "certs", "podvirt-extender")
    svc = services.extender(tmp_path / "extender.log", kubeconfig=Path(control_plane.kubeconfig),
                            certs=certs)
    svc.argv += [f"--drain-seconds={DRAIN}"]
    svc.start("/readyz")      # 200 only once the node and pod watches have listed
    try:
        ca = str(certs.ca)
        nodes = control_plane.kubectl("get", "nodes", "-o", "name").stdout.split()
        names = [n.removeprefix("node/") for n in nodes]
        conns = drainlib.idle_connections(svc.port, ca, IDLE)
        body = json.dumps({"Pod": vm_pod("vm1"), "NodeNames": names}).encode()
        slow = drainlib.SlowPost(svc.port, ca, "/filter", body)

        answer, sent = drainlib.drain_in_flight(svc.proc, svc.port, ca, conns, slow)
        result = json.loads(answer.body)
        judged = (set(result["NodeNames"]) | set(result["FailedNodes"])
                  | set(result["FailedAndUnresolvableNodes"]))
        assert result["Error"] == "" and judged == set(names), result
        seconds = drainlib.exit_seconds(svc.proc, sent)
        assert svc.proc.returncode == 0, svc.log_text()[-2000:]
        assert seconds < 10, f"exited {seconds:.1f}s after SIGTERM"
        assert not svc.tracebacks()
    finally:
        svc.stop()
