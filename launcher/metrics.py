"""Prometheus metrics of the launcher's domain, read from libvirt at scrape time.

`domain_metrics` turns one virDomainListGetStats record (libvirt's flat "cpu.time",
"block.0.rd.bytes", ... keys) into metric families, a pure function; `DomainCollector`
asks the hypervisor for that record on each scrape, so nothing is sampled in between.
Names follow KubeVirt's kubevirt_vmi_* metrics with a podvirt_vm_ prefix; every series
carries the VM's name. NICs libvirt does not manage (the pod NIC is passt's, on QEMU's
command line) have no counters here.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("launcher")

# virDomainState values (libvirt.VIR_DOMAIN_*), as the launcher names them elsewhere.
STATES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed",
          "pmsuspended")

Stats = Mapping[str, object]


def domain_metrics(vm: str, stats: Stats | None) -> list:
    """Metric families for one domain's stats record (None: the domain is not there)."""
    up = GaugeMetricFamily("podvirt_vm_up", "1 while the launcher's domain exists",
                           labels=["vm"])
    up.add_metric([vm], 0 if stats is None else 1)
    if stats is None:
        return [up]
    families = [up]
    state = GaugeMetricFamily("podvirt_vm_state", "1 for the domain's current state",
                              labels=["vm", "state"])
    current = int(stats.get("state.state", 0))
    for number, name in enumerate(STATES):
        state.add_metric([vm, name], 1 if number == current else 0)
    families.append(state)

    def counter(name: str, doc: str, key: str, scale: float = 1.0) -> None:
        if key in stats:
            family = CounterMetricFamily(name, doc, labels=["vm"])
            family.add_metric([vm], float(stats[key]) * scale)
            families.append(family)

    def gauge(name: str, doc: str, key: str, scale: float = 1.0) -> None:
        if key in stats:
            family = GaugeMetricFamily(name, doc, labels=["vm"])
            family.add_metric([vm], float(stats[key]) * scale)
            families.append(family)

    counter("podvirt_vm_cpu_seconds", "CPU time of the whole QEMU process", "cpu.time", 1e-9)
    counter("podvirt_vm_cpu_user_seconds", "user CPU time of QEMU", "cpu.user", 1e-9)
    counter("podvirt_vm_cpu_system_seconds", "system CPU time of QEMU", "cpu.system", 1e-9)
    gauge("podvirt_vm_memory_bytes", "guest memory as defined", "balloon.maximum", 1024)
    gauge("podvirt_vm_memory_resident_bytes", "resident size of QEMU (guest memory touched "
          "plus QEMU's own)", "balloon.rss", 1024)

    vcpus = CounterMetricFamily("podvirt_vm_vcpu_seconds", "time each vCPU thread ran",
                                labels=["vm", "vcpu"])
    for i in range(int(stats.get("vcpu.current", 0))):
        if f"vcpu.{i}.time" in stats:
            vcpus.add_metric([vm, str(i)], float(stats[f"vcpu.{i}.time"]) * 1e-9)
    families.append(vcpus)

    for prefix, label, series in (
            ("block", "disk", (("rd.bytes", "podvirt_vm_storage_read_bytes", "bytes read"),
                               ("wr.bytes", "podvirt_vm_storage_write_bytes", "bytes written"),
                               ("rd.reqs", "podvirt_vm_storage_read_requests", "reads"),
                               ("wr.reqs", "podvirt_vm_storage_write_requests", "writes"))),
            ("net", "interface", (("rx.bytes", "podvirt_vm_network_receive_bytes",
                                   "bytes received"),
                                  ("tx.bytes", "podvirt_vm_network_transmit_bytes",
                                   "bytes sent")))):
        count = int(stats.get(f"{prefix}.count", 0))
        for suffix, name, doc in series:
            family = CounterMetricFamily(name, doc + " per " + label, labels=["vm", label])
            for i in range(count):
                key = f"{prefix}.{i}.{suffix}"
                if key in stats:
                    family.add_metric([vm, str(stats.get(f"{prefix}.{i}.name", i))],
                                      float(stats[key]))
            families.append(family)
    return families


class DomainCollector(Collector):
    def __init__(self, vm: str, stats: Callable[[], Stats | None]):
        self.vm, self.stats = vm, stats

    def collect(self) -> Iterator:
        try:
            record = self.stats()
        except Exception as exc:   # noqa: BLE001 - a scrape must answer, not fail
            log.warning("domain stats unavailable: %s", exc)
            record = None
        yield from domain_metrics(self.vm, record)
