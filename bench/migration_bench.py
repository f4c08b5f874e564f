"""Live-migration benchmark: total time and guest downtime, through podvirt's channel and
without it.

Run as root on a machine with libvirtd + QEMU (guests run under TCG):
    .venv/bin/python bench/migration_bench.py [--runs 3] [--sizes 128,512]

Two private libvirt daemons stand for the source and the target pod. A guest of each
size first fills a quarter of its RAM (podvirt.touch: real pages for the migration to copy),
then prints a counter every 100 ms (podvirt.count) to a serial file both QEMUs write in
turn. Each run migrates it three times, live and peer-to-peer:

- baseline:  tunnelled (guest memory inside the libvirt RPC connection), the source
             libvirtd straight to the target libvirtd's unix socket: libvirt alone;
- tunnelled: the same through launcher/migration.py's mutual-TLS relays over TCP
             (loopback): the launcher's way until it copied disks (libvirt copies none in
             a tunnelled migration);
- podvirt:   through the relays as the launcher does now (virt.migration_call): QEMU's
             stream on a channel of its own.

Figures: total time (the migrate call), libvirt's downtime (the target's completed job),
and the guest's view: the longest gap between two counter lines as a 5 ms poller of the
serial file sees them (a pause the guest did not notice cannot be longer than that).
Target: downtime <= 300 ms (QEMU's default limit) and podvirt/baseline total time ratio
(<= 1.2); podvirt/tunnelled says which of the launcher's two ways is faster.
"""

from __future__ import annotations

import argparse
import queue
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import libvirt

from podvirt.launcher.daemons import LibvirtDaemons
from podvirt.launcher.migration import DESTINATION_URI, IncomingRelay, OutgoingRelay, \
    incoming_routes, new_identity, outgoing_sockets
from podvirt.launcher.virt import MIGRATE_FLAGS, Hypervisor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # the test guest's builder, imported as tests.guest

from tests.guest import ensure_guest  # noqa: E402

ROOT = Path("/tmp/podvirt/migration-bench")
CACHE = Path("/tmp/podvirt/libvirt-cache")


def _domain(guest, serial: Path, mib: int) -> str:
    touch = mib // 4
    return f"""<domain type='qemu'><name>bench</name><memory unit='MiB'>{mib}</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest.kernel}</kernel>
<initrd>{guest.initrd}</initrd>
<cmdline>console=ttyS0 quiet podvirt.sleep=wait podvirt.touch={touch} podvirt.count</cmdline>
</os><features><acpi/></features><cpu mode='custom'><model>qemu64</model></cpu>
<devices><serial type='file'><source path='{serial}' append='on'/></serial></devices></domain>"""


class CounterWatch:
    """Polls the serial file; records when each counter value first appeared."""

    def __init__(self, serial: Path):
        self.serial, self.seen, self._stop = serial, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        offset = 0
        while not self._stop.is_set():
            try:
                with open(self.serial, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                chunk = b""
            now = time.monotonic()
            if b"\n" in chunk:
                complete = chunk[:chunk.rindex(b"\n") + 1]
                offset += len(complete)
                for line in complete.decode(errors="replace").splitlines():
                    if line.startswith("PODVIRT-COUNT "):
                        self.seen.setdefault(int(line.split()[1]), now)
            time.sleep(0.005)

    def start(self) -> "CounterWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def last(self) -> int:
        return max(self.seen, default=-1)

    def largest_gap(self, start: float, end: float) -> float:
        """Longest wait between consecutive counter values within [start, end] (s)."""
        times = sorted(t for t in self.seen.values() if start <= t <= end)
        return max((b - a for a, b in zip(times, times[1:])), default=float("nan"))


class GuestStalled(RuntimeError):
    """The guest never started counting (seen under TCG on a loaded machine: its timer
    stalls after boot); the run is repeated."""


MODES = ("baseline", "tunnelled", "podvirt")


def _one(mib: int, mode: str, guest) -> dict:
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    source, target = (LibvirtDaemons(ROOT / s, cache_dir=CACHE) for s in ("source", "target"))
    source.start()
    target.start()
    relays = []
    try:
        serial = ROOT / "serial.log"
        src = Hypervisor(source.uri, queue.Queue())
        dst = Hypervisor(target.uri, queue.Queue())
        if mode != "baseline":
            s_id, t_id = new_identity("source"), new_identity("target")
            incoming = IncomingRelay(t_id, incoming_routes(target.path),
                                     lambda: s_id.cert_pem, host="127.0.0.1", port=0).start()
            outgoing = OutgoingRelay(s_id, t_id.cert_pem, ("127.0.0.1", incoming.port),
                                     outgoing_sockets(source.path)).start()
            relays = [incoming, outgoing]
        src.define_and_start(_domain(guest, serial, mib))
        watch = CounterWatch(serial).start()
        deadline = time.monotonic() + 90
        while watch.last() < 20:    # memory filled, counting for 2 s
            if time.monotonic() > deadline:
                watch.stop()
                raise GuestStalled(serial.read_text(errors="replace")[-300:])
            time.sleep(0.1)
        dst.expect_incoming("bench")
        t0 = time.monotonic()
        if mode == "podvirt":
            src.migrate(DESTINATION_URI)
        else:
            assert src.domain is not None
            src.domain.migrateToURI3(target.uri if mode == "baseline" else DESTINATION_URI,
                                     {}, MIGRATE_FLAGS | libvirt.VIR_MIGRATE_TUNNELLED)
        t1 = time.monotonic()
        time.sleep(2)
        watch.stop()
        stats = dst.completed_job()
        counted_after = watch.last()
        dst.destroy()
        for hv in (src, dst):
            hv.close()
        return {"seconds": t1 - t0, "downtime_ms": stats.get("downtime", float("nan")),
                "gap_ms": watch.largest_gap(t0, t1 + 2) * 1000,
                "bytes": stats.get("memory_processed", 0), "counted_after": counted_after}
    finally:
        for r in relays:
            r.stop()
        source.stop()
        target.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="128,512", help="guest MiB, comma-separated")
    args = ap.parse_args()
    guest = ensure_guest()
    for mib in (int(s) for s in args.sizes.split(",")):
        results: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for run in range(1, args.runs + 1):
            for label in MODES:
                for attempt in range(3):
                    try:
                        r = _one(mib, label, guest)
                        break
                    except GuestStalled as exc:
                        print(f"[bench] {mib}Mi run {run} {label}: the guest never counted, "
                              f"booting it again; its console ended: {str(exc)[-120:]!r}",
                              flush=True)
                else:
                    raise SystemExit("the guest stalled three times")
                results[label].append(r)
                print(f"[bench] {mib}Mi run {run} {label:9}: {r['seconds']:.2f} s, libvirt "
                      f"downtime {r['downtime_ms']} ms, counter gap {r['gap_ms']:.0f} ms, "
                      f"{r['bytes'] / 2**20:.0f} MiB sent", flush=True)

        def med(label: str, key: str) -> float:
            return statistics.median(r[key] for r in results[label])
        ratio = med("podvirt", "seconds") / med("baseline", "seconds")
        vs_tunnelled = med("podvirt", "seconds") / med("tunnelled", "seconds")
        worst = max(r["downtime_ms"] for r in results["podvirt"])
        print(f"[bench] {mib}Mi guest: podvirt {med('podvirt', 'seconds'):.2f} s vs baseline "
              f"{med('baseline', 'seconds'):.2f} s = {ratio:.2f}x, vs tunnelled through the "
              f"relays {med('tunnelled', 'seconds'):.2f} s = {vs_tunnelled:.2f}x; downtime median "
              f"{med('podvirt', 'downtime_ms'):.0f} ms (tunnelled "
              f"{med('tunnelled', 'downtime_ms'):.0f} ms), worst {worst} ms (target <= 300 ms: "
              f"{'met' if worst <= 300 else 'missed'}); counter gap median "
              f"{med('podvirt', 'gap_ms'):.0f} ms", flush=True)


if __name__ == "__main__":
    main()
