"""The chart's contract: `contract:` values rendered into one ConfigMap that webhook,
extender, probe and device plugin mount and read with --contract, rolled on change."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import yaml

from podvirt.vmspec.contract import (CHART_DERIVED, DEFAULT_CONTRACT, Contract,
                                     document_schema, parse_contract)

from tests.helm import CHART, RenderError, find

MOUNT = "/etc/podvirt/contract"


def rendered_contract(objects) -> Contract:
    """The ConfigMap's file, read by the components' own loader."""
    return parse_contract(yaml.safe_load(
        find(objects, "ConfigMap", "-contract")["data"]["contract.yaml"]))


def pod_templates(objects) -> dict[str, dict[str, Any]]:
    return {name: find(objects, kind, f"-{name}")["spec"]["template"]
            for kind, name in (("Deployment", "webhook"), ("Deployment", "extender"),
                               ("DaemonSet", "probe"))}


def test_default_values_are_the_code_defaults(render):
    """values.yaml lists every default (for users to read); they are the code's."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    expected = {key: value for key, value in DEFAULT_CONTRACT.document().items()
                if key not in CHART_DERIVED}
    assert values["contract"] == expected
    assert rendered_contract(render()) == replace(
        DEFAULT_CONTRACT, launcher_image="ghcr.io/podvirt/launcher:0.1.0")


def test_values_reach_the_contract_each_from_one_place(render):
    objects = render({"contract": {"limits": {"maxVcpus": 8, "maxMemory": "32Gi"},
                                   "overhead": {"launcher": "64Mi"},
                                   "resourceNames": {"kvm": "example.com/kvm"},
                                   "cpuAllocationRatio": 4},
                      "scheduler": {"name": "vm-sched"},
                      "launcherImage": {"repository": "registry.example.com/l", "tag": "7"},
                      "passthrough": {"resources": {"10de:1eb8": "nvidia.com/T4"}}})
    c = rendered_contract(objects)
    assert (c.limits.max_vcpus, c.limits.max_memory) == (8, 32 * 2**30)
    assert c.limits.max_disks == DEFAULT_CONTRACT.limits.max_disks     # merged with defaults
    assert c.costs.overhead.launcher == 64 * 2**20
    assert c.costs.resources.kvm == "example.com/kvm"
    assert c.costs.cpu_allocation_ratio == 4
    assert c.scheduler_name == "vm-sched"
    assert c.launcher_image == "registry.example.com/l:7"
    assert c.costs.devices.for_device("10de", "1eb8") == "nvidia.com/T4"
    # The probe runs the image the webhook puts into VM pods.
    probe = pod_templates(objects)["probe"]["spec"]["containers"][0]
    assert probe["image"] == c.launcher_image


@pytest.mark.parametrize("values", [
    pytest.param({}, id="defaults"),
    pytest.param({"passthrough": {"enabled": True}}, id="passthrough"),
])
def test_every_component_reads_the_one_configmap(render, values):
    from podvirt.cli import build_parser
    objects = render(values)
    name = find(objects, "ConfigMap", "-contract")["metadata"]["name"]
    containers = 0
    for template in pod_templates(objects).values():
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["contract"]["configMap"] == {"name": name}
        for c in spec["containers"]:
            mounts = {m["name"]: m for m in c["volumeMounts"]}
            assert mounts["contract"] == {"name": "contract", "mountPath": MOUNT,
                                          "readOnly": True}
            args = build_parser().parse_args([a.replace("$(NODE_NAME)", "n") for a in c["args"]])
            assert str(args.contract) == f"{MOUNT}/contract.yaml", c["name"]
            containers += 1
    assert containers == 4      # webhook, extender, probe, device plugin


def _checksums(objects) -> set[str]:
    return {t["metadata"]["annotations"]["checksum/contract"]
            for t in pod_templates(objects).values()}


def test_a_contract_change_rolls_every_component(render):
    [base] = _checksums(render())
    assert _checksums(render({"webhook": {"replicas": 3}})) == {base}
    for values in ({"contract": {"limits": {"maxVcpus": 8}}}, {"scheduler": {"name": "vms"}},
                   {"passthrough": {"resources": {"10de:1eb8": "x.io/gpu"}}}):
        [changed] = _checksums(render(values))
        assert changed != base, values


def test_webhook_pod_annotations_keep_the_checksum(render):
    template = pod_templates(render({"webhook": {"podAnnotations": {"a.io/b": "c"}}}))["webhook"]
    assert set(template["metadata"]["annotations"]) == {"checksum/contract", "a.io/b"}


def test_values_schema_is_the_contracts():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["contract"] == document_schema(CHART_DERIVED)


@pytest.mark.parametrize("contract, where", [
    pytest.param({"schedulerName": "x"}, "'/contract': additional properties 'schedulerName'",
                 id="derived-key"),
    pytest.param({"limits": {"maxVcpu": 8}}, "'/contract/limits': additional properties "
                 "'maxVcpu'", id="unknown-key"),
    pytest.param({"limits": {"maxVcpus": "8"}}, "'/contract/limits/maxVcpus': got string, "
                 "want integer", id="wrong-type"),
    pytest.param({"overhead": {"perVcpu": "8Mx"}}, "'/contract/overhead/perVcpu': '8Mx' does "
                 "not match", id="bad-quantity"),
    pytest.param({"resourceNames": {"kvm": "kvm"}}, "'/contract/resourceNames/kvm': 'kvm' does "
                 "not match", id="bad-resource-name"),
])
def test_bad_contract_values_fail_the_install_naming_the_field(render, contract, where):
    """Before any pod starts (helm checks values.schema.json), not as crash-looping pods."""
    with pytest.raises(RenderError) as info:
        render({"contract": contract})
    assert where in str(info.value)


def test_local_cluster_values_render_its_contract(render):
    """cluster up --contract: the file's contract, through the chart, is the one the
    components read (but for the launcher image, which the chart's values name)."""
    from podvirt.cluster.chart import contract_values
    contract = parse_contract({"limits": {"maxVcpus": 2}, "overhead": {"tcgCache": "32Mi"},
                               "deviceResources": {"driver:vfio-pci": "x.io/any"},
                               "schedulerName": "vms"})
    got = rendered_contract(render(contract_values(contract)))
    assert got == replace(contract, launcher_image="ghcr.io/podvirt/launcher:0.1.0")


def test_local_host_processes_get_the_contract_file(tmp_path):
    from podvirt.cluster import components
    from podvirt.cluster.layout import Layout
    layout = Layout(tmp_path)
    ports = components.Ports(*range(1, 9))
    path = tmp_path / "contract.yaml"
    assert f"--contract={path}" in components.webhook(layout, ports, path)
    assert f"--contract={path}" in components.extender(layout, ports, path)
