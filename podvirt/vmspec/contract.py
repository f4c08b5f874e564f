"""The contract: every value the webhook, the extender, the launcher and the node agents
must agree on, as one frozen object loaded from one file.

    limits          what a VM may ask for (parse.Limits): the webhook denies, the
                    extender refuses and the launcher stops on the very same bounds
    overhead        the memory overhead constants (overhead.OverheadConstants)
    storage         the pod-storage constants (overhead.StorageConstants)
    resourceNames   the extended resources of /dev/kvm, /dev/net/tun, /dev/vhost-net
    deviceResources passthrough devices' resources (devicemap.DeviceResources)
    cpuAllocationRatio  shared vCPUs request 1/ratio of a core each
    schedulerName   the scheduler profile VM pods are written for
    launcherImage   the image of the launcher container

The file is YAML (JSON is YAML too) with these keys; every key is optional and defaults
to the value below (Contract()). The chart renders its `contract:` values into one
ConfigMap that webhook, extender, probe and device plugin read with `--contract`; the
webhook stamps the contract it admitted a VM under on the pod (podvirt.io/contract), and
the launcher parses the VM under that: a ConfigMap cannot be mounted across namespaces,
and a pod keeps the terms it was admitted with while the ConfigMap changes.

Loading is strict: an unknown key, a wrong type or a bad quantity is a ContractInvalid
naming the field (`limits.maxVcpus: must be an integer, got 'eight'`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from podvirt.quantity import QUANTITY, QuantityError, format_bytes, parse_bytes
from podvirt.vmspec import keys as k
from podvirt.vmspec.devicemap import RESOURCE_NAME, DeviceResources
from podvirt.vmspec.overhead import (CostSettings, OverheadConstants, ResourceNames,
                                     StorageConstants)
from podvirt.vmspec.model import VMSpec
from podvirt.vmspec.parse import Limits, parse_vm

# The VM profile of the shipped scheduler configuration (extender/schedconfig.py, the
# chart's scheduler.name): VM pods name it so that their fit is the extender's.
VM_SCHEDULER = "podvirt-scheduler"
DEFAULT_LAUNCHER_IMAGE = "podvirt/launcher:0.1.0"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")


class ContractInvalid(ValueError):
    """A contract file or annotation that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Contract:
    limits: Limits = field(default_factory=Limits)
    costs: CostSettings = field(default_factory=CostSettings)
    scheduler_name: str = VM_SCHEDULER
    launcher_image: str = DEFAULT_LAUNCHER_IMAGE

    def parse_vm(self, annotations: Mapping[str, str] | None, *, name: str = "vm") -> VMSpec:
        """The VM under this contract's limits (and its priced TCG cache), as every
        component must parse it."""
        return parse_vm(annotations, name=name, limits=self.limits,
                        tcg_cache_bytes=self.costs.overhead.tcg_cache)

    def document(self) -> dict[str, Any]:
        """The file form with every key (quantities as Kubernetes quantities):
        parse_contract(c.document()) == c."""
        doc: dict[str, Any] = {}
        for section in _SECTIONS:
            value = section.get(self)
            doc[section.key] = {f.key: f.kind.dump(getattr(value, f.attr)) for f in section.fields}
        doc["deviceResources"] = _dump_device_rules(self.costs.devices)
        doc["cpuAllocationRatio"] = self.costs.cpu_allocation_ratio
        doc["schedulerName"] = self.scheduler_name
        doc["launcherImage"] = self.launcher_image
        return doc

    def to_json(self) -> str:
        """Compact, canonical JSON of document(): the podvirt.io/contract annotation."""
        return json.dumps(self.document(), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


DEFAULT_CONTRACT = Contract()


# --- how each kind of value is read and written -------------------------------------------

class _Bad(ValueError):
    """A value that breaks its field's rule; the loader prefixes the field's path."""


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True)
class _Kind:
    load: Callable[[object], Any]
    schema: dict[str, Any]          # JSON schema of the file form (values.schema.json)
    dump: Callable[[Any], Any] = lambda value: value


def _integer(lo: int) -> _Kind:
    def load(value: object) -> int:
        # bool is an int in Python, never in a contract: `maxDisks: yes` is a typo.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"must be an integer, got {value!r}")
        if value < lo:
            raise _Bad(f"must be at least {lo}, got {value}")
        return value
    return _Kind(load, {"type": "integer", "minimum": lo})


def _load_bytes(value: object) -> int:
    """A quantity (`64Mi`, `1Gi`) or a whole number of bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Bad(f"must be a quantity such as 64Mi, got {_type_name(value)} {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise _Bad(f"must not be negative, got {value}")
        return value
    try:
        return parse_bytes(value)
    except QuantityError as exc:
        raise _Bad(str(exc)) from None


_BYTES_SCHEMA = {"oneOf": [{"type": "integer", "minimum": 0},
                           {"type": "string", "pattern": QUANTITY.pattern}]}
_BYTES = _Kind(_load_bytes, _BYTES_SCHEMA, format_bytes)


def _load_page_sizes(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise _Bad(f"must be a list of page sizes such as [2Mi, 1Gi], got {value!r}")
    sizes = []
    for i, item in enumerate(value):
        try:
            size = _load_bytes(item)
        except _Bad as exc:
            raise _Bad(f"[{i}] {exc}") from None
        if size < 4096 or size & (size - 1):
            raise _Bad(f"[{i}] must be a power of two of at least 4Ki, got {item!r}")
        sizes.append(size)
    return tuple(sizes)


_PAGE_SIZES = _Kind(_load_page_sizes, {"type": "array", "items": _BYTES_SCHEMA},
                    lambda sizes: [format_bytes(s) for s in sizes])


def _string(pattern: re.Pattern, what: str) -> _Kind:
    def load(value: object) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise _Bad(f"must be {what}, got {value!r}")
        return value
    return _Kind(load, {"type": "string", "pattern": pattern.pattern})


_RESOURCE = _string(RESOURCE_NAME, "an extended-resource name such as example.com/kvm")


# --- the sections: which file key fills which dataclass field, as what ---------------------

@dataclass(frozen=True)
class _Field:
    key: str            # in the file
    attr: str           # of the section's dataclass
    kind: _Kind


@dataclass(frozen=True)
class _Section:
    key: str
    type: type
    fields: tuple[_Field, ...]
    get: Callable[[Contract], Any]
    put: Callable[[Contract, Any], Contract]


def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _section(key: str, cls: type, kinds: Mapping[str, _Kind], get: Callable[[Contract], Any],
             put: Callable[[Contract, Any], Contract],
             keys: Mapping[str, str] | None = None) -> _Section:
    # Every field of the dataclass needs a kind: a field added without one fails here at
    # import (and so every test), not silently unconfigurable.
    missing = {f.name for f in fields(cls)} ^ kinds.keys()
    if missing:
        raise AssertionError(f"contract section {key}: no kind for {sorted(missing)}")
    return _Section(key, cls, tuple(_Field((keys or {}).get(f.name, _camel(f.name)), f.name,
                                           kinds[f.name]) for f in fields(cls)), get, put)


_SECTIONS = (
    _section("limits", Limits, {
        "min_memory": _BYTES, "min_efi_memory": _BYTES, "max_memory": _BYTES,
        "max_vcpus": _integer(1), "hugepage_sizes": _PAGE_SIZES,
        "max_start_retries": _integer(0), "max_shutdown_grace": _integer(1),
        "max_devices_per_request": _integer(1), "max_disks": _integer(0),
        "max_nics": _integer(0), "max_cloud_init_bytes": _BYTES,
        "max_domain_xml_bytes": _BYTES,
    }, lambda c: c.limits, lambda c, v: replace(c, limits=v),
        keys={"max_shutdown_grace": "maxShutdownGraceSeconds",
              "max_cloud_init_bytes": "maxCloudInit", "max_domain_xml_bytes": "maxDomainXml"}),
    _section("overhead", OverheadConstants, {
        name: _integer(1) if name == "page_table_divisor" else _BYTES
        for name in (f.name for f in fields(OverheadConstants))
    }, lambda c: c.costs.overhead, lambda c, v: replace(c, costs=replace(c.costs, overhead=v))),
    _section("storage", StorageConstants, {name: _BYTES for name in (
        f.name for f in fields(StorageConstants))},
        lambda c: c.costs.storage, lambda c, v: replace(c, costs=replace(c.costs, storage=v))),
    _section("resourceNames", ResourceNames, {name: _RESOURCE for name in (
        f.name for f in fields(ResourceNames))},
        lambda c: c.costs.resources,
        lambda c, v: replace(c, costs=replace(c.costs, resources=v))),
)


def _dump_device_rules(rules: DeviceResources) -> dict[str, str]:
    return {**dict(rules.by_id), **{f"driver:{name}": res for name, res in rules.by_driver}}


def _load_device_rules(value: object) -> DeviceResources:
    if not isinstance(value, dict):
        raise _Bad('must be a map such as {"10de:1eb8": nvidia.com/T4, '
                   f'"driver:mlx5_vfio_pci": example.com/vf}}, got {value!r}')
    for match, resource in value.items():
        if not isinstance(match, str) or not isinstance(resource, str) \
                or "," in match + resource or "=" in match + resource:
            raise _Bad(f"{match!r}: {resource!r}: must map a <vendor>:<device> or "
                       "driver:<name> to a resource name")
    try:
        return DeviceResources.parse(",".join(f"{m}={r}" for m, r in value.items()))
    except ValueError as exc:
        raise _Bad(str(exc)) from None


# The keys outside the sections.
_TOP = {
    "deviceResources": _Kind(_load_device_rules, {
        "type": "object", "additionalProperties": {"type": "string",
                                                   "pattern": RESOURCE_NAME.pattern}}),
    "cpuAllocationRatio": _integer(1),
    "schedulerName": _string(_DNS_SUBDOMAIN, "a scheduler name (a DNS subdomain such as "
                             "podvirt-scheduler)"),
    "launcherImage": _string(_IMAGE, "an image reference"),
}
_TOP_KEYS = tuple(s.key for s in _SECTIONS) + tuple(_TOP)
# The keys the chart fills from values of their own (scheduler.name, launcherImage.*,
# passthrough.resources: charts/podvirt/templates/_helpers.tpl), not from `contract:`.
CHART_DERIVED = ("schedulerName", "launcherImage", "deviceResources")


def document_schema(leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """JSON schema of the file form, for tools that check it before podvirt reads it (the
    chart's values.schema.json, which leaves out the keys it derives). Looser than the
    loader where JSON schema cannot say it (page sizes a power of two, min <= max)."""
    props: dict[str, Any] = {
        s.key: {"type": "object", "additionalProperties": False,
                "properties": {f.key: f.kind.schema for f in s.fields}}
        for s in _SECTIONS}
    props.update({key: kind.schema for key, kind in _TOP.items()})
    return {"type": "object", "additionalProperties": False,
            "properties": {key: value for key, value in props.items() if key not in leave_out}}


def _unknown(where: str, given: Mapping[str, Any], known: tuple[str, ...]) -> None:
    if extra := sorted(str(key) for key in given if key not in known):
        raise ContractInvalid(f"{where}{extra[0]}: unknown key (known: {', '.join(known)})")


def parse_contract(doc: object, source: str = "contract") -> Contract:
    """The contract a parsed file (a mapping) describes; absent keys keep their defaults.
    `source` starts every error message (the file's path, or the annotation)."""
    if doc is None:
        return DEFAULT_CONTRACT
    if not isinstance(doc, dict):
        raise ContractInvalid(f"{source}: must be a map of contract keys, got "
                              f"{_type_name(doc)}")
    _unknown(f"{source}: ", doc, _TOP_KEYS)
    contract = DEFAULT_CONTRACT
    for section in _SECTIONS:
        given = doc.get(section.key)
        if given is None:
            continue
        where = f"{source}: {section.key}"
        if not isinstance(given, dict):
            raise ContractInvalid(f"{where}: must be a map, got {_type_name(given)}")
        known = tuple(f.key for f in section.fields)
        _unknown(f"{where}.", given, known)
        values = {}
        for f in section.fields:
            if f.key in given:
                try:
                    values[f.attr] = f.kind.load(given[f.key])
                except _Bad as exc:
                    raise ContractInvalid(f"{where}.{f.key}: {exc}") from None
        contract = section.put(contract, replace(section.get(contract), **values))
    costs = contract.costs
    top: dict[str, Any] = {}
    for key, kind in _TOP.items():
        if doc.get(key) is not None:
            try:
                top[key] = kind.load(doc[key])
            except _Bad as exc:
                raise ContractInvalid(f"{source}: {key}: {exc}") from None
    costs = replace(costs, devices=top.get("deviceResources", costs.devices),
                    cpu_allocation_ratio=top.get("cpuAllocationRatio",
                                                 costs.cpu_allocation_ratio))
    contract = replace(contract, costs=costs,
                       scheduler_name=top.get("schedulerName", contract.scheduler_name),
                       launcher_image=top.get("launcherImage", contract.launcher_image))
    _check_across(contract, source)
    return contract


def _check_across(c: Contract, source: str) -> None:
    lim = c.limits
    if lim.min_memory > lim.max_memory:
        raise ContractInvalid(f"{source}: limits.minMemory ({format_bytes(lim.min_memory)}) "
                              f"is above limits.maxMemory ({format_bytes(lim.max_memory)})")
    names = [getattr(c.costs.resources, f.name) for f in fields(ResourceNames)]
    if len(set(names)) != len(names) or k.VM_MARKER_RESOURCE in names:
        raise ContractInvalid(f"{source}: resourceNames: must be distinct and not "
                              f"{k.VM_MARKER_RESOURCE}, got {', '.join(names)}")


def load_contract(path: str | Path) -> Contract:
    """The contract in a YAML or JSON file; ContractInvalid names the file and the field."""
    import yaml
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ContractInvalid(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractInvalid(f"{path}: not YAML: {exc}") from None
    return parse_contract(doc, source=str(path))


def contract_of_pod(annotations: Mapping[str, str] | None) -> Contract:
    """The contract the webhook admitted a pod under (podvirt.io/contract); the defaults
    for a pod without one (run by hand, or rendered before the annotation existed)."""
    text = (annotations or {}).get(k.CONTRACT)
    if text is None:
        return DEFAULT_CONTRACT
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ContractInvalid(f"{k.CONTRACT}: not JSON: {exc}") from None
    return parse_contract(doc, source=k.CONTRACT)


def load_at_start(path: str | Path | None, program: str) -> Contract:
    """A component's --contract at start-up (DEFAULT_CONTRACT without one): a contract it
    cannot use stops it, exit code 2, with the loader's message naming the field."""
    if path is None:
        return DEFAULT_CONTRACT
    try:
        return load_contract(path)
    except ContractInvalid as exc:
        import sys
        print(f"{program}: --contract: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


ARGUMENT_HELP = ("the contract file (YAML: limits, overhead, storage, resourceNames, "
                 "deviceResources, cpuAllocationRatio, schedulerName, launcherImage; "
                 "podvirt/vmspec/contract.py) that webhook, extender, probe and device plugin "
                 "must share: the chart's contract ConfigMap (default: the built-in defaults)")
