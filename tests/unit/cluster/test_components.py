"""Pure rendering of component configuration (no cluster needed)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from podvirt.cluster import components, webhooks
from podvirt.cluster.layout import Layout
from podvirt.vmspec import keys as k

LAYOUT = Layout(Path("/state"))
EXTENDER_YAML = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection: {leaderElect: true}
extenders: [{urlPrefix: "https://127.0.0.1:9", bindVerb: bind}]
"""


@pytest.mark.parametrize("extender_yaml, extenders", [
    pytest.param(None, None, id="without-extender"),
    pytest.param(EXTENDER_YAML, [{"urlPrefix": "https://127.0.0.1:9", "bindVerb": "bind"}],
                 id="with-extender"),
])
def test_scheduler_config_uses_our_kubeconfig_and_one_replica(extender_yaml, extenders):
    config = yaml.safe_load(components.scheduler_config(LAYOUT, extender_yaml))
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert config["clientConnection"]["kubeconfig"] == "/state/kubeconfig"
    assert config["leaderElection"] == {"leaderElect": False}
    assert config.get("extenders") == extenders


def test_webhook_registration_targets_only_opt_in_pods():
    config = webhooks.mutating_webhook_configuration("https://127.0.0.1:8443/mutate", b"PEM")
    (hook,) = config["webhooks"]
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:8443/mutate",
                                    "caBundle": base64.b64encode(b"PEM").decode()}
    assert hook["objectSelector"] == {"matchLabels": {k.OPT_IN_LABEL: "true"}}
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert (hook["failurePolicy"], hook["sideEffects"], hook["reinvocationPolicy"],
            hook["timeoutSeconds"]) == ("Fail", "None", "IfNeeded", 10)


def test_down_never_signals_a_process_that_merely_reuses_a_recorded_pid(tmp_path):
    from podvirt.cluster import processes, state
    from podvirt.cluster.cluster import Cluster
    me = os.getpid()
    layout = Layout(tmp_path / "s")
    layout.root.mkdir()
    impostor = state.Component("etcd", me, processes.start_ticks(me) + 1, 1, "etcd.log",
                               processes.Probe("http://127.0.0.1:1/health"))
    state.save(layout.state_file, state.ClusterRecord("https://127.0.0.1:1", "kc", (impostor,)))

    cluster = Cluster(layout.root, progress=lambda _: None)
    assert cluster.running() == []
    assert cluster.down() is True            # this test process survives it
    assert not layout.root.exists()
