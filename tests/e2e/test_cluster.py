"""The control plane `podvirt cluster up` builds: components, nodes, refusal to double-start."""

from __future__ import annotations

import pytest

from tests.e2e.support import missing_from


def test_every_component_is_running_and_healthy(cluster):
    rows = {r.name: r for r in cluster.status()}
    assert {"etcd", "kube-apiserver", "kube-scheduler", "kwok", "webhook"} <= rows.keys()
    assert [n for n, r in rows.items() if not (r.running and r.healthy)] == []


def test_fake_nodes_carry_the_inventory(cluster, core):
    from podvirt.cluster.inventory import DEFAULT_INVENTORY, load
    for node in load(DEFAULT_INVENTORY):
        stored = core.api_client.sanitize_for_serialization(core.read_node(node.name))
        assert missing_from(stored, node.manifest()) == [], node.name
        ready = [c for c in stored["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        assert not stored["spec"].get("taints")


def test_second_up_in_the_same_state_dir_is_refused(cluster):
    from podvirt.cluster.cluster import Cluster, ClusterError
    with pytest.raises(ClusterError, match="already up"):
        Cluster(cluster.state_dir, progress=lambda _: None).up()
    assert all(r.running for r in cluster.status())


def test_kubeconfig_works_for_kubectl(cluster):
    out = cluster.kubectl("auth", "can-i", "create", "pods", "--all-namespaces").stdout
    assert out.strip() == "yes"
