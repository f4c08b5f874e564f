"""`podvirt webhook`: serve the mutating admission webhook over TLS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


LOG_LEVELS = ("debug", "info", "warning")


def register(subparsers: argparse._SubParsersAction) -> None:
    from podvirt import drain
    from podvirt.vmspec import contract
    from podvirt.webhook.settings import WORKER_CLASSES
    p = subparsers.add_parser("webhook", help="serve the mutating admission webhook",
                              description="Rewrite VM-annotated pods into launcher pods "
                                          "(POST /mutate, /healthz, /readyz, /metrics).")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True, help="PEM certificate (reloaded when it changes)")
    p.add_argument("--key", required=True, help="PEM private key")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1: one gevent worker serves every "
                        "connection; scale by replicas, each a core)")
    p.add_argument("--worker-class", choices=WORKER_CLASSES, default="gevent",
                   help="gunicorn worker model: gevent (one greenlet per connection) "
                        "or gthread (a thread pool per worker)")
    # 4, not 2: with 2 threads gthread left some concurrent admission calls unanswered
    # for 10 s in e2e runs (API server timeouts).
    p.add_argument("--threads", type=int, default=4,
                   help="threads per worker (gthread only)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                   help="info: a JSON line per refused review (denied or failed); debug: "
                        "per review, admitted ones too")
    drain.add_arguments(p)
    # The launcher image, the scheduler name, the limits, costs and device resources are
    # the contract's alone: a flag repeating one could set it here and not in the extender.
    p.add_argument("--contract", type=Path, default=None,
                   metavar="FILE", help=contract.ARGUMENT_HELP)
    p.add_argument("--launcher-service-account", default=None, metavar="NAME",
                   help="ServiceAccount for launcher pods (the chart's podvirt-launcher)")
    p.add_argument("--no-vfio-memlock-capability", dest="vfio_memlock_capability",
                   action="store_false",
                   help="do not add CAP_SYS_RESOURCE to launchers of VMs with passthrough "
                        "devices (libvirt then cannot raise QEMU's memlock limit for VFIO)")
    p.add_argument("--grace-margin", type=int, default=15,
                   help="seconds added to the VM's shutdown grace for the pod")
    p.add_argument("--evictions", action="store_true",
                   help="serve POST /evict, the pods/eviction webhook that migrates VMs with "
                        "podvirt.io/eviction-strategy: migrate instead of evicting them (needs "
                        "get and patch on pods: in-cluster credentials or --kubeconfig)")
    p.add_argument("--kubeconfig", default=None, help="API access for --evictions outside a pod")
    # Benchmark only: a POST /noop route on the same stack, without the admission decision.
    p.add_argument("--noop-route", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import os
    import shutil
    import ssl
    import tempfile

    from podvirt import loglines

    from podvirt.vmspec.contract import load_at_start
    contract = load_at_start(args.contract, "podvirt webhook")
    for path in (args.cert, args.key):
        if not os.access(path, os.R_OK):
            print(f"podvirt webhook: cannot read {path}", file=sys.stderr)
            return 2
    try:
        from podvirt.tls import server_context
        server_context(args.cert, args.key)
    except (OSError, ssl.SSLError) as exc:
        print(f"podvirt webhook: bad certificate or key: {exc}", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536 or args.workers < 1 or args.threads < 1:
        print("podvirt webhook: --port, --workers and --threads must be positive",
              file=sys.stderr)
        return 2

    # Before prometheus_client is imported: it picks multiprocess mode at import time.
    # A fresh directory, since counts left by an earlier run would be summed in.
    metrics_dir = tempfile.mkdtemp(prefix="podvirt-webhook-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    # One JSON line per review, from the app (which reviews: app.LOGGED_AT_INFO).
    loglines.configure("%(message)s", level=getattr(logging, args.log_level.upper()))

    from podvirt.webhook.app import create_app
    from podvirt.webhook.server import WebhookServer, gunicorn_options
    from podvirt.webhook.settings import RenderSettings

    settings = RenderSettings.from_contract(
        contract, launcher_service_account=args.launcher_service_account,
        grace_margin_seconds=args.grace_margin,
        vfio_memlock_capability=args.vfio_memlock_capability)
    options = gunicorn_options(bind=args.bind, port=args.port, cert=args.cert, key=args.key,
                               workers=args.workers, worker_class=args.worker_class,
                               threads=args.threads, drain_seconds=args.drain_seconds,
                               graceful_timeout=args.graceful_timeout,
                               on_exit=lambda _server: shutil.rmtree(metrics_dir, True))
    model = args.worker_class + (f" x {args.threads} threads" if args.worker_class == "gthread"
                                 else "")
    print(f"podvirt webhook: https://{args.bind}:{args.port} workers={args.workers} ({model}) "
          f"metrics={metrics_dir} contract={contract.digest}", file=sys.stderr, flush=True)

    # Connected in the worker, after gevent patched ssl (webhook/kube.py says why); a worker
    # without credentials stops the server with the reason instead of serving refusals.
    pods = None
    if args.evictions:
        from podvirt.webhook.kube import KubePodAccess
        pods = KubePodAccess(args.kubeconfig)

        def worker_boot(_worker: object) -> None:
            try:
                pods.connect()
            except Exception as exc:    # noqa: BLE001 - any config error, said plainly
                print(f"podvirt webhook: --evictions needs API access: {exc}",
                      file=sys.stderr, flush=True)
                raise SystemExit(3) from None   # gunicorn: "Worker failed to boot", exit 3
        options["post_worker_init"] = worker_boot

    def app():
        return create_app(settings, noop_route=args.noop_route, pods=pods)

    WebhookServer(app, options).run()
    return 0
