"""Node benchmark: a VM in a real launcher pod vs the launcher as a host process, and the
pod's memory cgroup against the predicted limit.

Run as root on a machine `hack/setup.sh` prepared (it brings up its own local cluster with
the real node, so no other cluster may hold the node):
    .venv/bin/python bench/node_bench.py [--runs 3]

1. Start to guest console marker, same guest (the tiny-guest image's kernel + initramfs,
   128Mi, TCG), same run:
   - pod:  `kubectl apply` of the VM pod -> the marker in the launcher container's log
           (webhook, scheduler + extender, kubelet sandbox, the init containers copying
           kernel and initrd out of the image, the launcher starting libvirtd + QEMU);
   - host: `podvirt launcher run` as a root process on the same guest files (its own
           private libvirtd + virtlogd, no shared capabilities cache: the pod has none).
   Ratio = median pod / median host; target <= 1.3x.
2. Memory: guests of 128Mi, 512Mi and 1Gi that write most of their memory
   (podvirt.touch = 3/4 of the guest - 64MiB, into a tmpfs; the rest is their kernel,
   initramfs and page structures: with 96MiB left a 1Gi guest panics, out of memory), in real pods whose
   memory limit is the webhook's guest + overhead. We read the launcher container's cgroup
   peak (memory.max_usage_in_bytes, cgroup v1; memory.peak on v2) and failcnt, and
   compare peak with the limit, and the working set (usage - inactive file pages, kubelet's
   eviction signal) minus touched with the predicted overhead. Each size
   runs cold (page cache dropped first: the pod pays for its first reads of QEMU, libvirt
   and Python, as the first VM on a node does) and warm (those pages already charged to
   an earlier pod). Target: within +-10% of the prediction, never OOM-killed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from podvirt.cluster.cluster import Cluster                     # noqa: E402
from podvirt.cluster.node import NODE_NAME                        # noqa: E402
from podvirt.launcher.kvmboot import MARKER                       # noqa: E402
from podvirt.quantity import parse_bytes                         # noqa: E402
from podvirt.vmspec import memory_overhead, parse_vm              # noqa: E402
from podvirt.vmspec import keys as k                              # noqa: E402
from podvirt.vmspec.downward import render_annotations_file       # noqa: E402
from tests.guest import ensure_guest                             # noqa: E402

MiB = 2**20
EXAMPLE = REPO / "examples" / "vm-tiny-guest.yaml"
NAMESPACE = "default"
TIMEOUT = 240.0


def log(msg: str) -> None:
    print(msg, flush=True)


def pod_manifest(name: str, memory: str, args: str) -> dict:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["name"] = name
    ann = manifest["metadata"]["annotations"]
    ann[k.MEMORY] = memory
    ann[k.KERNEL_ARGS] = f"console=ttyS0 quiet {args}"
    return manifest


def wait_log(core, name: str, marker: str, t0: float) -> float:
    from kubernetes.client.exceptions import ApiException
    while time.monotonic() - t0 < TIMEOUT:
        try:
            text = core.read_namespaced_pod_log(name, NAMESPACE, container="launcher") or ""
            if marker in text:
                return time.monotonic() - t0
            if "Kernel panic" in text:
                raise RuntimeError(f"{name}'s guest panicked:\n{text[-1500:]}")
        except ApiException:
            pass            # container not started yet
        time.sleep(0.1)
    pod = core.read_namespaced_pod(name, NAMESPACE)
    raise TimeoutError(f"{marker} not in {name}'s log after {TIMEOUT:.0f}s; "
                       f"annotations {pod.metadata.annotations}")


def delete_and_wait(core, name: str) -> None:
    from kubernetes.client.exceptions import ApiException
    core.delete_namespaced_pod(name, NAMESPACE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_pod(name, NAMESPACE)
        except ApiException as exc:
            if exc.status == 404:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{name} not gone")


def bench_pod(cluster, core, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        name = f"bench-boot-{i}"
        t0 = time.monotonic()
        cluster.kubectl("apply", "-f", "-",
                        input=yaml.safe_dump(pod_manifest(name, "128Mi", "podvirt.sleep=wait")))
        times.append(wait_log(core, name, MARKER.decode(), t0))
        log(f"  pod run {i + 1}: marker {times[-1]:.2f}s after kubectl apply")
        delete_and_wait(core, name)
    return times


def bench_host(guest, root: Path, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        pod = root / f"h{i}"
        local = guest.install(pod / "guest")
        ann = {k.MEMORY: "128Mi", k.ALLOW_EMULATION: "true", k.KERNEL: str(local.kernel),
               k.INITRD: str(local.initrd), k.KERNEL_ARGS: "console=ttyS0 quiet podvirt.sleep=0"}
        (pod / "annotations").write_text(render_annotations_file(ann))
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "podvirt.cli", "launcher", "run", "--spec",
             str(pod / "annotations"), "--pod-root", str(pod), "--accel", "tcg",
             "--report-json", str(pod / "report.jsonl")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        up = None
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if MARKER in line and up is None:
                up = time.monotonic() - t0
        proc.wait()
        if up is None:
            raise RuntimeError(f"host launcher run {i + 1} never printed the marker "
                               f"(exit {proc.returncode}; {pod / 'report.jsonl'})")
        times.append(up)
        log(f"  host run {i + 1}: marker {up:.2f}s after start")
    return times


def container_cgroup(pod, container: str) -> Path:
    status = next(s for s in pod.status.container_statuses if s.name == container)
    cid = status.container_id.split("://", 1)[1]
    uid = pod.metadata.uid
    root = Path("/sys/fs/cgroup/memory")
    if not root.is_dir():
        root = Path("/sys/fs/cgroup")
    for found in root.glob(f"kubepods/**/pod{uid}/{cid}"):
        return found
    raise FileNotFoundError(f"no cgroup for container {cid} of pod {uid} under {root}")


def read_working_set(cgroup: Path) -> int:
    """Usage minus inactive file pages: what kubelet calls the working set (its eviction
    signal), i.e. memory the kernel cannot just drop at the limit."""
    if (cgroup / "memory.usage_in_bytes").exists():
        usage = int((cgroup / "memory.usage_in_bytes").read_text())
        key = "total_inactive_file"
    else:
        usage = int((cgroup / "memory.current").read_text())
        key = "inactive_file"
    stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
    return usage - int(stat.get(key, 0))


def read_peak(cgroup: Path) -> tuple[int, int]:
    """(peak bytes, times the limit was hit)."""
    if (cgroup / "memory.max_usage_in_bytes").exists():
        return (int((cgroup / "memory.max_usage_in_bytes").read_text()),
                int((cgroup / "memory.failcnt").read_text()))
    events = dict(line.split() for line in (cgroup / "memory.events").read_text().splitlines())
    return int((cgroup / "memory.peak").read_text()), int(events.get("max", 0))


def drop_page_cache() -> None:
    """A cold node: the pod's first reads of QEMU, libvirt and Python are charged to its
    own memory cgroup instead of to whichever pod read them before."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def bench_memory(cluster, core) -> list[tuple]:
    rows = []
    for memory, cold in (("128Mi", True), ("512Mi", True), ("1Gi", True), ("128Mi", False),
                         ("512Mi", False), ("1Gi", False)):
        touch = parse_bytes(memory) * 3 // 4 // MiB - 64
        name = f"bench-mem-{memory.lower()}-{'cold' if cold else 'warm'}"
        if cold:
            drop_page_cache()
        t0 = time.monotonic()
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
            pod_manifest(name, memory, f"podvirt.sleep=wait podvirt.touch={touch}")))
        wait_log(core, name, MARKER.decode(), t0)
        console = core.read_namespaced_pod_log(name, NAMESPACE, container="launcher") or ""
        written = re.search(r"PODVIRT-GUEST-TOUCHED (\d+)", console)
        if written is None or int(written.group(1)) != touch:
            raise RuntimeError(f"{name}: the guest wrote {written and written.group(1)} MiB, "
                               f"not {touch}")
        time.sleep(3.0)                       # idle: libvirtd's and QEMU's steady state
        pod = core.read_namespaced_pod(name, NAMESPACE)
        cgroup = container_cgroup(pod, "launcher")
        peak, failcnt = read_peak(cgroup)
        working = read_working_set(cgroup)
        launcher = next(c for c in pod.spec.containers if c.name == "launcher")
        limit = parse_bytes(launcher.resources.limits["memory"])
        spec = parse_vm(pod.metadata.annotations, name=name)
        predicted = memory_overhead(spec).total
        restarts = sum(s.restart_count for s in pod.status.container_statuses)
        oom = any((s.state.terminated and s.state.terminated.reason == "OOMKilled")
                  for s in pod.status.container_statuses)
        rows.append((f"{memory} {'cold' if cold else 'warm'}", touch, limit, peak, working,
                     predicted, failcnt, restarts, oom))
        log(f"  {rows[-1][0]}: limit {limit / MiB:.0f} MiB, cgroup peak {peak / MiB:.1f} MiB, "
            f"working set {working / MiB:.1f} MiB, failcnt {failcnt}")
        delete_and_wait(core, name)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state-dir", help="cluster state dir (default: a temporary one)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        log("node_bench: needs root (the real node, libvirtd, QEMU)")
        return 2
    from kubernetes import client
    # SIGTERM (timeout, kill) unwinds through the finally below, which stops the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The host launcher reads kernels only from the pod's podvirt directories; /tmp/podvirt
    # is one of them (as in bench/launcher_bench.py).
    Path("/tmp/podvirt").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="node-bench-", dir="/tmp/podvirt") as tmp:
        root = Path(tmp)
        cluster = Cluster(Path(args.state_dir) if args.state_dir else root / "cluster",
                          progress=lambda m: log("    " + m))
        log("[0/3] local cluster with the real node")
        cluster.up(node=True)
        try:
            core = client.CoreV1Api(cluster.api_client())
            log(f"[1/3] pod: kubectl apply -> console marker, {args.runs} runs (128Mi, TCG, "
                f"{NODE_NAME})")
            pod = bench_pod(cluster, core, args.runs)
            log(f"[2/3] host: podvirt launcher run -> console marker, {args.runs} runs")
            host = bench_host(ensure_guest(), root / "host", args.runs)
            log("[3/3] memory: guests writing 3/4 of their memory - 64Mi, in real pods, cold and warm")
            rows = bench_memory(cluster, core)
        finally:
            cluster.down()

    ratio = statistics.median(pod) / statistics.median(host)
    log("\nStart -> console marker (s)      median    min    max")
    for label, xs in (("pod (kubectl apply)", pod), ("host process", host)):
        log(f"  {label:28s} {statistics.median(xs):7.2f} {min(xs):6.2f} {max(xs):6.2f}")
    log(f"  ratio pod/host: {ratio:.2f}x (target <= 1.3x: {'met' if ratio <= 1.3 else 'NOT met'})")
    log("\nMemory (MiB)     touched  limit   peak  working set  ws-touched  predicted  diff   "
        "failcnt  OOM")
    worst = 0.0
    for label, touch, limit, peak, working, predicted, failcnt, restarts, oom in rows:
        measured = working - touch * MiB
        diff = (measured - predicted) / predicted
        worst = max(worst, abs(diff))
        log(f"  {label:15s} {touch:7d} {limit / MiB:6.0f} {peak / MiB:6.1f} {working / MiB:12.1f} "
            f"{measured / MiB:11.1f} {predicted / MiB:10.1f} {diff * 100:+5.1f}%  {failcnt:7d}  "
            f"{'yes' if oom or restarts else 'no'}")
    met = worst <= 0.10 and not any(r[8] or r[7] for r in rows)
    log(f"  worst |diff| {worst * 100:.1f}% (target <= 10%, never OOM-killed: "
        f"{'met' if met else 'NOT met'})")
    log("method: working set = usage - inactive file pages after 3 s idle; ws - touched counts "
        "the guest kernel and active page cache as overhead. peak (max_usage) also counts page "
        "cache the kernel would drop at the limit.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
