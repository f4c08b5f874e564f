"""Scheduler configuration rendering and the CLI surface."""

from __future__ import annotations

import base64

import pytest
import yaml

from podvirt.cli import build_parser
from podvirt.extender.schedconfig import render_scheduler_config

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def ca_file(tmp_path):
    path = tmp_path / "ca.crt"
    path.write_text(CA)
    return str(path)


def test_scheduler_config_matches_the_contract(ca_file):
    cfg = yaml.safe_load(render_scheduler_config("https://127.0.0.1:9443", ca_file,
                                                 "/state/scheduler.kubeconfig",
                                                 scheduler_name="vm-sched"))
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert cfg["clientConnection"]["kubeconfig"] == "/state/scheduler.kubeconfig"
    assert [p["schedulerName"] for p in cfg["profiles"]] == ["default-scheduler", "vm-sched"]
    (ext,) = cfg["extenders"]     # no device resources in the contract: no NUMA entry
    # No prioritize: memory is scored in-tree (below).
    assert {key: ext.get(key) for key in ("urlPrefix", "filterVerb", "prioritizeVerb",
                                          "bindVerb", "weight", "nodeCacheCapable",
                                          "ignorable", "enableHTTPS")} == {
        "urlPrefix": "https://127.0.0.1:9443", "filterVerb": "filter",
        "prioritizeVerb": None, "bindVerb": "bind", "weight": 1,
        "nodeCacheCapable": True, "ignorable": False, "enableHTTPS": True}
    assert ext["managedResources"] == [
        {"name": "devices.podvirt.io/kvm", "ignoredByScheduler": True},
        {"name": "podvirt.io/vm", "ignoredByScheduler": True}]
    assert base64.b64decode(ext["tlsConfig"]["caData"]).decode() == CA
    assert ext["tlsConfig"]["insecure"] is False


_NOT_BALANCED = {"disabled": [{"name": "NodeResourcesBalancedAllocation"}]}
NO_FIT = {"preFilter": {"disabled": [{"name": "NodeResourcesFit"}]},
          "filter": {"disabled": [{"name": "NodeResourcesFit"}]},
          "preScore": _NOT_BALANCED, "score": _NOT_BALANCED}
# The extender must see every node: kube-scheduler samples before it asks extenders.
ALL_NODES = {"percentageOfNodesToScore": 100}


def memory_scoring(strategy: str) -> list[dict]:
    return [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
        "type": strategy, "resources": [{"name": "memory", "weight": 1},
                                        {"name": "hugepages-2Mi", "weight": 1},
                                        {"name": "hugepages-1Gi", "weight": 1}]}}}]


VM = {**ALL_NODES, "plugins": NO_FIT, "pluginConfig": memory_scoring("LeastAllocated")}


@pytest.mark.parametrize("kwargs, profiles", [
    pytest.param({}, [{"schedulerName": "default-scheduler"},
                      {"schedulerName": "podvirt-scheduler", **VM}],
                 id="defaults"),
    pytest.param({"scheduler_name": "vms", "plain_scheduler_name": "plain"},
                 [{"schedulerName": "plain"}, {"schedulerName": "vms", **VM}],
                 id="renamed"),
    pytest.param({"plain_scheduler_name": None},
                 [{"schedulerName": "podvirt-scheduler", **VM}],
                 id="second-scheduler-vm-profile-only"),
    pytest.param({"scoring": "pack"},
                 [{"schedulerName": "default-scheduler"},
                  {"schedulerName": "podvirt-scheduler", **VM,
                   "pluginConfig": memory_scoring("MostAllocated")}],
                 id="pack"),
])
def test_vm_profile_leaves_the_fit_to_the_extender_and_scores_memory_in_tree(kwargs, profiles):
    cfg = yaml.safe_load(render_scheduler_config("https://127.0.0.1:9443", **kwargs))
    assert cfg["profiles"] == profiles
    # One global extender entry: extenders apply to every profile.
    assert len(cfg["extenders"]) == 1 and "extenders" not in cfg["profiles"][0]


def test_device_resources_get_the_numa_prioritize_entry(ca_file):
    cfg = yaml.safe_load(render_scheduler_config(
        "https://127.0.0.1:9443", ca_file, device_resources=("example.com/nic", "nvidia.com/t4")))
    fit, numa = cfg["extenders"]
    assert "prioritizeVerb" not in fit and fit["bindVerb"] == "bind"
    assert {key: numa.get(key) for key in ("urlPrefix", "filterVerb", "prioritizeVerb",
                                           "bindVerb", "nodeCacheCapable", "ignorable")} == {
        "urlPrefix": "https://127.0.0.1:9443", "filterVerb": None,
        "prioritizeVerb": "prioritize", "bindVerb": None, "nodeCacheCapable": True,
        "ignorable": True}
    # Counted by the scheduler as usual: plain pods may request these devices too.
    assert numa["managedResources"] == [
        {"name": "example.com/nic", "ignoredByScheduler": False},
        {"name": "nvidia.com/t4", "ignoredByScheduler": False}]
    assert numa["tlsConfig"] == fit["tlsConfig"]


@pytest.mark.parametrize("percentage", [0, 42, 100])
def test_vm_profile_node_sample_is_configurable(percentage):
    cfg = yaml.safe_load(render_scheduler_config("https://127.0.0.1:9443",
                                                 vm_nodes_percentage=percentage))
    assert cfg["profiles"][-1]["percentageOfNodesToScore"] == percentage
    assert "percentageOfNodesToScore" not in cfg["profiles"][0]


def test_plain_http_config_has_no_tls():
    ext = yaml.safe_load(render_scheduler_config("http://127.0.0.1:8888"))["extenders"][0]
    assert ext["enableHTTPS"] is False and "tlsConfig" not in ext


@pytest.mark.parametrize("kwargs", [
    pytest.param({"url": "127.0.0.1:8888"}, id="no-scheme"),
    pytest.param({"url": "https://x", "http_timeout": "ten"}, id="bad-timeout"),
    pytest.param({"url": "https://x", "weight": 0}, id="bad-weight"),
    pytest.param({"url": "https://x", "scheduler_name": "default-scheduler"}, id="same-names"),
    pytest.param({"url": "https://x", "scheduler_name": "VM Scheduler"}, id="bad-name"),
    pytest.param({"url": "https://x", "vm_nodes_percentage": 101}, id="bad-percentage"),
    pytest.param({"url": "https://x", "scoring": "balanced"}, id="bad-scoring"),
])
def test_bad_config_arguments(kwargs):
    with pytest.raises(ValueError):
        render_scheduler_config(**kwargs)


def test_cli_flags():
    args = build_parser().parse_args(["extender", "--port", "9443", "--scoring", "pack",
                                      "--quarantine-failures", "5", "--quarantine-window", "60"])
    assert (args.port, args.scoring, args.quarantine_failures, args.quarantine_window) == \
        (9443, "pack", 5, 60.0)


def test_cli_prints_scheduler_config(ca_file, capsys):
    args = build_parser().parse_args(["extender", "--port", "9443", "--cert", "tls.crt",
                                      "--ca", ca_file, "--print-scheduler-config", "/k.conf"])
    assert args.func(args) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["extenders"][0]["urlPrefix"] == "https://127.0.0.1:9443"
