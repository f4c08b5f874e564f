"""The sanitizer keeps user domain XML inside the pod; every rejection names the element."""

import pytest

from podvirt.vmspec.domainxml import (DomainXMLRejected, check_user_domain_xml,
                                      fill_placeholders, sanitize_domain)
from podvirt.vmspec.model import Disk, PassthroughDevice

OK = """<domain type='kvm'><name>{{name}}</name><uuid>{{uuid}}</uuid>
<memory unit='KiB'>{{memory_kib}}</memory><vcpu>{{vcpus}}</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type>
<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader></os>
<features><acpi/></features>
<devices><disk type='file' device='disk'><source file='{{disk:root}}'/><target dev='vda' bus='virtio'/></disk>
<serial type='pty'/><console type='pty'/><interface type='user'/></devices></domain>"""
ROOT = [Disk("root", "scratch", "", 2**30)]


def devices(body: str) -> str:
    return f"<domain type='qemu'><name>x</name><devices>{body}</devices></domain>"


def test_valid_template_passes_and_placeholders_fill():
    check_user_domain_xml(OK, disks=ROOT)
    filled = fill_placeholders(OK, name="vm&1", uuid="u", memory_kib=1024, vcpus=2,
                               disk_paths={"root": "/var/lib/podvirt/disks/root/disk.qcow2"})
    root = sanitize_domain(filled)
    assert root.findtext("name") == "vm&1" and root.findtext("vcpu") == "2"


@pytest.mark.parametrize("xml, fragment", [
    pytest.param('<domain xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"><qemu:commandline>'
                 '<qemu:arg value="-x"/></qemu:commandline></domain>', "qemu:commandline",
                 id="qemu-commandline"),
    pytest.param('<domain xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"><qemu:env '
                 'name="A" value="b"/></domain>', "qemu:env", id="qemu-env"),
    pytest.param(devices("<emulator>/bin/sh</emulator>"), "<emulator>", id="emulator"),
    pytest.param(devices("<filesystem type='mount'><source dir='/'/><target dir='r'/></filesystem>"),
                 "<filesystem>", id="filesystem"),
    pytest.param(devices("<disk type='file'><source file='/etc/shadow'/></disk>"),
                 "<source file='/etc/shadow'>", id="disk-host-path"),
    pytest.param(devices("<disk type='block'><source dev='/dev/sda'/></disk>"),
                 "<source dev='/dev/sda'>", id="block-device"),
    pytest.param(devices("<disk type='file'><source file='/var/lib/podvirt/../../etc/x'/></disk>"),
                 "outside the pod", id="dotdot-escape"),
    pytest.param(devices("<disk type='volume'><source pool='p' volume='v'/></disk>"),
                 "type='volume'", id="storage-pool"),
    pytest.param(devices("<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' "
                         "bus='0x3b' slot='0x00' function='0x0'/></source></hostdev>"),
                 "not a device assigned", id="unassigned-hostdev"),
    pytest.param(devices("<hostdev mode='capabilities' type='storage'/>"), "<hostdev>",
                 id="capabilities-hostdev"),
    pytest.param(devices("<serial type='file'><source path='/var/log/x'/></serial>"),
                 "<source path='/var/log/x'>", id="serial-to-host-file"),
    pytest.param(devices("<serial type='dev'><source path='/dev/ttyS0'/></serial>"),
                 "<serial type='dev'>", id="serial-host-tty"),
    pytest.param(devices("<console type='pty'><log file='/etc/cron.d/x'/></console>"),
                 "<log file='/etc/cron.d/x'>", id="chardev-log"),
    pytest.param(devices("<interface type='ethernet'><script path='/bin/evil'/></interface>"),
                 "<script>", id="interface-script"),
    pytest.param(devices("<interface type='ethernet'><script path='/var/lib/podvirt/s'/></interface>"),
                 "<script>", id="interface-script-in-pod"),
    pytest.param(devices("<interface type='direct'><source dev='eth0' mode='bridge'/></interface>"),
                 "type='direct'", id="macvtap"),
    pytest.param("<domain><os><kernel>/boot/vmlinuz</kernel></os></domain>", "<kernel>",
                 id="kernel-outside"),
    pytest.param("<domain><os><loader>/etc/evil.fd</loader></os></domain>", "<loader>",
                 id="loader-outside"),
    pytest.param("<domain><os><nvram>/root/vars.fd</nvram></os></domain>", "<nvram>",
                 id="nvram-outside"),
    pytest.param(devices("<rng model='virtio'><backend model='random'>/etc/shadow</backend></rng>"),
                 "<backend>", id="rng-host-file"),
    pytest.param("<domain><os><acpi><table type='slic'>/etc/shadow</table></acpi></os></domain>",
                 "<table>", id="acpi-table"),
    pytest.param(devices("<smartcard mode='host-certificates'><database>/etc/pki/nssdb</database>"
                         "</smartcard>"), "<database>", id="smartcard-db"),
    pytest.param(devices("<input type='passthrough'><source evdev='/dev/input/event0'/></input>"),
                 "evdev", id="evdev"),
    pytest.param('<!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><domain>&b;</domain>',
                 "forbidden XML construct", id="entity-bomb"),
    pytest.param('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain>&x;</domain>',
                 "forbidden XML construct", id="external-entity"),
    pytest.param("<vm/>", "root element must be <domain>", id="wrong-root"),
    pytest.param("<domain>", "does not parse", id="truncated"),
])
def test_escapes_rejected(xml, fragment):
    with pytest.raises(DomainXMLRejected, match=None) as err:
        sanitize_domain(xml)
    assert fragment in str(err.value)


def test_entropy_device_allowed():
    sanitize_domain(devices("<rng model='virtio'><backend model='random'>/dev/urandom</backend>"
                            "</rng>"))


def test_assigned_hostdev_allowed():
    xml = devices("<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' "
                  "bus='0x3b' slot='0x00' function='0x0'/></source></hostdev>")
    sanitize_domain(xml, assigned=[PassthroughDevice("0000:3b:00.0", "10de", "1eb8")])


@pytest.mark.parametrize("template, fragment", [
    pytest.param("<domain><name>{{nam}}</name></domain>", "unknown placeholder", id="typo"),
    pytest.param("<domain><devices><disk><source file='{{disk:data}}'/></disk></devices></domain>",
                 "names no disk", id="unknown-disk"),
])
def test_placeholder_errors(template, fragment):
    with pytest.raises(DomainXMLRejected, match=fragment):
        check_user_domain_xml(template, disks=ROOT)
