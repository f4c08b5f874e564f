"""`podvirt launcher probe` against a node in the real API server: the facts it gathered on
this machine become the node's labels, annotations and podvirt.io/vm capacity."""

import json
import subprocess
import sys

from podvirt.vmspec import keys as k


def test_probe_publishes_facts_on_its_node(cluster, core):
    # A node of its own (not a kwok one): the facts of this machine must not change where
    # the other tests' VMs may go.
    core.create_node({"metadata": {"name": "probe-target"}})
    proc = subprocess.run(
        [sys.executable, "-m", "podvirt.cli", "launcher", "probe", "--once", "--node",
         "probe-target", "--kubeconfig", str(cluster.kubeconfig), "--vm-slots", "12"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)

    node = core.read_node("probe-target")
    labels, annotations = node.metadata.labels, node.metadata.annotations
    assert labels[k.NODE_KVM_LABEL] == ("true" if facts["kvm"]["usable"] else "false")
    assert labels[k.NODE_CPU_MODEL_LABEL] == facts["cpuModel"]
    assert json.loads(annotations[k.NODE_PCI_DEVICES]) == facts["pciDevices"]
    assert json.loads(annotations[k.NODE_HUGEPAGES]) == dict(facts["hugepages"])
    assert node.status.capacity[k.VM_MARKER_RESOURCE] == "12"
