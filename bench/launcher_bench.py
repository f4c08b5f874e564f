"""Launcher benchmark: launcher vs plain `virsh create`, and memory overhead vs prediction.

Run as root on a machine with libvirtd + QEMU (guests run under TCG):
    .venv/bin/python bench/launcher_bench.py [--runs 3]

1. Boot-to-exit: `podvirt launcher run` (private daemons, shared capabilities cache)
   booting the hack/guest test guest that powers off at once, vs `virsh create` of the
   very same domain XML on already-running daemons, then waiting for the domain to end.
   The difference is the launcher's own cost: Python start, KVM check, disk/ISO prep,
   starting virtlogd + libvirtd, event handling.
2. Memory: guests of several sizes touch a known amount of RAM (podvirt.touch=MiB writes
   that much into the RAM-backed root) and idle; we read QEMU's VmRSS. An idle guest's
   RSS is far below its memory size, so comparing RSS with guest memory says nothing.
   Instead:  measured overhead = RSS - touched guest memory  (an upper bound: the guest
   kernel's own pages are counted as overhead) and it is compared with the prediction
   for QEMU's share: qemu_base + vcpus*per_vcpu + page tables + tcg_cache. libvirtd,
   virtlogd and launcher RSS are printed next to the constants they correspond to.
"""

from __future__ import annotations

import argparse
import os

import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt

from podvirt.launcher.daemons import LibvirtDaemons
from podvirt.launcher.domain import domain_xml
from podvirt.launcher.hostcontext import HostContext
from podvirt.launcher.run import qemu_rss
from podvirt.vmspec import memory_overhead, parse_vm
from podvirt.vmspec.downward import render_annotations_file
from podvirt.vmspec.overhead import OverheadConstants

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # the test guest's builder, imported as tests.guest

from tests.guest import ensure_guest  # noqa: E402

MiB = 2**20
CACHE = Path("/tmp/podvirt/libvirt-cache")


def spec_annotations(guest, memory: str, args: str) -> dict[str, str]:
    return {"podvirt.io/memory": memory, "podvirt.io/allow-emulation": "true",
            "podvirt.io/kernel": str(guest.kernel), "podvirt.io/initrd": str(guest.initrd),
            "podvirt.io/kernel-args": f"console=ttyS0 quiet {args}"}


def rss_of(pid: int) -> int:
    return qemu_rss(pid) or 0


def bench_launcher(root: Path, guest, runs: int) -> tuple[list[float], list[float], int]:
    totals, ups, launcher_rss = [], [], 0
    for i in range(runs):
        pod = root / f"l{i}"
        pod.mkdir()
        (pod / "annotations").write_text(render_annotations_file(
            spec_annotations(guest, "128Mi", "podvirt.sleep=0")))
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "podvirt.cli", "launcher", "run", "--spec",
             str(pod / "annotations"), "--pod-root", str(pod), "--accel", "tcg",
             "--libvirt-cache", str(CACHE), "--report-json", str(pod / "report.jsonl")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        up = None
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            launcher_rss = max(launcher_rss, rss_of(proc.pid))
            if b"PODVIRT-GUEST-UP" in line and up is None:
                up = time.monotonic() - t0
        code = proc.wait()
        totals.append(time.monotonic() - t0)
        ups.append(up or float("nan"))
        print(f"  launcher run {i + 1}: marker {ups[-1]:.2f}s, exit {totals[-1]:.2f}s "
              f"(code {code})", flush=True)
    return totals, ups, launcher_rss


def boot_domain(conn, xml: str) -> libvirt.virDomain:
    return conn.createXML(xml, 0)


def wait_gone(conn, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not conn.lookupByName(name).isActive():
                return
        except libvirt.libvirtError:
            return
        time.sleep(0.02)
    raise TimeoutError(name)


def wait_marker(path: Path, marker: bytes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and marker in path.read_bytes():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{marker!r} not in {path}")


def vm_and_xml(guest, memory: str, args: str, work: Path, name: str):
    spec = parse_vm(spec_annotations(guest, memory, args), name=name)
    ctx = HostContext(accel="tcg", uuid=str(uuid.uuid4()), serial_log=str(work / f"{name}.log"))
    return spec, domain_xml(spec, ctx)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--touch", type=int, default=32, help="MiB each guest writes")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("launcher_bench: needs root (libvirtd, QEMU)", file=sys.stderr)
        return 2
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    guest = ensure_guest()
    Path("/tmp/podvirt").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir="/tmp/podvirt") as tmp:
        root = Path(tmp)
        guest = guest.install(root / "guest")
        print(f"[1/3] launcher boot-to-exit, {args.runs} runs (128Mi guest, TCG)", flush=True)
        totals, ups, launcher_rss = bench_launcher(root, guest, args.runs)

        daemons = LibvirtDaemons(root / "daemons", cache_dir=CACHE)
        daemons.start()
        conn = libvirt.open(daemons.uri)
        try:
            print("[2/3] virsh-style createXML of the same XML on running daemons", flush=True)
            plain = []
            for i in range(args.runs):
                _, xml = vm_and_xml(guest, "128Mi", "podvirt.sleep=0", root, f"plain{i}")
                t0 = time.monotonic()
                boot_domain(conn, xml)
                wait_gone(conn, f"plain{i}")
                plain.append(time.monotonic() - t0)
                print(f"  createXML run {i + 1}: exit {plain[-1]:.2f}s", flush=True)

            print(f"[3/3] memory: guests touching {args.touch}Mi, idle", flush=True)
            rows = []
            consts = OverheadConstants()
            for memory in ("128Mi", "512Mi", "1Gi"):
                name = f"mem{memory.lower()}"
                spec, xml = vm_and_xml(guest, memory,
                                       f"podvirt.sleep=wait podvirt.touch={args.touch}",
                                       root, name)
                dom = boot_domain(conn, xml)
                wait_marker(root / f"{name}.log", b"PODVIRT-GUEST-UP")
                time.sleep(1.0)
                pid = int(daemons.qemu_pid_file(name).read_text())
                rss = rss_of(pid)
                dom.destroy()
                o = memory_overhead(spec, consts)
                predicted = consts.qemu_base + o.vcpus + o.page_tables + o.tcg_cache
                rows.append((memory, rss, rss - args.touch * MiB, predicted))
            daemon_rss = sum(rss_of(p.pid) for p in (daemons.libvirtd, daemons.virtlogd) if p)
        finally:
            conn.close()
            daemons.stop()

    print("\nBoot to exit (s)            median    min    max")
    for label, xs in (("launcher: exit", totals), ("launcher: marker", ups),
                      ("createXML: exit", plain)):
        print(f"  {label:24s} {statistics.median(xs):7.2f} {min(xs):6.2f} {max(xs):6.2f}")
    print(f"  launcher overhead (median): "
          f"{statistics.median(totals) - statistics.median(plain):.2f}s")
    print("\nMemory (MiB)   QEMU RSS  RSS-touched  predicted(qemu_base+vcpu+pt+tcg)  diff")
    for memory, rss, over, pred in rows:
        print(f"  {memory:8s} {rss / MiB:10.1f} {over / MiB:12.1f} {pred / MiB:24.1f} "
              f"{(pred - over) / MiB:12.1f}")
    print(f"\nlibvirtd+virtlogd RSS: {daemon_rss / MiB:.1f} MiB "
          f"(constant libvirt = {consts.libvirt / MiB:.0f} MiB)")
    print(f"launcher (python) peak RSS: {launcher_rss / MiB:.1f} MiB "
          f"(constant launcher = {consts.launcher / MiB:.0f} MiB)")
    print("method: RSS-touched counts the guest kernel and page cache as overhead, so it is an "
          "upper bound on QEMU's own cost; positive diff = prediction has headroom.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
