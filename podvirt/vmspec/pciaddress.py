"""PCI addresses in one form, the one sysfs names devices by: 0000:3b:00.0 (domain, bus,
slot, function; lowercase hex, zero-padded). Addresses from annotations, from kubelet and
from domain XML's <address domain= bus= slot= function=> are compared only in this form."""

from __future__ import annotations

import re
from typing import Mapping

# [domain:]bus:slot.function; slot is 5 bits and function 3 bits wide.
_ADDRESS = re.compile(r"(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([01]?[0-9a-f])\.([0-7])")


def pci_parts(text: str) -> tuple[int, int, int, int]:
    """(domain, bus, slot, function) of `text`; domain 0 when it is left out (3b:00.0)."""
    found = _ADDRESS.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"{text!r} is not a PCI address such as 0000:3b:00.0")
    domain, bus, slot, function = found.groups()
    return int(domain or "0", 16), int(bus, 16), int(slot, 16), int(function, 16)


def format_pci(domain: int, bus: int, slot: int, function: int) -> str:
    return f"{domain:04x}:{bus:02x}:{slot:02x}.{function:x}"


def pci_address(text: str) -> str:
    """`text` in the canonical form; ValueError if it is not a PCI address."""
    return format_pci(*pci_parts(text))


def pci_address_of(attrs: Mapping[str, str]) -> str:
    """The address a domain XML <address domain= bus= slot= function=> names, from its
    attributes: decimal or 0x-hex, a missing part 0 (as libvirt reads them). ValueError
    if a part is not a number."""
    return format_pci(*(int(attrs.get(part, "0"), 0)
                        for part in ("domain", "bus", "slot", "function")))
