"""The allowlist engine: a domain XML tree is checked against a rule table (domainrules.py).

A rule says which attributes an element may carry (each with a value check), which
children it may have, and whether it takes text. Anything the table does not name is
refused: libvirt's schema grows every release, and a new element must not slip through
because nobody thought to forbid it. Elements whose meaning hangs on one attribute
(`<interface type=...>`, `<hostdev type=...>`) are `Typed`: each value has its own rule,
and known-dangerous values carry the reason they are refused.

Every refusal names the element by its path (`<devices><serial type='tcp'><source
host='0.0.0.0'>`) and the rule it broke; `DomainXMLRejected.element`/`.attribute` hold
the same facts for tests.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Mapping, Union

from podvirt.vmspec.model import inside_roots

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


class DomainXMLRejected(ValueError):
    """The domain XML is malformed, would reach outside the pod, or is not priced."""

    def __init__(self, message: str, *, element: str | None = None,
                 attribute: str | None = None):
        super().__init__(message)
        self.element = element          # slash path below <domain>: "devices/serial/source"
        self.attribute = attribute


@dataclass(frozen=True)
class Scope:
    """What the value checks compare against: the pod's directories, its devices."""
    roots: tuple[str, ...]
    firmware_roots: tuple[str, ...]
    assigned: frozenset[str] = frozenset()     # PCI addresses, 0000:3b:00.0


# A value check returns the rule the value breaks, or None when it is fine.
Value = Callable[[str, Scope], Union[str, None]]
# An element check sees the whole element (e.g. a PCI address spread over 4 attributes)
# and returns (attribute or None, rule) when it breaks one.
ElementCheck = Callable[[ET.Element, Scope], Union[tuple[Union[str, None], str], None]]


@dataclass(frozen=True)
class El:
    attrs: Mapping[str, Value] = field(default_factory=dict)
    children: Mapping[str, "Rule"] = field(default_factory=dict)
    text: Value | None = None           # None: the element takes no text
    check: ElementCheck | None = None
    opaque: bool = False                # <metadata>: foreign content libvirt only stores


@dataclass(frozen=True)
class Typed:
    """An element whose `attr` selects its rule; `default` is libvirt's when absent."""
    attr: str
    variants: Mapping[str, "Rule"]
    default: str | None = None
    refused: Mapping[str, str] = field(default_factory=dict)   # value -> why


@dataclass(frozen=True)
class Refused:
    why: str


Rule = Union[El, Typed, Refused]


# --- value checks ------------------------------------------------------------------------

def ANY(value: str, scope: Scope) -> str | None:
    """Free text the guest sees or libvirt stores (names, serial numbers, passwords)."""
    return None


def choice(*values: str, refused: Mapping[str, str] | None = None) -> Value:
    allowed = ", ".join(values)

    def check(value: str, scope: Scope) -> str | None:
        if value in values:
            return None
        if refused and value in refused:
            return f"'{value}' {refused[value]}"
        return f"must be one of {allowed}"
    return check


def pattern(regex: str, what: str) -> Value:
    compiled = re.compile(regex)
    return lambda value, scope: None if compiled.fullmatch(value) else f"must be {what}"


def never(why: str) -> Value:
    """An attribute libvirt knows that stays out: the check always fails with `why`."""
    return lambda value, scope: why


UINT = pattern(r"[0-9]{1,19}", "a non-negative integer")
INT = pattern(r"-?[0-9]{1,19}", "an integer")
# Guest-side address parts: decimal or hex (0x3b).
NUMBER = pattern(r"(0x[0-9a-fA-F]{1,16}|[0-9]{1,19})", "a decimal or 0x-hex number")
YES_NO = choice("yes", "no")
ON_OFF = choice("on", "off")


def POD_PATH(value: str, scope: Scope) -> str | None:
    if inside_roots(value, scope.roots):
        return None
    return f"is outside the pod's podvirt directories ({', '.join(scope.roots)})"


def FIRMWARE_PATH(value: str, scope: Scope) -> str | None:
    if inside_roots(value, scope.firmware_roots + scope.roots):
        return None
    return ("is outside the pod and the launcher image's firmware directories ("
            + ", ".join(scope.firmware_roots) + ")")


def LOOPBACK(value: str, scope: Scope) -> str | None:
    """A listen or connect address on the pod's own loopback, never the pod network."""
    if value == "localhost":
        return None
    try:
        if ipaddress.ip_address(value.strip("[]")).is_loopback:
            return None
    except ValueError:
        pass
    return ("must be the pod's loopback (127.0.0.1, ::1, localhost): anything else is "
            "reachable beyond the pod")


# --- the walk ----------------------------------------------------------------------------

def local_name(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return None, tag


def refuse_qemu_namespace(root: ET.Element) -> None:
    """Raw QEMU arguments and environment bypass every other rule: refused anywhere,
    <metadata> included, before the walk."""
    for el in root.iter():
        ns, name = local_name(el.tag)
        if ns == QEMU_NS:
            raise DomainXMLRejected(f"<qemu:{name}> is not allowed: raw QEMU arguments and "
                                    "environment bypass the sandbox", element=f"qemu:{name}")
        for attr, value in el.attrib.items():
            if local_name(attr)[0] == QEMU_NS:
                attr_name = local_name(attr)[1]
                raise DomainXMLRejected(f"<{name} qemu:{attr_name}='{value}'> is not allowed: "
                                        "qemu: namespaced attributes bypass the sandbox",
                                        element=name, attribute=attr_name)


def check_tree(root: ET.Element, rule: Rule, scope: Scope) -> None:
    refuse_qemu_namespace(root)
    _check(root, rule, scope, segments=(), names=())


def _locator(segments: tuple[str, ...], attr: tuple[str, str] | None = None) -> str:
    parts = list(segments)
    if attr is not None:
        parts[-1] += f" {attr[0]}='{attr[1]}'"
    return "".join(f"<{p}>" for p in parts)


def _check(el: ET.Element, rule: Rule, scope: Scope, *, segments: tuple[str, ...],
           names: tuple[str, ...]) -> None:
    ns, name = local_name(el.tag)
    names += (name,)
    path = "/".join(names[1:]) or name      # below <domain>, as tests name elements
    segment = name
    consumed: set[str] = set()

    def refuse(rule_text: str, attr: tuple[str, str] | None = None) -> DomainXMLRejected:
        return DomainXMLRejected(f"{_locator(segments + (segment,), attr)} is not allowed: "
                                 f"{rule_text}", element=path,
                                 attribute=attr[0] if attr else None)

    if ns is not None:
        raise refuse(f"elements in the namespace {ns} are not known safe inside a pod")
    # Resolve Typed rules (hostdev: mode, then type) to the element rule of this variant.
    while isinstance(rule, Typed):
        given = el.get(rule.attr)
        value = given if given is not None else rule.default
        if given is not None:
            segment += f" {rule.attr}='{given}'"
        allowed = ", ".join(v for v in rule.variants if v) or "none"
        if value is None:
            raise refuse(f"needs {rule.attr}= (allowed: {allowed})")
        consumed.add(rule.attr)
        if value in rule.refused:
            raise refuse(rule.refused[value])
        if value not in rule.variants:
            raise refuse(f"{rule.attr}='{value}' is not on podvirt's list known safe inside a "
                         f"pod (allowed: {allowed})")
        rule = rule.variants[value]
    if isinstance(rule, Refused):
        raise refuse(rule.why)

    for attr, value in el.attrib.items():
        if attr in consumed:
            continue
        attr_ns, attr_name = local_name(attr)
        check = rule.attrs.get(attr) if attr_ns is None else None
        if check is None:
            known = ", ".join(a for a in rule.attrs) or "none"
            raise refuse(f"attribute {attr_name} is not on podvirt's list known safe for "
                         f"<{name}> (allowed: {known})", (attr_name, value))
        broken = check(value, scope)
        if broken:
            raise refuse(f"{attr_name} {broken}", (attr_name, value))

    text = (el.text or "").strip()
    if text and not rule.opaque:
        if rule.text is None:
            raise refuse(f"<{name}> takes no text, got {text[:40]!r}")
        broken = rule.text(text, scope)
        if broken:
            raise refuse(f"{text[:200]!r} {broken}")

    # Below <domain> the path starts at its children: <devices><disk>, not <domain><devices>.
    below = segments + (segment,) if len(names) > 1 else ()
    if not rule.opaque:
        for child in el:
            child_ns, child_name = local_name(child.tag)
            child_rule = rule.children.get(child_name) if child_ns is None else None
            if child_rule is None:
                child_path = "/".join(names[1:] + (child_name,))
                if child_ns is not None:
                    why = (f"elements in the namespace {child_ns} are not known safe inside a "
                           "pod (only <metadata> may hold them)")
                else:
                    allowed = ", ".join(n for n, r in rule.children.items()
                                        if not isinstance(r, Refused)) or "no children"
                    why = (f"<{child_name}> is not on podvirt's list of elements known safe "
                           f"inside a pod (allowed in <{name}>: {allowed})")
                raise DomainXMLRejected(f"{_locator(below + (child_name,))} is not allowed: "
                                        f"{why}", element=child_path)
            _check(child, child_rule, scope, segments=below, names=names)

    if rule.check is not None:
        broken_el = rule.check(el, scope)
        if broken_el:
            attr_name, rule_text = broken_el
            attr = (attr_name, el.get(attr_name, "")) if attr_name else None
            raise refuse(rule_text, attr)
