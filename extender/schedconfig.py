"""kube-scheduler configuration that registers the extender.

`render_scheduler_config` fills the shipped KubeSchedulerConfiguration template
(config/kube-scheduler-config.yaml): a stock profile for plain pods and a VM profile whose
resource fit is the extender's. (The legacy Policy file of schedulers before 1.23 is not
offered: no supported Kubernetes reads it.)
"""

from __future__ import annotations

import base64
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# The profile VM pods name by default (the contract's schedulerName).
from podvirt.vmspec.contract import VM_SCHEDULER

_DURATION = re.compile(r"^([0-9]+)(ms|s|m)$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
PLAIN_SCHEDULER = "default-scheduler"
# The VM profile's memory scoring: NodeResourcesFit's strategy per podvirt policy.
SCORING = {"spread": "LeastAllocated", "pack": "MostAllocated"}


def _template(name: str) -> str:
    return (resources.files("podvirt.extender") / "config" / name).read_text()


def _tls(url: str, ca_file: str | None, insecure: bool) -> dict[str, Any]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"extender URL must start with http:// or https://, got {url!r}")
    tls: dict[str, Any] = {"insecure": insecure}
    if ca_file:
        tls["caData"] = base64.b64encode(Path(ca_file).read_bytes()).decode()
    return tls


def _fill(extender: dict[str, Any], url: str, ca_file: str | None, insecure: bool,
          weight: int) -> None:
    https = url.startswith("https://")
    extender["urlPrefix"] = url.rstrip("/")
    extender["weight"] = weight
    for key in ("enableHTTPS", "enableHttps"):
        if key in extender:
            extender[key] = https
    if https:
        extender["tlsConfig"] = _tls(url, ca_file, insecure)
    else:
        _tls(url, None, False)   # validates the scheme
        extender.pop("tlsConfig", None)


def render_scheduler_config(url: str, ca_file: str | None = None,
                            kubeconfig: str = "/etc/kubernetes/scheduler.conf", *,
                            insecure: bool = False, weight: int = 1, http_timeout: str = "10s",
                            scheduler_name: str = VM_SCHEDULER,
                            plain_scheduler_name: str | None = PLAIN_SCHEDULER,
                            leader_elect: bool = False,
                            scoring: str = "spread",
                            device_resources: tuple[str, ...] = (),
                            vm_nodes_percentage: int = 100) -> str:
    """KubeSchedulerConfiguration YAML: the VM profile `scheduler_name` (NodeResourcesFit
    filtering off: the extender fits VM pods), the stock profile `plain_scheduler_name`
    (None: left out, for a second scheduler that must not take plain pods from the
    cluster's own), and our extender at `url`, trusting the PEM CA in `ca_file` (or
    nothing but `insecure`).

    `vm_nodes_percentage` is the VM profile's percentageOfNodesToScore: 100 (every node)
    unless throughput matters more than finding the nodes a VM fits (0: kube-scheduler's
    adaptive sample, 42% at 1000 nodes, drawn before the extender is asked).

    `scoring`: the VM profile spreads VMs over the nodes with the most free memory or packs
    them (NodeResourcesFit LeastAllocated / MostAllocated). `device_resources`: the
    contract's passthrough resource names; pods requesting them also get the extender's
    NUMA-locality prioritize (a second entry: without devices there is nothing to rank)."""
    if not _DURATION.match(http_timeout):
        raise ValueError(f"http_timeout must look like 10s, got {http_timeout!r}")
    if not 1 <= weight <= 100:
        raise ValueError(f"weight must be between 1 and 100, got {weight}")
    for name in (scheduler_name, plain_scheduler_name):
        if name is not None and not _NAME.match(name):
            raise ValueError(f"scheduler name must be a DNS-1123 subdomain, got {name!r}")
    if not 0 <= vm_nodes_percentage <= 100:
        raise ValueError(f"vm_nodes_percentage must be between 0 and 100, got "
                         f"{vm_nodes_percentage}")
    if scoring not in SCORING:
        raise ValueError(f"scoring must be one of {', '.join(SCORING)}, got {scoring!r}")
    if scheduler_name == plain_scheduler_name:
        raise ValueError(f"the VM and the plain profile need different names, both are "
                         f"{scheduler_name!r}")
    cfg = yaml.safe_load(_template("kube-scheduler-config.yaml"))
    cfg["clientConnection"]["kubeconfig"] = kubeconfig
    cfg["leaderElection"]["leaderElect"] = leader_elect
    plain, vm = cfg["profiles"]
    plain["schedulerName"], vm["schedulerName"] = plain_scheduler_name, scheduler_name
    vm["percentageOfNodesToScore"] = vm_nodes_percentage
    vm["pluginConfig"][0]["args"]["scoringStrategy"]["type"] = SCORING[scoring]
    cfg["profiles"] = [plain, vm] if plain_scheduler_name else [vm]
    fit, numa = cfg["extenders"]
    for extender in (fit, numa):
        _fill(extender, url, ca_file, insecure, weight)
        extender["httpTimeout"] = http_timeout
    numa["managedResources"] = [{"name": r, "ignoredByScheduler": False}
                                for r in device_resources]
    cfg["extenders"] = [fit, numa] if device_resources else [fit]
    return yaml.safe_dump(cfg, sort_keys=False)
