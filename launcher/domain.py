"""VMSpec + HostContext -> libvirt domain XML, one small configurator per concern.

Configurators are pure: each returns the elements for its concern (top-level domain
children or <devices> children) and `domain_xml` composes them in a fixed order.
A user-supplied domain XML takes the other path: placeholders filled, sanitized by
the core with the devices this pod was actually assigned, then adjusted to the host
(domain type, TCG cache cap, assigned hostdevs, a serial console). Both paths end with
the launcher's trusted additions (`add_trusted`), which no user XML may carry.
"""

from __future__ import annotations

import string
import xml.etree.ElementTree as ET
from typing import Callable

from podvirt.launcher.hostcontext import HostContext
from podvirt.vmspec.domainxml import fill_placeholders, sanitize_domain
from podvirt.vmspec.mobility import EPHEMERAL_DISKS
from podvirt.vmspec.model import VNC_PORT, PassthroughDevice, VMSpec
from podvirt.vmspec.pciaddress import pci_address, pci_address_of, pci_parts

Configurator = Callable[[VMSpec, HostContext], list[ET.Element]]


def _el(tag: str, text: str | None = None, children: tuple[ET.Element, ...] = (),
        **attrs: str) -> ET.Element:
    el = ET.Element(tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    el.extend(children)
    return el


def _mib(n: int) -> str:
    return str(n // 2**20)


# --- top-level configurators -------------------------------------------------------------

def identity(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    return [_el("name", spec.name), _el("uuid", ctx.uuid)]


def cpu_memory(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    els = [_el("memory", str(spec.memory_bytes // 1024), unit="KiB"),
           _el("vcpu", str(spec.vcpus), placement="static")]
    if spec.cpu_model == "host-passthrough":
        els.append(_el("cpu", mode="host-passthrough"))
    elif spec.cpu_model == "host-model":
        # TCG has no host CPU to model; QEMU's default model is the portable choice.
        if ctx.accel == "kvm":
            els.append(_el("cpu", mode="host-model"))
    else:
        els.append(_el("cpu", mode="custom", match="exact", children=(
            _el("model", spec.cpu_model, fallback="forbid"),)))
    return els


def memory_backing(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    if not spec.hugepage_bytes:
        return []
    page = _el("page", size=str(spec.hugepage_bytes // 1024), unit="KiB")
    return [_el("memoryBacking", children=(_el("hugepages", children=(page,)),))]


def cputune(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    # Dedicated vCPUs pin 1:1 onto the exclusive CPUs kubelet's CPU manager gave the pod.
    if not spec.dedicated_cpus or len(ctx.host_cpus) < spec.vcpus:
        return []
    pins = tuple(_el("vcpupin", vcpu=str(i), cpuset=str(cpu))
                 for i, cpu in enumerate(ctx.host_cpus[:spec.vcpus]))
    return [_el("cputune", children=pins)]


# Debian's ovmf package: 4 MiB flash images; .secboot is the Secure Boot build (SMM
# required), .ms the variable store with Microsoft's keys enrolled (what shim and the
# signed kernels of Debian, Ubuntu and Fedora chain to).
OVMF_DIR = "/usr/share/OVMF"


def ovmf_files(secure_boot: bool) -> tuple[str, str]:
    """(firmware code, variable-store template) for an EFI guest."""
    if secure_boot:
        return f"{OVMF_DIR}/OVMF_CODE_4M.secboot.fd", f"{OVMF_DIR}/OVMF_VARS_4M.ms.fd"
    return f"{OVMF_DIR}/OVMF_CODE_4M.fd", f"{OVMF_DIR}/OVMF_VARS_4M.fd"


def os_boot(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    children = [_el("type", "hvm", arch="x86_64", machine=spec.machine)]
    if spec.firmware == "efi":
        code, template = ovmf_files(spec.secure_boot)
        if ctx.nvram is None:
            raise ValueError("an EFI guest needs a path for its variable store (nvram)")
        # libvirt copies the template on first start; the copy lives in the pod.
        children += [_el("loader", code, readonly="yes", type="pflash",
                         secure="yes" if spec.secure_boot else "no"),
                     _el("nvram", ctx.nvram, template=template)]
    if spec.kernel:
        children.append(_el("kernel", spec.boot_path(spec.kernel)))
        if spec.initrd:
            children.append(_el("initrd", spec.boot_path(spec.initrd)))
        children.append(_el("cmdline", spec.kernel_args or "console=ttyS0"))
    return [_el("os", children=tuple(children))]


def features(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    # ACPI: without it a guest's poweroff does not end the domain and virDomainShutdown
    # has no power button to press.
    children = [_el("acpi")]
    if spec.secure_boot:
        children.append(_el("smm", state="on"))   # OVMF's Secure Boot build needs SMM
    if ctx.accel == "tcg":
        children.append(_el("tcg", children=(
            _el("tb-cache", _mib(ctx.tcg_cache_bytes), unit="MiB"),)))
    return [_el("features", children=tuple(children))]


def lifecycle(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    # The pod is the VM: a powered-off or crashed guest ends the launcher.
    return [_el("on_poweroff", "destroy"), _el("on_reboot", "restart"),
            _el("on_crash", "destroy"), _el("clock", offset="utc")]


# --- device configurators ----------------------------------------------------------------

def _target_name(prefix: str, index: int) -> str:
    return prefix + string.ascii_lowercase[index]


def disks(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    els = []
    for index, disk in enumerate(ctx.disks):
        children = [_el("driver", name="qemu", type=disk.format),
                    _el("source", file=disk.path),
                    _el("target", dev=_target_name("vd", index), bus="virtio")]
        if index == 0 and not spec.kernel:
            children.append(_el("boot", order="1"))
        if disk.readonly:
            children.append(_el("readonly"))
        els.append(_el("disk", type="file", device="disk", children=tuple(children)))
    if ctx.cloud_init_iso:
        # A read-only virtio disk, as KubeVirt attaches it: NoCloud finds the seed by its
        # `cidata` label on any block device, and cloud kernels (Debian's among them) have
        # virtio but no AHCI driver for a SATA CD-ROM.
        els.append(_el("disk", type="file", device="disk", children=(
            _el("driver", name="qemu", type="raw"), _el("source", file=ctx.cloud_init_iso),
            _el("target", dev=_target_name("vd", len(ctx.disks)), bus="virtio"),
            _el("readonly"))))
    return els


QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)
POD_NETDEV = "podnet"


def nics(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    els = []
    for nic in spec.nics:
        if nic.binding != "user":
            continue            # the pod NIC is QEMU command line: pod_nic_args
        children = [_el("mac", address=nic.mac)] if nic.mac else []
        children.append(_el("model", type="virtio"))
        els.append(_el("interface", type="user", children=tuple(children)))
    return els


def pod_nic_args(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    """The pod NIC: a virtio NIC on passt's socket (podnet.py). libvirt 9.0 has no passt
    backend, so the netdev goes on QEMU's command line through libvirt's QEMU namespace."""
    nic = spec.pod_nic
    if nic is None:
        return []
    if ctx.passt_socket is None:
        raise ValueError(f"NIC {nic.name!r} is on the pod network but passt is not running")
    # An explicit slot: libvirt lays out its own devices without seeing this one (root
    # ports from slot 1 up, the chipset at 0x1f) and would put a root port where QEMU
    # placed the NIC. 0x1e is left free on both machine types' root bus.
    bus = "pcie.0" if spec.machine == "q35" else "pci.0"
    device = f"virtio-net-pci,netdev={POD_NETDEV},id=net-{nic.name},bus={bus},addr=0x1e"
    if nic.mac:
        device += f",mac={nic.mac}"
    args = ("-netdev", f"stream,id={POD_NETDEV},server=off,addr.type=unix,"
                       f"addr.path={ctx.passt_socket}", "-device", device)
    return [_el(f"{{{QEMU_NS}}}commandline",
                children=tuple(_el(f"{{{QEMU_NS}}}arg", value=a) for a in args))]


def hostdev(device: PassthroughDevice) -> ET.Element:
    domain, bus, slot, function = pci_parts(device.address)
    address = _el("address", domain=f"0x{domain:04x}", bus=f"0x{bus:02x}", slot=f"0x{slot:02x}",
                  function=f"0x{function:x}")
    # managed='no': the device plugin bound vfio-pci already; the pod cannot rebind.
    return _el("hostdev", mode="subsystem", type="pci", managed="no",
               children=(_el("source", children=(address,)),))


def hostdevs(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    return [hostdev(d) for d in ctx.assigned]


def serial_console(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    if ctx.serial_socket and ctx.serial_log:
        # A socket QEMU listens on for one interactive client at a time, and a log QEMU
        # writes everything to whether a client is attached or not: the launcher tails
        # the log to its stdout, so `kubectl logs` keeps the whole console.
        return [_el("serial", type="unix", children=(
            _el("source", mode="bind", path=ctx.serial_socket),
            _el("log", file=ctx.serial_log, append="on"), _el("target", port="0")))]
    if ctx.serial_log:
        return [_el("serial", type="file", children=(
            _el("source", path=ctx.serial_log, append="on"), _el("target", port="0")))]
    return [_el("serial", type="pty", children=(_el("target", port="0"),))]


def graphics(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    if spec.graphics != "vnc":
        return []
    # A fixed port on the pod's loopback: reachable only through the API server's
    # port-forward (`kubectl podvirt vnc`), never from the pod network.
    return [_el("graphics", type="vnc", port=str(VNC_PORT), autoport="no", listen="127.0.0.1"),
            _el("video", children=(_el("model", type="vga"),))]


def tpm(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    if not spec.tpm:
        return []
    # libvirt runs swtpm for it; the TPM's state stays in the launcher's libvirt directory.
    return [_el("tpm", model="tpm-crb",
                children=(_el("backend", type="emulator", version="2.0"),))]


def memballoon(spec: VMSpec, ctx: HostContext) -> list[ET.Element]:
    # The pod's memory is a hard limit; a balloon cannot give anything back to the node.
    return [_el("memballoon", model="none")]


TOP_LEVEL: tuple[Configurator, ...] = (identity, cpu_memory, memory_backing, cputune, os_boot,
                                       features, lifecycle)
# After <devices>: libvirt's schema wants the QEMU namespace's elements last.
TRAILING: tuple[Configurator, ...] = (pod_nic_args,)
DEVICES: tuple[Configurator, ...] = (disks, nics, hostdevs, serial_console, graphics, tpm,
                                     memballoon)


def checked_domain(spec: VMSpec, ctx: HostContext) -> ET.Element:
    """Everything of the launcher's own domain that the sanitizer's rules cover: it must
    pass them like any user domain (tests/unit/test_domainxml.py checks many specs)."""
    root = _el("domain", type="kvm" if ctx.accel == "kvm" else "qemu")
    for configure in TOP_LEVEL:
        root.extend(configure(spec, ctx))
    devices = _el("devices")
    for configure in DEVICES:
        devices.extend(configure(spec, ctx))
    root.append(devices)
    return root


def add_trusted(root: ET.Element, spec: VMSpec, ctx: HostContext) -> ET.Element:
    """The launcher's own additions, applied after sanitizing and never taken from user
    XML (the sanitizer refuses <emulator> and the QEMU namespace): the QEMU binary it
    runs and the pod NIC's command line."""
    devices = root.find("devices")
    if devices is None:
        devices = _el("devices")
        root.append(devices)
    devices.insert(0, _el("emulator", ctx.emulator))
    for configure in TRAILING:
        root.extend(configure(spec, ctx))
    return root


def domain_xml(spec: VMSpec, ctx: HostContext) -> str:
    """The domain for `spec` on this host; user domain XML goes through the sanitizer."""
    if spec.domain_xml is not None:
        return user_domain_xml(spec, ctx)
    root = add_trusted(checked_domain(spec, ctx), spec, ctx)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def user_domain_xml(spec: VMSpec, ctx: HostContext) -> str:
    assert spec.domain_xml is not None
    filled = fill_placeholders(spec.domain_xml, name=spec.name, uuid=ctx.uuid,
                               memory_kib=spec.memory_bytes // 1024, vcpus=spec.vcpus,
                               disk_paths={d.name: d.path for d in ctx.disks})
    root = sanitize_domain(filled, spec=spec, assigned=ctx.assigned, host_cpus=ctx.host_cpus,
                           tcg_cache_bytes=ctx.tcg_cache_bytes)
    root.set("type", "kvm" if ctx.accel == "kvm" else "qemu")
    if ctx.accel == "tcg":
        feats = root.find("features")
        if feats is None:
            feats = _el("features")
            root.append(feats)
        if feats.find("tcg") is None:
            feats.extend(features(spec, ctx)[0].findall("tcg"))
    devices = root.find("devices")
    if devices is None:
        devices = _el("devices")
        root.append(devices)
    present = {pci_address_of(a.attrib) for a in devices.findall("hostdev/source/address")}
    for device in ctx.assigned:
        if pci_address(device.address) not in present:
            devices.append(hostdev(device))
    if ctx.serial_log and devices.find("serial") is None and devices.find("console") is None:
        devices.extend(serial_console(spec, ctx))
    return ET.tostring(add_trusted(root, spec, ctx), encoding="unicode")


def copied_disks(xml: str, spec: VMSpec, ctx: HostContext) -> tuple[str, ...]:
    """Target names (vda…) of the disks a live migration copies (virt.migration_call):
    the ephemeral ones, whose writes live in the pod. Read from the domain XML, which
    names the targets (a user's XML chooses its own)."""
    paths = {attached.path for attached, disk in zip(ctx.disks, spec.disks)
             if disk.kind in EPHEMERAL_DISKS}
    root = ET.fromstring(xml)
    return tuple(target.get("dev", "") for el in root.iterfind("devices/disk")
                 if (source := el.find("source")) is not None and source.get("file") in paths
                 and (target := el.find("target")) is not None)
