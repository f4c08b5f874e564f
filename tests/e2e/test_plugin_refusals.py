"""`kubectl podvirt` refusals read from pods stored in the real API server (kwok runs
them, so no launcher answers): each is one line naming what is wrong, exit status 1,
and nothing is changed on a pod it refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from podvirt.vmspec import keys as k

from tests.e2e.support import DATA


def _plugin(cluster, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECTL": str(cluster.binaries.kubectl)}
    return subprocess.run([str(Path(sys.executable).parent / "kubectl-podvirt"), *args,
                           "--kubeconfig", str(cluster.kubeconfig)],
                          env=env, capture_output=True, text=True, timeout=60)


def test_refusals_name_the_reason(cluster, core, namespace, apply, wait_pod):
    apply(DATA / "plain-pod.yaml", namespace, check=True)
    vm = yaml.safe_load((DATA / "vm-named-node.yaml").read_text())
    apply(vm, namespace, check=True)
    wait_pod(namespace, "plain", lambda p: p.status.phase == "Running")
    wait_pod(namespace, "vm-named-node", lambda p: p.status.phase == "Running")

    cases = [
        (("console", "plain"), f"error: pod {namespace}/plain is not a podvirt VM pod (it "
                               "lacks the label podvirt.io/vm=true)"),
        (("vnc", "vm-named-node"), f"error: VM {namespace}/vm-named-node has no graphics "
                                   "(podvirt.io/graphics: none); set podvirt.io/graphics: vnc "
                                   "to give it a VNC display"),
        # kwok says the pod runs, but no launcher ever reported the VM running.
        (("pause", "vm-named-node"), f"error: VM {namespace}/vm-named-node is not started yet "
                                     "(podvirt.io/phase); this needs it Running or Paused"),
        (("stop", "missing"), f"error: pod {namespace}/missing: not found"),
    ]
    for args, expected in cases:
        result = _plugin(cluster, *args, "-n", namespace)
        assert (result.returncode, result.stderr.strip()) == (1, expected), args
    annotations = core.read_namespaced_pod("vm-named-node", namespace).metadata.annotations
    assert k.ACTION not in annotations
