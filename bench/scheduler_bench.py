"""kube-scheduler throughput (pods/s) at 1000 kwok nodes: VM pods through podvirt's
extender, through the protocol floor, and without an extender; plain pods with and without.

Local clusters (podvirt.cluster), one after the other, each with a generated 1000-node
inventory: the extender as shipped; the protocol floor (`loadgen extender-floor`, a Go
extender that decides nothing, in the extender's place: same port, certificate and
kube-scheduler configuration, so the same verbs and managedResources; Go's server offers
HTTP/2, which kube-scheduler takes: one multiplexed connection, as podvirt's granian server
does), the same floor on HTTP/1.1 only (not a target: what HTTP/2 saves); the
Python floor (extender_python_floor.py: podvirt's extender process, server, watches and
Binding call, with its decisions taken out: not a target, it separates the decisions from
the Python stack); no extender; and, with --setups, the extender with the VM profile
sampling nodes as kube-scheduler does by default (what scoring every node costs). Per case,
after 20 untimed warm-up pods and once the components are back near their idle CPU (kwok
still starts the pods of the case before), the pods are created while kube-scheduler is
paused (SIGSTOP), so neither creation nor the webhook is timed and the whole queue is there at once; the time runs from resuming it (SIGCONT) to
the last pod seen bound by a watch. kube-scheduler's own /metrics give the mean
scheduling-cycle time (filter + score, extender calls included). Each component's CPU per
pod is printed whole and beyond its idle rate (kwok's heartbeats for the nodes, and the
API server and etcd serving them, measured before the cluster's first case), which a
slower case would otherwise carry more of per pod without doing more.

Targets, each the median of --runs paired runs (every setup once per run, ratios within a
run): VM pods via the extender >= 0.7x the floor (podvirt's own cost), >= 0.5x no extender
(the protocol's cost); plain pods >= 0.95x no extender.

    .venv/bin/python bench/scheduler_bench.py [--runs 3] [--nodes 1000] [--pods 400]
        [--plain-pods 1200] [--setups extender,floor (Go),floor (Go HTTP/1.1),floor (Python),none]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from loadgen_bin import build_loadgen
from podvirt.vmspec import keys as k
from proctree import cpu_seconds, process_tree



def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def inventory(nodes: int) -> str:
    """Identical roomy hosts: the scheduler's work, not capacity, decides the placements."""
    return yaml.safe_dump({
        "defaults": {"labels": {k.NODE_KVM_LABEL: "true"},
                     "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110",
                                  k.VM_MARKER_RESOURCE: "110", "devices.podvirt.io/kvm": "1k",
                                  "devices.podvirt.io/tun": "1k",
                                  "devices.podvirt.io/vhost-net": "1k"}},
        "nodes": [{"name": f"bench-{i:04d}"} for i in range(nodes)]})


def vm_pod(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE},
                         "annotations": {k.VCPUS: "1", k.MEMORY: "1Gi",
                                         k.DISKS: "root=containerdisk:quay.io/containerdisks/debian:12"}},
            "spec": {"containers": []}}


def plain_pod(name: str) -> dict:
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                     "resources": {"requests": {"cpu": "100m",
                                                                "memory": "128Mi"}}}]}}


@dataclass(frozen=True)
class Result:
    setup: str              # a key of SETUPS
    kind: str
    pods: int
    seconds: float          # scheduler resumed -> last bound
    filter_calls: float | None   # from podvirt extender's /metrics (None: not measured)
    cycle_ms: float         # mean filter+score time per pod (extenders included), serial
    in_tree_ms: float       # of which kube-scheduler's own (pre)filter and (pre)score plugins
    cpu: dict[str, float]   # CPU seconds per component, resume -> last bound
    connections: int | None = None   # TCP connections opened to the extender's port
    idle: dict[str, float] | None = None   # CPU seconds per second with nothing to schedule

    def beyond_idle(self) -> dict[str, float]:
        """CPU seconds per component the pods cost beyond what the component spends idle
        for as long as the case ran (kwok's node heartbeats, the API server and etcd
        serving them): a slower case carries more of that per pod without doing more."""
        idle = self.idle or {}
        return {name: sec - idle.get(name, 0.0) * self.seconds for name, sec in self.cpu.items()}

    @property
    def rate(self) -> float:
        return self.pods / self.seconds


class BindWatch:
    """Counts pods of a namespace bound to a node, from a watch started before the
    scheduler resumes. Raw JSON events through the extender's own API reader: the
    kubernetes client's watch built a V1Pod model per event, ~1 ms of this process's CPU
    each, taken from the 2 cores it measures."""

    def __init__(self, api_client, namespace: str, expected: int):
        from podvirt.extender.kube import KubeClient
        self._api = KubeClient(api_client)
        self.namespace = namespace
        items, version = self._api.list("pods")
        self.bound: set[str] = set()
        self.expected, self.last = expected, 0.0
        self.done = threading.Event()
        self._note(items)
        self._thread = threading.Thread(target=self._run, daemon=True, args=(version,))
        self._thread.start()

    def _note(self, pods) -> None:
        for pod in pods:
            meta = pod.get("metadata") or {}
            if meta.get("namespace") == self.namespace and (pod.get("spec") or {}).get("nodeName"):
                self._saw(meta["name"])

    def _run(self, version: str) -> None:
        # A watch that breaks (timeout, dropped connection, 410) is resumed from a fresh
        # list, so a lost stream cannot leave the benchmark waiting for binds it missed.
        while not self.done.is_set():
            try:
                for _, pod in self._api.watch("pods", version, 60):
                    version = (pod.get("metadata") or {}).get("resourceVersion") or version
                    self._note([pod])
                    if self.done.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - any break is handled by re-listing
                log(f"  watch broke ({type(exc).__name__}: {exc}); re-listing")
            items, version = self._api.list("pods")
            self._note(items)

    def _saw(self, name: str) -> None:
        if name not in self.bound:
            self.bound.add(name)
            self.last = time.monotonic()
            if len(self.bound) >= self.expected:
                self.done.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)


def metric_sum(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def in_tree_seconds(text: str) -> float:
    """Seconds kube-scheduler spent in its own PreFilter/Filter/PreScore/Score plugins
    (all profiles): the rest of a scheduling cycle is the extenders' round trips."""
    return sum(float(v) for v in re.findall(
        r'^scheduler_framework_extension_point_duration_seconds_sum\{[^}]*'
        r'extension_point="(?:PreFilter|Filter|PreScore|Score)"[^}]*\} (\S+)$', text, re.M))


def extender_metrics(cluster) -> str:
    return requests.get(f"https://127.0.0.1:{cluster.port('extender')}/metrics",
                        verify=str(cluster.ca_file), timeout=10).text


def quantile(text: str, name: str, q: float) -> float:
    """Upper bound of the histogram bucket holding quantile q."""
    buckets = [(float(le), float(v)) for le, v in
               re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M)]
    total = buckets[-1][1] if buckets else 0.0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")


def scheduler_metrics(cluster) -> str:
    # kube-scheduler serves a self-signed certificate it made itself (--cert-dir), on
    # loopback; nothing in the cluster's CA vouches for it.
    import urllib3
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return requests.get(f"https://127.0.0.1:{cluster.port('kube-scheduler')}/metrics",
                        verify=False, timeout=10).text


ALGORITHM = "scheduler_scheduling_algorithm_duration_seconds"
COMPONENTS = ("kube-apiserver", "kube-scheduler", "extender", "kwok", "etcd", "webhook")


def component_cpu(cluster, replaced: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each running component (all threads and child processes);
    `replaced` names components whose process the bench swapped (name -> pid)."""
    pids = {name: component.pid for name in COMPONENTS
            if (component := cluster.state.component(name)) is not None}
    return {name: cpu_seconds(process_tree(pid)) for name, pid in {**pids, **replaced}.items()}


PYTHON_FLOOR = Path(__file__).with_name("extender_python_floor.py")


@contextmanager
def extender_floor(cluster, floor: str):
    """podvirt's extender process swapped for a floor on the same port and certificate, so
    kube-scheduler's configuration is untouched; yields the floor's pid.

    "go": `loadgen extender-floor` (watches pods and nodes, passes and scores every node
    alike, binds). Go's server offers HTTP/2, which kube-scheduler's client takes (every
    call multiplexed on one connection), as podvirt's granian does; "go-http1" serves
    HTTP/1.1 only. "python": extender_python_floor.py, podvirt's own server, wire decoding,
    watches and Binding call with the decisions taken out."""
    from podvirt.cluster.processes import alive   # reaps the zombie our child leaves
    extender = cluster.state.component("extender")
    os.killpg(extender.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while alive(extender.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(extender.pid):
        raise SystemExit(f"the extender (pid {extender.pid}) did not stop; cannot swap in the floor")
    pki, log_path = cluster.layout.pki, cluster.layout.logs / f"extender-floor-{floor}.log"
    cert, key = str(pki / "extender.crt"), str(pki / "extender.key")
    python_args = ["--port", str(extender.port), "--cert", cert, "--key", key,
                   "--kubeconfig", str(cluster.layout.kubeconfig)]
    if floor == "python":
        cmd = [sys.executable, str(PYTHON_FLOOR), *python_args]
    else:
        cmd = [str(build_loadgen()), "extender-floor", "-listen", f"127.0.0.1:{extender.port}",
               "-cert", cert, "-key", key, "-apiserver", cluster.server,
               "-api-ca", str(pki / "ca.crt"), "-api-cert", str(pki / "admin.crt"),
               "-api-key", str(pki / "admin.key"), *(["-http1"] if floor == "go-http1" else [])]
    with open(log_path, "w") as log_file:
        # Its own session: stopped with whatever it starts.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True,
                                start_new_session=True)
    try:
        if not _floor_ready(cluster, floor, proc):
            raise SystemExit(f"extender floor {floor} did not start: {log_path.read_text()}")
        yield proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _floor_ready(cluster, floor: str, proc: subprocess.Popen) -> bool:
    """The Go floor says "listening" once its port is bound; the Python ones are ready
    once their watches have listed nodes and pods (/readyz), as the extender is."""
    if floor in ("go", "go-http1"):
        return proc.stdout.readline().startswith("listening")
    url = f"https://127.0.0.1:{cluster.state.component('extender').port}/readyz"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url, verify=str(cluster.ca_file), timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False


@contextmanager
def paused(pid: int):
    """kube-scheduler stopped (not killed) while the queue fills; always resumed."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


WARMUP_PODS = 20


def warm_up(core, namespace: str, make, kind: str) -> None:
    """Schedule a few pods of the kind first, untimed: a long-running scheduler and
    extender have their connections open, code loaded and per-shape verdicts memoized,
    which a fresh cluster pays for on its first pods (a one-off ~0.5 s here)."""
    for i in range(WARMUP_PODS):
        core.create_namespaced_pod(namespace, make(f"warmup-{kind}-{i:02d}"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(p.spec.node_name for p in core.list_namespaced_pod(namespace).items):
            return
        time.sleep(0.2)
    raise SystemExit(f"{WARMUP_PODS} warm-up {kind} pods not bound within 60s")


class OpenedConnections:
    """TCP connections opened to `port`, counted exactly: an iptables rule in INPUT that
    counts the SYNs sent to it (loopback traffic passes INPUT too), removed on close.

    Counting the connections that ended by their TIME-WAIT sockets (an earlier version)
    misses those that leave none (ended by a reset): for the HTTP/1.1 Go floor it showed
    0-1 per case while `ss` samples every 0.2 s saw it hold 129 different ones in one case.
    None without a port or when iptables cannot be used (not root, no iptables)."""

    def __init__(self, port: int | None):
        self._rule = ["INPUT", "-p", "tcp", "--syn", "--dport", str(port), "-m", "comment",
                      "--comment", f"podvirt-bench-{os.getpid()}-{port}"]
        self.usable = port is not None and shutil.which("iptables") is not None and \
            subprocess.run(["iptables", "-w", "-I", *self._rule],
                           capture_output=True).returncode == 0

    def __enter__(self) -> "OpenedConnections":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def count(self) -> int | None:
        if not self.usable:
            return None
        out = subprocess.run(["iptables", "-w", "-L", "INPUT", "-v", "-x", "-n"],
                             capture_output=True, text=True, check=True).stdout
        tag = self._rule[-1]
        return sum(int(line.split()[0]) for line in out.splitlines() if tag in line)

    def close(self) -> None:
        if self.usable:
            subprocess.run(["iptables", "-w", "-D", *self._rule], capture_output=True)
            self.usable = False


def cpu_now(cluster, replaced: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of every component and of this process."""
    return {**component_cpu(cluster, replaced), "bench": _own_cpu()}


IDLE_SECONDS = 3.0


def idle_rates(cluster, replaced: dict[str, int]) -> dict[str, float]:
    """CPU seconds per second of each component while nothing is scheduled: once per
    cluster, before its first case (after a case, kwok is still starting its pods)."""
    return cpu_rates(cluster, replaced, IDLE_SECONDS)


def cpu_rates(cluster, replaced: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds per second of each component (and this process) over `seconds`."""
    before, t0 = cpu_now(cluster, replaced), time.monotonic()
    time.sleep(seconds)
    after, wall = cpu_now(cluster, replaced), time.monotonic() - t0
    return {name: (after[name] - before[name]) / wall for name in after if name in before}


SETTLE_MARGIN, SETTLE_LIMIT = 0.15, 60.0   # cores above idle; seconds


def settle(cluster, replaced: dict[str, int], idle: dict[str, float]) -> float:
    """Wait until the components are back near their idle rate (within SETTLE_MARGIN of a
    core, over 1 s): after a case kwok is still starting its pods (init containers, then
    Running), and that work, with the API server's and etcd's share of it, would otherwise
    be timed as the next case's. Returns the seconds waited."""
    started = time.monotonic()
    quiet = sum(v for name, v in idle.items() if name != "bench") + SETTLE_MARGIN
    while time.monotonic() - started < SETTLE_LIMIT:
        rates = cpu_rates(cluster, replaced, 1.0)
        if sum(v for name, v in rates.items() if name != "bench") <= quiet:
            break
    return time.monotonic() - started


def _own_cpu() -> float:
    """This process's CPU seconds (the bind watch): it shares the 2 cores it measures."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(cluster, core, setup: str, kind: str, count: int,
             replaced: dict[str, int], idle: dict[str, float]) -> Result:
    extender = SETUPS[setup].extender and not replaced   # podvirt's, with its /metrics
    namespace = f"bench-{kind}"
    core.create_namespace({"metadata": {"name": namespace}})
    make = vm_pod if kind == "vm" else plain_pod
    warm_up(core, namespace, make, kind)
    # After the warm-up (and any earlier case): kwok starts those pods after their bind.
    log(f"  cluster quiet after {settle(cluster, replaced, idle):.1f}s")
    algo_before = scheduler_metrics(cluster)
    calls_before = metric_sum(extender_metrics(cluster), "podvirt_extender_filter_seconds_count") \
        if extender else 0.0
    # Its own API client and pool: the creating threads must not hold up the watch's reads.
    # The warm-up pods are in the namespace, bound already, and count toward it.
    watch = BindWatch(cluster.api_client(), namespace, count + WARMUP_PODS)
    port = cluster.state.component("extender").port if SETUPS[setup].extender else None
    # Timed: pods created while the scheduler is paused, then bound.
    with OpenedConnections(port) as opened:
        opened0 = opened.count()
        with paused(cluster.state.component("kube-scheduler").pid):
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: core.create_namespaced_pod(
                    namespace, make(f"{kind}-{i:04d}")), range(count)))
            log(f"  {count} {kind} pods created in {time.monotonic() - started:.1f}s "
                f"(scheduler paused)")
            t0 = time.monotonic()
            cpu0 = cpu_now(cluster, replaced)
        if not watch.wait(240):
            raise SystemExit(f"only {len(watch.bound)}/{count} {kind} pods bound after 240s")
        cpu1 = cpu_now(cluster, replaced)
        opened1 = opened.count()
    new_conns = None if opened1 is None or opened0 is None else opened1 - opened0
    calls = (metric_sum(extender_metrics(cluster), "podvirt_extender_filter_seconds_count")
             - calls_before) if extender else None
    algo = scheduler_metrics(cluster)
    algo_n = metric_sum(algo, f"{ALGORITHM}_count") - metric_sum(algo_before, f"{ALGORITHM}_count")
    algo_s = metric_sum(algo, f"{ALGORITHM}_sum") - metric_sum(algo_before, f"{ALGORITHM}_sum")
    in_tree = in_tree_seconds(algo) - in_tree_seconds(algo_before)
    result = Result(setup, kind, count, watch.last - t0, calls,
                    1000 * algo_s / algo_n if algo_n else float("nan"),
                    1000 * in_tree / algo_n if algo_n else float("nan"),
                    {name: cpu1[name] - cpu0[name] for name in cpu1 if name in cpu0}, new_conns,
                    idle)
    log(f"  {kind}: {result.rate:.1f} pods/s ({result.seconds:.1f}s; "
        f"{'-' if calls is None else f'{calls:.0f}'} extender filter calls; "
        f"{'-' if new_conns is None else new_conns} connections opened to the extender; "
        f"{result.cycle_ms:.1f} ms per scheduling cycle, {result.in_tree_ms:.1f} of it in-tree "
        "plugins; "
        f"CPU s: {cpu_line(result)})")
    return result


def cpu_line(r: Result) -> str:
    return " ".join(f"{name}={seconds:.2f}" for name, seconds in r.cpu.items())


@dataclass(frozen=True)
class Setup:
    extender: bool
    vm_nodes_percentage: int = 100
    # In podvirt's extender's place: "go", "go-http1", "python".
    floor: str | None = None


SETUPS = {"extender": Setup(True), "extender sampled": Setup(True, 0),
          "floor (Go)": Setup(True, floor="go"),
          "floor (Go HTTP/1.1)": Setup(True, floor="go-http1"),
          "floor (Python)": Setup(True, floor="python"), "none": Setup(False)}


def run_cluster(setup: str, inventory_file: Path, pods: dict[str, int],
                kinds: tuple[str, ...] = ("vm", "plain")) -> tuple[list[Result], str]:
    from kubernetes import client
    from podvirt.cluster.cluster import Cluster, UpOptions
    chosen = SETUPS[setup]
    with tempfile.TemporaryDirectory(prefix="podvirt-bench-") as state_dir:
        cluster = Cluster(state_dir, progress=lambda m: log(f"  {m}"))
        log(f"cluster, {setup}: up")
        try:
            cluster.up(UpOptions(inventory=inventory_file, extender=chosen.extender, timeout=300,
                                 vm_nodes_percentage=chosen.vm_nodes_percentage, node=False))
            core = client.CoreV1Api(cluster.api_client())
            with ExitStack() as stack:
                replaced = ({"extender": stack.enter_context(extender_floor(cluster, chosen.floor))}
                            if chosen.floor else {})
                idle = idle_rates(cluster, replaced)
                results = [run_case(cluster, core, setup, kind, pods[kind], replaced, idle)
                           for kind in kinds]
            metrics = extender_metrics(cluster) if chosen.extender and not chosen.floor else ""
        finally:
            cluster.down()
    return results, metrics


TARGETS = (  # (what, kind, setup, baseline setup, ratio)
    ("VM pods, extender vs floor (Go)", "vm", "extender", "floor (Go)", 0.7),
    # Not a target: the same comparison on one protocol (see extender_floor).
    ("VM pods, extender vs floor (Go HTTP/1.1)", "vm", "extender", "floor (Go HTTP/1.1)", None),
    # Not targets: what podvirt's decisions cost (the same Python process without them),
    # and what its Python stack costs against Go.
    ("VM pods, extender vs floor (Python)", "vm", "extender", "floor (Python)", None),
    ("VM pods, floor (Python) vs floor (Go)", "vm", "floor (Python)", "floor (Go)", None),
    ("VM pods, extender vs none", "vm", "extender", "none", 0.5),
    ("plain pods, extender vs none", "plain", "extender", "none", 0.95),
)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def one_run(chosen: list[str], inv: Path, pods: dict[str, int]) -> tuple[list[Result], str]:
    results, metrics = [], ""
    for setup in SETUPS:   # in this order, so the table reads the same every run
        if setup in chosen:
            kinds = ("vm", "plain") if setup in ("extender", "none") else ("vm",)
            got, text = run_cluster(setup, inv, pods, kinds)
            results += got
            metrics = metrics or text
    return results, metrics


def print_run(results: list[Result], number: int) -> None:
    base = {r.kind: r for r in results if r.setup == "none"}
    print(f"\nrun {number}:")
    print(f"{'pods':<7}{'setup':<22}{'pods/s':>9}{'seconds':>9}"
          f"{'filters':>9}{'conns':>7}{'cycle ms':>10}{'in-tree':>9}{'vs none':>10}")
    for r in results:
        print(f"{r.kind:<7}{r.setup:<22}{r.rate:>9.1f}{r.seconds:>9.1f}"
              f"{'-' if r.filter_calls is None else f'{r.filter_calls:.0f}':>9}"
              f"{'-' if r.connections is None else r.connections:>7}"
              f"{r.cycle_ms:>10.2f}{r.in_tree_ms:>9.2f}{r.rate / base[r.kind].rate:>9.2f}x")
    for title, cpu in (("CPU ms per pod from resume to the last bind (2 cores):",
                        lambda r: r.cpu),
                       (f"of which beyond each component's idle rate (measured for {IDLE_SECONDS:.0f} s "
                        "before the cluster's first case) times the case's seconds:",
                        Result.beyond_idle)):
        print(title)
        for r in results:
            per = cpu(r)
            print(f"  {r.kind:<6}{r.setup:<22}{1000 * sum(per.values()) / r.pods:6.1f} total: "
                  + " ".join(f"{name}={1000 * sec / r.pods:.1f}" for name, sec in per.items()))
    print("idle CPU (cores) per cluster: " + "; ".join(
        f"{r.setup}: " + " ".join(f"{n}={v:.2f}" for n, v in (r.idle or {}).items() if v >= 0.005)
        for r in results if r.kind == "vm"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="paired runs; targets use the median")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=400, help="VM pods per case")
    # Plain pods schedule 5x faster: 400 of them were a 1 s case, mostly start-up noise.
    parser.add_argument("--plain-pods", type=int, default=1200, help="plain pods per case")
    parser.add_argument("--setups",
                        default="extender,floor (Go),floor (Go HTTP/1.1),floor (Python),none",
                        help=f"comma-separated subset of: {', '.join(SETUPS)} "
                             "(ratios need 'none')")
    args = parser.parse_args()
    chosen = args.setups.split(",")
    if not set(chosen) <= set(SETUPS) or "none" not in chosen or args.runs < 1:
        parser.error(f"--setups: choose from {', '.join(SETUPS)}, including none; --runs >= 1")
    runs: list[list[Result]] = []
    metrics = ""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="podvirt-bench-inv-") as tmp:
        inv = Path(tmp) / "nodes.yaml"
        inv.write_text(inventory(args.nodes))
        for number in range(1, args.runs + 1):
            log(f"run {number} of {args.runs}")
            results, text = one_run(chosen, inv, {"vm": args.pods, "plain": args.plain_pods})
            runs.append(results)
            metrics = text or metrics
    print(f"\nkube-scheduler throughput, {args.nodes} kwok nodes, {args.pods} VM and "
          f"{args.plain_pods} plain pods per case, {args.runs} run(s) "
          f"(took {time.monotonic() - started:.0f}s)")
    for number, results in enumerate(runs, 1):
        print_run(results, number)
    print("cycle ms: kube-scheduler's mean scheduling_algorithm_duration (filter + score, "
          "extender calls included; one pod at a time); in-tree: its own plugins' share, the "
          "rest is the extender round trips")
    print(f"\ntargets, median of {len(runs)} run(s):")
    for what, kind, setup, baseline, target in TARGETS:
        ratios = []
        for results in runs:
            rate = {(r.kind, r.setup): r.rate for r in results}
            if (kind, setup) in rate and (kind, baseline) in rate:
                ratios.append(rate[kind, setup] / rate[kind, baseline])
        if ratios:
            got = median(ratios)
            verdict = ("(no target)" if target is None else
                       f"target {target}x: {'met' if got >= target else 'MISS'}")
            print(f"  {what}: {got:.2f}x (runs: {', '.join(f'{x:.2f}' for x in ratios)}) "
                  f"{verdict}")
    for setup in (s for s, chosen in SETUPS.items() if chosen.extender):
        per_pod = [1000 * r.cpu.get("extender", 0.0) / r.pods
                   for results in runs for r in results if r.setup == setup and r.kind == "vm"]
        if per_pod:
            print(f"  CPU per VM pod of the {setup} process: {median(per_pod):.1f} ms "
                  f"(runs: {', '.join(f'{x:.1f}' for x in per_pod)})")
    name = "podvirt_extender_filter_seconds"
    count, total = metric_sum(metrics, f"{name}_count"), metric_sum(metrics, f"{name}_sum")
    if count:
        print(f"\nextender filter latency over {count:.0f} calls (last run): mean "
              f"{1000 * total / count:.2f} ms, p50 <= {1000 * quantile(metrics, name, .5):g} ms, "
              f"p99 <= {1000 * quantile(metrics, name, .99):g} ms (histogram bucket bounds)")
    for verb in ("prioritize", "bind"):
        n = metric_sum(metrics, f"podvirt_extender_{verb}_seconds_count")
        if n:
            mean = 1000 * metric_sum(metrics, f"podvirt_extender_{verb}_seconds_sum") / n
            print(f"extender {verb}: {n:.0f} calls, mean {mean:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
