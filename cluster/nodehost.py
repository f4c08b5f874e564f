"""The real node's host side: prerequisites, the bridge, configuration files, and a
teardown that leaves the machine as it was.

kubelet, containerd and the CNI plugins create mounts, network namespaces, veths,
iptables rules, cgroups and a few files at fixed host paths. `podvirt cluster down` first
deletes the node's pods through the API (kubelet then stops them cleanly, CNI DEL
included); `teardown` then removes whatever a crash or a kill left behind.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Callable

from podvirt.cluster import node
from podvirt.cluster.node import NodeLayout

Progress = Callable[[str], None]

# What the node needs from the machine: Debian's containerd, runc and
# containernetworking-plugins, iproute2 and iptables (hack/setup.sh installs them).
_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "iptables",
             "mount", "umount")
_CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
_CGROUP_ROOT = Path("/sys/fs/cgroup")
# kubelet's cgroupfs driver puts every pod under this cgroup of each hierarchy.
_PODS_CGROUP = "kubepods"


class NodeError(RuntimeError):
    """The real node cannot run here; the message says what is missing."""


def missing_prerequisites() -> list[str]:
    missing = [] if os.geteuid() == 0 else ["root (kubelet and containerd run as root)"]
    missing += [c for c in _COMMANDS if shutil.which(c) is None]
    missing += [f"{node.CNI_BIN_DIR}/{p}" for p in _CNI_PLUGINS
                if not os.access(Path(node.CNI_BIN_DIR) / p, os.X_OK)]
    return missing


def check_prerequisites() -> None:
    missing = missing_prerequisites()
    if missing:
        raise NodeError(f"the real node needs {', '.join(missing)} (hack/setup.sh installs "
                        "them); or run without it: podvirt cluster up --no-node")


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()}")
    return proc


# --- ownership: one real node per machine --------------------------------------------------

def owner(layout: NodeLayout) -> Path | None:
    try:
        return Path(layout.owner.read_text().strip())
    except OSError:
        return None


def claim(layout: NodeLayout, state_dir: Path, owner_alive: Callable[[Path], bool]) -> bool:
    """Record `state_dir` as the node's owner. Refuses while another live cluster owns it;
    returns True when a dead owner's leftovers must be cleaned first."""
    current = owner(layout)
    if current is not None and current != state_dir and owner_alive(current):
        raise NodeError(f"this machine's real node belongs to the cluster in {current}; stop "
                        f"it (podvirt cluster down --state-dir {current}) or run with --no-node")
    stale = current is not None or layout.root.exists()
    layout.run.mkdir(parents=True, exist_ok=True)
    layout.owner.write_text(f"{state_dir}\n")
    return stale


# --- host network ---------------------------------------------------------------------------

def _sysctl(path: str, value: str) -> None:
    target = Path("/proc/sys") / path
    if target.read_text().strip() != value:
        target.write_text(value)


def prepare_network() -> None:
    """The bridge with the node's address (kubelet, kube-proxy and the API server listen
    on it before the first pod exists), forwarding on, and bridged traffic through
    iptables so kube-proxy's Service rules also apply between pods on the bridge."""
    if _run("ip", "link", "show", node.BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", node.BRIDGE, "type", "bridge")
    prefix = node.POD_SUBNET.prefixlen
    addrs = _run("ip", "-o", "-4", "addr", "show", "dev", node.BRIDGE).stdout
    if f" {node.NODE_IP}/{prefix} " not in addrs:
        _run("ip", "addr", "add", f"{node.NODE_IP}/{prefix}", "dev", node.BRIDGE)
    _run("ip", "link", "set", node.BRIDGE, "up")
    _sysctl("net/ipv4/ip_forward", "1")
    if not Path("/proc/sys/net/bridge").is_dir():
        _run("modprobe", "br_netfilter", check=False)
    if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        _sysctl("net/bridge/bridge-nf-call-iptables", "1")


def write_configs(layout: NodeLayout, ports: node.NodePorts, pki_dir: Path,
                  proxy_kubeconfig: Path) -> None:
    for d in (layout.root, layout.run, layout.cni_conf_dir, layout.cni_ipam_dir,
              layout.kubelet_root, layout.pod_logs):
        d.mkdir(parents=True, exist_ok=True)
    layout.containerd_config.write_text(node.containerd_config(layout, ports))
    (layout.cni_conf_dir / f"10-{node.CNI_NETWORK}.conflist").write_text(
        json.dumps(node.cni_config(layout), indent=2))
    layout.kubelet_config.write_text(node.kubelet_config(layout, ports, pki_dir))
    layout.kube_proxy_config.write_text(node.kube_proxy_config(layout, ports, proxy_kubeconfig))


def ctr(layout: NodeLayout, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return _run("ctr", f"--address={layout.containerd_socket}",
                f"--namespace={node.CONTAINERD_NAMESPACE}", *args, timeout=timeout)


def import_image(layout: NodeLayout, archive: Path) -> None:
    ctr(layout, "images", "import", "--no-unpack", str(archive))


# --- teardown ----------------------------------------------------------------------------

def sandbox_netns(layout: NodeLayout) -> list[Path]:
    """Network namespaces of our containerd's pod sandboxes (while it still runs)."""
    if not layout.containerd_socket.exists():
        return []
    found: list[Path] = []
    try:
        ids = ctr(layout, "containers", "list", "--quiet", timeout=20).stdout.split()
        for cid in ids:
            info = json.loads(ctr(layout, "containers", "info", cid, timeout=20).stdout)
            for ns in info.get("Spec", {}).get("linux", {}).get("namespaces", []):
                if ns.get("type") == "network" and ns.get("path"):
                    found.append(Path(ns["path"]))
    except (NodeError, ValueError, subprocess.TimeoutExpired):
        pass
    return sorted(set(found))


def _pids_of(pattern: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmdline:
            pids.append(int(proc.name))
    return pids


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _pod_cgroups() -> list[Path]:
    """Every kubepods cgroup directory, deepest first, across the v1 hierarchies (or the
    unified one)."""
    roots = [_CGROUP_ROOT / _PODS_CGROUP] if (_CGROUP_ROOT / "cgroup.controllers").exists() \
        else [d / _PODS_CGROUP for d in _CGROUP_ROOT.iterdir() if d.is_dir() and not d.is_symlink()]
    found = []
    for root in roots:
        if root.is_dir():
            found += [Path(p) for p, _, _ in os.walk(root)]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _kill_pod_processes() -> None:
    for cgroup in _pod_cgroups():
        try:
            _kill([int(p) for p in (cgroup / "cgroup.procs").read_text().split()])
        except OSError:
            pass


def _remove_pod_cgroups() -> None:
    for cgroup in _pod_cgroups():
        try:
            cgroup.rmdir()
        except OSError:
            pass


def _mounts_under(roots: tuple[Path, ...]) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(r) or point.startswith(f"{r}/") for r in roots):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _unmount_all(roots: tuple[Path, ...]) -> None:
    for _ in range(3):               # nested and stacked mounts may need a second pass
        points = _mounts_under(roots)
        if not points:
            return
        for point in points:
            _run("umount", "--lazy", point, check=False)


def _remove_cni_nat_rules() -> None:
    """The bridge plugin's masquerade rules (POSTROUTING -> CNI-<hash>, commented with our
    network's name), which a pod killed without CNI DEL leaves behind."""
    marker = f'name: \\"{node.CNI_NETWORK}\\"'
    rules = _run("iptables", "-t", "nat", "-S", "POSTROUTING", check=False).stdout.splitlines()
    for rule in rules:
        if marker not in rule or not rule.startswith("-A POSTROUTING"):
            continue
        args = shlex.split(rule)[2:]          # iptables -S quotes the comment shell-style
        chain = args[args.index("-j") + 1] if "-j" in args else ""
        _run("iptables", "-t", "nat", "-D", "POSTROUTING", *args, check=False)
        if chain.startswith("CNI-"):
            _run("iptables", "-t", "nat", "-F", chain, check=False)
            _run("iptables", "-t", "nat", "-X", chain, check=False)


# Chains kubelet itself keeps (its iptables canary, and the rule dropping non-local
# traffic to 127.0.0.0/8), per table; kube-proxy --cleanup leaves them to kubelet.
_KUBELET_CHAINS = {"mangle": ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"),
                   "nat": ("KUBE-KUBELET-CANARY",),
                   "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY")}


def _remove_kubelet_chains() -> None:
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table, chains in _KUBELET_CHAINS.items():
            for builtin in ("INPUT", "OUTPUT"):
                while _run(tool, "-t", table, "-D", builtin, "-j", "KUBE-FIREWALL",
                           check=False).returncode == 0:
                    pass
            for chain in chains:
                _run(tool, "-t", table, "-F", chain, check=False)
                _run(tool, "-t", table, "-X", chain, check=False)


def _remove_fixed_path_leftovers(layout: NodeLayout, netns: list[Path]) -> None:
    logs = Path("/var/log/containers")
    for link in logs.glob("*.log") if logs.is_dir() else []:
        try:
            if link.is_symlink() and str(os.readlink(link)).startswith(f"{layout.pod_logs}/"):
                link.unlink()
        except OSError:
            pass
    results = Path("/var/lib/cni/results")
    for cached in results.glob(f"{node.CNI_NETWORK}-*") if results.is_dir() else []:
        cached.unlink(missing_ok=True)
    for path in netns:
        _run("umount", "--lazy", str(path), check=False)
        path.unlink(missing_ok=True)
    # kubelet's registration socket and our plugins' sockets (kubelet deletes the
    # plugins' own at start, not at exit); other plugins' sockets are left alone.
    plugins = layout.device_plugins
    for sock in (plugins / "kubelet.sock", *plugins.glob("podvirt-*.sock")):
        sock.unlink(missing_ok=True)
    # The throwaway cluster's PersistentVolumes go with it (etcd, which knew them, is gone).
    shutil.rmtree(node.HOSTPATH_PV_DIR, ignore_errors=True)
    # The directories themselves, where nothing else uses them (kubelet, libcni and
    # containerd created them).
    for directory in (results, *NodeLayout.fixed_host_paths()):
        try:
            directory.rmdir()
        except OSError:
            pass


def teardown(layout: NodeLayout, kube_proxy: Path | None, netns: list[Path],
             progress: Progress = lambda _: None) -> None:
    """After kubelet, containerd and kube-proxy were stopped: kill what survived them,
    then remove mounts, namespaces, rules, the bridge and the node's directories."""
    _kill(_pids_of(f"-address {layout.containerd_socket}"))   # containerd-shim-runc-v2
    _kill_pod_processes()
    _unmount_all((layout.root, layout.run))
    _remove_pod_cgroups()
    _remove_fixed_path_leftovers(layout, netns)
    if kube_proxy is not None:
        _run(*node.kube_proxy_cleanup(kube_proxy), check=False)
    _remove_cni_nat_rules()
    _remove_kubelet_chains()
    _run("ip", "link", "delete", node.BRIDGE, check=False)
    for d in (layout.root, layout.run):
        shutil.rmtree(d, ignore_errors=True)
    progress("real node torn down")


def leftovers(layout: NodeLayout) -> list[str]:
    """What of the real node is still on this machine (empty after a clean teardown):
    tests check it, and `cluster up` uses teardown() when a dead owner left some."""
    found = [f"mount {p}" for p in _mounts_under((layout.root, layout.run))]
    found += [f"directory {d}" for d in (layout.root, layout.run) if d.exists()]
    plugins = layout.device_plugins
    found += [f"socket {s}" for s in (plugins / "kubelet.sock", *plugins.glob("podvirt-*.sock"))
              if s.exists()]
    found += [f"cgroup {c}" for c in _pod_cgroups()]
    if node.HOSTPATH_PV_DIR.exists():
        found.append(f"directory {node.HOSTPATH_PV_DIR}")
    found += [f"process {p}" for p in _pids_of(f"-address {layout.containerd_socket}")]
    if _run("ip", "link", "show", node.BRIDGE, check=False).returncode == 0:
        found.append(f"bridge {node.BRIDGE}")
    for table in ("nat", "filter", "mangle"):
        rules = _run("iptables", "-t", table, "-S", check=False).stdout.splitlines()
        found += [f"iptables -t {table} {r}" for r in rules
                  if r.startswith("-N KUBE-") or r.startswith("-N CNI-")]
    return found
