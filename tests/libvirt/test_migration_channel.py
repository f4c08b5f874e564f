"""The live-migration channel with real libvirtd + QEMU (TCG): two private libvirt
daemons, as in two pods, and a running guest migrated peer-to-peer and tunnelled through
launcher/migration.py's mutual-TLS relays; a relay holding another certificate is
refused and the guest stays where it was."""

import time
from pathlib import Path

import pytest

from podvirt.launcher.daemons import LibvirtDaemons
from tests.guest import ensure_guest
from podvirt.launcher.migration import IncomingRelay, OutgoingRelay, new_identity
from podvirt.launcher.supervision.events import DomainResumed
from podvirt.launcher.virt import Hypervisor, LibvirtError
from tests.libvirt.realguest import CACHE

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.libvirt


def _domain(guest, serial: Path) -> str:
    return f"""<domain type='qemu'><name>mig</name><memory unit='MiB'>128</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest.kernel}</kernel>
<initrd>{guest.initrd}</initrd><cmdline>console=ttyS0 quiet podvirt.sleep=wait podvirt.count</cmdline>
</os><features><acpi/></features><cpu mode='custom'><model>qemu64</model></cpu>
<devices><serial type='file'><source path='{serial}' append='on'/></serial></devices></domain>"""


@pytest.fixture
def two_pods(pod):
    path, _ = pod
    daemons = [LibvirtDaemons(path / side, cache_dir=CACHE) for side in ("source", "target")]
    for d in daemons:
        d.start()
    yield path, daemons
    for d in daemons:
        d.stop()


def _counter(serial: Path) -> int:
    lines = [ln for ln in serial.read_text(errors="replace").splitlines()
             if ln.startswith("PODVIRT-COUNT ")]
    return int(lines[-1].split()[1]) if lines else -1


def test_guest_moves_through_the_mutual_tls_channel_and_keeps_counting(two_pods):
    import queue
    path, (source, target) = two_pods
    serial = path / "serial.log"
    src_id, dst_id = new_identity("source"), new_identity("target")
    incoming = IncomingRelay(dst_id, target.path("/run/libvirt/libvirt-sock"),
                             lambda: src_id.cert_pem, host="127.0.0.1", port=0).start()
    outgoing = OutgoingRelay(src_id, dst_id.cert_pem, ("127.0.0.1", incoming.port),
                             path / "migration.sock").start()
    src = Hypervisor(source.uri, queue.Queue())
    dst_events: queue.Queue = queue.Queue()
    dst = Hypervisor(target.uri, dst_events)
    try:
        src.define_and_start(_domain(ensure_guest(), serial))
        deadline = time.monotonic() + 60
        while _counter(serial) < 10:
            assert time.monotonic() < deadline, serial.read_text()[-2000:]
            time.sleep(0.2)
        dst.expect_incoming("mig")
        t0 = time.monotonic()
        src.migrate(outgoing.uri)
        seconds = time.monotonic() - t0
        events = []
        while not dst_events.empty():
            events.append(dst_events.get())
        assert DomainResumed() in events, events
        assert dst.state() == "running" and not src.domain.isActive()
        stats = dst.completed_job()
        print(f"\nFIGURE migration_128Mi_seconds={seconds:.2f} "
              f"downtime_ms={stats.get('downtime')}")
        before = _counter(serial)
        time.sleep(1.5)
        # The target's QEMU appends to the same serial file here (one host): the count
        # goes on from where it was, not from 0.
        assert _counter(serial) > before >= 10
    finally:
        incoming.stop()
        outgoing.stop()
        for hv in (src, dst):
            hv.cleanup_failed_start()
            hv.close()


def test_a_relay_with_another_certificate_is_refused(two_pods):
    import queue
    path, (source, target) = two_pods
    src_id, dst_id, intruder = (new_identity(n) for n in ("source", "target", "intruder"))
    incoming = IncomingRelay(dst_id, target.path("/run/libvirt/libvirt-sock"),
                             lambda: src_id.cert_pem, host="127.0.0.1", port=0).start()
    outgoing = OutgoingRelay(intruder, dst_id.cert_pem, ("127.0.0.1", incoming.port),
                             path / "intruder.sock").start()
    src = Hypervisor(source.uri, queue.Queue())
    try:
        src.define_and_start(_domain(ensure_guest(), path / "serial.log"))
        with pytest.raises(LibvirtError, match="live migration"):
            src.migrate(outgoing.uri)
        assert src.state() == "running"
        assert libvirt.open(target.uri).listAllDomains() == []
    finally:
        incoming.stop()
        outgoing.stop()
        src.cleanup_failed_start()
        src.close()
