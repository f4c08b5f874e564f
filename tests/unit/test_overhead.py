import pytest

from podvirt.vmspec import CostSettings, DeviceResources, OverheadConstants, demand, memory_overhead, parse_vm
from podvirt.vmspec import keys as k

MiB, GiB = 2**20, 2**30
C = OverheadConstants()


def spec(**extra):
    annotations = {k.MEMORY: "4Gi", k.DISKS: "root=scratch:1Gi"}
    annotations.update({k.PREFIX + key.replace("_", "-"): v for key, v in extra.items()})
    return parse_vm(annotations)


def test_overhead_terms():
    o = memory_overhead(spec(vcpus="2"))
    assert o.page_tables == 4 * GiB // 512 == 8 * MiB
    assert o.vcpus == 2 * C.per_vcpu
    assert o.fixed == C.launcher + C.libvirt + C.qemu_base
    assert (o.video, o.tcg_cache, o.vfio) == (0, 0, 0)
    assert o.total == 8 * MiB + 2 * C.per_vcpu + o.fixed


@pytest.mark.parametrize("extra, term, value", [
    pytest.param({"graphics": "vnc"}, "video", C.video, id="vnc-adds-video"),
    pytest.param({"allow_emulation": "true"}, "tcg_cache", C.tcg_cache, id="emulation-adds-tcg"),
    pytest.param({"devices": "example.com/gpu=1"}, "vfio", C.vfio, id="passthrough-adds-vfio"),
])
def test_conditional_terms(extra, term, value):
    assert getattr(memory_overhead(spec(**extra)), term) == value


def test_memory_request_is_guest_plus_overhead_rounded_to_mib():
    d = demand(spec())
    assert d.memory == 4 * GiB + -(-d.overhead.total // MiB) * MiB
    assert d.memory % MiB == 0 and d.hugepages is None
    assert d.describe_memory().startswith("4.") and "(4Gi guest + " in d.describe_memory()


def test_hugepages_move_guest_memory_out_of_the_memory_request():
    d = demand(spec(hugepages="1Gi"))
    assert d.hugepages == ("hugepages-1Gi", 4 * GiB)
    assert d.memory < GiB


def test_cpu_shared_and_dedicated():
    shared = demand(spec(vcpus="4"))
    assert (shared.cpu_request_millis, shared.cpu_limit_millis) == (400, None)
    dedicated = demand(spec(vcpus="4", dedicated_cpus="true"))
    assert dedicated.cpu_request_millis == dedicated.cpu_limit_millis == 4000


@pytest.mark.parametrize("extra, rules, expected", [
    pytest.param({}, "", {"devices.podvirt.io/kvm": 1}, id="kvm-only"),
    pytest.param({"allow_emulation": "true"}, "", {}, id="emulation-needs-no-kvm"),
    pytest.param({"nics": "eth0", "allow_emulation": "true"}, "", {},
                 id="pod-nic-needs-no-device"),
    pytest.param({"devices": "example.com/gpu=2,pci:10de:1eb8=1"}, "",
                 {"devices.podvirt.io/kvm": 1, "example.com/gpu": 2,
                  "pci.podvirt.io/10de-1eb8": 1}, id="pci-request-counts-under-default-name"),
    pytest.param({"devices": "example.com/gpu=2,pci:10de:1eb8=1"}, "10de:1eb8=example.com/gpu",
                 {"devices.podvirt.io/kvm": 1, "example.com/gpu": 3}, id="pci-request-mapped"),
])
def test_extended_resources(extra, rules, expected):
    settings = CostSettings(devices=DeviceResources.parse(rules))
    assert dict(demand(spec(**extra), settings).extended) == expected


def test_resource_names_and_constants_are_configurable():
    settings = CostSettings(overhead=OverheadConstants(launcher=0, libvirt=0, qemu_base=0),
                            cpu_allocation_ratio=1)
    d = demand(spec(vcpus="2"), settings)
    assert d.overhead.fixed == 0 and d.cpu_request_millis == 2000


def test_efi_flash_tpm_and_passt_are_priced():
    base = memory_overhead(spec())
    full = memory_overhead(spec(firmware="efi", tpm="true", nics="eth0"))
    c = OverheadConstants()
    assert full.firmware == c.efi_flash + c.tpm and full.network == c.passt
    assert full.total - base.total == c.efi_flash + c.tpm + c.passt
