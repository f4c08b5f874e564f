"""Load the real `podvirt webhook` (gunicorn + TLS, loopback) and print latency/throughput.

For each worker count it starts `podvirt webhook --noop-route`, then drives it from
separate client processes, each running keep-alive `http.client.HTTPSConnection`s in
threads:
  - peak: closed loop at several concurrencies (as fast as answers come back);
  - paced: a fixed request rate (default 1000/s), latency measured from each request's
    *scheduled* send time, so a stalled server cannot hide its queueing delay.
Every scenario also runs against POST /noop, the same stack (TLS, gunicorn, Flask, JSON
envelope check) without the admission decision: its peak is the ceiling /mutate is
compared with.

Targets (2 cores): p99 <= 3 ms at 1000 reviews/s; mutate peak >= 0.6 x noop peak.

    python bench/webhook_bench.py [--duration 3] [--workers 1,2] [--concurrency 1,4,16]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def realistic_review(i: int) -> bytes:
    """A VM pod as kubectl would send it: several podvirt keys, cloud-init, a sidecar."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"vm-{i}", "namespace": "tenant-a", "uid": f"0000-{i}",
            "labels": {"podvirt.io/vm": "true", "app": "db", "tier": "backend"},
            "annotations": {
                "podvirt.io/vcpus": "2", "podvirt.io/memory": "4Gi",
                "podvirt.io/disks": "root=containerdisk:quay.io/containerdisks/debian:12,"
                                    "data=pvc:db-data,tmp=scratch:10Gi",
                "podvirt.io/nics": "eth0=tap", "podvirt.io/node-labels": "zone=b",
                "podvirt.io/cloud-init": "#cloud-config\n" + "packages: [postgresql]\n" * 20,
                "kubectl.kubernetes.io/last-applied-configuration": "x" * 1500,
            },
        },
        "spec": {"containers": [{"name": "metrics", "image": "prom/node-exporter:v1.8.0",
                                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}],
                 "serviceAccountName": "default", "dnsPolicy": "ClusterFirst"},
    }
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": f"req-{i}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "resource": {"group": "", "version": "v1", "resource": "pods"},
                          "namespace": "tenant-a", "operation": "CREATE", "object": pod,
                          "oldObject": None, "dryRun": False,
                          "userInfo": {"username": "alice", "groups": ["system:authenticated"]}}}
    return json.dumps(review).encode()


def _connection(port: int, cafile: str) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=cafile)
    return http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)


def _client_thread(port, cafile, path, bodies, stop_at, interval, start_at, out, errors):
    conn = _connection(port, cafile)
    headers = {"Content-Type": "application/json"}
    n = 0
    while True:
        now = time.perf_counter()
        if interval:                       # paced: send at start + n * interval
            scheduled = start_at + n * interval
            if scheduled >= stop_at:
                break
            if scheduled > now:
                time.sleep(scheduled - now)
        else:
            scheduled = now
            if now >= stop_at:
                break
        try:
            conn.request("POST", path, body=bodies[n % len(bodies)], headers=headers)
            resp = conn.getresponse()
            resp.read()
            ok = resp.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = _connection(port, cafile)
        if ok:
            out.append(time.perf_counter() - scheduled)
        else:
            errors.append(1)
        n += 1
    conn.close()


def _client_process(port, cafile, path, threads, duration, interval, start_wall, queue):
    """One load process: `threads` keep-alive connections, results back through the queue."""
    bodies = [realistic_review(i) for i in range(16)]
    # Start together: every process waits for the same wall-clock instant.
    time.sleep(max(0.0, start_wall - time.time()))
    start = time.perf_counter()
    out: list[float] = []
    errors: list[int] = []
    ts = []
    for t in range(threads):
        # Stagger paced threads so requests are spread evenly over each interval.
        offset = (t / threads) * interval if interval else 0.0
        th = threading.Thread(target=_client_thread, args=(
            port, cafile, path, bodies, start + duration, interval, start + offset, out, errors))
        th.start()
        ts.append(th)
    for th in ts:
        th.join()
    queue.put((out, len(errors)))


def run_load(port, cafile, path, concurrency, duration, rate=None, processes=2):
    processes = min(processes, concurrency)
    interval = concurrency / rate if rate else 0.0    # each connection's share of the rate
    per_proc = [concurrency // processes + (1 if i < concurrency % processes else 0)
                for i in range(processes)]
    queue = mp.get_context("fork").Queue()
    start_wall = time.time() + 0.5
    procs = [mp.get_context("fork").Process(target=_client_process, args=(
        port, cafile, path, n, duration, interval, start_wall, queue)) for n in per_proc]
    for p in procs:
        p.start()
    lat: list[float] = []
    errors = 0
    for _ in procs:
        got, errs = queue.get()
        lat += got
        errors += errs
    for p in procs:
        p.join()
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: 0.0)
    return {"rps": len(lat) / duration, "p50": pct(0.50), "p99": pct(0.99), "errors": errors,
            "n": len(lat)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_webhook(certs: Path, workers: int, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "podvirt.cli", "webhook", "--port", str(port), "--workers",
         str(workers), "--threads", str(threads), "--cert", str(certs / "tls.crt"),
         "--key", str(certs / "tls.key"), "--noop-route"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("webhook did not become ready")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per scenario")
    ap.add_argument("--workers", default="1,2", help="comma-separated gunicorn worker counts")
    ap.add_argument("--threads", type=int, default=4, help="threads per worker")
    ap.add_argument("--concurrency", default="1,4,16", help="closed-loop connection counts")
    ap.add_argument("--rate", type=float, default=1000.0, help="paced scenario, requests/s")
    ap.add_argument("--paced-connections", type=int, default=8)
    args = ap.parse_args()

    from podvirt.certs import generate_ca, issue_cert, serving_sans, write_pem_files
    certs = Path(tempfile.mkdtemp(prefix="podvirt-bench-"))
    ca = generate_ca("bench-ca")
    crt, key = issue_cert(*ca, "bench", serving_sans("bench", "bench"))
    write_pem_files(certs, {"ca.crt": ca[0], "tls.crt": crt, "tls.key": key})
    cafile = str(certs / "ca.crt")
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} duration={args.duration}s "
          f"body={len(realistic_review(0))}B", flush=True)

    rows = []
    header = (f"{'workers':>7} {'path':>7} {'mode':>12} {'conns':>5} {'rps':>8} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for workers in (int(w) for w in args.workers.split(",")):
        proc, port = start_webhook(certs, workers, args.threads)
        try:
            peaks = {}
            for path in ("/noop", "/mutate"):
                run_load(port, cafile, path, 2, 1.0)     # warm up connections and caches
                for conc in (int(c) for c in args.concurrency.split(",")):
                    r = run_load(port, cafile, path, conc, args.duration)
                    peaks[path] = max(peaks.get(path, 0.0), r["rps"])
                    rows.append((workers, path, "peak", conc, r))
                    print(f"  {workers}w {path} peak c={conc}: {r['rps']:.0f}/s "
                          f"p99 {r['p99']:.2f}ms", flush=True)
                r = run_load(port, cafile, path, args.paced_connections, args.duration,
                             rate=args.rate)
                rows.append((workers, path, f"paced {args.rate:.0f}/s", args.paced_connections,
                             r))
                print(f"  {workers}w {path} paced: {r['rps']:.0f}/s p99 {r['p99']:.2f}ms",
                      flush=True)
            rows.append((workers, "ratio", f"{peaks['/mutate'] / peaks['/noop']:.2f}x", 0, None))
        finally:
            proc.terminate()
            proc.wait(timeout=15)

    print()
    print(header)
    for workers, path, mode, conc, r in rows:
        if r is None:
            print(f"{workers:>7} {'mutate/noop peak':>22} {mode:>8}")
            continue
        print(f"{workers:>7} {path:>7} {mode:>12} {conc:>5} {r['rps']:>8.0f} {r['p50']:>7.2f} "
              f"{r['p99']:>7.2f} {r['errors']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
