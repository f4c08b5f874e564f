"""The launcher's Prometheus metrics: the pure conversion of libvirt's stats record (a real
guest scraped over HTTP: tests/libvirt/test_metrics.py)."""

from podvirt.launcher.metrics import domain_metrics

RECORD = {"state.state": 1, "cpu.time": 2_500_000_000, "cpu.user": 2_000_000_000,
          "balloon.maximum": 131072, "balloon.rss": 200_000, "vcpu.current": 2,
          "vcpu.0.time": 1_000_000_000, "vcpu.1.time": 500_000_000,
          "block.count": 1, "block.0.name": "vda", "block.0.rd.bytes": 4096,
          "block.0.wr.bytes": 512, "block.0.rd.reqs": 2, "block.0.wr.reqs": 1,
          "net.count": 1, "net.0.name": "vnet0", "net.0.rx.bytes": 10, "net.0.tx.bytes": 20}


def _samples(families) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families for s in family.samples}


def test_stats_record_becomes_labelled_series():
    got = _samples(domain_metrics("vm1", RECORD))
    vm = ("vm", "vm1")
    assert got[("podvirt_vm_up", (vm,))] == 1
    assert got[("podvirt_vm_state", (("state", "running"), vm))] == 1
    assert got[("podvirt_vm_state", (("state", "paused"), vm))] == 0
    assert got[("podvirt_vm_cpu_seconds_total", (vm,))] == 2.5
    assert got[("podvirt_vm_vcpu_seconds_total", (("vcpu", "1"), vm))] == 0.5
    assert got[("podvirt_vm_memory_bytes", (vm,))] == 128 * 2**20
    assert got[("podvirt_vm_memory_resident_bytes", (vm,))] == 200_000 * 1024
    assert got[("podvirt_vm_storage_read_bytes_total", (("disk", "vda"), vm))] == 4096
    assert got[("podvirt_vm_network_transmit_bytes_total", (("interface", "vnet0"), vm))] == 20


def test_no_domain_is_up_zero_and_nothing_else():
    assert _samples(domain_metrics("vm1", None)) == {("podvirt_vm_up", (("vm", "vm1"),)): 0}
