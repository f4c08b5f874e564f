"""`Cluster`: one local control plane in one state directory.

etcd -> kube-apiserver -> (kube-scheduler, kwok, podvirt webhook, podvirt extender) -> fake
nodes and the webhook registration. Every process is recorded in state.json the moment it
starts, so `down` (or a failed `up`) can stop exactly what was started.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import yaml

from podvirt.cluster import components, inventory, kubeconfig, pki, processes, state, webhooks
from podvirt.cluster.binaries import Binaries, locate
from podvirt.cluster.layout import Layout, default_state_dir
from podvirt.cluster.processes import Probe

Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    """`up`/`down` cannot proceed; the message says why and what to do."""


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def webhook_available() -> bool:
    return _available("podvirt.webhook.cli")


def extender_available() -> bool:
    return _available("podvirt.extender.cli") and _available("podvirt.extender.schedconfig")


def vm_scheduler_name() -> str:
    """The scheduler profile for VM pods that the extender's scheduler config defines."""
    from podvirt.extender.schedconfig import VM_SCHEDULER
    return VM_SCHEDULER


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    port: int
    running: bool
    healthy: bool
    log: str


@dataclass(frozen=True)
class UpOptions:
    inventory: Path = inventory.DEFAULT_INVENTORY
    webhook: bool = True
    extender: bool = True
    webhook_workers: int = 1
    timeout: float = 60.0          # per readiness wait
    vm_nodes_percentage: int = 100  # the VM profile's percentageOfNodesToScore


class Cluster:
    def __init__(self, state_dir: Path | str | None = None, progress: Progress = _print):
        self.layout = Layout(Path(state_dir) if state_dir else default_state_dir())
        self._progress = progress
        self.timings: dict[str, float] = {}
        self._binaries: Binaries | None = None
        self._spawned: dict[str, float] = {}     # component -> monotonic start time

    # --- what tests and the demo use ---------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.layout.root

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def state(self) -> state.ClusterState | None:
        return state.load(self.layout.state_file)

    @property
    def server(self) -> str:
        current = self.state
        if current is None:
            raise ClusterError(f"no cluster in {self.state_dir}")
        return current.server

    def port(self, component: str) -> int:
        current = self.state
        found = current.component(component) if current else None
        if found is None:
            raise ClusterError(f"no component {component!r} in {self.state_dir}")
        return found.port

    @property
    def ca_file(self) -> Path:
        return self.layout.pki / "ca.crt"

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; output is captured as text."""
        cmd = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()}")
        return proc

    def api_client(self):
        from podvirt.cluster.api import new_client
        return new_client(str(self.kubeconfig))

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = locate()
        return self._binaries

    # --- lifecycle --------------------------------------------------------------------------
    def running(self) -> list[state.Component]:
        try:
            current = self.state
        except ValueError as exc:
            raise ClusterError(f"{exc}; stop its processes and delete the file") from None
        return [c for c in current.components if c.running] if current else []

    def up(self, options: UpOptions | None = None, **overrides) -> state.ClusterState:
        """Start the cluster; `overrides` replace UpOptions fields (e.g. extender=False)."""
        options = dataclasses.replace(options or UpOptions(), **overrides)
        live = self.running()
        if live:
            raise ClusterError(f"a cluster is already up in {self.state_dir} "
                               f"({', '.join(c.name for c in live)} running); "
                               f"run `podvirt cluster down --state-dir {self.state_dir}` first")
        if self.layout.state_file.exists():
            self._progress(f"removing stale state in {self.state_dir}")
        self.layout.clear()
        nodes = inventory.load(options.inventory)   # fail on a bad inventory before starting
        use_webhook = options.webhook and webhook_available()
        use_extender = options.extender and extender_available()
        if options.webhook and not use_webhook:
            self._progress("podvirt webhook not installed: skipping it")
        if options.extender and not use_extender:
            self._progress("podvirt extender not installed: scheduling without it")
        started = time.monotonic()
        try:
            current = self._up(options, nodes, use_webhook, use_extender)
        except BaseException:
            self._progress(f"cluster up failed; stopping what started (logs in {self.layout.logs})")
            self._stop_all(keep_state=True)
            raise
        self.timings["total"] = time.monotonic() - started
        self._progress(f"cluster up in {self.timings['total']:.1f}s: "
                       f"export KUBECONFIG={self.kubeconfig}")
        return current

    def down(self) -> bool:
        """Stop every recorded component and remove the state dir; False if none was there."""
        if not self.layout.state_file.exists():
            return False
        self._stop_all(keep_state=False)
        return True

    def status(self) -> list[ComponentStatus]:
        current = self.state
        if current is None:
            return []
        out = []
        for c in current.components:
            running = c.running
            out.append(ComponentStatus(c.name, c.pid, c.port, running,
                                       running and c.probe.ok(), c.log))
        return out

    # --- internals ------------------------------------------------------------------------
    @contextmanager
    def _step(self, name: str, done: str = "ready") -> Iterator[None]:
        start = time.monotonic()
        yield
        self._record(name, done, time.monotonic() - start)

    def _record(self, name: str, done: str, seconds: float) -> None:
        self.timings[name] = seconds
        self._progress(f"{name} {done} in {seconds:.1f}s")

    def _start(self, current: state.ClusterState, name: str, argv: list[str], port: int,
               probe: Probe) -> state.ClusterState:
        log = self.layout.log(name)
        pid, started = processes.spawn(argv, log)
        self._spawned[name] = time.monotonic()
        current = current.with_component(state.Component(name, pid, started, port, str(log),
                                                          probe))
        state.save(self.layout.state_file, current)
        return current

    def _wait(self, current: state.ClusterState, name: str, timeout: float) -> None:
        """Wait for a started component; its timing counts from its start, since components
        boot in parallel and are waited for one after another."""
        c = current.component(name)
        if c is None:
            return
        processes.wait_until(name, c.probe.ok, c.pid, Path(c.log), timeout)
        self._record(name, "ready", time.monotonic() - self._spawned[name])

    def _up(self, options: UpOptions, nodes: tuple[inventory.FakeNode, ...],
            use_webhook: bool, use_extender: bool) -> state.ClusterState:
        layout = self.layout
        self._spawned = {}
        for d in (layout.root, layout.logs, layout.config):
            d.mkdir(parents=True, exist_ok=True)
        with self._step("binaries", "located"):
            b = self.binaries
        with self._step("certificates", "issued"):
            keys = pki.create(layout.pki)
        ports = components.Ports(*(processes.free_port()
                                   for _ in dataclasses.fields(components.Ports)))
        server = f"https://127.0.0.1:{ports.apiserver}"
        kubeconfig.write(layout.kubeconfig, kubeconfig.render(server, keys.ca, *keys.pair("admin")))
        current = state.ClusterState(server=server, kubeconfig=str(layout.kubeconfig))
        state.save(layout.state_file, current)
        # With the extender, VM pods go to its VM profile (see schedconfig); without it
        # the scheduler has only the stock profile.
        vm_scheduler = vm_scheduler_name() if use_extender else "default-scheduler"
        current = self._start_api(current, b, keys, ports, options, use_webhook, vm_scheduler)
        current = self._start_addons(current, b, keys, ports, use_extender,
                                     options.vm_nodes_percentage)
        self._populate(current, keys, ports, nodes, options, use_webhook)
        return current

    def _start_api(self, current: state.ClusterState, b: Binaries, keys: pki.Pki,
                   ports: components.Ports, options: UpOptions,
                   use_webhook: bool, vm_scheduler: str) -> state.ClusterState:
        """etcd, then kube-apiserver; the webhook boots alongside the API server."""
        layout, ca = self.layout, str(keys.ca)
        current = self._start(current, "etcd", components.etcd(b, layout, ports), ports.etcd,
                              Probe(f"http://127.0.0.1:{ports.etcd}/health"))
        self._wait(current, "etcd", options.timeout)
        admin = tuple(str(p) for p in keys.pair("admin"))
        current = self._start(current, "kube-apiserver", components.kube_apiserver(b, layout, ports),
                              ports.apiserver, Probe(f"{current.server}/readyz", ca, admin))
        if use_webhook:
            current = self._start(current, "webhook",
                                  components.webhook(layout, ports, options.webhook_workers,
                                                     vm_scheduler),
                                  ports.webhook,
                                  Probe(f"https://127.0.0.1:{ports.webhook}/healthz", ca))
        self._wait(current, "kube-apiserver", options.timeout)
        return current

    def _start_addons(self, current: state.ClusterState, b: Binaries, keys: pki.Pki,
                      ports: components.Ports, use_extender: bool,
                      vm_nodes_percentage: int = 100) -> state.ClusterState:
        """Extender, kube-scheduler (configured for the extender) and kwok, all at once."""
        layout = self.layout
        extender_yaml = None
        if use_extender:
            from podvirt.extender.schedconfig import render_scheduler_config
            extender_url = f"https://127.0.0.1:{ports.extender}"
            extender_yaml = render_scheduler_config(extender_url, ca_file=str(keys.ca),
                                                    kubeconfig=str(layout.kubeconfig),
                                                    vm_nodes_percentage=vm_nodes_percentage)
            current = self._start(current, "extender", components.extender(layout, ports),
                                  ports.extender, Probe(f"{extender_url}/healthz", str(keys.ca)))
        sched_file = layout.config / "kube-scheduler.yaml"
        sched_file.write_text(components.scheduler_config(layout, extender_yaml))
        current = self._start(current, "kube-scheduler",
                              components.kube_scheduler(b, str(sched_file), ports),
                              ports.scheduler, Probe(f"https://127.0.0.1:{ports.scheduler}/healthz"))
        kwok_file = layout.config / "kwok.yaml"
        kwok_file.write_text(yaml.safe_dump(components.KWOK_CONFIG))
        return self._start(current, "kwok", components.kwok(b, layout, ports, str(kwok_file)),
                           ports.kwok, Probe(f"http://127.0.0.1:{ports.kwok}/healthz"))

    def _populate(self, current: state.ClusterState, keys: pki.Pki, ports: components.Ports,
                  nodes: tuple[inventory.FakeNode, ...], options: UpOptions,
                  use_webhook: bool) -> None:
        """Fake nodes and the webhook registration, then wait until both take effect."""
        from podvirt.cluster import api
        client = api.new_client(str(self.layout.kubeconfig))
        with self._step(f"{len(nodes)} fake nodes", "created"):
            api.create_nodes(client, nodes)
        for name in ("kwok", "kube-scheduler", "extender", "webhook"):
            self._wait(current, name, options.timeout)
        with self._step("nodes", "Ready"):
            api.wait_nodes_ready(client, {n.name for n in nodes}, options.timeout)
        if use_webhook:
            with self._step("webhook registration", "active"):
                api.apply_webhook_configuration(client, webhooks.mutating_webhook_configuration(
                    f"https://127.0.0.1:{ports.webhook}/mutate", keys.ca.read_bytes()))
                api.wait_webhook_active(client, webhooks.WEBHOOK_NAME, options.timeout)

    def _stop_all(self, keep_state: bool) -> None:
        current = self.state
        live = [c for c in (current.components if current else ()) if c.running]
        if live:
            # All at once: nothing has to outlive anything else in a throwaway cluster.
            with self._step(f"{len(live)} components", "stopped"):
                processes.stop_all([c.pid for c in live])
        if not keep_state:
            self.layout.clear()
