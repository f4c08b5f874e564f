"""Seconds from SIGTERM to exit of a real `podvirt webhook` and a ready `podvirt extender`
(watching a local control plane) with 0, 1 and 10 idle keep-alive TLS connections open,
per worker class; also whether the server closed every idle connection itself.

    .venv/bin/python bench/shutdown_bench.py [--kubeconfig FILE] [--runs 3] [-- EXTRA ARGS]
EXTRA ARGS go to both servers (e.g. --drain-seconds 5). Without --kubeconfig a control plane
is brought up for the extender and torn down afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # the test helpers, imported as the package tests

from tests import drainlib  # noqa: E402
from tests.hardening import services  # noqa: E402

IDLE = (0, 1, 10)
WORKER_CLASSES = ("gevent", "gthread")


def _one(svc: services.Service, idle: int) -> tuple[float, int]:
    """Exit seconds, and how many idle connections the server closed before it exited
    (rather than the kernel, at exit)."""
    svc.start("/readyz")
    try:
        conns = drainlib.idle_connections(svc.port, svc.verify or None, idle)
        closed: list[float | None] = []
        watchers = [threading.Thread(target=lambda c=c: closed.append(drainlib.closed_at(c, 90)))
                    for c in conns]
        for w in watchers:
            w.start()
        sent = drainlib.terminate(svc.proc)
        seconds = drainlib.exit_seconds(svc.proc, sent, timeout=90)
        exited = time.monotonic()
        for w in watchers:
            w.join()
        # The watcher threads note EOF a little after it arrives; the process exit is
        # noticed by wait() at least as late, so an EOF before exit sorts before `exited`.
        return seconds, sum(1 for t in closed if t is not None and t < exited - 0.05)
    finally:
        svc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("extra", nargs="*", help="arguments for both servers, after --")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="podvirt-shutdown-"))
    certs = services.make_certs(work / "certs")
    cluster = None
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        from podvirt.cluster.cluster import Cluster, UpOptions
        cluster = Cluster(work / "cluster")
        print(f"bringing up a control plane in {work}", file=sys.stderr, flush=True)
        cluster.up(UpOptions(webhook=False, extender=False, timeout=90, node=False))
        kubeconfig = Path(cluster.kubeconfig)
    rows = []
    try:
        for server in ("webhook", "extender"):
            for worker_class in WORKER_CLASSES:
                for idle in IDLE:
                    times, closed = [], []
                    for run in range(args.runs):
                        log = work / f"{server}-{worker_class}-{idle}-{run}.log"
                        svc = (services.webhook(certs, log, workers=1) if server == "webhook"
                               else services.extender(log, kubeconfig=kubeconfig, certs=certs))
                        svc.argv += [f"--worker-class={worker_class}", *args.extra]
                        seconds, n_closed = _one(svc, idle)
                        times.append(seconds)
                        closed.append(n_closed)
                    rows.append((server, worker_class, idle, times, closed))
                    print(f"  {server} {worker_class} idle={idle}: "
                          f"{', '.join(f'{t:.2f}' for t in times)} s", file=sys.stderr, flush=True)
    finally:
        if cluster is not None:
            cluster.down()

    print(f"\n{'server':<9} {'worker':<8} {'idle conns':>10} {'exit s (median)':>16} "
          f"{'min-max':>12} {'closed by server':>17}")
    for server, worker_class, idle, times, closed in rows:
        print(f"{server:<9} {worker_class:<8} {idle:>10} {statistics.median(times):>16.2f} "
              f"{min(times):>5.2f}-{max(times):<6.2f} {min(closed):>8}/{idle}")
    print(f"extra args: {' '.join(args.extra) or '(none)'}; logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
