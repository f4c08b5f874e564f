"""`Cluster`: one local cluster in one state directory.

etcd -> kube-apiserver -> (kube-controller-manager, kube-scheduler, kwok) -> fake nodes,
and then one of two ways to run podvirt:

- with the real node (the default): containerd + kubelet + kube-proxy make this machine a
  node, the images built here are loaded into its containerd, and podvirt is installed by
  its Helm chart as real pods on it (chart.py); VMs boot in launcher pods there.
- without it (`node=False`, the scheduling tests and benchmarks): the podvirt webhook and
  extender run as host processes next to the control plane and only kwok's fake nodes exist.

Every process is recorded in state.json the moment it starts, so `down` (or a failed `up`)
can stop exactly what was started.
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

from podvirt.cluster import chart, components, images, inventory, kubeconfig, node, nodehost, \
    pki, processes, state, webhooks
from podvirt.cluster.binaries import Binaries, locate
from podvirt.cluster.layout import Layout, default_state_dir
from podvirt.cluster.node import NodeLayout
from podvirt.cluster.processes import Probe
from podvirt.vmspec import keys as k
from podvirt.vmspec.contract import DEFAULT_CONTRACT, Contract, ContractInvalid, load_contract

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
    """The scheduler profile for VM pods without a contract file (UpOptions.contract): the
    VM profile of the extender's scheduler config."""
    return DEFAULT_CONTRACT.scheduler_name


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
    # This machine as a real node with podvirt installed by its chart (webhook and
    # extender then run as pods, not as the host processes the two flags above choose).
    node: bool = True
    chart_timeout: float = 300.0    # helm install --wait, image builds not included
    # The contract file (vmspec/contract.py) the webhook and extender get as --contract, or
    # the chart as its `contract:` values; None: the defaults.
    contract: Path | None = None


class Cluster:
    def __init__(self, state_dir: Path | str | None = None, progress: Progress = _print):
        self.layout = Layout(Path(state_dir) if state_dir else default_state_dir())
        self._progress = progress
        self.timings: dict[str, float] = {}
        self._binaries: Binaries | None = None
        self._spawned: dict[str, float] = {}     # component -> monotonic start time
        self.node_layout = NodeLayout()

    # --- what tests and the demo use ---------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.layout.root

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def state(self) -> state.ClusterRecord | None:
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

    def up(self, options: UpOptions | None = None, **overrides) -> state.ClusterRecord:
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
        try:
            contract = load_contract(options.contract) if options.contract else DEFAULT_CONTRACT
        except ContractInvalid as exc:
            raise ClusterError(f"contract: {exc}") from None
        # With the real node podvirt runs from its chart; host processes only without it.
        use_webhook = options.webhook and not options.node and webhook_available()
        use_extender = options.extender and not options.node and extender_available()
        if options.webhook and not options.node and not use_webhook:
            self._progress("podvirt webhook not installed: skipping it")
        if options.extender and not options.node and not use_extender:
            self._progress("podvirt extender not installed: scheduling without it")
        if options.node:
            nodehost.check_prerequisites()
        started = time.monotonic()
        try:
            current = self._up(options, nodes, use_webhook, use_extender, contract)
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

    def _start(self, current: state.ClusterRecord, name: str, argv: list[str], port: int,
               probe: Probe) -> state.ClusterRecord:
        log = self.layout.log(name)
        pid, started = processes.spawn(argv, log)
        self._spawned[name] = time.monotonic()
        current = current.with_component(state.Component(name, pid, started, port, str(log),
                                                          probe))
        state.save(self.layout.state_file, current)
        return current

    def _wait(self, current: state.ClusterRecord, name: str, timeout: float) -> None:
        """Wait for a started component; its timing counts from its start, since components
        boot in parallel and are waited for one after another."""
        c = current.component(name)
        if c is None:
            return
        processes.wait_until(name, c.probe.ok, c.pid, Path(c.log), timeout)
        self._record(name, "ready", time.monotonic() - self._spawned[name])

    def _up(self, options: UpOptions, nodes: tuple[inventory.FakeNode, ...],
            use_webhook: bool, use_extender: bool, contract: Contract) -> state.ClusterRecord:
        layout = self.layout
        self._spawned = {}
        for d in (layout.root, layout.logs, layout.config):
            d.mkdir(parents=True, exist_ok=True)
        with self._step("binaries", "located"):
            b = self.binaries
        built: tuple[images.Image, ...] = ()
        if options.node:
            with self._step("images", "built or cached"):
                built = images.ensure(self._progress)
            with self._step("real node's host network", "prepared"):
                self._claim_node()
                nodehost.prepare_network()
        with self._step("certificates", "issued"):
            keys = pki.create(layout.pki)
        # Every port at once, so no two components share one.
        n_control = len(dataclasses.fields(components.Ports))
        picked = processes.free_ports(n_control + len(dataclasses.fields(node.NodePorts)))
        ports = components.Ports(*picked[:n_control])
        address = node.NODE_IP if options.node else "127.0.0.1"
        server = f"https://{address}:{ports.apiserver}"
        for name, stem in (("kubeconfig", "admin"), ("controller-manager", "controller-manager"),
                           ("kube-proxy", "kube-proxy"), ("kubelet", "node")):
            kubeconfig.write(self._kubeconfig(name),
                             kubeconfig.render(server, keys.ca, *keys.pair(stem)))
        current = state.ClusterRecord(server=server, kubeconfig=str(layout.kubeconfig))
        state.save(layout.state_file, current)
        node_ports = None
        if options.node:
            node_ports = node.NodePorts(*picked[n_control:])
            # containerd needs no API server: it loads the images meanwhile.
            current = self._start_containerd(current, keys, node_ports)
        # With the extender, VM pods go to its VM profile (see schedconfig); without it
        # (and without the node, whose chart brings the profile) the host scheduler has
        # only the stock profile.
        host_contract = contract
        if not use_extender and not options.node:
            host_contract = dataclasses.replace(contract, scheduler_name="default-scheduler")
        # One file for both host processes: they parse and price VMs alike.
        contract_file = layout.config / "contract.yaml"
        contract_file.write_text(yaml.safe_dump(host_contract.document(), sort_keys=False))
        current = self._start_api(current, b, keys, ports, options, use_webhook, contract_file,
                                  address)
        current = self._start(current, "kube-controller-manager",
                              components.kube_controller_manager(
                                  b, layout, ports, self._kubeconfig("controller-manager"),
                                  hostpath_provisioner=options.node),
                              ports.controller_manager,
                              Probe(f"https://127.0.0.1:{ports.controller_manager}/healthz"))
        current = self._start_addons(current, b, keys, ports, use_extender, contract_file,
                                     host_contract, options.vm_nodes_percentage)
        if node_ports is not None:
            current = self._start_node(current, b, built, node_ports, options)
        self._populate(current, keys, ports, nodes, options, use_webhook)
        if options.node:
            current = self._install_podvirt(current, b, ports, options, contract)
        return current

    def _kubeconfig(self, name: str) -> Path:
        """The admin's kubeconfig, or the one of a component with its own identity."""
        return self.layout.kubeconfig if name == "kubeconfig" \
            else self.layout.config / f"{name}.kubeconfig"

    def _start_api(self, current: state.ClusterRecord, b: Binaries, keys: pki.Pki,
                   ports: components.Ports, options: UpOptions,
                   use_webhook: bool, contract_file: Path, address: str) -> state.ClusterRecord:
        """etcd, then kube-apiserver; the webhook boots alongside the API server."""
        layout, ca = self.layout, str(keys.ca)
        current = self._start(current, "etcd", components.etcd(b, layout, ports), ports.etcd,
                              Probe(f"http://127.0.0.1:{ports.etcd}/health"))
        self._wait(current, "etcd", options.timeout)
        admin = tuple(str(p) for p in keys.pair("admin"))
        current = self._start(current, "kube-apiserver",
                              components.kube_apiserver(b, layout, ports, address),
                              ports.apiserver, Probe(f"{current.server}/readyz", ca, admin))
        if use_webhook:
            current = self._start(current, "webhook",
                                  components.webhook(layout, ports, contract_file,
                                                     options.webhook_workers),
                                  ports.webhook,
                                  Probe(f"https://127.0.0.1:{ports.webhook}/healthz", ca))
        self._wait(current, "kube-apiserver", options.timeout)
        return current

    def _start_addons(self, current: state.ClusterRecord, b: Binaries, keys: pki.Pki,
                      ports: components.Ports, use_extender: bool, contract_file: Path,
                      contract: Contract, vm_nodes_percentage: int = 100) -> state.ClusterRecord:
        """Extender, kube-scheduler (configured for the extender) and kwok, all at once."""
        layout = self.layout
        extender_yaml = None
        if use_extender:
            from podvirt.extender.schedconfig import render_scheduler_config
            extender_url = f"https://127.0.0.1:{ports.extender}"
            extender_yaml = render_scheduler_config(extender_url, ca_file=str(keys.ca),
                                                    kubeconfig=str(layout.kubeconfig),
                                                    scheduler_name=contract.scheduler_name,
                                                    device_resources=contract.costs.devices.resources,
                                                    vm_nodes_percentage=vm_nodes_percentage)
            current = self._start(current, "extender",
                                  components.extender(layout, ports, contract_file),
                                  ports.extender, Probe(f"{extender_url}/healthz", str(keys.ca)))
        current = self._start_scheduler(current, b, ports, extender_yaml)
        kwok_file = layout.config / "kwok.yaml"
        kwok_file.write_text(yaml.safe_dump(components.KWOK_CONFIG))
        return self._start(current, "kwok", components.kwok(b, layout, ports, str(kwok_file)),
                           ports.kwok, Probe(f"http://127.0.0.1:{ports.kwok}/healthz"))

    def _start_scheduler(self, current: state.ClusterRecord, b: Binaries, ports: components.Ports,
                         extender_yaml: str | None) -> state.ClusterRecord:
        sched_file = self.layout.config / "kube-scheduler.yaml"
        sched_file.write_text(components.scheduler_config(self.layout, extender_yaml))
        return self._start(current, "kube-scheduler",
                           components.kube_scheduler(b, str(sched_file), ports),
                           ports.scheduler, Probe(f"https://127.0.0.1:{ports.scheduler}/healthz"))

    # --- the real node --------------------------------------------------------------------------
    def _claim_node(self) -> None:
        def alive(owner: Path) -> bool:
            try:
                return bool(Cluster(owner, progress=lambda _: None).running())
            except ClusterError:
                return False
        if nodehost.claim(self.node_layout, self.state_dir.resolve(), alive):
            self._progress("cleaning up what an earlier real node left behind")
            nodehost.teardown(self.node_layout, self._kube_proxy_binary(), [])
            nodehost.claim(self.node_layout, self.state_dir.resolve(), alive)

    def _start_containerd(self, current: state.ClusterRecord, keys: pki.Pki,
                          ports: node.NodePorts) -> state.ClusterRecord:
        nl = self.node_layout
        nodehost.write_configs(nl, ports, keys.dir, self._kubeconfig("kube-proxy"))
        return self._start(current, "containerd", ["containerd", f"--config={nl.containerd_config}"],
                           ports.containerd_metrics,
                           Probe(f"http://127.0.0.1:{ports.containerd_metrics}/v1/metrics"))

    def _start_node(self, current: state.ClusterRecord, b: Binaries,
                    built: tuple[images.Image, ...], ports: node.NodePorts,
                    options: UpOptions) -> state.ClusterRecord:
        """Images into containerd, then kubelet and kube-proxy."""
        nl = self.node_layout
        self._wait(current, "containerd", options.timeout)
        with self._step(f"{len(built)} images", "loaded into containerd"):
            for image in built:
                nodehost.import_image(nl, image.archive)
        current = self._start(current, "kubelet",
                              node.kubelet(b.kubelet, nl, self._kubeconfig("kubelet")),
                              ports.kubelet,
                              Probe(f"http://127.0.0.1:{ports.kubelet_healthz}/healthz"))
        return self._start(current, "kube-proxy", node.kube_proxy(b.kube_proxy, nl),
                           ports.proxy_healthz,
                           Probe(f"http://127.0.0.1:{ports.proxy_healthz}/livez"))

    def _install_podvirt(self, current: state.ClusterRecord, b: Binaries,
                         ports: components.Ports, options: UpOptions,
                         contract: Contract) -> state.ClusterRecord:
        """helm install of the chart, then the host's kube-scheduler restarted with the
        chart's scheduler configuration (the extender behind its Service)."""
        values = self.layout.config / "podvirt-values.yaml"
        values.write_text(yaml.safe_dump(chart.local_values(self.node_layout, contract),
                                         sort_keys=False))
        with self._step("podvirt chart", "installed (helm install --wait)"):
            chart.install(self._helm_binary(), self.kubeconfig, values, options.chart_timeout)
        api = self.api_client()
        resources = (k.VM_MARKER_RESOURCE, contract.costs.resources.tun)
        with self._step("node agents", "advertising " + ", ".join(resources)):
            chart.wait_node_resources(api, resources, options.timeout)
        config = chart.scheduler_config(api, self.layout.config / "podvirt-ca.crt")
        scheduler = current.component("kube-scheduler")
        assert scheduler is not None
        processes.stop_all([scheduler.pid])
        current = self._start_scheduler(current.without("kube-scheduler"), b, ports, config)
        self._wait(current, "kube-scheduler", options.timeout)
        from podvirt.cluster import api as cluster_api
        with self._step("webhook registration", "active"):
            cluster_api.wait_webhook_active(api, chart.WEBHOOK_NAME, options.timeout)
        return current

    def _helm_binary(self) -> Path:
        helm = self.binaries.kubectl.parent / "helm"
        if not helm.exists():
            raise ClusterError(f"helm is not built ({helm}); run hack/k8s/build.sh")
        return helm

    def _kube_proxy_binary(self) -> Path | None:
        try:
            return self.binaries.kube_proxy
        except Exception:   # noqa: BLE001 - cleanup goes on without kube-proxy's own
            return None

    def _drain_node(self) -> None:
        """Delete the real node's pods through the API while kubelet still runs, so it
        stops their containers and tears down their networks (CNI DEL) as it should."""
        from kubernetes import client
        from podvirt.cluster import api as cluster_api
        try:
            core = client.CoreV1Api(self.api_client())
            cluster_api.delete_node_pods(core, node.NODE_NAME, grace_seconds=5, timeout=40)
        except Exception as exc:   # noqa: BLE001 - teardown below cleans up regardless
            self._progress(f"could not delete the real node's pods ({exc}); forcing")

    def _populate(self, current: state.ClusterRecord, keys: pki.Pki, ports: components.Ports,
                  nodes: tuple[inventory.FakeNode, ...], options: UpOptions,
                  use_webhook: bool) -> None:
        """Fake nodes and the webhook registration, then wait until both take effect."""
        from podvirt.cluster import api
        client = api.new_client(str(self.layout.kubeconfig))
        with self._step(f"{len(nodes)} fake nodes", "created"):
            api.create_nodes(client, nodes, tainted=options.node)
        for name in ("kube-controller-manager", "kwok", "kube-scheduler", "extender", "webhook",
                     "kubelet", "kube-proxy"):
            self._wait(current, name, options.timeout)
        names = {n.name for n in nodes} | ({node.NODE_NAME} if options.node else set())
        with self._step("nodes", "Ready"):
            api.wait_nodes_ready(client, names, options.timeout)
        with self._step("default ServiceAccount", "created"):
            api.wait_service_account(client, "default", "default", options.timeout)
        if options.node:
            with self._step(f"StorageClass {node.STORAGE_CLASS}", "created (default)"):
                api.apply_storage_class(client, node.storage_class())
        if use_webhook:
            with self._step("webhook registration", "active"):
                api.apply_webhook_configuration(client, webhooks.mutating_webhook_configuration(
                    f"https://127.0.0.1:{ports.webhook}/mutate", keys.ca.read_bytes()))
                api.wait_webhook_active(client, webhooks.WEBHOOK_NAME, options.timeout)

    def _stop_all(self, keep_state: bool) -> None:
        current = self.state
        components_ = current.components if current else ()
        live = [c for c in components_ if c.running]
        owns_node = nodehost.owner(self.node_layout) == self.state_dir.resolve()
        netns: list[Path] = []
        if owns_node:
            names = {c.name for c in live}
            # Nothing may recreate the pods being deleted (DaemonSet, Deployments).
            early = [c for c in live if c.name in ("kube-controller-manager", "kube-scheduler")]
            processes.stop_all([c.pid for c in early])
            live = [c for c in live if c not in early]
            if {"kube-apiserver", "kubelet"} <= names:
                with self._step("real node's pods", "deleted"):
                    self._drain_node()
            netns = nodehost.sandbox_netns(self.node_layout)
        if live:
            # All at once: nothing has to outlive anything else in a throwaway cluster.
            with self._step(f"{len(live)} components", "stopped"):
                processes.stop_all([c.pid for c in live])
        if owns_node:
            with self._step("real node", "cleaned up"):
                nodehost.teardown(self.node_layout, self._kube_proxy_binary(), netns)
        if not keep_state:
            self.layout.clear()
