"""`podvirt launcher run|probe`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from podvirt.vmspec.model import CONSOLE_SOCKET, POD_ROOT


KVM_GUEST_HELP = ("vmlinuz + initramfs.cpio.gz the KVM check boots (default "
                  "$PODVIRT_KVM_CHECK_GUEST, else the test-guest cache)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("launcher", help="run a VM inside its pod, or probe a node")
    sub = parser.add_subparsers(dest="launcher_command", metavar="<launcher command>")
    sub.required = True

    run = sub.add_parser("run", help="run the VM described by the pod's annotations")
    run.add_argument("--spec", required=True, help="downward-API annotations file")
    run.add_argument("--connect", help="libvirt URI to use instead of private daemons")
    run.add_argument("--pod-root", default=POD_ROOT,
                     help="where the pod mounts disks (default %(default)s)")
    run.add_argument("--work-dir", help="scratch space for overlays, logs and the libvirt "
                                        "daemons' state (default <pod-root>/launcher)")
    run.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                     help="auto: KVM if the functional check passes, else TCG if allowed")
    run.add_argument("--kvm-check-guest", metavar="DIR", help=KVM_GUEST_HELP)
    run.add_argument("--no-isolate", action="store_true",
                     help="run libvirt daemons without a private mount namespace (in a pod)")
    run.add_argument("--libvirt-cache", metavar="DIR",
                     help="keep libvirt's QEMU capabilities cache here across runs")
    run.add_argument("--kubeconfig", help="report to the pod via this kubeconfig")
    run.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                     help="serve the domain's Prometheus metrics on this port (0: off)")
    run.add_argument("--report-json", metavar="PATH",
                     help="write status as JSON lines here ('-' = stderr) instead of the pod")
    run.set_defaults(func=_run)

    console = sub.add_parser(
        "console", help="attach stdin/stdout to the VM's serial console, inside the launcher "
                        "pod (what `kubectl podvirt console` runs); Ctrl-] leaves")
    console.add_argument("--socket", default=CONSOLE_SOCKET,
                         help="the console socket QEMU listens on (default %(default)s)")
    console.set_defaults(func=_console)

    probe = sub.add_parser("probe", help="print this node's VM facts; with --node, label it")
    probe.add_argument("--node", help="node to patch with the facts")
    probe.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster config)")
    probe.add_argument("--sys-root", default="/sys")
    probe.add_argument("--proc-root", default="/proc")
    probe.add_argument("--pci-sys-root", metavar="DIR",
                       help="sysfs root to scan PCI devices in (default: --sys-root)")
    from podvirt.vmspec import contract
    probe.add_argument("--contract", type=Path, default=None,
                       metavar="FILE", help=contract.ARGUMENT_HELP + " (the probe reads its "
                       "deviceResources: what podvirt.io/pci-devices names each device)")
    probe.add_argument("--kvm-check-guest", metavar="DIR", help=KVM_GUEST_HELP)
    probe.add_argument("--once", action="store_true", help="probe once instead of looping")
    probe.add_argument("--interval", type=float, default=300.0, help="seconds between probes")
    probe.add_argument("--vm-slots", type=int, default=110, metavar="N",
                       help="podvirt.io/vm capacity to advertise on the node (default 110, "
                            "kubelet's default pod limit; 0 advertises none)")
    probe.set_defaults(func=_probe)


def _setup_logging() -> None:
    import logging
    import sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s launcher %(levelname)s %(message)s")


def _reporter(args):
    import sys
    from podvirt.launcher.report import JsonLinesReporter
    pod, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if args.report_json is None and pod and namespace and (args.kubeconfig or in_cluster):
        from podvirt.launcher.kube import KubePodReporter, load_config
        load_config(args.kubeconfig)
        return KubePodReporter(pod, namespace, node=os.environ.get("NODE_NAME", ""))
    if args.report_json in (None, "-"):
        return JsonLinesReporter(sys.stderr)
    return JsonLinesReporter(open(args.report_json, "a", buffering=1))


def _run(args: argparse.Namespace) -> int:
    from podvirt.launcher.daemons import namespaces_available
    from podvirt.launcher.run import LaunchConfig, Launcher
    _setup_logging()
    isolate = not args.no_isolate and args.connect is None and namespaces_available()
    cfg = LaunchConfig(spec_file=Path(args.spec), pod_root=Path(args.pod_root),
                       work_dir=Path(args.work_dir) if args.work_dir else None,
                       connect=args.connect, accel=args.accel, isolate=isolate,
                       node=os.environ.get("NODE_NAME", ""),
                       libvirt_cache=Path(args.libvirt_cache) if args.libvirt_cache else None,
                       kvm_check_guest=Path(args.kvm_check_guest) if args.kvm_check_guest
                       else None, metrics_port=args.metrics_port)
    return Launcher(cfg, _reporter(args)).run()


def _console(args: argparse.Namespace) -> int:
    from podvirt.launcher.attach import main
    return main(args.socket)


def _probe(args: argparse.Namespace) -> int:
    import json
    import logging
    import time
    from podvirt.launcher.kvm import check_kvm
    from podvirt.launcher.probe import capacity_patch, gather_facts, node_patch
    from podvirt.vmspec.contract import load_at_start
    contract = load_at_start(args.contract, "podvirt launcher probe")
    _setup_logging()
    api = None
    if args.node:
        from kubernetes import client
        from podvirt.launcher.kube import load_config
        load_config(args.kubeconfig)
        api = client.CoreV1Api()
    guest_dirs = (Path(args.kvm_check_guest),) if args.kvm_check_guest else None
    while True:
        facts = gather_facts(sys_root=Path(args.sys_root), proc_root=Path(args.proc_root),
                             kvm=check_kvm(guest_dirs=guest_dirs),
                             pci_sys_root=Path(args.pci_sys_root) if args.pci_sys_root
                             else None, resources=contract.costs.devices)
        print(json.dumps(facts.to_json(), indent=2), flush=True)
        if api is not None:
            from kubernetes.client.exceptions import ApiException
            try:
                api.patch_node(args.node, node_patch(facts))
                if args.vm_slots > 0:
                    api.patch_node_status(args.node, capacity_patch(args.vm_slots))
            except ApiException as exc:
                logging.getLogger("podvirt.launcher").error(
                    "cannot patch node %s: %s %s", args.node, exc.status, exc.reason)
                if args.once:
                    return 1
        if args.once:
            return 0
        time.sleep(args.interval)
