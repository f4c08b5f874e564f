"""The sanitizer: an allowlist keeps domain XML inside its pod, the size check keeps it
inside its price. Every refusal names the element and attribute; what the launcher's own
builder emits passes the same rules."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET

import pytest

from podvirt.launcher import domain as builder
from podvirt.launcher.hostcontext import DiskAttachment, HostContext
from podvirt.vmspec import keys as k, parse_vm
from podvirt.vmspec.domainxml import (DomainXMLRejected, check_user_domain_xml,
                                      fill_placeholders, sanitize_domain)
from podvirt.vmspec.model import CONSOLE_SOCKET, LAUNCHER_WORK_DIR, PassthroughDevice, VMSpec

UUID = "6f1c53a4-3b8d-4a43-9d7e-5b0b6f0d0c11"
GPU = PassthroughDevice("0000:3b:00.0", "10de", "1eb8", resource="example.com/gpu")
# A plain user domain: disks from pod volumes, a serial console in the pod, a virtio NIC
# on QEMU's user networking (in the pod's network namespace), VNC on the pod's loopback.
PLAIN = """<domain type='kvm'>
  <name>{{name}}</name><uuid>{{uuid}}</uuid>
  <memory unit='KiB'>{{memory_kib}}</memory><vcpu placement='static'>{{vcpus}}</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <cpu mode='host-model'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{{disk:root}}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{{disk:data}}'/><target dev='vdb' bus='virtio'/></disk>
    <serial type='unix'><source mode='bind' path='/var/lib/podvirt/launcher/console.sock'/>
      <log file='/var/lib/podvirt/launcher/serial.log' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/></interface>
    <graphics type='vnc' port='5900' autoport='no' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>"""
PLAIN_ANNOTATIONS = {k.MEMORY: "2Gi", k.VCPUS: "2",
                     k.DISKS: "root=containerdisk:example.com/disk:1,data=pvc:data"}


def plain_spec(**changes) -> VMSpec:
    return dataclasses.replace(parse_vm({**PLAIN_ANNOTATIONS, k.DOMAIN_XML: PLAIN}, name="vm1"),
                               **changes)


def sanitize(xml: str, spec: VMSpec | None = None, **kw) -> ET.Element:
    return sanitize_domain(xml, spec=spec or VMSpec(name="x", vcpus=1, memory_bytes=2**30), **kw)


def minimal(body: str = "", *, top: str = "", size: str | None = None) -> str:
    size = size if size is not None else "<memory unit='GiB'>1</memory><vcpu>1</vcpu>"
    return (f"<domain type='qemu'><name>x</name>{size}{top}<devices>{body}</devices>"
            "</domain>")


# --- the launcher's own domain passes the same rules --------------------------------------

def _ctx(spec: VMSpec, **changes) -> HostContext:
    """A host context as the launcher builds it in a pod: every path under the pod."""
    disks = tuple(DiskAttachment(d.name, f"{d.mount_dir}/disk.img" if d.kind == "pvc" else
                                 f"{LAUNCHER_WORK_DIR}/overlays/{d.name}.qcow2",
                                 "raw" if d.kind == "pvc" else "qcow2") for d in spec.disks)
    base = dict(accel="tcg" if spec.allow_emulation else "kvm", uuid=UUID, disks=disks,
                serial_log=f"{LAUNCHER_WORK_DIR}/serial.log", serial_socket=CONSOLE_SOCKET,
                passt_socket=f"{LAUNCHER_WORK_DIR}/passt.sock",
                nvram=f"{LAUNCHER_WORK_DIR}/nvram.fd" if spec.firmware == "efi" else None,
                cloud_init_iso=f"{LAUNCHER_WORK_DIR}/cloud-init.iso" if spec.cloud_init else None,
                host_cpus=(2, 3, 4, 5))
    base.update(changes)
    return HostContext(**base)


BUILT = {
    "small": {k.MEMORY: "1Gi", k.DISKS: "root=scratch:1Gi"},
    "efi": {k.MEMORY: "512Mi", k.FIRMWARE: "efi", k.DISKS: "root=scratch:1Gi"},
    "secure-boot-tpm": {k.MEMORY: "1Gi", k.FIRMWARE: "efi", k.SECURE_BOOT: "true",
                        k.TPM: "true", k.DISKS: "root=scratch:1Gi"},
    "every-disk-kind": {k.MEMORY: "1Gi", k.DISKS: "a=containerdisk:example.com/d:1,b=pvc:data,"
                        "c=scratch:2Gi,d=file:/var/lib/podvirt/images/d.qcow2",
                        k.CLOUD_INIT: "#cloud-config\n{}"},
    "nics-pod-and-user": {k.MEMORY: "1Gi", k.DISKS: "root=scratch:1Gi",
                          k.NICS: "eth0=pod@52:54:00:00:00:01,eth1=user", k.PORTS: "22"},
    "passthrough": {k.MEMORY: "2Gi", k.VCPUS: "2", k.DISKS: "root=scratch:1Gi",
                    k.DEVICES: "example.com/gpu=1"},
    "hugepages-dedicated": {k.MEMORY: "4Gi", k.VCPUS: "4", k.HUGEPAGES: "2Mi",
                            k.DEDICATED_CPUS: "true", k.CPU_MODEL: "host-passthrough",
                            k.DISKS: "root=scratch:1Gi"},
    "kernel-boot-vnc-tcg": {k.MEMORY: "256Mi", k.KERNEL: "/boot/vmlinuz",
                            k.KERNEL_IMAGE: "example.com/kernel:1", k.INITRD: "/boot/initrd",
                            k.KERNEL_ARGS: "console=ttyS0", k.GRAPHICS: "vnc",
                            k.ALLOW_EMULATION: "true", k.MACHINE: "pc"},
    "named-cpu-model": {k.MEMORY: "1Gi", k.CPU_MODEL: "Skylake-Server",
                        k.DISKS: "root=scratch:1Gi"},
}


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in BUILT])
def test_builder_output_passes_the_sanitizer(name):
    spec = parse_vm(BUILT[name], name="vm1")
    ctx = _ctx(spec, assigned=(GPU,) if spec.devices else ())
    built = ET.tostring(builder.checked_domain(spec, ctx), encoding="unicode")
    root = sanitize(built, spec, assigned=ctx.assigned, host_cpus=ctx.host_cpus)
    assert ET.tostring(root, encoding="unicode") == built      # passed, and unchanged


@pytest.mark.parametrize("name, expect_cmdline", [
    pytest.param("small", False, id="no-pod-nic"),
    pytest.param("nics-pod-and-user", True, id="pod-nic"),
])
def test_trusted_additions_come_after_and_would_not_pass(name, expect_cmdline):
    """The launcher's own <emulator> and pod NIC command line are added after the check:
    user XML carrying them is refused, so they stay the launcher's."""
    spec = parse_vm(BUILT[name], name="vm1")
    full = builder.domain_xml(spec, _ctx(spec))
    root = ET.fromstring(full)
    assert root.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"
    assert (root.find(f"{{{builder.QEMU_NS}}}commandline") is not None) == expect_cmdline
    with pytest.raises(DomainXMLRejected) as err:
        sanitize(full, spec)
    assert err.value.element == ("devices/emulator" if not expect_cmdline else
                                 "qemu:commandline")


# --- user domains ------------------------------------------------------------------------

def test_plain_user_domain_admitted_and_built():
    spec = plain_spec()
    # Admission fills the placeholders with the price and stand-ins for the launcher's facts.
    admitted = check_user_domain_xml(spec)
    assert (admitted.findtext("name"), admitted.findtext("uuid"), admitted.findtext("memory"),
            admitted.findtext("vcpu")) == ("vm1", "00000000-0000-0000-0000-000000000000",
                                           str(2 * 2**20), "2")
    assert [s.get("file") for s in admitted.iterfind("devices/disk/source")] == [
        "/var/lib/podvirt/disks/root/disk.img", "/var/lib/podvirt/disks/data/disk.img"]
    ctx = HostContext(accel="kvm", uuid=UUID, disks=(
        DiskAttachment("root", f"{LAUNCHER_WORK_DIR}/overlays/root.qcow2", "qcow2"),
        DiskAttachment("data", "/var/lib/podvirt/disks/data/disk.img", "raw")),
        serial_log=f"{LAUNCHER_WORK_DIR}/serial.log")
    root = ET.fromstring(builder.domain_xml(spec, ctx))
    assert (root.findtext("name"), root.findtext("uuid"), root.findtext("memory"),
            root.findtext("vcpu")) == ("vm1", UUID, str(2 * 2**20), "2")
    assert [s.get("file") for s in root.iterfind("devices/disk/source")] == [
        f"{LAUNCHER_WORK_DIR}/overlays/root.qcow2", "/var/lib/podvirt/disks/data/disk.img"]
    assert root.find("devices/graphics").get("listen") == "127.0.0.1"
    assert root.find("devices/interface").get("type") == "user"
    # The user's console is kept: the launcher adds its own only when there is none.
    assert [s.get("type") for s in root.iterfind("devices/serial")] == ["unix"]
    assert root.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"


def test_placeholders_fill_escaped():
    filled = fill_placeholders(PLAIN, name="vm&1", uuid=UUID, memory_kib=1024, vcpus=2,
                               disk_paths={"root": "/var/lib/podvirt/disks/root/d'.qcow2",
                                           "data": "/var/lib/podvirt/disks/data/disk.img"})
    root = ET.fromstring(filled)
    assert (root.findtext("name"), root.findtext("vcpu")) == ("vm&1", "2")
    assert root.find("devices/disk/source").get("file") == "/var/lib/podvirt/disks/root/d'.qcow2"


@pytest.mark.parametrize("template, fragment", [
    pytest.param("<domain><name>{{nam}}</name></domain>", "unknown placeholder", id="typo"),
    pytest.param("<domain><devices><disk><source file='{{disk:nope}}'/></disk></devices></domain>",
                 "names no disk", id="unknown-disk"),
])
def test_placeholder_errors(template, fragment):
    with pytest.raises(DomainXMLRejected, match=fragment):
        check_user_domain_xml(plain_spec(domain_xml=template))


def test_assigned_hostdev_passes_in_the_launcher_only():
    xml = minimal("<hostdev mode='subsystem' type='pci' managed='no'><source><address "
                  "domain='0x0000' bus='0x3b' slot='0x00' function='0x0'/></source></hostdev>")
    root = sanitize(xml, assigned=[GPU])
    assert root.find("devices/hostdev/source/address").get("bus") == "0x3b"
    with pytest.raises(DomainXMLRejected, match="assigned: none"):
        sanitize(xml)


def test_metadata_holds_foreign_elements_but_never_qemu():
    root = sanitize(minimal(top="<metadata><a:app xmlns:a='urn:a'><a:x/></a:app></metadata>"))
    assert [(e.tag, [c.tag for c in e]) for e in root.find("metadata")] == [
        ("{urn:a}app", ["{urn:a}x"])]
    with pytest.raises(DomainXMLRejected) as err:
        sanitize(minimal(top="<metadata><q:env xmlns:q='http://libvirt.org/schemas/domain/qemu"
                              "/1.0' name='LD_PRELOAD' value='/x.so'/></metadata>"))
    assert err.value.element == "qemu:env"


# --- escapes: the element and attribute named, and the rule -------------------------------

@pytest.mark.parametrize("xml, element, attribute, rule", [
    pytest.param(minimal("<emulator>/bin/sh</emulator>"), "devices/emulator", None,
                 "QEMU binary", id="emulator"),
    pytest.param(minimal("<filesystem type='mount'><source dir='/'/><target dir='r'/>"
                         "</filesystem>"), "devices/filesystem", None, "host directory",
                 id="filesystem"),
    pytest.param(minimal("<disk type='file'><source file='/etc/shadow'/></disk>"),
                 "devices/disk/source", "file", "<source file='/etc/shadow'>", id="host-path"),
    pytest.param(minimal("<disk type='block'><source dev='/dev/sda'/></disk>"), "devices/disk",
                 None, "host block device", id="block-device"),
    pytest.param(minimal("<disk><source file='/var/lib/podvirt/../../etc/x'/></disk>"),
                 "devices/disk/source", "file", "outside the pod", id="dotdot"),
    pytest.param(minimal("<interface type='network'><source network='default'/></interface>"),
                 "devices/interface", None, "libvirt network on the host", id="network-nic"),
    pytest.param(minimal("<interface type='direct'><source dev='eth0'/></interface>"),
                 "devices/interface", None, "macvtap", id="macvtap"),
    pytest.param(minimal("<interface type='user'><script path='/var/lib/podvirt/s'/>"
                         "</interface>"), "devices/interface/script", None, "host program",
                 id="script-in-pod"),
    pytest.param(minimal("<graphics type='vnc' listen='0.0.0.0'/>"), "devices/graphics",
                 "listen", "loopback", id="vnc-wildcard"),
    pytest.param(minimal("<graphics type='spice'><listen type='address' address='10.0.0.5'/>"
                         "</graphics>"), "devices/graphics/listen", "address", "loopback",
                 id="spice-pod-ip"),
    pytest.param(minimal("<serial type='tcp'><source mode='bind' host='0.0.0.0' "
                         "service='1'/></serial>"), "devices/serial/source", "host",
                 "loopback", id="tcp-wildcard"),
    pytest.param(minimal("<channel type='udp'><source mode='connect' service='9'/><target "
                         "type='virtio'/></channel>"), "devices/channel/source", None,
                 "needs host=", id="udp-any-address"),
    pytest.param(minimal("<serial type='dev'><source path='/dev/ttyS0'/></serial>"),
                 "devices/serial", None, "host device node", id="host-tty"),
    pytest.param(minimal("<console type='pty'><log file='/etc/cron.d/x'/></console>"),
                 "devices/console/log", "file", "outside the pod", id="console-log"),
    pytest.param(minimal("<hostdev mode='capabilities' type='storage'/>"), "devices/hostdev",
                 None, "host block", id="hostdev-caps"),
    pytest.param(minimal("<hostdev mode='subsystem' type='usb'/>"), "devices/hostdev", None,
                 "host USB device", id="hostdev-usb"),
    pytest.param(minimal("<rng model='virtio'><backend model='random'>/etc/shadow</backend>"
                         "</rng>"), "devices/rng/backend", None, "/dev/urandom", id="rng-file"),
    pytest.param(minimal("<input type='passthrough' bus='virtio'><source evdev='/dev/input/e0'/>"
                         "</input>"), "devices/input", None, "evdev", id="evdev"),
    pytest.param(minimal("<vsock model='virtio'/>"), "devices/vsock", None, "host kernel",
                 id="vsock"),
    pytest.param(minimal("<tpm><backend type='passthrough'/></tpm>"), "devices/tpm/backend",
                 None, "host's TPM", id="tpm-passthrough"),
    pytest.param(minimal("<disk type='file'><source file='/var/lib/podvirt/x' "
                         "unknownattr='1'/></disk>"), "devices/disk/source", "unknownattr",
                 "not on podvirt's list", id="unknown-attribute"),
    pytest.param(minimal("<newdevice/>"), "devices/newdevice", None, "not on podvirt's list",
                 id="unknown-device"),
    pytest.param(minimal(top="<os><type>hvm</type><kernel>/boot/vmlinuz</kernel></os>"),
                 "os/kernel", None, "outside the pod", id="kernel"),
    pytest.param(minimal(top="<os><type>hvm</type><loader>/etc/evil.fd</loader></os>"),
                 "os/loader", None, "firmware directories", id="loader"),
    pytest.param(minimal(top="<os><type>hvm</type><nvram template='/etc/shadow'>"
                             "/var/lib/podvirt/n.fd</nvram></os>"), "os/nvram", "template",
                 "firmware directories", id="nvram-template"),
    pytest.param(minimal(top="<os><type>hvm</type><acpi><table type='slic'>/etc/shadow</table>"
                             "</acpi></os>"), "os/acpi/table", None, "outside the pod",
                 id="acpi-table"),
    pytest.param(minimal(top="<numatune><memory nodeset='0'/></numatune>"), "numatune", None,
                 "NUMA", id="numatune"),
    pytest.param(minimal(top="<seclabel type='none'/>"), "seclabel", None, "security label",
                 id="seclabel"),
    pytest.param('<domain xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">'
                 '<qemu:commandline><qemu:arg value="-x"/></qemu:commandline></domain>',
                 "qemu:commandline", None, "raw QEMU arguments", id="qemu-commandline"),
    pytest.param('<!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><domain>&b;</domain>',
                 None, None, "forbidden XML construct", id="entity-bomb"),
    pytest.param('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain>&x;</domain>',
                 None, None, "forbidden XML construct", id="external-entity"),
    pytest.param("<vm/>", "vm", None, "root element must be <domain>", id="wrong-root"),
    pytest.param("<domain>", None, None, "does not parse", id="truncated"),
])
def test_escapes_refused_naming_element_and_attribute(xml, element, attribute, rule):
    with pytest.raises(DomainXMLRejected) as err:
        sanitize(xml)
    assert (err.value.element, err.value.attribute) == (element, attribute)
    assert rule in str(err.value)


def test_refusal_lists_what_is_allowed_but_not_what_is_refused():
    with pytest.raises(DomainXMLRejected) as err:
        sanitize(minimal(top="<bogus/>"))
    message = str(err.value)
    assert "allowed in <domain>: name, uuid" in message and "numatune" not in message


# --- the size equals the price -----------------------------------------------------------

@pytest.mark.parametrize("size, top, element, attribute, message", [
    pytest.param("<memory unit='GiB'>8</memory><vcpu>16</vcpu>", "", "memory", None,
                 "<memory> is 8Gi but podvirt.io/memory prices 2Gi", id="memory-8g"),
    pytest.param("<memory unit='MiB'>2048</memory><vcpu>16</vcpu>", "", "vcpu", None,
                 "<vcpu> is 16 but podvirt.io/vcpus prices 2", id="vcpus-16"),
    pytest.param("<memory>2097152</memory><currentMemory unit='G'>3</currentMemory>"
                 "<vcpu>2</vcpu>", "", "currentMemory", None,
                 "<currentMemory> is 3Gi but podvirt.io/memory prices 2Gi", id="current-memory"),
    pytest.param("<maxMemory slots='4' unit='GiB'>32</maxMemory><memory unit='GiB'>2</memory>"
                 "<vcpu>2</vcpu>", "", "maxMemory", None,
                 "<maxMemory> is 32Gi but podvirt.io/memory prices 2Gi", id="max-memory"),
    pytest.param("<memory unit='GB'>2</memory><vcpu>2</vcpu>", "", "memory", None,
                 "<memory> is 2000000000 bytes but podvirt.io/memory prices 2Gi", id="decimal-gb"),
    pytest.param("<vcpu>2</vcpu>", "", "memory", None, "<memory> is missing", id="no-memory"),
    pytest.param("<memory unit='GiB'>2</memory>", "", "vcpu", None,
                 "<vcpu> is 1 (libvirt default) but podvirt.io/vcpus prices 2", id="no-vcpu"),
    pytest.param("<memory unit='GiB'>2</memory><vcpu current='1'>2</vcpu>", "", "vcpu",
                 "current", "<vcpu current='1'> is not the 2 vCPUs", id="vcpu-current"),
    pytest.param("<memory unit='GiB'>2</memory><vcpu>2</vcpu>",
                 "<vcpus><vcpu id='0'/><vcpu id='1'/><vcpu id='2'/></vcpus>", "vcpus", None,
                 "<vcpus> lists 3 vCPUs but podvirt.io/vcpus prices 2", id="vcpus-list"),
    pytest.param("<memory unit='GiB'>2</memory><vcpu>2</vcpu>",
                 "<cpu><topology sockets='1' cores='8' threads='2'/></cpu>", "cpu/topology",
                 None, "is 16 vCPUs", id="topology"),
    pytest.param("<memory unit='GiB'>2</memory><vcpu>2</vcpu>",
                 "<memoryBacking><hugepages><page size='1' unit='GiB'/></hugepages>"
                 "</memoryBacking>", "memoryBacking/hugepages/page", "size",
                 "is 1Gi pages but podvirt.io/hugepages prices none", id="hugepages"),
    pytest.param("<memory unit='GiB'>2</memory><vcpu>2</vcpu>",
                 "<cputune><vcpupin vcpu='0' cpuset='1'/></cputune>", "cputune/vcpupin", None,
                 "podvirt.io/dedicated-cpus prices shared CPUs", id="pinning"),
    pytest.param("<memory unit='GiB'>2</memory><vcpu>2</vcpu>",
                 "<features><tcg><tb-cache unit='GiB'>1</tb-cache></tcg></features>",
                 "features/tcg/tb-cache", None, "TCG cache is priced at 64Mi", id="tb-cache"),
])
def test_size_must_equal_the_price(size, top, element, attribute, message):
    xml = minimal(size=size, top=top)
    with pytest.raises(DomainXMLRejected) as err:
        check_user_domain_xml(plain_spec(domain_xml=xml))
    assert (err.value.element, err.value.attribute) == (element, attribute)
    assert message in str(err.value)


def test_size_denial_reaches_the_webhook_message():
    from podvirt.vmspec import SpecInvalid
    xml = minimal(size="<memory unit='GiB'>8</memory><vcpu>16</vcpu>")
    with pytest.raises(SpecInvalid) as err:
        parse_vm({**PLAIN_ANNOTATIONS, k.DOMAIN_XML: xml}, name="vm1")
    assert str(err.value) == ("podvirt.io/domain-xml: <memory> is 8Gi but podvirt.io/memory "
                              "prices 2Gi")


@pytest.mark.parametrize("size", [
    pytest.param("<memory unit='KiB'>{{memory_kib}}</memory><vcpu>{{vcpus}}</vcpu>",
                 id="placeholders"),
    pytest.param("<memory unit='GiB'>2</memory><currentMemory unit='MiB'>2048</currentMemory>"
                 "<vcpu current='2'>2</vcpu>", id="literal-equal"),
    pytest.param("<memory unit='b'>2147483648</memory><vcpu>2</vcpu>", id="bytes"),
])
def test_size_equal_to_the_price_passes(size):
    spec = plain_spec(domain_xml=minimal(size=size))
    filled = fill_placeholders(spec.domain_xml, name="x", uuid=UUID, memory_kib=2 * 2**20,
                               vcpus=2, disk_paths={})
    # The same size where admission checks it and where the launcher does.
    for root in check_user_domain_xml(spec), sanitize(filled, spec):
        memory = root.find("memory")
        unit = {"b": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[memory.get("unit", "KiB")]
        assert int(memory.text) * unit == spec.memory_bytes
        assert root.findtext("vcpu") == "2"


@pytest.mark.parametrize("pins, error", [
    pytest.param("<vcpupin vcpu='0' cpuset='2'/><vcpupin vcpu='1' cpuset='3'/>", None,
                 id="inside-the-pod"),
    pytest.param("<vcpupin vcpu='0' cpuset='7'/>", "outside the pod's CPUs (2,3)", id="outside"),
    pytest.param("<vcpupin vcpu='2' cpuset='2'/>", "beyond the 2", id="vcpu-beyond"),
])
def test_dedicated_pinning_stays_on_the_pods_cpus(pins, error):
    spec = VMSpec(name="x", vcpus=2, memory_bytes=2**30, dedicated_cpus=True)
    xml = minimal(size="<memory unit='GiB'>1</memory><vcpu>2</vcpu>",
                  top=f"<cputune>{pins}</cputune>")
    if error is None:
        root = sanitize(xml, spec, host_cpus=(2, 3))
        assert [p.get("cpuset") for p in root.iterfind("cputune/vcpupin")] == ["2", "3"]
    else:
        with pytest.raises(DomainXMLRejected, match=re.escape(error)):
            sanitize(xml, spec, host_cpus=(2, 3))
