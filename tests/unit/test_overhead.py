import pytest

from podvirt.vmspec import CostSettings, DeviceResources, OverheadConstants, demand, memory_overhead, parse_vm
from podvirt.vmspec.overhead import StorageConstants, qcow2_file_bytes
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


S = StorageConstants()


@pytest.mark.parametrize("disks, extra, parts", [
    pytest.param("root=pvc:c", {}, [], id="pvc-is-the-claims"),
    pytest.param("root=scratch:1Gi", {}, [("root", GiB + 2 * MiB)], id="scratch-plus-metadata"),
    pytest.param("root=containerdisk:x/y:1,data=file:/tmp/podvirt/d.img", {},
                 [("root", S.overlay_disk), ("data", S.overlay_disk)], id="overlay-default"),
    pytest.param("root=containerdisk:x/y:1,size=3Gi", {}, [("root", 3 * GiB)], id="size-given"),
])
def test_storage_prices_every_disk_the_pod_holds(disks, extra, parts):
    s = demand(parse_vm({k.MEMORY: "1Gi", k.DISKS: disks, **extra})).storage
    assert s.disks == tuple(parts) and s.launcher == S.launcher and s.kernel_boot == 0
    assert s.total == sum(size for _, size in parts) + S.launcher


def test_kernel_image_copy_and_constants_are_configurable():
    costs = CostSettings(storage=StorageConstants(launcher=64 * MiB, overlay_disk=GiB,
                                                  kernel_boot=128 * MiB))
    d = demand(parse_vm({k.MEMORY: "1Gi", k.DISKS: "root=containerdisk:x/y:1",
                         k.KERNEL_IMAGE: "x/k:1", k.KERNEL: "/boot/k"}), costs)
    assert d.ephemeral_storage == 64 * MiB + GiB + 128 * MiB
    assert d.storage.parts() == ["disk root 1Gi", "launcher 64Mi", "kernel-image 128Mi"]


def test_disks_default_is_the_documented_one():
    from podvirt.quantity import format_bytes
    assert f"(default {format_bytes(S.overlay_disk)})" in k.USER_KEYS[k.DISKS]


@pytest.mark.parametrize("size", ["1M", "64M", "1G", "100G", "1T", "100T"])
def test_qcow2_bound_covers_a_fully_written_image(size):
    """What qemu-img itself says a fully allocated qcow2 of that size takes."""
    import json
    import shutil
    import subprocess
    from podvirt.quantity import parse_bytes
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    out = subprocess.run(["qemu-img", "measure", "--output=json", "-O", "qcow2", "--size", size],
                         capture_output=True, text=True, check=True).stdout
    full = json.loads(out)["fully-allocated"]
    bound = qcow2_file_bytes(parse_bytes(size + "i"))
    assert full <= bound <= full + parse_bytes(size + "i") // 5000 + 2 * MiB
