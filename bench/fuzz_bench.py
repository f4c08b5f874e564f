"""Fuzz the real webhook (TLS) and a ready extender (watching a local control plane) with
--inputs structured mutations per endpoint; print inputs tried / 5xx seen / tracebacks
seen / denials without a key, per endpoint, for the README's reliability table.

    .venv/bin/python bench/fuzz_bench.py --inputs 10000 [--seed S] [--threads 4]
Exit status 1 if anything was seen. The inputs come from tests/hardening/fuzzlib.py.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # the test helpers, imported as the package tests

import requests  # noqa: E402

from tests.hardening import fuzzlib, services  # noqa: E402


def _fuzz(endpoint: str, svc: services.Service, inputs: int, seed: str, threads: int,
          tally: fuzzlib.Tally) -> float:
    local = threading.local()
    lock = threading.Lock()

    def one(i: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body = fuzzlib.GENERATORS[endpoint](random.Random(f"{seed}{endpoint}{i}"), i)
        try:
            resp = fuzzlib.post(local.session, svc.url + endpoint, body, svc.verify)
        except requests.RequestException as exc:   # a dropped connection is a finding too
            local.session = requests.Session()
            with lock:
                tally.tried[endpoint] += 1
                tally.note(endpoint, tally.bad_answers, body, f"connection failed: {exc!r}"[:300])
            return
        with lock:
            fuzzlib.judge(tally, endpoint, body, resp)
            if tally.tried[endpoint] % 2000 == 0:
                print(f"  {endpoint}: {tally.tried[endpoint]}/{inputs}", file=sys.stderr, flush=True)

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(inputs)))
    return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=10000, help="inputs per endpoint")
    ap.add_argument("--seed", default="bench")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    from podvirt.cluster.cluster import Cluster, UpOptions
    work = Path(tempfile.mkdtemp(prefix="podvirt-fuzz-"))
    certs = services.make_certs(work / "certs")
    cluster = Cluster(work / "cluster")
    print(f"bringing up a control plane in {work}", file=sys.stderr, flush=True)
    cluster.up(UpOptions(inventory=REPO / "tests" / "hardening" / "inventory.yaml",
                         webhook=False, timeout=90, node=False))
    tally = fuzzlib.Tally()
    rows = []
    try:
        webhook = services.webhook(certs, work / "webhook.log")
        extender = services.extender(work / "extender.log", kubeconfig=Path(cluster.kubeconfig),
                                     certs=certs)
        with services.running(webhook), services.running(extender, ready_path="/readyz"):
            for endpoint in fuzzlib.GENERATORS:
                svc = webhook if endpoint == "/mutate" else extender
                before = len(svc.tracebacks())
                seconds = _fuzz(endpoint, svc, args.inputs, args.seed, args.threads, tally)
                rows.append((endpoint, len(svc.tracebacks()) - before, seconds))
    finally:
        cluster.down()

    print(f"\n{'endpoint':<12} {'inputs tried':>12} {'5xx seen':>9} {'tracebacks':>11} "
          f"{'denials w/o key':>16} {'bad answers':>12} {'inputs/s':>9}")
    for endpoint, tracebacks, seconds in rows:
        print(f"{endpoint:<12} {tally.tried[endpoint]:>12} {tally.server_errors[endpoint]:>9} "
              f"{tracebacks:>11} {tally.unnamed_denials[endpoint]:>16} "
              f"{tally.bad_answers[endpoint]:>12} {tally.tried[endpoint] / seconds:>9.0f}")
    for problem in tally.problems[:10]:
        print("  e.g.", problem[:300])
    seen = (tally.total(tally.server_errors) + tally.total(tally.unnamed_denials)
            + tally.total(tally.bad_answers) + sum(r[1] for r in rows))
    print(f"logs: {work}")
    return 1 if seen else 0


if __name__ == "__main__":
    sys.exit(main())
