"""The live-migration channel with real libvirtd + QEMU (TCG): two private libvirt
daemons, as in two pods, and a running guest migrated peer-to-peer as the launcher does
(virt.migration_call) through launcher/migration.py's mutual-TLS relays; a guest's writes
to its overlay and scratch disks go with it; a relay holding another certificate is
refused and the guest stays where it was."""

import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from podvirt.launcher.daemons import LibvirtDaemons
from podvirt.launcher.disks import DiskLayout, prepare_disk
from podvirt.launcher.migration import DESTINATION_URI, IncomingRelay, OutgoingRelay, \
    incoming_routes, new_identity, outgoing_sockets
from podvirt.launcher.supervision.events import DomainResumed
from podvirt.launcher.virt import Hypervisor, LibvirtError
from podvirt.vmspec import parse_vm
from tests.guest import ensure_guest
from tests.libvirt.realguest import CACHE

libvirt = pytest.importorskip("libvirt")


def _domain(guest, serial: Path, disks: tuple[str, ...] = (), args: str = "") -> str:
    """`disks`: image paths as the daemons see them, attached as vda, vdb, …"""
    devices = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{path}'/><target dev='vd{chr(ord('a') + i)}' bus='virtio'/></disk>"
        for i, path in enumerate(disks))
    return f"""<domain type='qemu'><name>mig</name><memory unit='MiB'>128</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest.kernel}</kernel>
<initrd>{guest.initrd}</initrd>
<cmdline>console=ttyS0 quiet podvirt.sleep=wait {args} podvirt.count</cmdline>
</os><features><acpi/></features><cpu mode='custom'><model>qemu64</model></cpu>
<devices>{devices}<serial type='file'><source path='{serial}' append='on'/></serial></devices>
</domain>"""


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


@contextmanager
def _relays(source, target, client: str = "source"):
    """The two relays of a migration from `source`'s pod to `target`'s, on loopback. The
    target trusts only the source's certificate; `client` names the identity the
    outgoing relay actually presents (another one: an intruder)."""
    src_id, dst_id = new_identity("source"), new_identity("target")
    presented = src_id if client == "source" else new_identity(client)
    incoming = IncomingRelay(dst_id, incoming_routes(target.path), lambda: src_id.cert_pem,
                             host="127.0.0.1", port=0).start()
    outgoing = OutgoingRelay(presented, dst_id.cert_pem, ("127.0.0.1", incoming.port),
                             outgoing_sockets(source.path)).start()
    try:
        yield
    finally:
        incoming.stop()
        outgoing.stop()


def _wait_counting(serial: Path, count: int = 10, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _counter(serial) < count:
        assert time.monotonic() < deadline, serial.read_text()[-2000:]
        time.sleep(0.2)


def test_guest_moves_through_the_mutual_tls_channel_and_keeps_counting(two_pods):
    import queue
    path, (source, target) = two_pods
    serial = path / "serial.log"
    src = Hypervisor(source.uri, queue.Queue())
    dst_events: queue.Queue = queue.Queue()
    dst = Hypervisor(target.uri, dst_events)
    with _relays(source, target):
        try:
            src.define_and_start(_domain(ensure_guest(), serial))
            _wait_counting(serial)
            dst.expect_incoming("mig")
            t0 = time.monotonic()
            src.migrate(DESTINATION_URI)
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
            for hv in (src, dst):
                hv.cleanup_failed_start()
                hv.close()


# Where each "pod" keeps its disks, as its daemons see it: under /var/lib/libvirt, which
# each private daemon has of its own (LibvirtDaemons), so the two pods' images are
# different files at one path, as in two real pods.
POD_DISKS = "/var/lib/libvirt/pod"


def _lines_since(serial: Path, offset: int) -> list[str]:
    with open(serial, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def _line_at(image: Path, sector: int = 0) -> str:
    """The first line of a sector of the disk as the guest sees it (through the backing
    chain); "" for a blank sector."""
    out = image.with_suffix(".sector")
    # (qemu-img dd counts skipped blocks in count=, so read from the start)
    subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", f"if={image}", f"of={out}",
                    "bs=512", f"count={sector + 1}"], check=True, capture_output=True)
    data = out.read_bytes()[sector * 512:]
    return data.split(b"\n")[0].rstrip(b"\0").decode(errors="replace")


def test_writes_to_overlay_and_scratch_disks_move_with_the_guest(two_pods):
    """The guest writes to a containerdisk-style overlay and to a scratch disk, then is
    migrated: on the target it reads its writes back from the target pod's images (which
    that pod's launcher created empty, as it does, with prepare_disk); they hold the
    writes, and the overlay still reads its base."""
    import queue
    path, (source, target) = two_pods
    base = path / "base.raw"            # the image both pods have (a container disk)
    with open(base, "wb") as f:
        f.write(b"PODVIRT-DATA base sector 0\n".ljust(512, b"\0"))
        f.write(b"PODVIRT-DATA base sector 1\n".ljust(512, b"\0"))
        f.truncate(16 * 2**20)
    vm = parse_vm({"podvirt.io/memory": "128Mi",
                   "podvirt.io/disks": f"root=file:{base},data=scratch:16Mi"}, name="mig")
    images = {}
    for side, daemons in (("source", source), ("target", target)):
        pod = daemons.path(POD_DISKS)
        layout = DiskLayout(pod_root=pod, work_dir=pod / "launcher")
        images[side] = [Path(prepare_disk(disk, layout).path) for disk in vm.disks]
    seen = [f"{POD_DISKS}/{p.relative_to(source.path(POD_DISKS))}" for p in images["source"]]
    serial = path / "serial.log"
    src = Hypervisor(source.uri, queue.Queue())
    dst = Hypervisor(target.uri, queue.Queue())
    with _relays(source, target):
        try:
            src.define_and_start(_domain(ensure_guest(), serial, tuple(seen),
                                         "podvirt.disk-write=vda:root-written,vdb:data-written "
                                         "podvirt.disk-watch=vda,vdb"))
            _wait_counting(serial)
            assert "PODVIRT-GUEST-WROTE vdb" in serial.read_text(errors="replace")
            assert _line_at(images["target"][1]) == "", "the target's scratch disk is blank"
            dst.expect_incoming("mig")
            t0 = time.monotonic()
            src.migrate(DESTINATION_URI, ("vda", "vdb"))
            print(f"\nFIGURE migration_128Mi_two_copied_disks_seconds={time.monotonic() - t0:.2f}")
            assert dst.state() == "running" and not src.domain.isActive()
            before, arrived = _counter(serial), serial.stat().st_size
            # From here on the console is the target QEMU's: the guest, reading past its
            # cache, sees its writes on the target pod's disks.
            wanted = {"PODVIRT-GUEST-READ vda PODVIRT-DATA root-written",
                      "PODVIRT-GUEST-READ vdb PODVIRT-DATA data-written"}
            deadline = time.monotonic() + 20
            while not wanted <= set(_lines_since(serial, arrived)):
                assert time.monotonic() < deadline, _lines_since(serial, arrived)[-20:]
                time.sleep(0.2)
            assert _counter(serial) > before >= 10
            dst.destroy()                   # releases the images' locks
            root, data = images["target"]
            assert _line_at(root) == "PODVIRT-DATA root-written"
            assert _line_at(root, 1) == "PODVIRT-DATA base sector 1"   # from the base
            assert _line_at(data) == "PODVIRT-DATA data-written"
            assert base.read_bytes()[:26] == b"PODVIRT-DATA base sector 0", "the base is read-only"
        finally:
            for hv in (src, dst):
                hv.cleanup_failed_start()
                hv.close()


def test_a_relay_with_another_certificate_is_refused(two_pods):
    import queue
    path, (source, target) = two_pods
    src = Hypervisor(source.uri, queue.Queue())
    with _relays(source, target, client="intruder"):
        try:
            src.define_and_start(_domain(ensure_guest(), path / "serial.log"))
            with pytest.raises(LibvirtError, match="live migration"):
                src.migrate(DESTINATION_URI)
            assert src.state() == "running"
            assert libvirt.open(target.uri).listAllDomains() == []
        finally:
            src.cleanup_failed_start()
            src.close()
