"""`podvirt device-plugin`: serve the host's VM devices (and VFIO-bound PCI devices) to
pods through kubelet."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from podvirt.launcher.deviceplugin import devices


def _slots(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _seconds(value: str) -> float:
    try:
        s = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not s > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return s


def register(subparsers) -> None:
    from podvirt.vmspec import contract
    names = ", ".join(s.name for s in devices.plugin_specs())
    parser = subparsers.add_parser(
        "device-plugin", help="serve /dev/kvm, /dev/net/tun and /dev/vhost-net to pods as "
                              "kubelet device plugins",
        description="One kubelet device plugin per host device node, each on its own socket "
                    "in --plugin-dir, registered with kubelet there and again whenever "
                    "kubelet restarts. All of a resource's --slots devices are Healthy while "
                    "<dev-root>/dev/<node> is a character device, Unhealthy while it is not.")
    parser.add_argument("--plugin-dir", type=Path, default=Path(devices.DEFAULT_PLUGIN_DIR),
                        help="kubelet's device plugin directory, with kubelet.sock "
                             "(default %(default)s)")
    parser.add_argument("--dev-root", type=Path, default=Path("/"),
                        help="where the host's /dev is seen, for the health check only; "
                             "pods always get the host's /dev/... (default %(default)s)")
    parser.add_argument("--slots", type=_slots, default=devices.DEFAULT_SLOTS, metavar="N",
                        help="devices advertised per resource, all sharing the one node "
                             "(default %(default)s, kubelet's default pod limit)")
    parser.add_argument("--contract", type=Path, default=None,
                        metavar="FILE", help=contract.ARGUMENT_HELP + " (the plugin reads its "
                        "resourceNames and deviceResources)")
    parser.add_argument("--resources", metavar="NAME[,NAME...]",
                        help=f"serve only these (default: all of {names}, as the contract's "
                             "resourceNames call them)")
    vfio_group = parser.add_argument_group(
        "passthrough", "with --sys-root, also serve VFIO-bound PCI devices: one plugin per "
                       "resource, one device per PCI address")
    vfio_group.add_argument("--sys-root", type=Path, metavar="DIR",
                            help="sysfs to find VFIO-bound devices in (the host's /sys; "
                                 "default: no passthrough devices)")
    vfio_group.add_argument("--vfio-dir", default="/dev/vfio", metavar="HOSTDIR",
                            help="the host's directory of VFIO group nodes, handed to "
                                 "containers as /dev/vfio (seen under --dev-root; default "
                                 "%(default)s)")
    vfio_group.add_argument("--node", default=os.environ.get("NODE_NAME"),
                            help="this node's name, to find the pods kubelet admits and "
                                 "prefer the devices the extender assigned them "
                                 "(default $NODE_NAME)")
    vfio_group.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster config)")
    parser.add_argument("--poll-interval", type=_seconds, default=2.0, metavar="SECONDS",
                        help="how often device nodes and sockets are checked "
                             "(default %(default)s)")
    parser.set_defaults(func=_run)


def _error(message: str, code: int) -> int:
    print(f"podvirt device-plugin: error: {message}", file=sys.stderr)
    return code


def _check_dir(path: Path, what: str, writable: bool = False) -> str:
    if not path.is_dir():
        return f"{what} {path} does not exist or is not a directory"
    if writable and not os.access(path, os.W_OK | os.X_OK):
        return f"{what} {path} is not writable"
    return ""


def _setup_logging() -> None:
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s device-plugin %(levelname)s %(message)s")


def _run(args: argparse.Namespace) -> int:
    from podvirt.vmspec.contract import load_at_start
    contract = load_at_start(args.contract, "podvirt device-plugin")
    names = None
    if args.resources is not None:
        names = [n.strip() for n in args.resources.split(",") if n.strip()]
    try:
        specs = devices.select_specs(devices.plugin_specs(contract.costs.resources), names)
    except ValueError as e:
        return _error(f"--resources: {e}", 2)
    problem = (_check_dir(args.plugin_dir, "plugin directory", writable=True)
               or _check_dir(args.dev_root, "dev root")
               or (args.sys_root is not None and _check_dir(args.sys_root, "--sys-root")))
    if problem:
        return _error(problem, 2)
    try:
        from podvirt.launcher.deviceplugin.manager import Manager, Settings, VfioSettings
        from podvirt.launcher.deviceplugin.service import ServeError
    except ImportError as e:
        return _error(str(e), 1)
    vfio = None
    if args.sys_root is not None:
        if not args.vfio_dir.startswith("/"):
            return _error(f"--vfio-dir {args.vfio_dir}: must be an absolute host path", 2)
        pods = None
        if args.node:
            from podvirt.launcher.deviceplugin.vfioserve import api_pod_source
            try:
                pods = api_pod_source(args.node, args.kubeconfig)
            except Exception as e:  # kubernetes' config errors have no common base
                return _error(f"cannot reach the API server for --node {args.node}: {e}", 2)
        vfio = VfioSettings(sys_root=args.sys_root.absolute(),
                            host_vfio_dir=args.vfio_dir.rstrip("/") or "/",
                            resources=contract.costs.devices, pods=pods)

    _setup_logging()
    import logging
    log = logging.getLogger("podvirt.deviceplugin")
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    manager = Manager(Settings(plugin_dir=args.plugin_dir.absolute(),
                               dev_root=args.dev_root.absolute(), slots=args.slots, specs=specs,
                               poll_interval=args.poll_interval, vfio=vfio))
    try:
        manager.start()
    except ServeError as e:
        return _error(str(e), 1)
    manager.run(stop)
    return 0
