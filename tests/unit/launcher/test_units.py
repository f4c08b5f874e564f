"""Pure launcher logic: probe facts, seed ISO, overlays, actions, spec (KVM: test_kvm_check)."""

import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from podvirt.launcher import probe
from podvirt.launcher.disks import DiskError, DiskLayout, create_overlay, prepare_disk, \
    seed_iso_bytes
from podvirt.launcher.deviceplugin.vfio import allocated_addresses
from podvirt.launcher.hostcontext import (AssignedDevicesInvalid, DevicesNotAllocated,
                                          check_allocation, parse_assigned_devices)
from podvirt.launcher.kvm import KvmVerdict
from podvirt.launcher.report import VMStatus, action_to_run
from podvirt.launcher.run import LaunchFailed, load_spec
from podvirt.vmspec.downward import render_annotations_file
from podvirt.vmspec.devicemap import DeviceResources
from podvirt.vmspec.model import Disk

OK = KvmVerdict(True, "halted")


def _fake_sysfs(root: Path) -> None:
    def dev(addr, vendor, device, cls, group=None, driver=None, numa="0"):
        d = root / "sys/bus/pci/devices" / addr
        d.mkdir(parents=True)
        for name, value in (("vendor", vendor), ("device", device), ("class", cls),
                            ("numa_node", numa)):
            (d / name).write_text(value + "\n")
        if group is not None:
            g = root / "sys/kernel/iommu_groups" / str(group)
            g.mkdir(parents=True, exist_ok=True)
            (d / "iommu_group").symlink_to(g)
        if driver:
            drv = root / "sys/bus/pci/drivers" / driver
            drv.mkdir(parents=True, exist_ok=True)
            (d / "driver").symlink_to(drv)
    dev("0000:00:00.0", "0x8086", "0x1237", "0x060000", group=0)           # host bridge
    dev("0000:3b:00.0", "0x10de", "0x1db6", "0x030200", group=27, driver="vfio-pci", numa="1")
    dev("0000:00:1f.2", "0x8086", "0x2922", "0x010601")                    # no IOMMU group
    dev("0000:5e:00.0", "0x144d", "0xa808", "0x010802", group=40, driver="nvme")  # host driver
    dev("0000:af:00.1", "0x15b3", "0x101e", "0x020000", group=81, driver="mlx5_vfio_pci")
    for size, free in (("2048kB", "512"), ("1048576kB", "2")):
        h = root / "sys/kernel/mm/hugepages" / f"hugepages-{size}"
        h.mkdir(parents=True)
        (h / "free_hugepages").write_text(free + "\n")
    (root / "proc").mkdir()
    (root / "proc/cpuinfo").write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) "
                                       "Platinum 8375C CPU @ 2.90GHz\n")


def test_probe_fake_sysfs(tmp_path):
    _fake_sysfs(tmp_path)
    facts = probe.gather_facts(sys_root=tmp_path / "sys", proc_root=tmp_path / "proc", kvm=OK,
                               resources=DeviceResources.parse("driver:mlx5_vfio_pci=x.io/vf"))
    assert facts.cpu_model == "Intel-R-Xeon-R-Platinum-8375C-CPU-2.90GHz"
    assert facts.hugepages == (("1Gi", 2), ("2Mi", 512))
    # Only VFIO-bound devices get a resource: the device plugin serves exactly those.
    assert [d.to_json() for d in facts.pci_devices] == [
        {"address": "0000:3b:00.0", "vendor": "10de", "device": "1db6",
         "resource": "pci.podvirt.io/10de-1db6", "numaNode": 1, "iommuGroup": 27,
         "driver": "vfio-pci"},
        {"address": "0000:5e:00.0", "vendor": "144d", "device": "a808", "resource": "",
         "numaNode": 0, "iommuGroup": 40, "driver": "nvme"},
        {"address": "0000:af:00.1", "vendor": "15b3", "device": "101e", "resource": "x.io/vf",
         "numaNode": 0, "iommuGroup": 81, "driver": "mlx5_vfio_pci"}]
    patch = probe.node_patch(facts)
    assert patch["metadata"]["labels"] == {"podvirt.io/kvm": "true",
                                           "podvirt.io/cpu-model": facts.cpu_model}
    assert json.loads(patch["metadata"]["annotations"]["podvirt.io/hugepages"]) == \
        {"1Gi": 2, "2Mi": 512}


@pytest.mark.parametrize("cpuinfo,expected", [
    pytest.param("model name\t: AMD EPYC\n", "AMD-EPYC", id="simple"),
    pytest.param("processor: 0\n", "unknown", id="missing"),
    pytest.param("model name: " + "x" * 100, "x" * 63, id="truncated-to-label-length"),
])
def test_cpu_model_label(cpuinfo, expected):
    assert probe.cpu_model(cpuinfo) == expected


def test_seed_iso_readable_with_pycdlib():
    import pycdlib
    data = seed_iso_bytes(user_data="#cloud-config\nhostname: a\n", instance_id="i-1",
                          hostname="vm1")
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        contents = {}
        for name in ("user-data", "meta-data"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            contents[name] = out.getvalue().decode()
    finally:
        iso.close()
    assert contents == {"user-data": "#cloud-config\nhostname: a\n",
                        "meta-data": "instance-id: i-1\nlocal-hostname: vm1\n"}


def test_overlay_never_writes_base(tmp_path):
    base = tmp_path / "base.raw"
    base.write_bytes(b"\0" * 1024 * 1024)
    before = base.read_bytes()
    overlay = create_overlay(base, tmp_path / "work/root.qcow2")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(overlay)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(base) and info["backing-filename-format"] == "raw"
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 64k", str(overlay)], check=True,
                   capture_output=True)
    assert base.read_bytes() == before


@pytest.mark.parametrize("disk,setup,expected", [
    pytest.param(Disk("root", "containerdisk", "img"), "containerdisk", "qcow2", id="containerdisk"),
    pytest.param(Disk("data", "scratch", "", 2**30), None, "qcow2", id="scratch"),
    pytest.param(Disk("vol", "pvc", "claim"), "pvc", "raw", id="pvc-used-directly"),
    pytest.param(Disk("gone", "containerdisk", "img"), None, DiskError, id="containerdisk-empty"),
])
def test_prepare_disk(tmp_path, disk, setup, expected):
    layout = DiskLayout(pod_root=tmp_path, work_dir=tmp_path / "work")
    if setup:
        d = layout.mount_dir(disk)
        d.mkdir(parents=True)
        (d / ("disk.img" if setup == "pvc" else "image.raw")).write_bytes(b"\0" * 65536)
    if expected is DiskError:
        with pytest.raises(DiskError, match="holds no image file"):
            prepare_disk(disk, layout)
        return
    att = prepare_disk(disk, layout)
    assert att.format == expected and Path(att.path).is_file()
    if disk.kind == "pvc":
        assert att.path == str(layout.mount_dir(disk) / "disk.img")


def test_blank_claim_gets_a_sparse_raw_image_filling_its_filesystem(tmp_path):
    import os
    from podvirt.launcher.disks import blank_image_size
    disk = Disk("vol", "pvc", "claim")
    layout = DiskLayout(pod_root=tmp_path, work_dir=tmp_path / "work")
    layout.mount_dir(disk).mkdir(parents=True)
    att = prepare_disk(disk, layout)
    image = Path(att.path)
    st = os.statvfs(image.parent)
    assert att.format == "raw" and image.name == "disk.img"
    assert image.stat().st_size == blank_image_size(st.f_blocks * st.f_frsize) > 0
    assert image.stat().st_blocks == 0                      # sparse: nothing written yet
    image.write_bytes(b"data")                              # the guest's writes stay
    assert prepare_disk(disk, layout).path == att.path and image.read_bytes() == b"data"


@pytest.mark.parametrize("fs_bytes,expected", [
    pytest.param(10 * 2**30, 10146021376, id="10Gi-less-5.5%-whole-MiB"),
    pytest.param(2**20, 0, id="too-small"),
])
def test_blank_image_size(fs_bytes, expected):
    from podvirt.launcher.disks import blank_image_size
    assert blank_image_size(fs_bytes) == expected


def test_unmounted_claim_is_named(tmp_path):
    disk = Disk("vol", "pvc", "claim-x")
    with pytest.raises(DiskError, match="claim 'claim-x' is not mounted"):
        prepare_disk(disk, DiskLayout(pod_root=tmp_path, work_dir=tmp_path / "work"))


@pytest.mark.parametrize("annotations,expected", [
    pytest.param({}, None, id="no-action"),
    pytest.param({"podvirt.io/action": "pause"}, "pause", id="new-action"),
    pytest.param({"podvirt.io/action": "pause", "podvirt.io/action-ack": "pause:12:ok"}, None,
                 id="already-acked"),
    pytest.param({"podvirt.io/action": "resume", "podvirt.io/action-ack": "pause:12:ok"},
                 "resume", id="different-action"),
])
def test_action_to_run(annotations, expected):
    assert action_to_run(annotations) == expected


@pytest.mark.parametrize("text,expected", [
    pytest.param(None, 0, id="absent"),
    pytest.param('[{"address": "0000:3b:00.0", "vendor": "10de", "device": "1db6"}]', 1,
                 id="one"),
    pytest.param('{"address": 1}', AssignedDevicesInvalid, id="not-a-list"),
    pytest.param('[{"vendor": "10de"}]', AssignedDevicesInvalid, id="no-address"),
])
def test_assigned_devices(text, expected):
    if expected is AssignedDevicesInvalid:
        with pytest.raises(AssignedDevicesInvalid, match="assigned-devices"):
            parse_assigned_devices(text)
    else:
        assert len(parse_assigned_devices(text)) == expected


_A = '{"address": "0000:3b:00.0", "vendor": "10de", "device": "1db6"}'
_B = '{"address": "0000:af:00.0", "vendor": "10de", "device": "1db6"}'


@pytest.mark.parametrize("assigned, env, message", [
    pytest.param(None, {}, None, id="no-devices"),
    pytest.param(f"[{_A},{_B}]",
                 {"PODVIRT_ALLOCATED_X_IO_GPU": "0000:af:00.0,0000:3b:00.0"}, None, id="same"),
    pytest.param(f"[{_A},{_B}]", {"PODVIRT_ALLOCATED_X_IO_GPU": "0000:af:00.0",
                                  "PODVIRT_ALLOCATED_X_IO_NIC": "0000:3b:00.0"}, None,
                 id="same-over-two-resources"),
    pytest.param(f"[{_A}]", {"PODVIRT_ALLOCATED_X_IO_GPU": "0000:af:00.0"},
                 "kubelet allocated 0000:af:00.0, the extender assigned 0000:3b:00.0 "
                 "(podvirt.io/assigned-devices)", id="other-device"),
    pytest.param(f"[{_A}]", {}, "kubelet allocated no passthrough device", id="none-allocated"),
    pytest.param(None, {"PODVIRT_ALLOCATED_X_IO_GPU": "0000:af:00.0"},
                 "the pod has no podvirt.io/assigned-devices", id="not-assigned"),
])
def test_allocation_checked_against_assignment(assigned, env, message):
    devices = parse_assigned_devices(assigned)
    if message is None:
        check_allocation(devices, allocated_addresses(env))
    else:
        with pytest.raises(DevicesNotAllocated, match=re.escape(message)):
            check_allocation(devices, allocated_addresses(env))


@pytest.mark.parametrize("content,reason", [
    pytest.param(None, "SpecUnreadable", id="missing-file"),
    pytest.param("garbage line\n", "SpecInvalid", id="not-downward-format"),
    pytest.param(render_annotations_file({"podvirt.io/vcpus": "2"}), "SpecInvalid",
                 id="memory-missing"),
])
def test_load_spec_errors(tmp_path, content, reason):
    f = tmp_path / "annotations"
    if content is not None:
        f.write_text(content)
    with pytest.raises(LaunchFailed) as info:
        load_spec(f, "vm")
    assert info.value.reason == reason and info.value.code == 2


def test_status_annotations_delete_empty_values():
    ann = VMStatus("Running", accel="tcg", qemu_rss=123).annotations()
    assert ann["podvirt.io/phase"] == "Running" and ann["podvirt.io/qemu-rss"] == "123"
    assert ann["podvirt.io/failure-reason"] is None


def test_capacity_patch_advertises_the_vm_marker():
    from podvirt.launcher.probe import capacity_patch
    from podvirt.vmspec import keys as k
    assert capacity_patch(8) == {"status": {"capacity": {k.VM_MARKER_RESOURCE: "8"},
                                            "allocatable": {k.VM_MARKER_RESOURCE: "8"}}}


def test_disruption_cause_names_the_eviction_and_ignores_other_conditions():
    from types import SimpleNamespace as C
    from podvirt.launcher.report import disruption_cause
    evicted = C(type="DisruptionTarget", status="True", reason="EvictionByEvictionAPI",
                message="Eviction API: evicting")
    ready = C(type="Ready", status="True", reason=None, message=None)
    assert disruption_cause([ready, evicted]) == "EvictionByEvictionAPI: Eviction API: evicting"
    assert disruption_cause([ready]) == ""
    assert disruption_cause(None) == ""
    assert disruption_cause([C(type="DisruptionTarget", status="False", reason="x",
                               message="")]) == ""
