"""`podvirt extender`: serve the kube-scheduler extender, or print its scheduler config."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from podvirt import drain
    p = subparsers.add_parser(
        "extender", help="run the kube-scheduler extender (filter, prioritize, bind)",
        description="Serve POST /filter, /prioritize, /bind and GET /healthz, /readyz, /metrics "
                    "for kube-scheduler, with node and pod state from API watches.")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--bind", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--cert", help="TLS certificate (PEM); TLS 1.2+ when given with --key")
    p.add_argument("--key", help="TLS private key (PEM)")
    p.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--threads", type=int, default=16,
                   help="binds served at once (each waits on the API server), and the size "
                        "of the API connection pool")
    drain.add_arguments(p)
    p.add_argument("--quarantine-failures", type=int, default=3, metavar="N",
                   help="avoid a node after N VM start failures within the window (0: never)")
    p.add_argument("--quarantine-window", type=float, default=600.0, metavar="SECONDS")
    from podvirt.vmspec import contract
    p.add_argument("--contract", type=Path, default=None,
                   metavar="FILE", help=contract.ARGUMENT_HELP + "; --print-scheduler-config "
                   "names its schedulerName as the VM profile")
    p.add_argument("--max-body-bytes", type=int, default=32 * 2**20)
    p.add_argument("--print-scheduler-config", metavar="KUBECONFIG",
                   help="print a KubeSchedulerConfiguration for this extender (the scheduler "
                        "uses this kubeconfig and trusts --ca) and exit")
    p.add_argument("--ca", help="CA certificate that signed --cert (for --print-scheduler-config)")
    from podvirt.extender.schedconfig import SCORING
    p.add_argument("--scoring", choices=tuple(SCORING), default="spread",
                   help="for --print-scheduler-config: the VM profile spreads VMs over the "
                        "nodes with the most free memory, or packs them (kube-scheduler's "
                        "NodeResourcesFit scores memory; the extender scores NUMA locality)")
    p.add_argument("--vm-nodes-percentage", type=int, default=100, metavar="PERCENT",
                   help="percentageOfNodesToScore of the VM profile (for "
                        "--print-scheduler-config; default 100: every node reaches the "
                        "extender)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise SystemExit("podvirt extender: --threads must be 1 or more")
    if args.quarantine_failures < 0 or args.quarantine_window <= 0:
        raise SystemExit("podvirt extender: --quarantine-failures must be >= 0 and "
                         "--quarantine-window > 0")
    from podvirt.vmspec.contract import load_at_start
    contract = load_at_start(args.contract, "podvirt extender")
    if args.print_scheduler_config:
        from podvirt.extender.schedconfig import render_scheduler_config
        scheme = "https" if args.cert else "http"
        try:
            print(render_scheduler_config(f"{scheme}://{args.bind}:{args.port}", ca_file=args.ca,
                                          kubeconfig=args.print_scheduler_config,
                                          scheduler_name=contract.scheduler_name,
                                          scoring=args.scoring,
                                          device_resources=contract.costs.devices.resources,
                                          vm_nodes_percentage=args.vm_nodes_percentage), end="")
        except ValueError as exc:      # e.g. a contract whose schedulerName is the stock one
            raise SystemExit(f"podvirt extender: {exc}") from None
        return 0
    import logging
    from podvirt import loglines
    loglines.configure("%(asctime)s %(levelname)s %(name)s: %(message)s")
    from podvirt.extender.app import Settings
    from podvirt.extender.decide import Policy
    from podvirt.extender.serve import ServeOptions, serve
    settings = Settings(policy=Policy(args.quarantine_failures, args.quarantine_window),
                        contract=contract, max_body_bytes=args.max_body_bytes)
    logging.getLogger("podvirt.extender").info("contract %s", contract.digest)
    options = ServeOptions(bind=args.bind, port=args.port, cert=args.cert, key=args.key,
                           kubeconfig=args.kubeconfig,
                           threads=args.threads, drain_seconds=args.drain_seconds,
                           graceful_timeout=args.graceful_timeout)
    return serve(options, settings)
