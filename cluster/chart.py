"""podvirt installed by its own Helm chart on the local cluster's real node, the way a user
installs it on a real cluster.

`helm install` runs the certificate hook Jobs, the webhook and extender Deployments and
the node DaemonSet (probe + device plugin) as real pods from the images built here
(hack/images/build.sh). The local kube-scheduler runs on the host, so it is given what the
chart's scheduler ConfigMap says to give "the cluster's own kube-scheduler": that very
configuration, with the CA from the chart's TLS Secret and the extender Service's
ClusterIP in place of its DNS name (the host has no cluster DNS; the certificate is still
checked against the Service name).
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from podvirt.cluster.node import NODE_NAME, NodeLayout
from podvirt.vmspec.contract import CHART_DERIVED, DEFAULT_CONTRACT, Contract

CHART = Path(__file__).resolve().parent.parent / "charts" / "podvirt"
RELEASE = "podvirt"
NAMESPACE = "podvirt"
VM_NAMESPACES = ("default",)
# Image names and tag hack/images/build.sh gives the images it builds.
IMAGE_REPOSITORY = "localhost/podvirt/podvirt"
LAUNCHER_REPOSITORY = "localhost/podvirt/launcher"
IMAGE_TAG = "0.1.0"
# The webhook's name in the chart's MutatingWebhookConfiguration (templates/mutatingwebhook.yaml).
WEBHOOK_NAME = "pods.podvirt.io"


class ChartError(RuntimeError):
    """helm failed or the release's pods did not become ready; the message says which."""


def contract_values(contract: Contract) -> dict[str, Any]:
    """The chart values that render `contract` into the chart's contract ConfigMap: its
    `contract:` block, and the values the chart derives the other keys from (the launcher
    image is the chart's launcherImage, here the image built locally)."""
    doc = contract.document()
    return {"contract": {key: value for key, value in doc.items() if key not in CHART_DERIVED},
            "scheduler": {"name": doc["schedulerName"]},
            "passthrough": {"resources": doc["deviceResources"]}}


def local_values(layout: NodeLayout, contract: Contract = DEFAULT_CONTRACT) -> dict[str, Any]:
    """Values for the local cluster: the images built here (never pulled: no registry),
    podvirt's own pods on the real node (kwok's nodes run nothing), one webhook replica
    (its anti-affinity wants a second node), the node agents on the real node with its
    kubelet's private root dir; the evacuator may move a VM within the one real node
    (an eviction then still migrates it; a drain cordons the node and cannot); the
    contract's values."""
    on_node = {"kubernetes.io/hostname": NODE_NAME}
    return {**contract_values(contract),
        "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
        "launcherImage": {"repository": LAUNCHER_REPOSITORY, "tag": IMAGE_TAG,
                          "pullPolicy": "Never"},
        "webhook": {"replicas": 1, "minAvailable": 0, "nodeSelector": on_node},
        "extender": {"nodeSelector": on_node},
        "probe": {"nodeSelector": on_node},
        "devicePlugin": {"pluginDir": str(layout.device_plugins)},
        "hooks": {"nodeSelector": on_node},
        "launcher": {"namespaces": list(VM_NAMESPACES)},
        "evacuation": {"sameNode": True, "nodeSelector": on_node},
    }


def helm(helm_bin: Path, kubeconfig: Path, *args: str, timeout: float = 600) -> str:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HELM_CACHE_HOME": "/tmp/podvirt-helm",
           "HELM_CONFIG_HOME": "/tmp/podvirt-helm", "HELM_DATA_HOME": "/tmp/podvirt-helm"}
    proc = subprocess.run([str(helm_bin), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if proc.returncode != 0:
        raise ChartError(f"helm {' '.join(args[:2])} failed ({proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def install(helm_bin: Path, kubeconfig: Path, values_file: Path, timeout: float) -> None:
    """`helm install --wait`: hooks, then every Deployment and DaemonSet ready."""
    helm(helm_bin, kubeconfig, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--create-namespace", "--values", str(values_file), "--wait",
         "--timeout", f"{int(timeout)}s", timeout=timeout + 30)


def scheduler_config(api, ca_file: Path) -> str:
    """The chart's KubeSchedulerConfiguration for the host's kube-scheduler; writes the
    chart's CA to `ca_file`."""
    from kubernetes import client
    core = client.CoreV1Api(api)
    name = f"{RELEASE}-scheduler-config"
    config = yaml.safe_load(core.read_namespaced_config_map(name, NAMESPACE).data["config.yaml"])
    secret = core.read_namespaced_secret("podvirt-tls", NAMESPACE)
    ca_file.write_bytes(base64.b64decode(secret.data["ca.crt"]))
    service = core.read_namespaced_service(f"{RELEASE}-extender", NAMESPACE)
    for extender in config.get("extenders", []):
        port = extender["urlPrefix"].rsplit(":", 1)[1]
        extender["urlPrefix"] = f"https://{service.spec.cluster_ip}:{port}"
        extender.setdefault("tlsConfig", {})["caFile"] = str(ca_file)
    return yaml.safe_dump(config, sort_keys=False)


def wait_node_resources(api, resources: tuple[str, ...], timeout: float) -> None:
    """Until the real node advertises `resources` (the probe's podvirt.io/vm, the device
    plugin's devices): before that every VM pod would be refused by kubelet."""
    from kubernetes import client
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        allocatable = core.read_node(NODE_NAME).status.allocatable or {}
        missing = [r for r in resources if int(allocatable.get(r, "0") or 0) == 0]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ChartError(f"node {NODE_NAME} does not advertise {', '.join(missing)} after "
                             f"{timeout:.0f}s: is the podvirt-probe DaemonSet pod running? "
                             f"(kubectl -n {NAMESPACE} get pods)")
        time.sleep(0.5)
