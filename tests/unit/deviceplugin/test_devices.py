"""The device plugins' pure answers: which plugins, device lists, Allocate, preferred
allocation, resource selection, and the health check on real (fake-root) device nodes."""

import os
import re
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from podvirt.launcher.deviceplugin import devices
from podvirt.launcher.deviceplugin.devices import (AllocationError, DeviceAbsent, DeviceMount,
                                                   PluginSpec, allocate, device_list,
                                                   device_present, plugin_specs,
                                                   preferred_allocation, select_specs)
from podvirt.vmspec.overhead import DEFAULT_COSTS, ResourceNames

from tests import REPO
from tests.unit.deviceplugin.fakes import make_char_device

KVM = PluginSpec(resource=DEFAULT_COSTS.resources.kvm, device_path="/dev/kvm")
KVM_IDS = frozenset(KVM.device_ids(3))


@pytest.mark.parametrize("field, device_path", [
    pytest.param("kvm", "/dev/kvm", id="kvm"),
    pytest.param("tun", "/dev/net/tun", id="tun"),
    pytest.param("vhost_net", "/dev/vhost-net", id="vhost-net"),
])
def test_one_plugin_per_resource_name_with_its_device_node(field, device_path):
    by_resource = {s.resource: s for s in plugin_specs()}
    spec = by_resource[getattr(DEFAULT_COSTS.resources, field)]
    assert spec.device_path == device_path
    assert spec.permissions == "rw"


def test_every_resource_name_is_served():
    assert len(plugin_specs()) == len(fields(ResourceNames))


def test_resource_names_come_from_the_cost_settings():
    custom = ResourceNames(kvm="example.com/hw-kvm", tun="example.com/tun",
                           vhost_net="example.com/vhost")
    specs = plugin_specs(custom)
    assert [s.resource for s in specs] == ["example.com/hw-kvm", "example.com/tun",
                                           "example.com/vhost"]
    assert [s.socket_name for s in specs] == ["podvirt-hw-kvm.sock", "podvirt-tun.sock",
                                              "podvirt-vhost.sock"]


def test_ids_socket_and_node_path():
    vhost = PluginSpec(resource=DEFAULT_COSTS.resources.vhost_net, device_path="/dev/vhost-net")
    assert vhost.name == "vhost-net"
    assert vhost.socket_name == "podvirt-vhost-net.sock"
    assert vhost.device_ids(3) == ("vhost-net-0", "vhost-net-1", "vhost-net-2")
    assert len(set(vhost.device_ids(110))) == 110
    assert vhost.node_under(Path("/host")) == Path("/host/dev/vhost-net")
    assert vhost.node_under(Path("/")) == Path("/dev/vhost-net")


@pytest.mark.parametrize("healthy, health", [
    pytest.param(True, "Healthy", id="node-present"),
    pytest.param(False, "Unhealthy", id="node-gone"),
])
def test_device_list_shares_the_nodes_health(healthy, health):
    assert device_list(KVM, 3, healthy) == (("kvm-0", health), ("kvm-1", health),
                                            ("kvm-2", health))


KVM_MOUNT = DeviceMount(container_path="/dev/kvm", host_path="/dev/kvm", permissions="rw")


@pytest.mark.parametrize("requests, expected", [
    pytest.param([["kvm-0"]], (KVM_MOUNT,), id="one-container"),
    pytest.param([["kvm-0"], ["kvm-2"]], (KVM_MOUNT, KVM_MOUNT), id="two-containers"),
    pytest.param([["kvm-0", "kvm-1"]], (KVM_MOUNT,), id="two-ids-one-node"),
])
def test_allocate_one_device_spec_per_container(requests, expected):
    assert allocate(KVM, requests, known_ids=KVM_IDS, present=True) == expected


@pytest.mark.parametrize("requests, present, error, message", [
    pytest.param([["kvm-7"]], True, AllocationError, "unknown kvm device(s) kvm-7", id="unknown-id"),
    pytest.param([["kvm-0"], ["tun-0"]], True, AllocationError, "tun-0", id="one-bad-container"),
    pytest.param([], True, AllocationError, "no container requests", id="no-containers"),
    pytest.param([[]], True, AllocationError, "names no device", id="empty-container"),
    pytest.param([["kvm-0"]], False, DeviceAbsent, "/dev/kvm is not present", id="node-gone"),
])
def test_allocate_refusals(requests, present, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        allocate(KVM, requests, known_ids=KVM_IDS, present=present)


def test_unknown_ids_are_a_bad_request_even_when_the_node_is_gone():
    with pytest.raises(AllocationError) as caught:
        allocate(KVM, [["nope"]], known_ids=KVM_IDS, present=False)
    assert not isinstance(caught.value, DeviceAbsent)


@pytest.mark.parametrize("available, must, size, expected", [
    pytest.param(["a", "b", "c"], [], 2, ("a", "b"), id="first-available"),
    pytest.param(["a", "b", "c"], ["c"], 2, ("c", "a"), id="must-first"),
    pytest.param(["a", "b"], ["b", "b"], 1, ("b",), id="must-deduplicated"),
    pytest.param(["a"], ["x", "y"], 1, ("x", "y"), id="must-beyond-size"),
    pytest.param(["a", "b"], [], 5, ("a", "b"), id="fewer-than-size"),
    pytest.param([], [], 0, (), id="nothing"),
])
def test_preferred_allocation(available, must, size, expected):
    assert preferred_allocation(available, must, size) == expected


@pytest.mark.parametrize("names, expected", [
    pytest.param(None, ["kvm", "tun", "vhost-net"], id="all"),
    pytest.param(["vhost-net", "kvm"], ["kvm", "vhost-net"], id="subset-in-table-order"),
    pytest.param([DEFAULT_COSTS.resources.tun], ["tun"], id="full-resource-name"),
])
def test_select_specs(names, expected):
    assert [s.name for s in select_specs(plugin_specs(), names)] == expected


@pytest.mark.parametrize("names, message", [
    pytest.param(["kvm", "gpu"], "unknown resource.*gpu.*known: kvm, tun, vhost-net", id="unknown"),
    pytest.param([], "no resources", id="empty"),
])
def test_select_specs_rejects(names, message):
    with pytest.raises(ValueError, match=message):
        select_specs(plugin_specs(), names)


@pytest.mark.parametrize("make, present", [
    pytest.param(make_char_device, True, id="char-device"),
    pytest.param(lambda p: os.symlink("/dev/null", p), True, id="symlink-to-char-device"),
    pytest.param(lambda p: p.write_text(""), False, id="regular-file"),
    pytest.param(lambda p: p.mkdir(), False, id="directory"),
    pytest.param(lambda p: os.symlink(p.parent / "gone", p), False, id="dangling-symlink"),
    pytest.param(lambda p: None, False, id="missing"),
])
def test_device_present_wants_a_character_device(tmp_path, make, present):
    node = tmp_path / "kvm"
    make(node)
    assert device_present(node) is present


def _kubelet_constants() -> dict[str, str]:
    """constants.go of the k8s.io/kubelet that gen.sh made the stubs from (its stamp)."""
    module = (REPO / "launcher/deviceplugin/_api/.source").read_text().split()[0]
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                              check=True).stdout.strip()
    go = Path(modcache, module, "pkg/apis/deviceplugin/v1beta1/constants.go").read_text()
    return dict(re.findall(r'^\t(\w+) = "([^"]*)"', go, re.M))


def test_api_constants_match_kubelets():
    go = _kubelet_constants()
    assert devices.API_VERSION == go["Version"]
    assert (devices.HEALTHY, devices.UNHEALTHY) == (go["Healthy"], go["Unhealthy"])
    assert devices.DEFAULT_PLUGIN_DIR == go["DevicePluginPath"].rstrip("/")
