"""Annotations -> VMSpec, with every rule a user can break named in its message.

`parse_vm(annotations)` either returns a VMSpec or raises SpecInvalid carrying one
Violation per broken rule (all of them, not just the first), each naming its key.
"""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from podvirt.quantity import QuantityError, format_bytes, human_bytes, parse_bytes
from podvirt.vmspec import keys as k
from podvirt.vmspec.devicemap import RESOURCE_NAME
from podvirt.vmspec.overhead import DEFAULT_COSTS
from podvirt.vmspec.model import (ALLOWED_PATH_ROOTS, METRICS_PORT, MIGRATION_PORT, CloudInit,
                                  DeviceRequest, Disk, Nic, Pinning, Port, VMSpec, inside_roots)

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class Limits:
    """Bounds an operator may tighten or widen: the contract's limits (contract.py, the chart's
    contract.limits values), the same for webhook, extender and launcher."""
    min_memory: int = 64 * MiB
    # OVMF needs room of its own: the test guest's direct boot stopped on a CPU exception
    # at 144Mi and came up at 160Mi (Debian 12's OVMF 2022.11, TCG); 256Mi leaves margin.
    min_efi_memory: int = 256 * MiB
    max_memory: int = 1024 * GiB
    max_vcpus: int = 64
    hugepage_sizes: tuple[int, ...] = (2 * MiB, GiB)   # what x86-64 nodes can offer
    max_start_retries: int = 10
    max_shutdown_grace: int = 3600
    max_devices_per_request: int = 16
    max_disks: int = 16
    max_nics: int = 8
    max_cloud_init_bytes: int = 64 * 1024
    max_domain_xml_bytes: int = 128 * 1024


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Violation:
    key: str
    rule: str

    def __str__(self) -> str:
        return f"{self.key}: {self.rule}"


class SpecInvalid(ValueError):
    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("; ".join(str(v) for v in violations))


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_RESOURCE = RESOURCE_NAME
_PCI_ID = re.compile(r"^[0-9a-f]{4}$")
_CPU_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MACHINE = re.compile(r"^(q35|pc|pc-q35-[0-9]+\.[0-9]+|pc-i440fx-[0-9]+\.[0-9]+)$")
_NIC_NAME = re.compile(r"^[a-z][a-z0-9]{0,14}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
_DURATION = re.compile(r"^([0-9]{1,7})(s|m|h)?$")


def is_vm_pod(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get(k.OPT_IN_LABEL) == k.OPT_IN_VALUE


def vm_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The annotations that define the VM (user keys and unknown podvirt.io/ keys)."""
    return {key: value for key, value in (annotations or {}).items()
            if key.startswith(k.PREFIX) and key not in k.STATUS_KEYS and key not in k.RUNTIME_KEYS}


class _Rule(ValueError):
    """One rule broken by one value; the collector prefixes the key."""


def _bool(raw: str) -> bool:
    if raw.lower() in ("true", "yes", "1"):
        return True
    if raw.lower() in ("false", "no", "0"):
        return False
    raise _Rule(f"must be true or false, got {raw!r}")


_INT = re.compile(r"[+-]?[0-9]{1,9}")


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        if not _INT.fullmatch(raw):
            raise _Rule(f"must be an integer, got {raw!r}")
        value = int(raw)
        if value < lo or value > hi:
            raise _Rule(f"must be between {lo} and {hi}, got {value}")
        return value
    return convert


def _bytes(raw: str) -> int:
    try:
        return parse_bytes(raw)
    except QuantityError as exc:
        raise _Rule(str(exc)) from None


def _duration_seconds(lo: int, hi: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        m = _DURATION.match(raw)
        if not m:
            raise _Rule(f"must be a duration like 60s, 5m or 1h, got {raw!r}")
        seconds = int(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
        if seconds < lo or seconds > hi:
            raise _Rule(f"must be between {lo}s and {hi}s, got {seconds}s")
        return seconds
    return convert


def pod_path(raw: str) -> str:
    """An absolute, normalized path under one of the pod's podvirt directories."""
    if not raw.startswith("/"):
        raise _Rule(f"must be an absolute path, got {raw!r}")
    norm = posixpath.normpath(raw)
    if norm != raw.rstrip("/") or "\x00" in raw:
        raise _Rule(f"must be a normalized path without '..' or '//', got {raw!r}")
    if not inside_roots(norm):
        roots = ", ".join(ALLOWED_PATH_ROOTS)
        raise _Rule(f"must be inside the pod's podvirt directories ({roots}), got {raw!r}")
    return norm


def _image_path(raw: str) -> str:
    """An absolute, normalized path of a file inside an image."""
    if not raw.startswith("/") or raw.endswith("/"):
        raise _Rule(f"must be the absolute path of a file in {k.KERNEL_IMAGE}, got {raw!r}")
    if posixpath.normpath(raw) != raw or "\x00" in raw:
        raise _Rule(f"must be a normalized path without '..' or '//', got {raw!r}")
    return raw


def _items(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _node_names(raw: str) -> tuple[str, ...]:
    names = _items(raw)
    if not names:
        raise _Rule("must name at least one node")
    for name in names:
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise _Rule(f"{name!r} is not a valid node name")
    return tuple(dict.fromkeys(names))


def _node_labels(raw: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in _items(raw):
        name, sep, value = item.partition("=")
        if not sep:
            raise _Rule(f"{item!r} must be key=value")
        prefix, slash, short = name.rpartition("/")
        if (slash and (not _DNS_SUBDOMAIN.match(prefix) or len(prefix) > 253)) \
                or not _LABEL_NAME.match(short):
            raise _Rule(f"{name!r} is not a valid label key")
        if not _LABEL_VALUE.match(value):
            raise _Rule(f"{value!r} is not a valid label value")
        pairs.append((name, value))
    if not pairs:
        raise _Rule("must list at least one key=value")
    return tuple(pairs)


def _devices(limits: Limits) -> Callable[[str], tuple[DeviceRequest, ...]]:
    def convert(raw: str) -> tuple[DeviceRequest, ...]:
        requests: list[DeviceRequest] = []
        for item in _items(raw):
            what, sep, count_text = item.rpartition("=")
            if not sep:
                what, count_text = item, "1"
            count = _int_in(1, limits.max_devices_per_request)(count_text)
            if what.startswith("pci:"):
                parts = what.split(":")
                if len(parts) != 3 or not all(_PCI_ID.match(p.lower()) for p in parts[1:]):
                    raise _Rule(f"{what!r} must be pci:<vendor>:<device> with 4 hex digits each")
                requests.append(DeviceRequest(count=count, vendor=parts[1].lower(),
                                              device=parts[2].lower()))
            elif _RESOURCE.match(what):
                requests.append(DeviceRequest(count=count, resource=what))
            else:
                raise _Rule(f"{what!r} is neither an extended resource (vendor.com/name) "
                            "nor pci:<vendor>:<device>")
        if not requests:
            raise _Rule("must list at least one device")
        labels = [r.label for r in requests]
        if len(set(labels)) != len(labels):
            raise _Rule("lists the same device twice; give one count instead")
        return tuple(requests)
    return convert


def _disks(limits: Limits) -> Callable[[str], tuple[Disk, ...]]:
    def convert(raw: str) -> tuple[Disk, ...]:
        disks: list[Disk] = []
        sized: set[str] = set()
        for item in _items(raw):
            name, sep, source = item.partition("=")
            if not sep:
                raise _Rule(f"{item!r} must be <name>=<kind>:<source>")
            if name == "size" and ":" not in source:     # an option of the disk before it
                disks[-1] = _sized(disks[-1] if disks else None, source, sized)
                continue
            if not _DNS_LABEL.match(name) or len(name) > 20:
                raise _Rule(f"disk name {name!r} must be a DNS label of at most 20 characters")
            kind, colon, value = source.partition(":")
            if not colon or not value:
                raise _Rule(f"disk {name!r}: {source!r} must be containerdisk:<image>, "
                            "pvc:<claim>, scratch:<size> or file:<path>")
            if kind == "containerdisk":
                if not _IMAGE.match(value):
                    raise _Rule(f"disk {name!r}: {value!r} is not an image reference")
                disks.append(Disk(name, "containerdisk", value))
            elif kind == "pvc":
                if not _DNS_SUBDOMAIN.match(value) or len(value) > 253:
                    raise _Rule(f"disk {name!r}: {value!r} is not a PersistentVolumeClaim name")
                disks.append(Disk(name, "pvc", value))
            elif kind == "scratch":
                size = _bytes(value)
                if size < MiB:
                    raise _Rule(f"disk {name!r}: scratch size must be at least 1Mi, got {value}")
                disks.append(Disk(name, "scratch", "", size))
            elif kind == "file":
                try:
                    disks.append(Disk(name, "file", pod_path(value)))
                except _Rule as exc:
                    raise _Rule(f"disk {name!r}: {exc}") from None
            else:
                raise _Rule(f"disk {name!r}: unknown source kind {kind!r} "
                            "(containerdisk, pvc, scratch or file)")
        if not disks:
            raise _Rule("must list at least one disk")
        if len(disks) > limits.max_disks:
            raise _Rule(f"at most {limits.max_disks} disks, got {len(disks)}")
        names = [d.name for d in disks]
        if len(set(names)) != len(names):
            raise _Rule("disk names must be unique")
        return tuple(disks)
    return convert


def _sized(disk: Disk | None, value: str, sized: set[str]) -> Disk:
    """`<disk>,size=<quantity>`: the pod storage a containerdisk or file disk may fill
    (its copied image and the overlay the guest writes), instead of the default."""
    if disk is None or disk.kind not in ("containerdisk", "file"):
        where = f"; disk {disk.name!r} is {disk.kind}" if disk else ""
        raise _Rule(f"size={value} must follow the containerdisk or file disk it sizes{where}")
    if disk.name in sized:
        raise _Rule(f"disk {disk.name!r}: size= is given twice")
    size = _bytes(value)
    if size < MiB:
        raise _Rule(f"disk {disk.name!r}: size must be at least 1Mi, got {value}")
    sized.add(disk.name)
    return Disk(disk.name, disk.kind, disk.source, size)


def _nics(limits: Limits) -> Callable[[str], tuple[Nic, ...]]:
    def convert(raw: str) -> tuple[Nic, ...]:
        nics: list[Nic] = []
        for item in _items(raw):
            named, at, mac = item.partition("@")
            name, sep, binding = named.partition("=")
            binding = binding if sep else "pod"
            if not _NIC_NAME.match(name):
                raise _Rule(f"NIC name {name!r} must be lowercase letters and digits, "
                            "starting with a letter, at most 15 characters")
            if binding == "tap":
                raise _Rule(f"NIC {name!r}: the tap binding was replaced by pod (the guest "
                            f"behind the pod's IP, no NET_ADMIN needed): write {name}=pod")
            if binding not in ("pod", "user"):
                raise _Rule(f"NIC {name!r}: binding must be pod or user, got {binding!r}")
            if at:
                mac = mac.lower()
                if not _MAC.match(mac):
                    raise _Rule(f"NIC {name!r}: {mac!r} is not a MAC address")
                if int(mac[:2], 16) & 1:
                    raise _Rule(f"NIC {name!r}: {mac!r} is a multicast MAC address")
            nics.append(Nic(name, binding, mac if at else None))  # type: ignore[arg-type]
        if len(nics) > limits.max_nics:
            raise _Rule(f"at most {limits.max_nics} NICs, got {len(nics)}")
        names = [n.name for n in nics]
        if len(set(names)) != len(names):
            raise _Rule("NIC names must be unique")
        pod_nics = [n.name for n in nics if n.binding == "pod"]
        if len(pod_nics) > 1:
            raise _Rule(f"at most one NIC can sit behind the pod's IP, got {len(pod_nics)} "
                        f"({', '.join(pod_nics)})")
        return tuple(nics)
    return convert


# ASCII digits only: str.isdigit() takes '¹', which int() refuses.
_PORT_NUMBER = re.compile(r"[0-9]{1,5}")
# Ports every VM pod uses itself, as (number, protocol).
_RESERVED_PORTS = {(METRICS_PORT, "tcp"): "is the launcher's metrics port in every VM pod",
                   (MIGRATION_PORT, "tcp"): "is where a VM pod receives a live migration"}


def _ports(raw: str) -> tuple[Port, ...]:
    # Checked as (number, protocol) pairs, made Ports once at the end.
    ports: set[tuple[int, str]] = set()
    for item in _items(raw):
        number, sep, protocol = item.partition("/")
        protocol = protocol.lower() if sep else "tcp"
        if protocol not in ("tcp", "udp"):
            raise _Rule(f"port {item!r}: protocol must be tcp or udp, got {protocol!r}")
        if not _PORT_NUMBER.fullmatch(number) or not 1 <= int(number) <= 65535:
            raise _Rule(f"port {item!r}: must be a port number from 1 to 65535")
        port = (int(number), protocol)
        if port in _RESERVED_PORTS:
            raise _Rule(f"port {Port(*port)} {_RESERVED_PORTS[port]}")   # type: ignore[arg-type]
        if port in ports:
            raise _Rule(f"port {Port(*port)} is given twice")    # type: ignore[arg-type]
        ports.add(port)
    return tuple(Port(*port) for port in sorted(ports))  # type: ignore[arg-type]


def _choice(*allowed: str) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        if raw not in allowed:
            raise _Rule(f"must be one of {', '.join(allowed)}, got {raw!r}")
        return raw
    return convert


def _regex(pattern: re.Pattern, what: str) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        if not pattern.match(raw):
            raise _Rule(f"{raw!r} is not {what}")
        return raw
    return convert


def _text(max_bytes: int, what: str) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        size = len(raw.encode())
        if size > max_bytes:
            raise _Rule(f"{what} is {size} bytes, at most {max_bytes} allowed")
        if not raw:
            raise _Rule(f"{what} is empty")
        return raw
    return convert


def _memory(limits: Limits) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        memory = _bytes(raw)
        if memory < limits.min_memory:
            raise _Rule(f"must be at least {format_bytes(limits.min_memory)}, "
                        f"got {human_bytes(memory)}")
        if memory > limits.max_memory:
            raise _Rule(f"must be at most {format_bytes(limits.max_memory)}, "
                        f"got {human_bytes(memory)}")
        if memory % MiB:
            raise _Rule(f"must be a whole number of MiB, got {memory} bytes")
        return memory
    return convert


def _hugepage_size(limits: Limits) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        page = _bytes(raw)
        if page not in limits.hugepage_sizes:
            sizes = ", ".join(format_bytes(size) for size in limits.hugepage_sizes)
            raise _Rule(f"nodes offer hugepages of {sizes} only, got {raw}")
        return page
    return convert


@dataclass(frozen=True)
class _Field:
    """One annotation: which VMSpec field it fills (None: part of one, see _spec), how its
    text becomes the value, and the value when it is absent or broken (a broken one
    leaves its violation and parsing goes on, so every broken rule is reported)."""
    key: str
    attr: str | None
    convert: Callable[[str], object]
    default: object = None
    strip: bool = True      # free text (user data, XML, kernel arguments) keeps its whitespace


# Kept per Limits: building the table for every pod doubled parse_vm (28 -> 57 us, ~6% of
# the webhook's CPU per review; bench/README.md).
@functools.lru_cache(maxsize=16)
def _fields(limits: Limits, in_kernel_image: bool) -> tuple[_Field, ...]:
    # Inside a kernel image any file is fair game (it is copied into the pod); otherwise
    # the path must be one the pod owns.
    boot_file = _image_path if in_kernel_image else pod_path
    return (
        _Field(k.VCPUS, "vcpus", _int_in(1, limits.max_vcpus), 1),
        _Field(k.MEMORY, "memory_bytes", _memory(limits), 0),
        _Field(k.HUGEPAGES, "hugepage_bytes", _hugepage_size(limits)),
        _Field(k.CPU_MODEL, "cpu_model", _regex(_CPU_MODEL, "a CPU model name"), "host-model"),
        _Field(k.DEDICATED_CPUS, "dedicated_cpus", _bool, False),
        _Field(k.MACHINE, "machine", _regex(_MACHINE, "a supported machine type (q35, pc)"),
               "q35"),
        _Field(k.NODE_NAMES, None, _node_names, ()),
        _Field(k.NODE_LABELS, None, _node_labels, ()),
        _Field(k.DEVICES, "devices", _devices(limits), ()),
        _Field(k.DISKS, "disks", _disks(limits), ()),
        _Field(k.NICS, "nics", _nics(limits), ()),
        _Field(k.PORTS, "ports", _ports, ()),
        _Field(k.KERNEL_IMAGE, "kernel_image", _regex(_IMAGE, "an image reference")),
        _Field(k.KERNEL, "kernel", boot_file),
        _Field(k.INITRD, "initrd", boot_file),
        _Field(k.KERNEL_ARGS, "kernel_args", _text(4096, "kernel command line"), strip=False),
        _Field(k.CLOUD_INIT, None, _text(limits.max_cloud_init_bytes, "user data"),
               strip=False),
        _Field(k.CLOUD_INIT_SECRET, None, _regex(_DNS_SUBDOMAIN, "a Secret name")),
        _Field(k.CLOUD_INIT_CONFIGMAP, None, _regex(_DNS_SUBDOMAIN, "a ConfigMap name")),
        _Field(k.GRAPHICS, "graphics", _choice("none", "vnc"), "none"),
        _Field(k.FIRMWARE, "firmware", _choice("bios", "efi"), "bios"),
        _Field(k.SECURE_BOOT, "secure_boot", _bool, False),
        _Field(k.TPM, "tpm", _bool, False),
        _Field(k.START_RETRIES, "start_retries", _int_in(0, limits.max_start_retries), 2),
        _Field(k.SHUTDOWN_GRACE, "shutdown_grace_seconds",
               _duration_seconds(1, limits.max_shutdown_grace), 60),
        _Field(k.ALLOW_EMULATION, "allow_emulation", _bool, False),
        _Field(k.DOMAIN_XML, "domain_xml", _text(limits.max_domain_xml_bytes, "domain XML"),
               strip=False),
    )


def _value(field: _Field, raw: object, violations: list[Violation]) -> object:
    if raw is None:
        return field.default
    if not isinstance(raw, str):
        violations.append(Violation(field.key, f"must be a string, got {type(raw).__name__}"))
        return field.default
    try:
        return field.convert(raw.strip() if field.strip else raw)
    except _Rule as exc:
        violations.append(Violation(field.key, str(exc)))
        return field.default


# --- rules across fields: (values by key, the VM annotations given, limits) -> violations

Values = Mapping[str, Any]
CrossRule = Callable[[Values, Mapping[str, str], Limits], Iterator[Violation]]


def _memory_required(v: Values, given: Mapping[str, str], limits: Limits) -> Iterator[Violation]:
    if k.MEMORY not in given:
        yield Violation(k.MEMORY, "is required (guest memory, e.g. 1Gi)")


def _hugepages_divide_memory(v: Values, given: Mapping[str, str],
                             limits: Limits) -> Iterator[Violation]:
    memory, page = v[k.MEMORY], v[k.HUGEPAGES]
    if memory and page and memory % page:
        yield Violation(k.HUGEPAGES, f"guest memory {human_bytes(memory)} is not a multiple "
                        f"of the {given[k.HUGEPAGES].strip()} page size")


def _one_cloud_init_source(v: Values, given: Mapping[str, str],
                           limits: Limits) -> Iterator[Violation]:
    sources = [key for key in (k.CLOUD_INIT, k.CLOUD_INIT_SECRET, k.CLOUD_INIT_CONFIGMAP)
               if key in given]
    if len(sources) > 1:
        yield Violation(sources[1], f"conflicts with {sources[0]}: give cloud-init user data "
                        "one way only")


def _direct_boot_needs_kernel(v: Values, given: Mapping[str, str],
                              limits: Limits) -> Iterator[Violation]:
    if k.KERNEL not in given:
        for key in (k.INITRD, k.KERNEL_ARGS, k.KERNEL_IMAGE):
            if key in given:
                yield Violation(key, f"needs {k.KERNEL} (direct kernel boot)")


def _boot_files_apart(v: Values, given: Mapping[str, str], limits: Limits) -> Iterator[Violation]:
    kernel, initrd = v[k.KERNEL], v[k.INITRD]
    if v[k.KERNEL_IMAGE] and kernel and initrd \
            and kernel.rsplit("/", 1)[1] == initrd.rsplit("/", 1)[1]:
        yield Violation(k.INITRD, f"must have another file name than {k.KERNEL} ({kernel!r}): "
                        "both are copied into one directory")


# Keys that describe what the domain XML already says; giving both is ambiguous.
_CONFLICTS_WITH_DOMAIN_XML = (k.CPU_MODEL, k.MACHINE, k.NICS, k.KERNEL, k.INITRD, k.KERNEL_ARGS,
                              k.KERNEL_IMAGE, k.GRAPHICS, k.DEDICATED_CPUS, k.HUGEPAGES,
                              k.FIRMWARE, k.SECURE_BOOT, k.TPM)


def _domain_xml_alone(v: Values, given: Mapping[str, str], limits: Limits) -> Iterator[Violation]:
    if k.DOMAIN_XML in given:
        for key in _CONFLICTS_WITH_DOMAIN_XML:
            if key in given:
                yield Violation(key, f"conflicts with {k.DOMAIN_XML}: say it in the domain XML "
                                "instead")


def _ports_need_pod_nic(v: Values, given: Mapping[str, str],
                        limits: Limits) -> Iterator[Violation]:
    ports, nics = v[k.PORTS], v[k.NICS]
    if ports and k.NICS not in given:
        yield Violation(k.PORTS, f"needs a NIC behind the pod's IP: add {k.NICS}: default "
                        "(pod binding)")
    elif ports and nics and not any(n.binding == "pod" for n in nics):
        yield Violation(k.PORTS, "are forwarded to the pod NIC, but every NIC in "
                        f"{k.NICS} uses the user binding")


def _bootable(v: Values, given: Mapping[str, str], limits: Limits) -> Iterator[Violation]:
    # Only when none was given: a broken podvirt.io/disks already has its own violation.
    if not given.keys() & {k.DISKS, k.KERNEL, k.DOMAIN_XML}:
        yield Violation(k.DISKS, f"a VM needs a boot disk or {k.KERNEL} (or a {k.DOMAIN_XML})")


def _firmware(v: Values, given: Mapping[str, str], limits: Limits) -> Iterator[Violation]:
    memory = v[k.MEMORY]
    if v[k.FIRMWARE] == "efi" and memory and memory < limits.min_efi_memory:
        yield Violation(k.FIRMWARE, f"efi needs at least {format_bytes(limits.min_efi_memory)} "
                        f"of guest memory (OVMF's own), got {human_bytes(memory)}")
    if v[k.SECURE_BOOT] and v[k.FIRMWARE] != "efi":
        yield Violation(k.SECURE_BOOT, f"needs {k.FIRMWARE}: efi (Secure Boot is a UEFI feature)")
    if v[k.SECURE_BOOT] and v[k.MACHINE] != "q35":
        yield Violation(k.SECURE_BOOT, f"needs {k.MACHINE}: q35 (OVMF's Secure Boot build needs "
                        "SMM)")


def _passthrough_needs_kvm(v: Values, given: Mapping[str, str],
                           limits: Limits) -> Iterator[Violation]:
    if v[k.CPU_MODEL] == "host-passthrough" and v[k.ALLOW_EMULATION]:
        yield Violation(k.CPU_MODEL, "host-passthrough needs KVM; it conflicts with "
                        f"{k.ALLOW_EMULATION}=true (software emulation has no host CPU to pass "
                        "through)")


_CROSS_RULES: tuple[CrossRule, ...] = (
    _memory_required, _hugepages_divide_memory, _one_cloud_init_source,
    _direct_boot_needs_kernel, _boot_files_apart, _domain_xml_alone, _ports_need_pod_nic,
    _bootable, _firmware, _passthrough_needs_kvm,
)


def _spec(name: str, fields: tuple[_Field, ...], v: Values) -> VMSpec:
    cloud = (v[k.CLOUD_INIT], v[k.CLOUD_INIT_SECRET], v[k.CLOUD_INIT_CONFIGMAP])
    return VMSpec(name=name,
                  pinning=Pinning(v[k.NODE_NAMES], v[k.NODE_LABELS]),
                  cloud_init=CloudInit(*cloud) if any(x is not None for x in cloud) else None,
                  **{f.attr: v[f.key] for f in fields if f.attr})


def parse_vm(annotations: Mapping[str, str] | None, *, name: str = "vm",
             limits: Limits = DEFAULT_LIMITS,
             tcg_cache_bytes: int = DEFAULT_COSTS.overhead.tcg_cache) -> VMSpec:
    """The VM a pod's annotations describe, or SpecInvalid naming every broken rule.

    `limits` and `tcg_cache_bytes` (what a domain XML's TCG cache may take) are the
    contract's (contract.py): every component parses a VM under the same ones."""
    given = vm_annotations(annotations)
    violations = [Violation(key, "unknown podvirt.io annotation (known: " + ", ".join(
        sorted(x.removeprefix(k.PREFIX) for x in k.USER_KEYS)) + ")")
        for key in sorted(given.keys() - k.USER_KEYS)]
    fields = _fields(limits, in_kernel_image=k.KERNEL_IMAGE in given)
    values = {f.key: _value(f, given.get(f.key), violations) for f in fields}
    for rule in _CROSS_RULES:
        violations += rule(values, given, limits)
    if violations:
        raise SpecInvalid(violations)
    spec = _spec(name, fields, values)
    if spec.domain_xml is not None:
        # Imported here: the sanitizer pulls in defusedxml, which plain parsing does not need.
        from podvirt.vmspec.domainxml import DomainXMLRejected, check_user_domain_xml
        try:
            check_user_domain_xml(spec, tcg_cache_bytes)
        except DomainXMLRejected as exc:
            raise SpecInvalid([Violation(k.DOMAIN_XML, str(exc))]) from None
    return spec
