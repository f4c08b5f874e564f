"""Filter latency of the scheduler extender at 100, 1000 and 5000 nodes.

Requests go through the real HTTP handler (ExtenderApp.respond, as granian calls it: body
read, JSON decode, filter, JSON encode) with a synthetic cluster: every node has 64Gi,
32 CPUs and 4 GPUs, about a third already half full, some with devices claimed. The pod asks for 4Gi and 1 GPU, and the
request carries only NodeNames, as with nodeCacheCapable. Target: p99 <= 5 ms at 5000.

"cold" is the first filter for a VM shape (every node decided); p50/p99 are the steady
state, where one node changes between requests and memoized verdicts cover the rest.

    .venv/bin/python bench/extender_bench.py [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

from podvirt.extender.app import ExtenderApp, Settings
from podvirt.extender.state import WatchedCluster
from podvirt.quantity import format_bytes, format_millis
from podvirt.vmspec import PassthroughDevice, demand, parse_vm
from podvirt.vmspec import keys as k

VM = {k.MEMORY: "4Gi", k.VCPUS: "2", k.DISKS: "root=containerdisk:quay.io/x/cirros",
      k.DEVICES: "nvidia.com/gpu=1"}


def node(i: int) -> dict:
    gpus = [PassthroughDevice(f"0000:{0x3b + j:02x}:00.0", "10de", "1db6", "nvidia.com/gpu",
                              j // 2, j).to_json() for j in range(4)]
    alloc = {"memory": "64Gi", "cpu": "32", "podvirt.io/vm": "110",
             "devices.podvirt.io/kvm": "110", "nvidia.com/gpu": "4"}
    return {"metadata": {"name": f"node-{i:05d}", "labels": {k.NODE_KVM_LABEL: "true"},
                         "annotations": {k.NODE_PCI_DEVICES: json.dumps(gpus)}},
            "status": {"allocatable": alloc}}


def pod(name: str, node_name: str | None, devices: list[str] = ()) -> dict:
    dem = demand(parse_vm(VM, name=name))
    requests = {"memory": format_bytes(dem.memory), "cpu": format_millis(dem.cpu_request_millis),
                "podvirt.io/vm": "1", **{n: str(c) for n, c in dem.extended}}
    ann = dict(VM)
    if devices:
        ann[k.ASSIGNED_DEVICES] = json.dumps([{"address": a, "vendor": "10de", "device": "1db6"}
                                              for a in devices])
    spec = {"containers": [{"name": "launcher", "resources": {"requests": requests}}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "default", "uid": name,
                         "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE}, "annotations": ann},
            "spec": spec, "status": {"phase": "Running" if node_name else "Pending"}}


def cluster(n: int, rng: random.Random) -> WatchedCluster:
    state = WatchedCluster()
    nodes = [node(i) for i in range(n)]
    state.replace_nodes(nodes)
    pods = []
    for i in range(n):
        if rng.random() < 0.33:      # a third of the nodes carry VMs already
            for j in range(rng.randint(1, 7)):
                gpus = [f"0000:{0x3b + j:02x}:00.0"] if j < 4 else []
                pods.append(pod(f"vm-{i}-{j}", f"node-{i:05d}", gpus))
    state.replace_pods(pods)
    return state


_LOOP = asyncio.new_event_loop()


def _post(app: ExtenderApp, body: str) -> tuple[float, dict]:
    raw = body.encode()

    async def chunks():
        yield raw

    t0 = time.perf_counter()
    status, _, reply = _LOOP.run_until_complete(app.respond("POST", "/filter", str(len(raw)),
                                                            chunks()))
    elapsed = (time.perf_counter() - t0) * 1000
    out = json.loads(reply)
    assert status == 200 and not out["Error"], reply
    return elapsed, out


def _p99(times: list[float]) -> float:
    return sorted(times)[min(len(times) - 1, int(len(times) * 0.99))]


def measure(n: int, requests: int, rng: random.Random) -> dict:
    state = cluster(n, rng)
    names = state.node_names()
    body = json.dumps({"Pod": pod("new-vm", None), "NodeNames": names})
    # Cold: a fresh app (empty verdict memo) decides every node.
    cold = [_post(ExtenderApp(state, Settings()), body)[0] for _ in range(5)]
    client = ExtenderApp(state, Settings())
    _post(client, body)
    # Steady: between requests one node's usage changes (a VM bound there), as when the
    # scheduler places pods one after another; that node is decided again.
    steady = []
    for i in range(requests):
        state.apply_pod("ADDED", pod(f"churn-{n}-{i}", rng.choice(names)))
        elapsed, out = _post(client, body)
        steady.append(elapsed)
    return {"nodes": n, "cold": statistics.median(cold), "p50": statistics.median(steady),
            "p99": _p99(steady), "passed": len(out["NodeNames"]),
            "failed": len(out["FailedNodes"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sizes", default="100,1000,5000")
    args = parser.parse_args()
    rng = random.Random(7)
    print(f"{'nodes':>6} {'cold ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'passed':>7} {'failed':>7}")
    for n in (int(s) for s in args.sizes.split(",")):
        r = measure(n, args.requests, rng)
        print(f"{r['nodes']:>6} {r['cold']:>8.2f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
              f"{r['passed']:>7} {r['failed']:>7}", flush=True)


if __name__ == "__main__":
    main()
