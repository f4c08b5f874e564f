"""`podvirt <subcommand>`: one console command for every podvirt component.

Each component owns a small `cli` module exposing `register(subparsers)`; this file only
collects them, so adding a subcommand never touches another component.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand, module with register(subparsers)); order is the order in --help.
_SUBCOMMANDS = (
    ("webhook", "podvirt.webhook.cli"),
    ("extender", "podvirt.extender.cli"),
    ("launcher", "podvirt.launcher.cli"),
    ("device-plugin", "podvirt.launcher.deviceplugin.cli"),
    ("evacuator", "podvirt.evacuator.cli"),
    ("certs", "podvirt.certs.cli"),
    ("cluster", "podvirt.cluster.cli"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podvirt",
        description="Virtual machines as ordinary Kubernetes pods: a mutating admission webhook "
                    "that turns VM-annotated pods into launcher pods, a kube-scheduler extender "
                    "that places them, and a launcher that runs the VM with libvirt and QEMU.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for _name, module in _SUBCOMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
