"""The annotation contract: every rule is named by its key in the denial."""

import pytest

from podvirt.vmspec import SpecInvalid, is_vm_pod, parse_vm, vm_annotations
from podvirt.vmspec import keys as k

MiB, GiB = 2**20, 2**30
BASE = {k.MEMORY: "1Gi", k.DISKS: "root=containerdisk:registry.example/debian:12"}


def vm(**extra):
    return {**BASE, **{k.PREFIX + key.replace("_", "-"): v for key, v in extra.items()}}


def test_minimal_vm_defaults():
    spec = parse_vm(BASE, name="web")
    assert (spec.name, spec.vcpus, spec.memory_bytes) == ("web", 1, GiB)
    assert (spec.cpu_model, spec.machine, spec.graphics) == ("host-model", "q35", "none")
    assert (spec.start_retries, spec.shutdown_grace_seconds) == (2, 60)
    assert not spec.allow_emulation and not spec.dedicated_cpus and not spec.pinning


def test_disk_size_option_sizes_the_disk_before_it():
    spec = parse_vm(vm(disks="root=containerdisk:x/debian:12,size=20Gi,data=scratch:2Gi,"
                             "iso=file:/var/lib/podvirt/x.iso,size=1Gi,size=containerdisk:x/y:1"))
    assert [(d.name, d.kind, d.size_bytes) for d in spec.disks] == [
        ("root", "containerdisk", 20 * GiB), ("data", "scratch", 2 * GiB),
        ("iso", "file", GiB), ("size", "containerdisk", 0)]    # a disk may be named size


def test_full_vm():
    spec = parse_vm(vm(vcpus="4", memory="4Gi", cpu_model="Skylake-Client", dedicated_cpus="true",
                       hugepages="2Mi", machine="pc", node_names="n1,n2",
                       node_labels="podvirt.io/zone=b,disk=ssd",
                       devices="example.com/gpu=2,pci:10DE:1eb8",
                       disks="root=pvc:root-disk,tmp=scratch:2Gi,iso=file:/var/lib/podvirt/x.iso",
                       nics="eth0@52:54:00:aa:bb:cc,eth1=user", ports="22,53/udp", graphics="vnc",
                       start_retries="5", shutdown_grace="2m", cloud_init="#cloud-config\n"))
    assert spec.vcpus == 4 and spec.hugepage_bytes == 2 * MiB and spec.hugepage_size == "2Mi"
    assert spec.pinning.node_names == ("n1", "n2")
    assert spec.pinning.node_labels == (("podvirt.io/zone", "b"), ("disk", "ssd"))
    assert [d.label for d in spec.devices] == ["example.com/gpu", "pci:10de:1eb8"]
    assert spec.devices[0].count == 2 and spec.devices[1].count == 1
    assert [(d.kind, d.size_bytes) for d in spec.disks] == [("pvc", 0), ("scratch", 2 * GiB),
                                                            ("file", 0)]
    assert spec.nics[0].mac == "52:54:00:aa:bb:cc" and spec.pod_nic == spec.nics[0]
    assert [str(p) for p in spec.ports] == ["22/tcp", "53/udp"]
    assert spec.shutdown_grace_seconds == 120 and spec.cloud_init.inline == "#cloud-config\n"


def test_ports_sorted_and_reserved_only_over_tcp():
    spec = parse_vm(vm(nics="eth0", ports="9101/udp,80,22/udp,22"))
    assert [str(p) for p in spec.ports] == ["22/tcp", "22/udp", "80/tcp", "9101/udp"]


@pytest.mark.parametrize("annotations, key, fragment", [
    pytest.param({k.DISKS: "root=scratch:1Gi"}, k.MEMORY, "is required", id="memory-required"),
    pytest.param(vm(memory="16Mi"), k.MEMORY, "at least 64Mi", id="memory-below-minimum"),
    pytest.param(vm(memory="2Ti"), k.MEMORY, "at most 1Ti", id="memory-above-maximum"),
    pytest.param(vm(memory="4GB"), k.MEMORY, "not a quantity", id="memory-malformed"),
    pytest.param(vm(memory="1E"), k.MEMORY, "at most 1Ti", id="memory-exa-suffix"),
    pytest.param(vm(hugepages="1E"), k.HUGEPAGES, "2Mi, 1Gi only", id="hugepage-exa-suffix"),
    pytest.param(vm(memory="1000000Ki"), k.MEMORY, "whole number of MiB", id="memory-not-mib"),
    pytest.param(vm(vcpus="0"), k.VCPUS, "between 1 and 64", id="vcpus-zero"),
    pytest.param(vm(vcpus="65"), k.VCPUS, "between 1 and 64", id="vcpus-above-max"),
    pytest.param(vm(vcpus="two"), k.VCPUS, "integer", id="vcpus-not-int"),
    pytest.param(vm(hugepages="4Mi"), k.HUGEPAGES, "2Mi, 1Gi only", id="hugepage-size"),
    pytest.param(vm(hugepages="1Gi", memory="1536Mi"), k.HUGEPAGES, "not a multiple",
                 id="hugepage-multiple"),
    pytest.param(vm(dedicated_cpus="maybe"), k.DEDICATED_CPUS, "true or false", id="bool"),
    pytest.param(vm(machine="virt"), k.MACHINE, "machine type", id="machine"),
    pytest.param(vm(cpu_model="a b"), k.CPU_MODEL, "CPU model", id="cpu-model"),
    pytest.param(vm(cpu_model="host-passthrough", allow_emulation="true"), k.CPU_MODEL,
                 "needs KVM", id="passthrough-with-emulation"),
    pytest.param(vm(node_names="Bad_Name"), k.NODE_NAMES, "not a valid node name", id="node-name"),
    pytest.param(vm(node_labels="zone"), k.NODE_LABELS, "key=value", id="node-label-form"),
    pytest.param(vm(devices="gpu=1"), k.DEVICES, "neither an extended resource", id="device-name"),
    pytest.param(vm(devices="pci:10de=1"), k.DEVICES, "pci:<vendor>:<device>", id="pci-form"),
    pytest.param(vm(devices="example.com/gpu=0"), k.DEVICES, "between 1 and 16", id="count"),
    pytest.param(vm(devices="example.com/gpu=1,example.com/gpu=2"), k.DEVICES, "same device",
                 id="device-twice"),
    pytest.param(vm(disks="root=nfs:x"), k.DISKS, "unknown source kind", id="disk-kind"),
    pytest.param(vm(disks="root=file:/etc/shadow"), k.DISKS, "inside the pod", id="disk-host-path"),
    pytest.param(vm(disks="root=file:/var/lib/podvirt/../../etc/shadow"), k.DISKS, "normalized",
                 id="disk-dotdot"),
    pytest.param(vm(disks="a=scratch:1Gi,a=scratch:1Gi"), k.DISKS, "unique", id="disk-dup"),
    pytest.param(vm(disks="root=scratch:1Ki"), k.DISKS, "at least 1Mi", id="scratch-size"),
    pytest.param(vm(disks="size=20Gi,root=pvc:c"), k.DISKS, "must follow the containerdisk or "
                 "file disk it sizes", id="disk-size-first"),
    pytest.param(vm(disks="root=scratch:1Gi,size=20Gi"), k.DISKS, "disk 'root' is scratch",
                 id="disk-size-after-scratch"),
    pytest.param(vm(disks="root=pvc:c,size=20Gi"), k.DISKS, "disk 'root' is pvc",
                 id="disk-size-after-pvc"),
    pytest.param(vm(disks="root=containerdisk:x/y:1,size=2Gi,size=3Gi"), k.DISKS,
                 "size= is given twice", id="disk-size-twice"),
    pytest.param(vm(disks="root=containerdisk:x/y:1,size=2GB"), k.DISKS, "quantity",
                 id="disk-size-not-a-quantity"),
    pytest.param(vm(disks="root=containerdisk:x/y:1,size=1Ki"), k.DISKS, "at least 1Mi",
                 id="disk-size-too-small"),
    pytest.param(vm(nics="eth0=bridge"), k.NICS, "pod or user", id="nic-binding"),
    pytest.param(vm(nics="eth0=tap"), k.NICS, "write eth0=pod", id="nic-tap-removed"),
    pytest.param(vm(nics="eth0,eth1=pod"), k.NICS, "at most one NIC", id="two-pod-nics"),
    pytest.param(vm(nics="eth0@01:00:00:00:00:01"), k.NICS, "multicast", id="nic-mac"),
    pytest.param(vm(ports="22"), k.PORTS, "needs a NIC", id="ports-without-nic"),
    pytest.param(vm(nics="eth0=user", ports="22"), k.PORTS, "user binding",
                 id="ports-on-user-nic"),
    pytest.param(vm(nics="eth0", ports="22/sctp"), k.PORTS, "tcp or udp", id="port-protocol"),
    pytest.param(vm(nics="eth0", ports="0"), k.PORTS, "1 to 65535", id="port-zero"),
    pytest.param(vm(nics="eth0", ports="http"), k.PORTS, "1 to 65535", id="port-name"),
    pytest.param(vm(nics="eth0", ports="\u00b9"), k.PORTS, "1 to 65535", id="port-superscript"),
    pytest.param(vm(nics="eth0", ports="22,22/tcp"), k.PORTS, "port 22/tcp is given twice",
                 id="port-dup"),
    pytest.param(vm(nics="eth0", ports="22,022"), k.PORTS, "port 22/tcp is given twice",
                 id="port-dup-leading-zero"),
    pytest.param(vm(nics="eth0", ports="9101"), k.PORTS,
                 "port 9101/tcp is the launcher's metrics port", id="port-metrics"),
    pytest.param(vm(nics="eth0", ports="80,49152/TCP"), k.PORTS,
                 "port 49152/tcp is where a VM pod receives a live migration",
                 id="port-migration"),
    pytest.param(vm(firmware="uefi"), k.FIRMWARE, "bios, efi", id="firmware-choice"),
    pytest.param(vm(firmware="efi", memory="128Mi"), k.FIRMWARE, "at least 256Mi",
                 id="efi-needs-memory"),
    pytest.param(vm(secure_boot="true"), k.SECURE_BOOT, "needs podvirt.io/firmware: efi",
                 id="secure-boot-without-efi"),
    pytest.param(vm(firmware="efi", secure_boot="true", machine="pc"), k.SECURE_BOOT,
                 "needs podvirt.io/machine: q35", id="secure-boot-needs-q35"),
    pytest.param(vm(tpm="maybe"), k.TPM, "true or false", id="tpm-bool"),
    pytest.param(vm(kernel="/boot/vmlinuz"), k.KERNEL, "inside the pod", id="kernel-path"),
    pytest.param(vm(initrd="/var/lib/podvirt/initrd"), k.INITRD, "needs podvirt.io/kernel",
                 id="initrd-without-kernel"),
    pytest.param(vm(cloud_init="x", cloud_init_secret="s"), k.CLOUD_INIT_SECRET, "one way only",
                 id="cloud-init-conflict"),
    pytest.param(vm(graphics="spice"), k.GRAPHICS, "none, vnc", id="graphics"),
    pytest.param(vm(start_retries="11"), k.START_RETRIES, "between 0 and 10", id="retries"),
    pytest.param(vm(shutdown_grace="1d"), k.SHUTDOWN_GRACE, "duration", id="grace-form"),
    pytest.param(vm(shutdown_grace="0"), k.SHUTDOWN_GRACE, "between 1s", id="grace-zero"),
    pytest.param(vm(memroy="1Gi"), "podvirt.io/memroy", "unknown podvirt.io annotation", id="typo"),
    pytest.param(vm(domain_xml="<domain><name>{{name}}</name></domain>", machine="q35"),
                 k.MACHINE, "conflicts with podvirt.io/domain-xml", id="xml-conflict"),
    pytest.param(vm(domain_xml="<domain><name>"), k.DOMAIN_XML, "does not parse", id="xml-broken"),
    pytest.param({k.MEMORY: "1Gi"}, k.DISKS, "boot disk", id="no-boot-source"),
])
def test_violation_names_key_and_rule(annotations, key, fragment):
    with pytest.raises(SpecInvalid) as err:
        parse_vm(annotations)
    matching = [v for v in err.value.violations if v.key == key]
    assert matching, err.value
    assert any(fragment in v.rule for v in matching), err.value
    assert key in str(err.value)


def test_all_violations_reported_at_once():
    with pytest.raises(SpecInvalid) as err:
        parse_vm(vm(vcpus="0", memory="1", graphics="x"))
    assert {v.key for v in err.value.violations} == {k.VCPUS, k.MEMORY, k.GRAPHICS}


def test_status_and_foreign_keys_are_not_part_of_the_vm():
    annotations = {**BASE, k.PHASE: "Running", k.ACTION: "pause", "other.io/x": "y"}
    assert vm_annotations(annotations) == BASE
    assert parse_vm(annotations) == parse_vm(BASE)


def test_opt_in_label():
    assert is_vm_pod({k.OPT_IN_LABEL: "true"})
    assert not is_vm_pod({k.OPT_IN_LABEL: "yes"}) and not is_vm_pod(None)


def test_non_string_value_is_a_violation():
    with pytest.raises(SpecInvalid, match="podvirt.io/vcpus: must be a string"):
        parse_vm({**BASE, k.VCPUS: 2})
