"""`kubectl-podvirt`, which kubectl runs as `kubectl podvirt ...` when it is on PATH."""

from __future__ import annotations

import argparse
import sys

from podvirt.terminal import ESCAPE_NAME
from podvirt.vmspec import keys as k

ACTION_HELP = {
    "pause": "pause the VM's vCPUs (its memory stays)",
    "resume": "resume a paused VM",
    "reboot": "reboot the guest in place (the pod and QEMU stay)",
    "stop": "shut the guest down over ACPI; its pod then ends",
}


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0-65535")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("name", metavar="NAME", help="the VM's pod")
    common.add_argument("-n", "--namespace", help="the pod's namespace (default: the "
                                                  "context's namespace, else default)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                                             "else ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context (default: the current one)")

    parser = argparse.ArgumentParser(
        prog="kubectl podvirt",
        description="Use podvirt VMs: their serial console, their VNC display, and "
                    "pause/resume/reboot/stop through the launcher in their pod.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True

    console = sub.add_parser("console", parents=[common],
                             help=f"interactive serial console of the VM ({ESCAPE_NAME} leaves)")
    console.set_defaults(command="console")

    vnc = sub.add_parser("vnc", parents=[common],
                         help="forward the VM's VNC display to a local port")
    vnc.add_argument("--port", type=_port, default=0,
                     help="local port (default 0: a free one, printed)")
    vnc.add_argument("--address", default="127.0.0.1",
                     help="local address to listen on (default %(default)s)")

    migrate = sub.add_parser("migrate", parents=[common],
                             help="move the running VM live into a new pod (on another node)")
    migrate.add_argument("--timeout", type=_seconds, default=300.0,
                         help="seconds for the whole migration, placement included "
                              "(default %(default)g); then it is cancelled")
    migrate.add_argument("--same-node", action="store_true",
                         help="let the target pod land on the source's node too (one-node "
                              "clusters, tests)")

    for action in k.ACTIONS:
        p = sub.add_parser(action, parents=[common], help=ACTION_HELP[action])
        p.add_argument("--timeout", type=_seconds, default=60.0,
                       help="seconds to wait for the launcher's acknowledgement "
                            "(default %(default)g)")
        p.set_defaults(action=action)
    return parser


def run(args: argparse.Namespace) -> int:
    from podvirt.plugin.kubeapi import Connection, KubePods
    conn = Connection(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace)
    pods = KubePods.connect(conn)
    if args.command == "console":
        from podvirt.plugin.console import run_console
        return run_console(pods, conn, args.name)
    if args.command == "vnc":
        from podvirt.plugin.vnc import run_vnc
        return run_vnc(pods, conn, args.name, port=args.port, address=args.address)
    if args.command == "migrate":
        from podvirt.plugin.migrate import Migration
        print(Migration(pods, args.name, timeout=args.timeout, same_node=args.same_node,
                        progress=lambda m: print(m, file=sys.stderr)).run())
        return 0
    from podvirt.plugin.actions import ActionWaiter
    print(ActionWaiter(pods, args.name, args.action, timeout=args.timeout).run())
    return 0


def main(argv: list[str] | None = None) -> int:
    from podvirt.plugin.target import PluginError
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
