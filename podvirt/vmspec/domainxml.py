"""User-supplied domain XML: placeholders and the sanitizer that keeps a VM inside its pod.

The webhook runs `check_user_domain_xml` at admission, so hostile XML is refused before
any pod exists; the launcher runs `sanitize_domain` again on the filled-in XML right
before libvirt sees it, with the devices the extender actually assigned.

Rules (each rejection names the element):
- no DOCTYPE, entities or external references (defusedxml, forbid_dtd);
- nothing in libvirt's QEMU namespace (qemu:commandline, qemu:env, ...): raw QEMU
  arguments bypass every other rule;
- no <emulator> override, no <filesystem> passthrough, no <interface> scripts or
  direct/hostdev interfaces, no storage-pool volumes;
- <hostdev> only for the PCI devices assigned to this pod;
- every path (disk sources, chardev sources, logs, sockets, kernel, initrd, nvram)
  inside the pod's podvirt directories; firmware loaders from the image's firmware dirs.
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from typing import Iterable, Mapping

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from podvirt.vmspec.model import ALLOWED_PATH_ROOTS, Disk, PassthroughDevice

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
FIRMWARE_ROOTS = ("/usr/share/OVMF", "/usr/share/qemu", "/usr/share/seabios")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)(?::([a-z0-9-]+))?\s*\}\}")
_SIMPLE_PLACEHOLDERS = ("name", "uuid", "memory_kib", "vcpus")
_PATH_ATTRS = ("file", "path", "dir", "socket", "evdev")
# Elements whose text is a path the hypervisor opens: kernel/initrd/dtb/nvram under <os>,
# ACPI <table>, smartcard NSS <database>.
_PATH_TEXT_ELEMENTS = ("kernel", "initrd", "dtb", "nvram", "table", "database")
# <rng><backend model='random'> reads a host device; only the entropy devices are harmless.
_ENTROPY_DEVICES = ("/dev/urandom", "/dev/random", "/dev/hwrng")
_BANNED_ELEMENTS = {
    "emulator": "overrides the QEMU binary the launcher runs",
    "filesystem": "passes a host directory into the guest",
}
_CHARDEVS = ("serial", "console", "channel", "parallel")
_ALLOWED_CHARDEV_TYPES = ("pty", "null", "vc", "file", "unix", "tcp", "udp", "stdio")


class DomainXMLRejected(ValueError):
    """The domain XML is malformed or would reach outside the pod."""


def _local(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


def _inside(path: str, roots: Iterable[str]) -> bool:
    if not path.startswith("/") or "\x00" in path:
        return False
    norm = posixpath.normpath(path)
    return any(norm == r or norm.startswith(r.rstrip("/") + "/") for r in roots)


def fill_placeholders(template: str, *, name: str, uuid: str, memory_kib: int, vcpus: int,
                      disk_paths: Mapping[str, str]) -> str:
    """Substitute {{name}}, {{uuid}}, {{memory_kib}}, {{vcpus}} and {{disk:<name>}}."""
    def value(m: re.Match) -> str:
        key, arg = m.group(1), m.group(2)
        if key == "disk" and arg is not None:
            if arg not in disk_paths:
                raise DomainXMLRejected(f"placeholder {m.group(0)} names no disk of this VM "
                                        f"(disks: {', '.join(sorted(disk_paths)) or 'none'})")
            return _xml_escape(disk_paths[arg])
        if arg is None and key in _SIMPLE_PLACEHOLDERS:
            return _xml_escape(str({"name": name, "uuid": uuid, "memory_kib": memory_kib,
                                    "vcpus": vcpus}[key]))
        raise DomainXMLRejected(f"unknown placeholder {m.group(0)} (known: {{{{name}}}}, "
                                "{{uuid}}, {{memory_kib}}, {{vcpus}}, {{disk:<name>}})")
    return _PLACEHOLDER.sub(value, template)


def _xml_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def parse_domain(xml_text: str) -> ET.Element:
    try:
        root = DET.fromstring(xml_text, forbid_dtd=True, forbid_entities=True,
                              forbid_external=True)
    except DefusedXmlException as exc:
        raise DomainXMLRejected(f"forbidden XML construct: {type(exc).__name__} "
                                "(no DOCTYPE, entities or external references)") from None
    except ET.ParseError as exc:
        raise DomainXMLRejected(f"does not parse as XML: {exc}") from None
    if _local(root.tag)[1] != "domain":
        raise DomainXMLRejected(f"root element must be <domain>, got <{_local(root.tag)[1]}>")
    return root


def sanitize_domain(xml_text: str, *, assigned: Iterable[PassthroughDevice] = (),
                    roots: Iterable[str] = ALLOWED_PATH_ROOTS) -> ET.Element:
    """Parse filled-in domain XML and reject anything that could escape the pod."""
    root = parse_domain(xml_text)
    roots = tuple(roots)
    assigned_addresses = {_norm_pci(d.address) for d in assigned}
    for el in root.iter():
        ns, name = _local(el.tag)
        if ns == QEMU_NS:
            raise DomainXMLRejected(f"<qemu:{name}> is not allowed: raw QEMU arguments and "
                                    "environment bypass the sandbox")
        for attr in el.attrib:
            if _local(attr)[0] == QEMU_NS:
                raise DomainXMLRejected(f"<{name}> uses a qemu: namespaced attribute")
        if name in _BANNED_ELEMENTS:
            raise DomainXMLRejected(f"<{name}> is not allowed: it {_BANNED_ELEMENTS[name]}")
        if name == "hostdev":
            _check_hostdev(el, assigned_addresses)
        elif name == "interface":
            _check_interface(el)
        elif name in _CHARDEVS:
            kind = el.get("type", "pty")
            if kind not in _ALLOWED_CHARDEV_TYPES:
                raise DomainXMLRejected(f"<{name} type='{kind}'> is not allowed: it connects the "
                                        "guest to a host device")
        elif name == "disk" and el.get("type") == "volume":
            raise DomainXMLRejected("<disk type='volume'> is not allowed: host storage pools are "
                                    "outside the pod")
        elif name == "script":
            raise DomainXMLRejected("<script> is not allowed: it runs a host program")
        elif name == "loader":
            path = (el.text or "").strip()
            if path and not _inside(path, FIRMWARE_ROOTS + roots):
                raise DomainXMLRejected(f"<loader> {path!r} is outside the pod and the image's "
                                        "firmware directories")
        elif name == "backend" and (el.text or "").strip():
            path = (el.text or "").strip()
            if path not in _ENTROPY_DEVICES and not _inside(path, roots):
                raise DomainXMLRejected(f"<backend> {path!r} is not an entropy device "
                                        f"({', '.join(_ENTROPY_DEVICES)}) or inside the pod")
        elif name in _PATH_TEXT_ELEMENTS:
            path = (el.text or "").strip()
            if path and not _inside(path, roots):
                raise DomainXMLRejected(f"<{name}> {path!r} is outside the pod's podvirt "
                                        f"directories ({', '.join(roots)})")
        if name not in ("target", "address", "alias", "boot", "driver"):
            for attr in _PATH_ATTRS + (("dev",) if name == "source" else ()):
                path = el.get(attr)
                if path is not None and not _inside(path, roots):
                    raise DomainXMLRejected(f"<{name} {attr}='{path}'> is outside the pod's "
                                            f"podvirt directories ({', '.join(roots)})")
    return root


def _norm_pci(address: str) -> str:
    return address.lower() if address.count(":") == 2 else "0000:" + address.lower()


def _check_hostdev(el: ET.Element, assigned: set[str]) -> None:
    if el.get("mode", "subsystem") != "subsystem" or el.get("type") != "pci":
        raise DomainXMLRejected("<hostdev> is allowed only for PCI devices assigned to this pod")
    addr = el.find("source/address")
    if addr is None:
        raise DomainXMLRejected("<hostdev> without <source><address> is not allowed")
    try:
        text = "{:04x}:{:02x}:{:02x}.{:x}".format(
            int(addr.get("domain", "0"), 0), int(addr.get("bus", "0"), 0),
            int(addr.get("slot", "0"), 0), int(addr.get("function", "0"), 0))
    except ValueError:
        raise DomainXMLRejected("<hostdev> has a malformed PCI address") from None
    if text not in assigned:
        raise DomainXMLRejected(f"<hostdev> {text} is not a device assigned to this pod "
                                f"(assigned: {', '.join(sorted(assigned)) or 'none'}); "
                                "the launcher adds assigned devices itself")


def _check_interface(el: ET.Element) -> None:
    kind = el.get("type", "")
    if kind in ("direct", "hostdev"):
        raise DomainXMLRejected(f"<interface type='{kind}'> is not allowed: it reaches a host "
                                "network device outside the pod")


def check_user_domain_xml(template: str, *, disks: Iterable[Disk] = ()) -> None:
    """Admission-time check: fill placeholders with stand-ins and sanitize."""
    paths = {d.name: f"{d.mount_dir}/disk.img" if d.kind != "file" else d.source for d in disks}
    filled = fill_placeholders(template, name="vm", uuid="00000000-0000-0000-0000-000000000000",
                               memory_kib=1048576, vcpus=1, disk_paths=paths)
    sanitize_domain(filled)
