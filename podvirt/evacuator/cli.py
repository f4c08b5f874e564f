"""`podvirt evacuator`: migrate VMs off the nodes they are evicted from."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evacuator", help="migrate VMs whose eviction the webhook refused",
        description="Watch VM pods; each one the webhook marked podvirt.io/evacuate (an "
                    "eviction of a pod with podvirt.io/eviction-strategy: migrate) is migrated "
                    "live into a new pod, as `kubectl podvirt migrate` does.")
    p.add_argument("--kubeconfig", default=None, help="default: in-cluster credentials")
    p.add_argument("--namespace", action="append", default=[], dest="namespaces",
                   help="a namespace VM pods run in (repeatable; default: all namespaces)")
    p.add_argument("--parallel", type=int, default=2, help="migrations at once (default 2)")
    p.add_argument("--retry-seconds", type=float, default=30.0,
                   help="pause before retrying a failed migration of a pod still evicted")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds one migration may take, placement included")
    p.add_argument("--same-node", action="store_true",
                   help="let the target pod run on the source's node (one-node clusters; a "
                        "drained node takes no new pods, so this helps plain evictions only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from podvirt import loglines
    if args.parallel < 1 or args.retry_seconds < 0 or args.timeout <= 0:
        print("podvirt evacuator: --parallel and --timeout must be positive, --retry-seconds "
              "not negative", file=sys.stderr)
        return 2
    loglines.configure("%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kubernetes import client

    from podvirt.kubeclient import api_client
    try:
        api = api_client(args.kubeconfig)
    except Exception as exc:    # noqa: BLE001 - any config error, said plainly
        print(f"podvirt evacuator: no API access: {exc}", file=sys.stderr)
        return 2
    from podvirt.evacuator.controller import Evacuator
    from podvirt.evacuator.plan import Schedule
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    evacuator = Evacuator(client.CoreV1Api(api),
                          Schedule(parallel=args.parallel, retry_seconds=args.retry_seconds),
                          namespaces=tuple(args.namespaces), same_node=args.same_node,
                          timeout=args.timeout)
    print(f"podvirt evacuator: parallel={args.parallel} same-node={args.same_node}",
          file=sys.stderr, flush=True)
    evacuator.run(stop)
    # SIGTERM: let running migrations end (each is bounded by --timeout), so none is left
    # half-way with its target pod waiting.
    evacuator.join(args.timeout + 30)
    return 0
