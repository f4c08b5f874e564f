"""A domain's size must be what the annotations price.

The webhook prices the launcher pod from podvirt.io/memory and vcpus (overhead.py); a
domain XML asking for more would be OOM-killed inside that limit, counted as a start
failure, and enough of them quarantine a healthy node. So memory, vCPUs, hugepages and
pinning in the XML must equal the priced values (the placeholders {{memory_kib}} and
{{vcpus}} always do). Runs after the allowlist, so every element here is well-formed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterable

from podvirt.quantity import format_bytes
from podvirt.vmspec import keys as k
from podvirt.vmspec.domainpolicy import DomainXMLRejected
from podvirt.vmspec.domainrules import MEMORY_UNITS
from podvirt.vmspec.model import VMSpec
from podvirt.vmspec.overhead import DEFAULT_COSTS

DEFAULT_TCG_CACHE = DEFAULT_COSTS.overhead.tcg_cache


def _size(n: int) -> str:
    """2Gi, or the exact byte count when it is no whole MiB (decimal units: 2 GB)."""
    return format_bytes(n) if n % 2**20 == 0 else f"{n} bytes"


def _bytes(el: ET.Element) -> int:
    return int((el.text or "0").strip()) * MEMORY_UNITS[el.get("unit", "KiB")]


def _cpus(cpuset: str) -> set[int]:
    cpus: set[int] = set()
    for part in cpuset.split(","):
        lo, _, hi = part.lstrip("^").partition("-")
        span = set(range(int(lo), int(hi or lo) + 1))
        cpus = cpus - span if part.startswith("^") else cpus | span
    return cpus


def _refuse(message: str, element: str, attribute: str | None = None) -> DomainXMLRejected:
    return DomainXMLRejected(message, element=element, attribute=attribute)


def check_size(root: ET.Element, spec: VMSpec, *, host_cpus: Iterable[int] = (),
               tcg_cache_bytes: int = DEFAULT_TCG_CACHE) -> None:
    """`tcg_cache_bytes`: the TCG cache the pod's memory was priced with (the contract's
    overhead.tcgCache)."""
    priced = _size(spec.memory_bytes)
    memory = root.find("memory")
    if memory is None:
        raise _refuse("<memory> is missing: write <memory unit='KiB'>{{memory_kib}}</memory>",
                      "memory")
    for name in ("memory", "currentMemory", "maxMemory"):
        el = root.find(name)
        if el is not None and _bytes(el) != spec.memory_bytes:
            raise _refuse(f"<{name}> is {_size(_bytes(el))} but {k.MEMORY} prices "
                          f"{priced}", name)

    vcpu = root.find("vcpu")
    count = int((vcpu.text or "1").strip()) if vcpu is not None else 1   # libvirt's default
    if count != spec.vcpus:
        raise _refuse(f"<vcpu> is {count}{' (libvirt default)' if vcpu is None else ''} but "
                      f"{k.VCPUS} prices {spec.vcpus}", "vcpu")
    if vcpu is not None and vcpu.get("current") not in (None, str(spec.vcpus)):
        raise _refuse(f"<vcpu current='{vcpu.get('current')}'> is not the {spec.vcpus} vCPUs "
                      f"{k.VCPUS} prices", "vcpu", "current")
    listed = root.findall("vcpus/vcpu")
    if listed and len(listed) != spec.vcpus:
        raise _refuse(f"<vcpus> lists {len(listed)} vCPUs but {k.VCPUS} prices {spec.vcpus}",
                      "vcpus")
    topology = root.find("cpu/topology")
    if topology is not None:
        product = 1
        for part in ("sockets", "dies", "clusters", "cores", "threads"):
            product *= int(topology.get(part, "1"))
        if product != spec.vcpus:
            raise _refuse(f"<cpu><topology> is {product} vCPUs (sockets × dies × clusters × "
                          f"cores × threads) but {k.VCPUS} prices {spec.vcpus}", "cpu/topology")

    _check_hugepages(root, spec)
    _check_pinning(root, spec, tuple(host_cpus))
    tb_cache = root.find("features/tcg/tb-cache")
    cap = tcg_cache_bytes
    if tb_cache is not None and _bytes(tb_cache) > cap:
        raise _refuse(f"<features><tcg><tb-cache> is {_size(_bytes(tb_cache))} but the "
                      f"TCG cache is priced at {format_bytes(cap)}", "features/tcg/tb-cache")


def _check_hugepages(root: ET.Element, spec: VMSpec) -> None:
    hugepages = root.find("memoryBacking/hugepages")
    priced = f"{format_bytes(spec.hugepage_bytes)} pages" if spec.hugepage_bytes else "none"
    if hugepages is None:
        if spec.hugepage_bytes:
            raise _refuse(f"<memoryBacking> has no <hugepages> but {k.HUGEPAGES} prices "
                          f"{priced}", "memoryBacking")
        return
    pages = hugepages.findall("page")
    if not pages:
        raise _refuse("<memoryBacking><hugepages> without <page size=...> takes the node's "
                      f"default page size, but {k.HUGEPAGES} prices {priced}",
                      "memoryBacking/hugepages")
    for page in pages:
        size = int(page.get("size", "0")) * MEMORY_UNITS[page.get("unit", "KiB")]
        if size != spec.hugepage_bytes:
            where = "".join(f" {a}='{page.get(a)}'" for a in ("size", "unit") if page.get(a))
            raise _refuse(f"<memoryBacking><hugepages><page{where}> is {_size(size)} pages but "
                          f"{k.HUGEPAGES} prices {priced}", "memoryBacking/hugepages/page",
                          "size")


def _check_pinning(root: ET.Element, spec: VMSpec, host_cpus: tuple[int, ...]) -> None:
    for pin in root.findall("cputune/vcpupin"):
        where = f"<cputune><vcpupin vcpu='{pin.get('vcpu')}' cpuset='{pin.get('cpuset')}'>"
        if not spec.dedicated_cpus:
            raise _refuse(f"{where} pins a vCPU but {k.DEDICATED_CPUS} prices shared CPUs",
                          "cputune/vcpupin")
        if int(pin.get("vcpu", "0")) >= spec.vcpus:
            raise _refuse(f"{where} names a vCPU beyond the {spec.vcpus} {k.VCPUS} prices",
                          "cputune/vcpupin", "vcpu")
        outside = _cpus(pin.get("cpuset", "")) - set(host_cpus) if host_cpus else set()
        if outside:
            raise _refuse(f"{where} is outside the pod's CPUs "
                          f"({','.join(map(str, host_cpus))})", "cputune/vcpupin", "cpuset")
