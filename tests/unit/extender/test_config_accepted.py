"""The scheduler configurations podvirt writes, as the real kube-scheduler reads them:
`--write-config-to` loads, defaults and validates the file and builds every profile's
plugins (NodeResourcesFit's scoringStrategy included) and the extenders, then exits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from podvirt.certs import generate_ca
from podvirt.extender.schedconfig import render_scheduler_config
from tests.helm import helm_template, k8s_bin_or_skip

KUBECONFIG = {"apiVersion": "v1", "kind": "Config", "current-context": "x",
              "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
              "users": [{"name": "u", "user": {"token": "t"}}],
              "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}


@pytest.fixture(scope="module")
def scheduler() -> Path:
    return k8s_bin_or_skip("kube-scheduler")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    kubeconfig, ca = tmp_path / "kubeconfig", tmp_path / "ca.crt"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG))
    ca.write_bytes(generate_ca("test-ca")[0])
    return kubeconfig, ca


def _accepts(scheduler: Path, config: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path, out = tmp_path / "config.yaml", tmp_path / "written.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([str(scheduler), "--config", str(path), "--write-config-to", str(out)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kwargs", [
    pytest.param({}, id="spread"),
    pytest.param({"scoring": "pack", "device_resources": ("example.com/nic",)},
                 id="pack-with-numa-entry"),
])
def test_rendered_config_is_accepted(scheduler, files, tmp_path, kwargs):
    kubeconfig, ca = files
    config = yaml.safe_load(render_scheduler_config("https://127.0.0.1:9443", str(ca),
                                                    str(kubeconfig), **kwargs))
    done = _accepts(scheduler, config, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_chart_config_is_accepted(scheduler, files, tmp_path):
    helm = k8s_bin_or_skip("helm")
    kubeconfig, ca = files
    objects = [d for d in yaml.safe_load_all(helm_template(helm, {
        "passthrough": {"resources": {"10de:1eb8": "nvidia.com/T4"}},
        "scheduler": {"scoring": "pack"}})) if d]
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"].endswith("-scheduler-config")]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    # In its pod the scheduler has a ServiceAccount and the chart's CA; here, files.
    config["clientConnection"] = {"kubeconfig": str(kubeconfig)}
    config["leaderElection"] = {"leaderElect": False}
    for extender in config["extenders"]:
        extender["tlsConfig"]["caFile"] = str(ca)
    assert len(config["extenders"]) == 2
    done = _accepts(scheduler, config, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_broken_config_is_refused(scheduler, files, tmp_path):
    """The control: what kube-scheduler refuses fails this check."""
    kubeconfig, ca = files
    config = yaml.safe_load(render_scheduler_config("https://127.0.0.1:9443", str(ca),
                                                    str(kubeconfig)))
    config["profiles"][-1]["pluginConfig"][0]["args"]["scoringStrategy"]["type"] = "Spread"
    done = _accepts(scheduler, config, tmp_path)
    assert done.returncode != 0 and "scoringStrategy.type" in done.stderr
