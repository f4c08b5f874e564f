"""Command lines and config files of each control-plane component, as pure functions.

Nothing here starts a process: `cluster.py` decides the ports, calls these, and runs the
result, so every flag is visible (and testable) in one place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from podvirt.cluster.binaries import Binaries
from podvirt.cluster.inventory import KWOK_ANNOTATION, KWOK_VALUE
from podvirt.cluster.layout import Layout

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.0.0.1/16"


@dataclass(frozen=True)
class Ports:
    etcd: int
    etcd_peer: int
    apiserver: int
    scheduler: int
    controller_manager: int
    kwok: int
    webhook: int
    extender: int


def etcd(b: Binaries, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd}"
    return [str(b.etcd), "--name=podvirt", f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
            f"--initial-cluster=podvirt=http://127.0.0.1:{ports.etcd_peer}",
            "--quota-backend-bytes=1073741824", "--logger=zap", "--log-level=warn"]


def kube_apiserver(b: Binaries, layout: Layout, ports: Ports, address: str = "127.0.0.1") -> list[str]:
    """`address`: where it listens and what it advertises. With a real node that is the
    node's bridge address, so pods reach it through the `kubernetes` Service (whose
    endpoint the lease reconciler keeps); on loopback there is nothing to advertise."""
    pki = layout.pki
    return [
        str(b.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd}",
        f"--bind-address={address}", f"--advertise-address={address}",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.apiserver_certs}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # logs, exec and port-forward: the API server calls kubelet by its InternalIP (no
        # DNS name to resolve), verifies its serving certificate and proves itself.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--allow-privileged=true",
        # Fewer moving parts on a small machine: no flow-control queues, no profiling.
        "--enable-priority-and-fairness=false", "--profiling=false",
        f"--endpoint-reconciler-type={'none' if address == '127.0.0.1' else 'lease'}",
        "--v=1",
    ]


def kube_controller_manager(b: Binaries, layout: Layout, ports: Ports,
                            kubeconfig: Path, hostpath_provisioner: bool = False) -> list[str]:
    """Every default controller (Deployments, Jobs, garbage collection, ServiceAccounts and
    their tokens, node lifecycle, endpoints), each with its own ServiceAccount's rights;
    with a real node also the hostPath provisioner (PVCs become directories on the node)."""
    pki = layout.pki
    return [str(b.kube_controller_manager), f"--kubeconfig={kubeconfig}",
            *(["--enable-hostpath-provisioner"] if hostpath_provisioner else []),
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={ports.controller_manager}",
            f"--cert-dir={layout.config / 'controller-manager.certs'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials=true", "--controllers=*",
            # kwok's fake nodes keep no lease and post their status about once a minute:
            # with the default 50 s grace they would flap to Unknown and have their pods
            # evicted.
            "--node-monitor-grace-period=5m",
            # A throwaway cluster protects no other clients (default 20 qps: minutes to
            # untaint 1000 new nodes).
            "--kube-api-qps=500", "--kube-api-burst=1000",
            "--leader-elect=false", "--v=1"]


def scheduler_config(layout: Layout, extender_yaml: str | None) -> str:
    """KubeSchedulerConfiguration: our kubeconfig, no leader election (one replica), and
    the podvirt extender entry when the extender renders one."""
    config = yaml.safe_load(extender_yaml) if extender_yaml else {
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration"}
    # A throwaway cluster has no other clients to protect; the default limit (50 qps)
    # would cap binds at ~50 pods/s and hide the scheduler's own throughput.
    config["clientConnection"] = {"kubeconfig": str(layout.kubeconfig), "qps": 500,
                                  "burst": 1000}
    config["leaderElection"] = {"leaderElect": False}
    return yaml.safe_dump(config, sort_keys=False)


def kube_scheduler(b: Binaries, config_file: str, ports: Ports) -> list[str]:
    return [str(b.kube_scheduler), f"--config={config_file}",
            "--bind-address=127.0.0.1", f"--secure-port={ports.scheduler}",
            f"--cert-dir={config_file}.certs",
            # No delegated authorization is configured, so without this every path but the
            # health checks is refused; /metrics shows where a scheduling cycle's time goes
            # (bench/scheduler_bench.py). It listens on loopback only.
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics", "--v=2"]


KWOK_CONFIG = {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
               "options": {}}


def kwok(b: Binaries, layout: Layout, ports: Ports, config_file: str) -> list[str]:
    # An explicit (empty) config keeps a user's ~/.kwok/kwok.yaml out; without Stage
    # objects kwok uses its built-in "fast" stages: nodes Ready, bound pods Running, and
    # pods with a deletionTimestamp removed.
    return [str(b.kwok), f"--kubeconfig={layout.kubeconfig}", f"--config={config_file}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}={KWOK_VALUE}",
            f"--cidr={POD_CIDR}", "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{ports.kwok}"]


def _podvirt(*args: str) -> list[str]:
    # The same interpreter (and so the same virtualenv) as the one running `up`.
    return [sys.executable, "-m", "podvirt.cli", *args]


def webhook(layout: Layout, ports: Ports, contract: Path, workers: int = 1) -> list[str]:
    """`contract`: the file the extender gets too (the scheduler profile VM pods are
    rendered for is its schedulerName)."""
    return _podvirt("webhook", f"--port={ports.webhook}", "--bind=127.0.0.1",
                    f"--cert={layout.pki / 'webhook.crt'}", f"--key={layout.pki / 'webhook.key'}",
                    f"--workers={workers}", f"--contract={contract}")


def extender(layout: Layout, ports: Ports, contract: Path) -> list[str]:
    return _podvirt("extender", f"--port={ports.extender}", "--bind=127.0.0.1",
                    f"--cert={layout.pki / 'extender.crt'}", f"--key={layout.pki / 'extender.key'}",
                    f"--kubeconfig={layout.kubeconfig}", f"--contract={contract}")
