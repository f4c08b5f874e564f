"""User-supplied domain XML: placeholders, parsing, and the one sanitizer.

The webhook runs `check_user_domain_xml` at admission (parse.py), so hostile or
mis-sized XML is refused before any pod exists; the launcher runs `sanitize_domain`
again on the filled-in XML right before libvirt sees it, with the devices the extender
actually assigned. Both apply, in order:
- no DOCTYPE, entities or external references (defusedxml, forbid_dtd);
- the allowlist (domainrules.py, walked by domainpolicy.py): only elements, attributes
  and values known safe inside a pod; nothing in libvirt's QEMU namespace;
- the size check (domainsize.py): memory, vCPUs, hugepages and pinning equal what the
  annotations price.
The launcher's own additions (its <emulator>, the pod NIC's <qemu:commandline>) are
trusted and applied after this check, never taken from user XML.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Iterable, Mapping

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from podvirt.vmspec.domainpolicy import DomainXMLRejected, Scope, check_tree, local_name
from podvirt.vmspec.domainrules import DOMAIN
from podvirt.vmspec.domainsize import DEFAULT_TCG_CACHE, check_size
from podvirt.vmspec.model import ALLOWED_PATH_ROOTS, PassthroughDevice, VMSpec
from podvirt.vmspec.pciaddress import pci_address

__all__ = ["DomainXMLRejected", "FIRMWARE_ROOTS", "check_user_domain_xml", "fill_placeholders",
           "parse_domain", "sanitize_domain"]

FIRMWARE_ROOTS = ("/usr/share/OVMF", "/usr/share/qemu", "/usr/share/seabios")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)(?::([a-z0-9-]+))?\s*\}\}")
_SIMPLE_PLACEHOLDERS = ("name", "uuid", "memory_kib", "vcpus")


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
    if local_name(root.tag)[1] != "domain":
        raise DomainXMLRejected(f"root element must be <domain>, got <{local_name(root.tag)[1]}>",
                                element=local_name(root.tag)[1])
    return root


def sanitize_domain(xml_text: str, *, spec: VMSpec, assigned: Iterable[PassthroughDevice] = (),
                    roots: Iterable[str] = ALLOWED_PATH_ROOTS,
                    host_cpus: Iterable[int] = (),
                    tcg_cache_bytes: int = DEFAULT_TCG_CACHE) -> ET.Element:
    """Parse filled-in domain XML; refuse anything outside the allowlist or not priced."""
    root = parse_domain(xml_text)
    scope = Scope(roots=tuple(roots), firmware_roots=FIRMWARE_ROOTS,
                  assigned=frozenset(pci_address(d.address) for d in assigned))
    check_tree(root, DOMAIN, scope)
    check_size(root, spec, host_cpus=host_cpus, tcg_cache_bytes=tcg_cache_bytes)
    return root


def check_user_domain_xml(spec: VMSpec, tcg_cache_bytes: int = DEFAULT_TCG_CACHE) -> ET.Element:
    """Admission-time check of spec.domain_xml: placeholders filled with the priced size
    and stand-ins for what only the launcher knows, then sanitized. Returns the domain it
    checked."""
    assert spec.domain_xml is not None
    paths = {d.name: f"{d.mount_dir}/disk.img" if d.kind != "file" else d.source
             for d in spec.disks}
    filled = fill_placeholders(spec.domain_xml, name=spec.name,
                               uuid="00000000-0000-0000-0000-000000000000",
                               memory_kib=spec.memory_bytes // 1024, vcpus=spec.vcpus,
                               disk_paths=paths)
    return sanitize_domain(filled, spec=spec, tcg_cache_bytes=tcg_cache_bytes)
