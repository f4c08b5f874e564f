import dataclasses
import xml.etree.ElementTree as ET

import pytest

from podvirt.launcher import domain as d
from podvirt.launcher.hostcontext import DiskAttachment, HostContext
from podvirt.vmspec import parse_vm
from podvirt.vmspec.domainxml import DomainXMLRejected
from podvirt.vmspec.model import PassthroughDevice

KVM = HostContext(accel="kvm", uuid="11111111-2222-3333-4444-555555555555")
TCG = HostContext(accel="tcg", uuid="11111111-2222-3333-4444-555555555555")
GPU = PassthroughDevice(address="0000:3b:00.0", vendor="10de", device="1db6")


def spec(**annotations):
    base = {"podvirt.io/memory": "1Gi", "podvirt.io/disks": "root=scratch:1Gi"}
    base.update({f"podvirt.io/{k.replace('_', '-')}": v for k, v in annotations.items()})
    return parse_vm(base, name="vm1")


def render(elements):
    return "".join(ET.tostring(e, encoding="unicode") for e in elements)


@pytest.mark.parametrize("configurator,vm,ctx,expected", [
    pytest.param(d.cpu_memory, spec(vcpus="2"), KVM,
                 '<memory unit="KiB">1048576</memory><vcpu placement="static">2</vcpu>'
                 '<cpu mode="host-model" />', id="kvm-host-model"),
    pytest.param(d.cpu_memory, spec(allow_emulation="true"), TCG,
                 '<memory unit="KiB">1048576</memory><vcpu placement="static">1</vcpu>',
                 id="tcg-has-no-host-model"),
    pytest.param(d.cpu_memory, spec(cpu_model="Skylake-Server"), KVM,
                 '<memory unit="KiB">1048576</memory><vcpu placement="static">1</vcpu>'
                 '<cpu mode="custom" match="exact"><model fallback="forbid">Skylake-Server'
                 '</model></cpu>', id="named-model"),
    pytest.param(d.memory_backing, spec(hugepages="2Mi"), KVM,
                 '<memoryBacking><hugepages><page size="2048" unit="KiB" /></hugepages>'
                 '</memoryBacking>', id="hugepages-2Mi"),
    pytest.param(d.memory_backing, spec(), KVM, "", id="no-hugepages"),
    pytest.param(d.cputune, spec(vcpus="2", dedicated_cpus="true"),
                 HostContext(accel="kvm", uuid="u", host_cpus=(4, 5, 6)),
                 '<cputune><vcpupin vcpu="0" cpuset="4" /><vcpupin vcpu="1" cpuset="5" />'
                 '</cputune>', id="dedicated-pinning"),
    pytest.param(d.cputune, spec(vcpus="2"), HostContext(accel="kvm", uuid="u", host_cpus=(4, 5)),
                 "", id="shared-no-pinning"),
    pytest.param(d.os_boot, spec(), KVM,
                 '<os><type arch="x86_64" machine="q35">hvm</type></os>', id="disk-boot"),
    pytest.param(d.os_boot, spec(kernel="/var/lib/podvirt/k", initrd="/var/lib/podvirt/i",
                                 kernel_args="console=ttyS0 quiet", machine="pc"), KVM,
                 '<os><type arch="x86_64" machine="pc">hvm</type>'
                 '<kernel>/var/lib/podvirt/k</kernel><initrd>/var/lib/podvirt/i</initrd>'
                 '<cmdline>console=ttyS0 quiet</cmdline></os>', id="direct-kernel-boot"),
    pytest.param(d.features, spec(), KVM, "<features><acpi /></features>", id="kvm-acpi"),
    pytest.param(d.features, spec(allow_emulation="true"), TCG,
                 '<features><acpi /><tcg><tb-cache unit="MiB">64</tb-cache></tcg></features>',
                 id="tcg-cache-cap"),
    pytest.param(d.disks, spec(kernel="/var/lib/podvirt/k"),
                 HostContext(accel="kvm", uuid="u", cloud_init_iso="/w/seed.iso", disks=(
                     DiskAttachment("root", "/w/root.qcow2", "qcow2"),
                     DiskAttachment("data", "/v/disk.img", "raw"))),
                 '<disk type="file" device="disk"><driver name="qemu" type="qcow2" />'
                 '<source file="/w/root.qcow2" /><target dev="vda" bus="virtio" /></disk>'
                 '<disk type="file" device="disk"><driver name="qemu" type="raw" />'
                 '<source file="/v/disk.img" /><target dev="vdb" bus="virtio" /></disk>'
                 '<disk type="file" device="disk"><driver name="qemu" type="raw" />'
                 '<source file="/w/seed.iso" /><target dev="vdc" bus="virtio" /><readonly />'
                 '</disk>', id="disks-and-seed"),
    pytest.param(d.disks, spec(), HostContext(accel="kvm", uuid="u", disks=(
                     DiskAttachment("root", "/w/root.qcow2", "qcow2"),)),
                 '<disk type="file" device="disk"><driver name="qemu" type="qcow2" />'
                 '<source file="/w/root.qcow2" /><target dev="vda" bus="virtio" />'
                 '<boot order="1" /></disk>', id="boot-disk"),
    pytest.param(d.nics, spec(nics="eth0=user@52:54:00:00:00:01,net1"),
                 HostContext(accel="kvm", uuid="u", passt_socket="/w/passt.sock"),
                 '<interface type="user"><mac address="52:54:00:00:00:01" />'
                 '<model type="virtio" /></interface>', id="user-nic-pod-nic-elsewhere"),
    pytest.param(d.pod_nic_args, spec(nics="net1=pod@52:54:00:00:00:02", ports="22,53/udp"),
                 HostContext(accel="kvm", uuid="u", passt_socket="/w/passt.sock"),
                 '<qemu:commandline xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">'
                 '<qemu:arg value="-netdev" /><qemu:arg value="stream,id=podnet,server=off,'
                 'addr.type=unix,addr.path=/w/passt.sock" /><qemu:arg value="-device" />'
                 '<qemu:arg value="virtio-net-pci,netdev=podnet,id=net-net1,bus=pcie.0,'
                 'addr=0x1e,mac=52:54:00:00:00:02" /></qemu:commandline>', id="pod-nic-on-passt"),
    pytest.param(d.pod_nic_args, spec(nics="eth0=user"), KVM, "", id="no-pod-nic"),
    pytest.param(d.hostdevs, spec(), HostContext(accel="kvm", uuid="u", assigned=(GPU,)),
                 '<hostdev mode="subsystem" type="pci" managed="no"><source><address '
                 'domain="0x0000" bus="0x3b" slot="0x00" function="0x0" /></source></hostdev>',
                 id="assigned-hostdev"),
    pytest.param(d.serial_console, spec(),
                 HostContext(accel="kvm", uuid="u", serial_log="/w/s", serial_socket="/w/c.sock"),
                 '<serial type="unix"><source mode="bind" path="/w/c.sock" />'
                 '<log file="/w/s" append="on" /><target port="0" /></serial>',
                 id="serial-socket-with-log"),
    pytest.param(d.serial_console, spec(), HostContext(accel="kvm", uuid="u", serial_log="/w/s"),
                 '<serial type="file"><source path="/w/s" append="on" /><target port="0" />'
                 '</serial>', id="serial-file"),
    pytest.param(d.serial_console, spec(), KVM,
                 '<serial type="pty"><target port="0" /></serial>', id="serial-pty"),
    pytest.param(d.graphics, spec(graphics="vnc"), KVM,
                 '<graphics type="vnc" port="5900" autoport="no" listen="127.0.0.1" />'
                 '<video><model type="vga" /></video>', id="vnc-loopback"),
    pytest.param(d.graphics, spec(), KVM, "", id="no-graphics"),
])
def test_configurator(configurator, vm, ctx, expected):
    assert render(configurator(vm, ctx)) == expected


@pytest.mark.parametrize("accel,domain_type", [pytest.param("kvm", "kvm", id="kvm"),
                                               pytest.param("tcg", "qemu", id="tcg")])
def test_domain_type_follows_accel(accel, domain_type):
    root = ET.fromstring(d.domain_xml(spec(allow_emulation="true"),
                                      HostContext(accel=accel, uuid="u")))
    assert root.get("type") == domain_type
    assert root.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"


USER_XML = ("<domain type='kvm'><name>{{name}}</name><uuid>{{uuid}}</uuid>"
            "<memory unit='KiB'>{{memory_kib}}</memory><vcpu>{{vcpus}}</vcpu>"
            "<devices><disk type='file' device='disk'><source file='{{disk:root}}'/>"
            "<target dev='vda'/></disk></devices></domain>")


def test_user_domain_xml_filled_forced_to_tcg_with_hostdev_and_serial():
    vm = parse_vm({"podvirt.io/memory": "512Mi", "podvirt.io/disks": "root=scratch:1Gi",
                   "podvirt.io/allow-emulation": "true", "podvirt.io/domain-xml": USER_XML},
                  name="vm1")
    ctx = HostContext(accel="tcg", uuid=KVM.uuid, serial_log="/var/lib/podvirt/launcher/s",
                      assigned=(GPU,),
                      disks=(DiskAttachment("root", "/var/lib/podvirt/disks/root/d.qcow2",
                                            "qcow2"),))
    root = ET.fromstring(d.domain_xml(vm, ctx))
    assert (root.get("type"), root.findtext("name"), root.findtext("uuid"),
            root.findtext("memory"), root.findtext("vcpu")) == ("qemu", "vm1", KVM.uuid, "524288", "1")
    assert root.find("devices/disk/source").get("file") == "/var/lib/podvirt/disks/root/d.qcow2"
    assert root.find("features/tcg/tb-cache").text == "64"
    assert root.find("devices/hostdev/source/address").get("bus") == "0x3b"
    assert root.find("devices/serial/source").get("path") == "/var/lib/podvirt/launcher/s"


def test_user_domain_xml_rejects_hostdev_not_assigned():
    xml = USER_XML.replace("</devices>", "<hostdev mode='subsystem' type='pci'><source>"
                           "<address domain='0' bus='0x3b' slot='0' function='0'/></source>"
                           "</hostdev></devices>")
    vm = parse_vm({"podvirt.io/memory": "512Mi", "podvirt.io/disks": "root=scratch:1Gi",
                   "podvirt.io/domain-xml": USER_XML}, name="vm1")
    vm = dataclasses.replace(vm, domain_xml=xml)
    ctx = HostContext(accel="kvm", uuid=KVM.uuid, disks=(
        DiskAttachment("root", "/var/lib/podvirt/disks/root/d.qcow2", "qcow2"),))
    with pytest.raises(DomainXMLRejected, match="not a device assigned"):
        d.domain_xml(vm, ctx)


def test_pod_nic_needs_a_running_passt():
    with pytest.raises(ValueError, match="passt is not running"):
        d.pod_nic_args(spec(nics="eth0"), KVM)


def test_pod_nic_args_follow_devices_in_a_whole_domain():
    root = ET.fromstring(d.domain_xml(spec(nics="eth0", machine="pc"),
                                      HostContext(accel="kvm", uuid="u", passt_socket="/s")))
    assert [child.tag for child in root][-2:] == ["devices", f"{{{d.QEMU_NS}}}commandline"]
    assert "bus=pci.0,addr=0x1e" in root[-1][-1].get("value")
    assert root.find("devices/interface") is None


@pytest.mark.parametrize("annotations, loader, template, smm", [
    pytest.param({"firmware": "efi"}, "/usr/share/OVMF/OVMF_CODE_4M.fd",
                 "/usr/share/OVMF/OVMF_VARS_4M.fd", False, id="efi"),
    pytest.param({"firmware": "efi", "secure_boot": "true"},
                 "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
                 True, id="secure-boot"),
])
def test_efi_firmware_with_its_variables_in_the_pod(annotations, loader, template, smm):
    vm = spec(**annotations)
    root = ET.fromstring(d.domain_xml(vm, HostContext(accel="tcg", uuid="u", nvram="/w/nvram.fd")))
    assert root.find("os/loader").text == loader
    assert root.find("os/loader").get("secure") == ("yes" if smm else "no")
    assert (root.findtext("os/nvram"), root.find("os/nvram").get("template")) == \
        ("/w/nvram.fd", template)
    assert (root.find("features/smm") is not None) == smm


def test_bios_guest_has_no_loader_and_efi_needs_an_nvram_path():
    assert ET.fromstring(d.domain_xml(spec(), KVM)).find("os/loader") is None
    with pytest.raises(ValueError, match="variable store"):
        d.os_boot(spec(firmware="efi"), KVM)


def test_tpm_is_an_emulated_tpm2_crb():
    assert render(d.tpm(spec(tpm="true"), KVM)) == (
        '<tpm model="tpm-crb"><backend type="emulator" version="2.0" /></tpm>')
    assert d.tpm(spec(), KVM) == []


@pytest.mark.parametrize("disks, copied", [
    pytest.param("root=pvc:root", (), id="claims-stay"),
    pytest.param("root=containerdisk:img,data=pvc:data,s=scratch:1Gi", ("vda", "vdc"),
                 id="overlay-and-scratch"),
    pytest.param("f=file:/var/lib/podvirt/base.qcow2", ("vda",), id="file-overlay"),
])
def test_a_migration_copies_the_ephemeral_disks_not_claims_or_the_seed(disks, copied):
    vm = parse_vm({"podvirt.io/memory": "1Gi", "podvirt.io/disks": disks}, name="vm1")
    ctx = HostContext(accel="kvm", uuid="u", cloud_init_iso="/w/seed.iso", disks=tuple(
        DiskAttachment(disk.name, f"/w/{disk.name}.img", "qcow2") for disk in vm.disks))
    assert d.copied_disks(d.domain_xml(vm, ctx), vm, ctx) == copied


def test_copied_disks_follow_the_targets_a_user_domain_xml_names():
    xml = ("<domain type='kvm'><name>{{name}}</name><memory unit='KiB'>{{memory_kib}}</memory>"
           "<devices><disk type='file' device='disk'><source file='{{disk:data}}'/>"
           "<target dev='vdb'/></disk><disk type='file' device='disk'>"
           "<source file='{{disk:root}}'/><target dev='sda' bus='sata'/></disk></devices></domain>")
    vm = parse_vm({"podvirt.io/memory": "1Gi", "podvirt.io/domain-xml": xml,
                   "podvirt.io/disks": "root=scratch:1Gi,data=pvc:data"}, name="vm1")
    ctx = HostContext(accel="kvm", uuid="u", disks=(
        DiskAttachment("root", "/var/lib/podvirt/r.qcow2", "qcow2"),
        DiskAttachment("data", "/var/lib/podvirt/d.img", "raw")))
    assert d.copied_disks(d.domain_xml(vm, ctx), vm, ctx) == ("sda",)
