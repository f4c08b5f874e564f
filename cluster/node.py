"""The local cluster's one real node, as pure configuration: containerd, kubelet, CNI and
kube-proxy files and command lines.

The node is this machine: kubelet runs pods with containerd + runc (Debian's packages),
the CNI bridge plugin puts each pod on the bridge `podvirt0`, and the host side of that
bridge is the node's IP, which the API server also listens on so pods reach it through
the `kubernetes` Service. Everything the node writes lives under NodeLayout's two roots,
except the few host paths kubelet, containerd and CNI hard-code (listed in
`NodeLayout.fixed_host_paths`), which `nodehost.teardown` cleans.

Nothing here starts a process (see nodehost.py and cluster.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import tomli_w
import yaml

NODE_NAME = "podvirt-node"
BRIDGE = "podvirt0"
# Real pods get 10.244.0.0/24; kwok's fake pods use 10.0.0.0/16 (components.POD_CIDR),
# Services 10.96.0.0/16 (components.SERVICE_CIDR). The bridge's address is the node's IP.
POD_SUBNET = ipaddress.ip_network("10.244.0.0/24")
CLUSTER_CIDR = "10.244.0.0/16"
NODE_IP = str(POD_SUBNET.network_address + 1)
CNI_NETWORK = "podvirt"
CNI_BIN_DIR = "/usr/lib/cni"                    # Debian's containernetworking-plugins
# The pause image hack/images/build.sh builds from Kubernetes' own pause.c.
SANDBOX_IMAGE = "localhost/podvirt/pause:3.10"
CONTAINERD_NAMESPACE = "k8s.io"                 # where the CRI plugin keeps images


@dataclass(frozen=True)
class NodeLayout:
    """Host paths of the real node. Fixed rather than under the cluster's state dir: unix
    socket paths are limited to 108 bytes, and only one real node can run per machine
    anyway (kube-proxy's iptables chains are host-wide)."""
    root: Path = Path("/var/lib/podvirt-node")
    run: Path = Path("/run/podvirt-node")

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def device_plugins(self) -> Path:
        """Where kubelet's device manager listens (kubelet.sock) and plugins register:
        fixed by the device plugin API (v1beta1 DevicePluginPath), not under --root-dir."""
        return DEVICE_PLUGIN_DIR

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def owner(self) -> Path:
        """Names the state dir of the cluster that owns the node (one per machine)."""
        return self.run / "owner"

    @staticmethod
    def fixed_host_paths() -> tuple[Path, ...]:
        """Paths outside our roots that kubelet, containerd or libcni write regardless of
        configuration: container log symlinks, CNI result caches, network namespaces."""
        return (Path("/var/log/containers"), Path("/var/lib/cni"), Path("/run/netns"),
                DEVICE_PLUGIN_DIR, DEVICE_PLUGIN_DIR.parent, HOSTPATH_PV_DIR)


DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
# kube-controller-manager's hostPath provisioner always provisions here (a fixed path in
# its code); with one real node a hostPath volume is a real PersistentVolume that outlives
# the pods using it.
HOSTPATH_PV_DIR = Path("/tmp/hostpath_pv")
STORAGE_CLASS = "podvirt-hostpath"


def storage_class() -> dict:
    """The local cluster's default StorageClass: PVCs get hostPath volumes on the node."""
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kubernetes.io/host-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate"}


@dataclass(frozen=True)
class NodePorts:
    kubelet: int
    kubelet_healthz: int
    containerd_metrics: int
    proxy_healthz: int
    proxy_metrics: int

def containerd_config(layout: NodeLayout, ports: NodePorts) -> str:
    """containerd 1.6 (config version 2) with a private root, state and socket, so it never
    touches a containerd the machine may already run."""
    cri = {
        "sandbox_image": SANDBOX_IMAGE,
        # root here lacks CAP_SYS_RESOURCE: runc cannot lower a sandbox's oom_score_adj
        # below our own ("can't get final child's PID from pipe: EOF") unless the CRI
        # plugin clamps it to what we may set.
        "restrict_oom_score_adj": True,
        "disable_apparmor": True,
        "enable_selinux": False,
        # exec/attach/port-forward streams: loopback only (kubelet proxies them).
        "stream_server_address": "127.0.0.1", "stream_server_port": "0",
        "containerd": {
            "snapshotter": "overlayfs",
            "default_runtime_name": "runc",
            "runtimes": {"runc": {"runtime_type": "io.containerd.runc.v2",
                                  # kubelet's cgroupDriver is cgroupfs: no systemd here.
                                  "options": {"SystemdCgroup": False}}},
        },
        "cni": {"bin_dir": CNI_BIN_DIR, "conf_dir": str(layout.cni_conf_dir),
                "max_conf_num": 1},
    }
    config = {
        "version": 2,
        "root": str(layout.containerd_root),
        "state": str(layout.containerd_state),
        # Snapshotters we do not use would probe (and log about) host filesystems.
        "disabled_plugins": ["io.containerd.snapshotter.v1.aufs",
                             "io.containerd.snapshotter.v1.btrfs",
                             "io.containerd.snapshotter.v1.devmapper",
                             "io.containerd.snapshotter.v1.zfs",
                             "io.containerd.tracing.processor.v1.otlp"],
        "grpc": {"address": str(layout.containerd_socket)},
        "ttrpc": {"address": f"{layout.containerd_socket}.ttrpc"},
        # Its /v1/metrics endpoint is also the health probe of `podvirt cluster status`.
        "metrics": {"address": f"127.0.0.1:{ports.containerd_metrics}"},
        "plugins": {"io.containerd.internal.v1.opt": {"path": str(layout.root / "opt")},
                    "io.containerd.grpc.v1.cri": cri},
    }
    return tomli_w.dumps(config)


def cni_config(layout: NodeLayout) -> dict:
    """One bridge network: pods on podvirt0 with the node as gateway, masqueraded when
    they leave the pod subnet; portmap for hostPort."""
    return {
        "cniVersion": "1.0.0", "name": CNI_NETWORK,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(layout.cni_ipam_dir),
                      "ranges": [[{"subnet": str(POD_SUBNET), "gateway": NODE_IP}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: NodeLayout, ports: NodePorts, pki_dir: Path) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": ports.kubelet, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": str(pki_dir / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki_dir / "kubelet.key"),
        # The API server proves itself with its kubelet-client certificate; kubelet asks
        # it (SubjectAccessReview) whether a caller may reach logs, exec and metrics.
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki_dir / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        # This machine has the cgroup v1 hierarchy, which kubelet 1.34 runs on only when told.
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(layout.pod_logs),
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "maxPods": 110,
        # Images here are built locally and cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        # A development machine's disk is shared with everything else: evict only when
        # it is really full.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
        "serializeImagePulls": False,
        "registerNode": True,
        "nodeStatusReportFrequency": "1m",
        # Faster pod start and stop in a throwaway cluster.
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    }
    return yaml.safe_dump(config, sort_keys=False)


def kubelet(binary: Path, layout: NodeLayout, kubeconfig: Path) -> list[str]:
    return [str(binary), f"--config={layout.kubelet_config}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={layout.kubelet_root}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}", "--v=1"]


def kube_proxy_config(layout: NodeLayout, ports: NodePorts, kubeconfig: Path) -> str:
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "clusterCIDR": CLUSTER_CIDR,
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        # Leave the host's conntrack sysctls alone (0 = do not set).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        # NodePorts on 127.0.0.1 would need route_localnet on the host's loopback.
        "iptables": {"localhostNodePorts": False},
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy(binary: Path, layout: NodeLayout) -> list[str]:
    return [str(binary), f"--config={layout.kube_proxy_config}", "--v=1"]


def kube_proxy_cleanup(binary: Path) -> list[str]:
    """kube-proxy's own removal of every rule and chain it created."""
    return [str(binary), "--cleanup", "--v=1"]
