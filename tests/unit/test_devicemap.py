"""The one mapping from a passthrough device (or a pci: request) to its extended resource."""

import pytest

from podvirt.vmspec import parse_vm
from podvirt.vmspec import keys as k
from podvirt.vmspec.devicemap import DeviceResources
from podvirt.vmspec.model import PassthroughDevice

RULES = DeviceResources.parse("10de:1EB8=nvidia.com/t4, driver:mlx5_vfio_pci=example.com/vf")


@pytest.mark.parametrize("vendor, device, driver, resource", [
    pytest.param("10de", "1eb8", "vfio-pci", "nvidia.com/t4", id="by-pci-id"),
    pytest.param("10de", "1eb8", "mlx5_vfio_pci", "nvidia.com/t4", id="pci-id-before-driver"),
    pytest.param("15b3", "101e", "mlx5_vfio_pci", "example.com/vf", id="by-driver"),
    pytest.param("15b3", "101e", "vfio-pci", "pci.podvirt.io/15b3-101e", id="default-name"),
])
def test_device_resource(vendor, device, driver, resource):
    assert RULES.for_device(vendor, device, driver) == resource


def test_pci_requests_resolve_to_the_resource_of_their_id():
    spec = parse_vm({k.MEMORY: "1Gi", k.DISKS: "root=scratch:1Gi",
                    k.DEVICES: "pci:10de:1eb8=2,pci:15b3:101e,example.com/x=1"})
    resolved = RULES.resolve(spec.devices)
    assert [(r.label, r.resource, r.count) for r in resolved] == [
        ("pci:10de:1eb8", "nvidia.com/t4", 2), ("pci:15b3:101e", "pci.podvirt.io/15b3-101e", 1),
        ("example.com/x", "example.com/x", 1)]
    t4 = PassthroughDevice("0000:3b:00.0", "10de", "1eb8", resource="nvidia.com/t4")
    other_resource = PassthroughDevice("0000:3c:00.0", "10de", "1eb8", resource="example.com/x")
    assert resolved[0].matches(t4) and not resolved[0].matches(other_resource)
    assert resolved[2].matches(other_resource) and not resolved[2].matches(t4)


def test_round_trip_as_text():
    assert DeviceResources.parse(RULES.to_text()) == RULES
    assert DeviceResources.parse("") == DeviceResources.parse(None) == DeviceResources()


@pytest.mark.parametrize("text, message", [
    pytest.param("10de:1eb8", "must be <vendor>:<device>=<resource>", id="no-resource"),
    pytest.param("10de:1eb8=gpu", "an extended-resource name", id="resource-without-domain"),
    pytest.param("10de=example.com/x", "'10de' is neither <vendor>:<device>", id="short-id"),
    pytest.param("driver:=example.com/x", "'driver:' is neither", id="empty-driver"),
    pytest.param("10de:1eb8=a.com/x,10DE:1eb8=b.com/y", "is mapped twice", id="duplicate"),
])
def test_bad_rules_are_named(text, message):
    with pytest.raises(ValueError, match="device resource rule") as info:
        DeviceResources.parse(text)
    assert message in str(info.value)
