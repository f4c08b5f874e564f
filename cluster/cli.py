"""`podvirt cluster up|down|status`: a local cluster: this machine as its real node (podvirt
installed by its chart) beside fake (kwok) nodes."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cluster", help="run a local Kubernetes cluster: a real node and fake nodes",
        description="etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as "
                    "local processes; this machine as a real node (containerd, kubelet, "
                    "kube-proxy) with podvirt installed by its Helm chart from images built "
                    "here; fake nodes from an inventory beside it. With --no-node, podvirt's "
                    "webhook and extender run as host processes and only fake nodes exist.")
    actions = p.add_subparsers(dest="action", metavar="<action>")
    actions.required = True
    up = actions.add_parser("up", help="start the cluster (refuses if one is up in STATE_DIR)")
    up.add_argument("--inventory", type=Path, help="fake-node inventory YAML "
                                                   "(default: examples/nodes.yaml)")
    up.add_argument("--no-node", action="store_true",
                    help="no real node: kwok's fake nodes only, podvirt as host processes")
    up.add_argument("--no-webhook", action="store_true",
                    help="with --no-node: do not run podvirt webhook")
    up.add_argument("--no-extender", action="store_true",
                    help="with --no-node: schedule without the podvirt extender")
    up.add_argument("--contract", type=Path, metavar="FILE",
                    help="the contract (limits, costs, resource names, scheduler name: "
                         "podvirt/vmspec/contract.py) for the webhook and extender, or the "
                         "chart's contract values (default: the built-in defaults)")
    up.add_argument("--timeout", type=float, default=60.0,
                    help="seconds each component may take to become ready (default 60)")
    up.set_defaults(func=run_up)
    down = actions.add_parser("down", help="stop everything `up` started and remove its state")
    down.set_defaults(func=run_down)
    status = actions.add_parser("status", help="components, pids, ports, health and logs")
    status.set_defaults(func=run_status)
    for sub in (up, down, status):
        sub.add_argument("--state-dir", type=Path,
                         help="state directory (default $PODVIRT_STATE_DIR or /tmp/podvirt-cluster)")


def _cluster(args: argparse.Namespace):
    from podvirt.cluster.cluster import Cluster
    return Cluster(args.state_dir)


def run_up(args: argparse.Namespace) -> int:
    from podvirt.cluster.binaries import BinaryError
    from podvirt.cluster.chart import ChartError
    from podvirt.cluster.cluster import ClusterError, UpOptions
    from podvirt.cluster.images import ImageError
    from podvirt.cluster.nodehost import NodeError
    from podvirt.cluster.inventory import DEFAULT_INVENTORY, InventoryError
    from podvirt.cluster.processes import ComponentError
    from kubernetes.client.rest import ApiException
    cluster = _cluster(args)
    options = UpOptions(inventory=args.inventory or DEFAULT_INVENTORY,
                        webhook=not args.no_webhook, extender=not args.no_extender,
                        node=not args.no_node, timeout=args.timeout, contract=args.contract)
    try:
        cluster.up(options)
    except (ClusterError, InventoryError, BinaryError, ComponentError, TimeoutError,
            NodeError, ImageError, ChartError, ApiException, OSError) as exc:
        print(f"podvirt cluster up: {exc}")
        return 1
    print(f"KUBECONFIG={cluster.kubeconfig}")
    return 0


def run_down(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    if not cluster.down():
        print(f"no cluster in {cluster.state_dir}: nothing to stop")
    return 0


def run_status(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    try:
        rows = cluster.status()
    except ValueError as exc:
        print(f"podvirt cluster status: {exc}")
        return 1
    if not rows:
        print(f"no cluster in {cluster.state_dir}")
        return 1
    print(f"state dir:  {cluster.state_dir}\nkubeconfig: {cluster.kubeconfig}\n"
          f"server:     {cluster.server}\n")
    print(f"{'COMPONENT':<16}{'PID':>8}{'PORT':>7}  {'STATE':<9}{'HEALTH':<9}LOG")
    for r in rows:
        print(f"{r.name:<16}{r.pid:>8}{r.port:>7}  {'running' if r.running else 'exited':<9}"
              f"{'ok' if r.healthy else 'failing':<9}{r.log}")
    return 0 if all(r.running and r.healthy for r in rows) else 1
