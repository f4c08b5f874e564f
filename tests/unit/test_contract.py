"""The contract (podvirt/vmspec/contract.py): its strict loader, and webhook, extender and
launcher judging a VM alike under one contract."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonpatch
import pytest
import yaml

from podvirt.vmspec import keys as k
from podvirt.vmspec.contract import (DEFAULT_CONTRACT, Contract, ContractInvalid,
                                     contract_of_pod, load_contract, parse_contract)
from podvirt.vmspec.devicemap import DeviceResources
from podvirt.vmspec.overhead import OverheadConstants, ResourceNames
from podvirt.vmspec.parse import Limits

MiB, GiB = 2**20, 2**30


# --- the loader ------------------------------------------------------------------------------

GOOD = """
limits:
  maxVcpus: 8
  maxMemory: 16Gi
  hugepageSizes: [2Mi]
  maxShutdownGraceSeconds: 600
  maxCloudInit: 4096
overhead:
  launcher: 64Mi
  pageTableDivisor: 256
storage:
  overlayDisk: 20Gi
resourceNames:
  kvm: example.com/kvm
deviceResources:
  "10de:1EB8": nvidia.com/T4
  "driver:mlx5_vfio_pci": example.com/vf
cpuAllocationRatio: 4
schedulerName: vm-scheduler
launcherImage: registry.example.com/podvirt/launcher:1.2
"""


def test_a_good_file_sets_what_it_names_and_keeps_the_rest(tmp_path: Path):
    path = tmp_path / "contract.yaml"
    path.write_text(GOOD)
    c = load_contract(path)
    assert c.limits == replace(Limits(), max_vcpus=8, max_memory=16 * GiB,
                               hugepage_sizes=(2 * MiB,), max_shutdown_grace=600,
                               max_cloud_init_bytes=4096)
    assert c.costs.overhead == replace(OverheadConstants(), launcher=64 * MiB,
                                       page_table_divisor=256)
    assert c.costs.storage.overlay_disk == 20 * GiB
    assert c.costs.storage.launcher == DEFAULT_CONTRACT.costs.storage.launcher
    assert c.costs.resources == replace(ResourceNames(), kvm="example.com/kvm")
    assert c.costs.devices == DeviceResources.parse(
        "10de:1eb8=nvidia.com/T4,driver:mlx5_vfio_pci=example.com/vf")
    assert c.costs.cpu_allocation_ratio == 4
    assert (c.scheduler_name, c.launcher_image) == (
        "vm-scheduler", "registry.example.com/podvirt/launcher:1.2")


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty-file"),
    pytest.param("{}", id="empty-map"),
    pytest.param("limits:\n", id="empty-section"),
])
def test_nothing_given_is_the_defaults(tmp_path: Path, text: str):
    path = tmp_path / "contract.yaml"
    path.write_text(text)
    assert load_contract(path) == DEFAULT_CONTRACT == Contract()


def test_json_is_a_contract_file_too(tmp_path: Path):
    path = tmp_path / "contract.json"
    path.write_text(json.dumps({"limits": {"maxVcpus": 4}}))
    assert load_contract(path).limits.max_vcpus == 4


@pytest.mark.parametrize("contract", [
    pytest.param(DEFAULT_CONTRACT, id="defaults"),
    pytest.param(parse_contract(yaml.safe_load(GOOD)), id="everything-set"),
])
def test_document_round_trips(contract: Contract):
    assert parse_contract(contract.document()) == contract
    assert parse_contract(yaml.safe_load(yaml.safe_dump(contract.document()))) == contract
    assert contract_of_pod({k.CONTRACT: contract.to_json()}) == contract


def test_digest_changes_with_any_value():
    tightened = replace(DEFAULT_CONTRACT, limits=replace(DEFAULT_CONTRACT.limits, max_vcpus=8))
    assert DEFAULT_CONTRACT.digest == Contract().digest != tightened.digest


@pytest.mark.parametrize("doc, message", [
    pytest.param([1], "contract: must be a map of contract keys, got list", id="not-a-map"),
    pytest.param({"limit": {}}, "contract: limit: unknown key (known: limits, overhead",
                 id="unknown-top-key"),
    pytest.param({"limits": {"maxVcpu": 8}}, "contract: limits.maxVcpu: unknown key (known: "
                 "minMemory", id="unknown-limit"),
    pytest.param({"overhead": {"launcherMemory": "1Gi"}}, "overhead.launcherMemory: unknown key",
                 id="unknown-cost"),
    pytest.param({"limits": 8}, "contract: limits: must be a map, got int", id="section-not-a-map"),
    pytest.param({"limits": {"maxVcpus": "8"}}, "limits.maxVcpus: must be an integer, got '8'",
                 id="string-for-integer"),
    pytest.param({"limits": {"maxDisks": True}}, "limits.maxDisks: must be an integer, got True",
                 id="bool-for-integer"),
    pytest.param({"limits": {"maxVcpus": 0}}, "limits.maxVcpus: must be at least 1, got 0",
                 id="integer-too-small"),
    pytest.param({"overhead": {"perVcpu": "8Mx"}}, "overhead.perVcpu: '8Mx' is not a quantity",
                 id="bad-quantity"),
    pytest.param({"storage": {"launcher": "-1Gi"}}, "storage.launcher: '-1Gi' is negative",
                 id="negative-quantity"),
    pytest.param({"overhead": {"vfio": 1.5}}, "overhead.vfio: must be a quantity such as 64Mi, "
                 "got float 1.5", id="float-for-quantity"),
    pytest.param({"limits": {"hugepageSizes": "2Mi"}}, "limits.hugepageSizes: must be a list",
                 id="page-sizes-not-a-list"),
    pytest.param({"limits": {"hugepageSizes": ["2Mi", "3Mi"]}},
                 "limits.hugepageSizes: [1] must be a power of two of at least 4Ki, got '3Mi'",
                 id="page-size-not-a-power-of-two"),
    pytest.param({"resourceNames": {"kvm": "kvm"}}, "resourceNames.kvm: must be an "
                 "extended-resource name", id="bad-resource-name"),
    pytest.param({"resourceNames": {"tun": "devices.podvirt.io/kvm"}}, "resourceNames: must be "
                 "distinct", id="resource-names-collide"),
    pytest.param({"deviceResources": ["10de:1eb8=x.io/y"]}, "deviceResources: must be a map",
                 id="device-rules-not-a-map"),
    pytest.param({"deviceResources": {"10de": "x.io/y"}}, "deviceResources: device resource rule "
                 "'10de=x.io/y': '10de' is neither", id="bad-device-rule"),
    pytest.param({"deviceResources": {"10de:1eb8": "x.io/y,driver:a=b.io/c"}},
                 "deviceResources: '10de:1eb8': 'x.io/y,driver:a=b.io/c': must map",
                 id="device-rule-smuggles-another"),
    pytest.param({"cpuAllocationRatio": 0}, "cpuAllocationRatio: must be at least 1",
                 id="ratio-zero"),
    pytest.param({"schedulerName": "VM Scheduler"}, "schedulerName: must be a scheduler name",
                 id="bad-scheduler-name"),
    pytest.param({"launcherImage": ""}, "launcherImage: must be an image reference",
                 id="empty-image"),
    pytest.param({"limits": {"minMemory": "2Gi", "maxMemory": "1Gi"}},
                 "limits.minMemory (2Gi) is above limits.maxMemory (1Gi)", id="min-above-max"),
])
def test_bad_input_names_the_field(doc, message):
    with pytest.raises(ContractInvalid) as info:
        parse_contract(doc)
    assert message in str(info.value)


def test_file_errors_name_the_file(tmp_path: Path):
    path = tmp_path / "contract.yaml"
    with pytest.raises(ContractInvalid, match=f"{path}: cannot read"):
        load_contract(path)
    path.write_text("limits: [unclosed")
    with pytest.raises(ContractInvalid, match=f"{path}: not YAML"):
        load_contract(path)
    path.write_text("limits: {maxVcpus: eight}")
    with pytest.raises(ContractInvalid, match=f"{path}: limits.maxVcpus: must be an integer"):
        load_contract(path)


def test_pod_annotation_errors_name_the_annotation():
    with pytest.raises(ContractInvalid, match=f"{k.CONTRACT}: not JSON"):
        contract_of_pod({k.CONTRACT: "{"})
    with pytest.raises(ContractInvalid, match=f"{k.CONTRACT}: limits.maxVcpus"):
        contract_of_pod({k.CONTRACT: '{"limits": {"maxVcpus": -1}}'})
    assert contract_of_pod({}) == contract_of_pod(None) == DEFAULT_CONTRACT


@pytest.mark.parametrize("argv", [
    pytest.param(["webhook", "--port", "8443", "--cert", "c", "--key", "k"], id="webhook"),
    pytest.param(["extender"], id="extender"),
    pytest.param(["launcher", "probe", "--once"], id="probe"),
    pytest.param(["device-plugin"], id="device-plugin"),
])
def test_every_component_stops_on_a_bad_contract(tmp_path: Path, capsys, argv):
    from podvirt.cli import main
    path = tmp_path / "contract.yaml"
    path.write_text("overhead: {tcgCache: lots}")
    with pytest.raises(SystemExit) as info:
        main([*argv, "--contract", str(path)])
    assert info.value.code == 2
    assert f"--contract: {path}: overhead.tcgCache: 'lots' is not a quantity" \
        in capsys.readouterr().err


# --- webhook, extender and launcher under one contract -------------------------------------

TIGHT = parse_contract({"limits": {"maxVcpus": 4, "maxMemory": "8Gi"},
                        "overhead": {"launcher": "1Gi"}})
VM = {k.MEMORY: "2Gi", k.DISKS: "root=containerdisk:quay.io/x/cirros"}


def _pod(annotations: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "vm1", "namespace": "default", "uid": "uid-vm1",
                         "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE},
                         "annotations": dict(annotations)},
            "spec": {"containers": []}}


def _admit(contract: Contract, pod: dict, operation: str = "CREATE", old: dict | None = None):
    from podvirt.webhook.admission import decide
    from podvirt.webhook.settings import RenderSettings
    request = {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
               "namespace": "default", "operation": operation, "object": pod, "oldObject": old}
    return decide(request, RenderSettings.from_contract(contract))  # type: ignore[arg-type]


def _node(memory: str) -> dict:
    alloc = {"memory": memory, "cpu": "8", "pods": "110", "ephemeral-storage": "100Gi",
             "podvirt.io/vm": "110", "devices.podvirt.io/kvm": "110",
             "devices.podvirt.io/tun": "110", "devices.podvirt.io/vhost-net": "110"}
    return {"metadata": {"name": "n1", "labels": {k.NODE_KVM_LABEL: "true"}, "annotations": {},
                         "resourceVersion": "1"},
            "status": {"allocatable": alloc, "capacity": alloc}}


def _extender_filter(contract: Contract, pod: dict, memory: str = "64Gi") -> dict:
    from prometheus_client import CollectorRegistry
    from podvirt.extender.app import SchedulingVerbs, Settings
    from podvirt.extender.state import WatchedCluster
    state = WatchedCluster()
    state.replace_nodes([_node(memory)])
    state.replace_pods([])
    verbs = SchedulingVerbs(state, Settings(contract=contract), None, CollectorRegistry())
    return verbs.answer("filter", lambda: {"Pod": pod, "NodeNames": ["n1"]})


@pytest.mark.parametrize("override, key", [
    pytest.param({k.VCPUS: "8"}, k.VCPUS, id="vcpus-above-the-limit"),
    pytest.param({k.MEMORY: "12Gi"}, k.MEMORY, id="memory-above-the-limit"),
])
def test_webhook_denies_what_the_extender_refuses(override, key):
    pod = _pod({**VM, **override})
    denied = _admit(TIGHT, pod)
    assert not denied.allowed and key in (denied.message or "")
    refused = _extender_filter(TIGHT, pod)
    assert refused["NodeNames"] == [] and key in refused["FailedAndUnresolvableNodes"]["n1"]
    # Under the defaults both let it through: the tightened limit is what they agree on.
    assert _admit(DEFAULT_CONTRACT, pod).allowed
    assert _extender_filter(DEFAULT_CONTRACT, pod)["NodeNames"] == ["n1"]


def test_what_the_webhook_admits_the_extender_prices_alike():
    rendered = jsonpatch.apply_patch(_pod(VM), _admit(TIGHT, _pod(VM)).patch)
    requests = rendered["spec"]["containers"][0]["resources"]["requests"]
    # 2Gi guest + page tables 4Mi + 1 vCPU 8Mi + launcher 1Gi (the contract's) + libvirt 56Mi
    # + QEMU 128Mi
    assert requests["memory"] == f"{2048 + 4 + 8 + 1024 + 56 + 128}Mi"
    assert _extender_filter(TIGHT, rendered)["NodeNames"] == ["n1"]
    # A node with room for the default overhead only: the extender counts the contract's.
    out = _extender_filter(TIGHT, rendered, memory="3Gi")
    assert out["NodeNames"] == [] and "(2Gi guest + 1.2Gi overhead)" in out["FailedAndUnresolvableNodes"]["n1"]


def test_the_launcher_parses_under_the_contract_the_webhook_stamped(tmp_path: Path):
    from podvirt.launcher.run import LaunchFailed, load_spec
    from podvirt.vmspec.downward import render_annotations_file
    rendered = jsonpatch.apply_patch(_pod(VM), _admit(TIGHT, _pod(VM)).patch)
    annotations = rendered["metadata"]["annotations"]
    assert contract_of_pod(annotations) == TIGHT
    spec_file = tmp_path / "annotations"
    spec_file.write_text(render_annotations_file(annotations))
    spec, _, contract = load_spec(spec_file, "vm1")
    assert (spec.memory_bytes, contract) == (2 * GiB, TIGHT)
    # A VM beyond the stamped limits (annotations edited past the webhook) stops there.
    spec_file.write_text(render_annotations_file({**annotations, k.VCPUS: "8"}))
    with pytest.raises(LaunchFailed) as info:
        load_spec(spec_file, "vm1")
    assert info.value.reason == "SpecInvalid" and k.VCPUS in str(info.value)


def test_the_contract_stamp_is_the_webhooks_alone():
    forged = _admit(DEFAULT_CONTRACT, _pod({**VM, k.CONTRACT: TIGHT.to_json()}))
    assert not forged.allowed and forged.rule == "status-keys" and k.CONTRACT in forged.message
    # Its own output, reviewed again (reinvocation), passes unchanged.
    rendered = jsonpatch.apply_patch(_pod(VM), _admit(TIGHT, _pod(VM)).patch)
    again = _admit(TIGHT, rendered)
    assert (again.allowed, again.rule, again.patch) == (True, "already-rendered", [])
    # ... and the stamp cannot be swapped for a looser one later.
    looser = json.loads(json.dumps(rendered))
    looser["metadata"]["annotations"][k.CONTRACT] = DEFAULT_CONTRACT.to_json()
    update = _admit(TIGHT, looser, operation="UPDATE", old=rendered)
    assert not update.allowed and update.rule == "immutable" and k.CONTRACT in update.message


def test_a_domain_xmls_tcg_cache_is_held_to_the_contracts_price():
    """The TCG cache a user's domain XML sets is checked against the contract's
    overhead.tcgCache, at admission (webhook, extender) and in the launcher alike."""
    xml = ("<domain type='qemu'><name>x</name><memory unit='GiB'>1</memory><vcpu>1</vcpu>"
           "<features><tcg><tb-cache unit='MiB'>96</tb-cache></tcg></features><devices/>"
           "</domain>")
    pod = _pod({k.MEMORY: "1Gi", k.ALLOW_EMULATION: "true", k.DOMAIN_XML: xml})
    dear = parse_contract({"overhead": {"tcgCache": "128Mi"}})
    denied = _admit(DEFAULT_CONTRACT, pod)
    assert not denied.allowed and "TCG cache is priced at 64Mi" in denied.message
    assert "TCG cache is priced at 64Mi" in \
        _extender_filter(DEFAULT_CONTRACT, pod)["FailedAndUnresolvableNodes"]["n1"]
    assert _admit(dear, pod).allowed
    assert _extender_filter(dear, pod)["NodeNames"] == ["n1"]


def test_migrate_reads_the_source_under_its_own_contract():
    """A VM admitted under wider limits than the defaults can still be moved: the plugin
    parses the source pod as its launcher did."""
    from podvirt.plugin.migrate import target_manifest
    from podvirt.plugin.target import PluginError
    wide = parse_contract({"limits": {"maxVcpus": 128}})
    source = _pod({k.MEMORY: "2Gi", k.DISKS: "root=pvc:root", k.VCPUS: "100"})
    source["spec"]["nodeName"] = "n1"
    with pytest.raises(PluginError, match=k.VCPUS):
        target_manifest(source, "vm1-mig-1")        # no stamp: the defaults (64 vCPUs)
    source["metadata"]["annotations"][k.CONTRACT] = wide.to_json()
    target = target_manifest(source, "vm1-mig-1")
    assert target["metadata"]["annotations"][k.VCPUS] == "100"
    assert k.CONTRACT not in target["metadata"]["annotations"]   # the webhook stamps it anew
