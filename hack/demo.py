"""The podvirt demo (run by hack/demo.sh): the whole flow on one machine, told as a story.

A local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler with the
podvirt extender, this machine as a real kubelet + containerd node running the podvirt
chart, and kwok's fake fleet beside it) takes the example VM pods; the demo shows what the
webhook made of them, where the scheduler put them on the fake fleet and why one fits
nowhere, then boots one VM for real in a launcher pod on the real node, shows the guest's
console (`kubectl logs`) and what the launcher reported, and deletes the pod: the guest gets
an ACPI shutdown. Last, a Debian VM: cloud-init gives it a user with a fresh SSH key and
the demo logs in with `ssh` at the pod's IP. Everything is torn down on exit or Ctrl-C. With --no-node there is no real
node: the webhook and extender run as host processes and the VM boots from a host process
against its pod.

A script of this checkout, not of the installed package: it applies examples/ and builds
the test guest (tests/guest.py, hack/guest/build.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from podvirt.vmspec.keys import CLOUD_INIT_SECRET

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PLACED = ("vm-small.yaml", "vm-pinned.yaml", "vm-gpu.yaml", "vm-too-big.yaml")
GUEST_DIR = Path("/tmp/podvirt/guest")   # the host-process boot (--no-node) reads the guest here


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hack/demo.sh",
        description="Start a local control plane with the podvirt webhook and extender, apply "
                    "the example VM pods, explain where each landed, boot one VM for real with "
                    "podvirt launcher (TCG here), and tear down.")
    p.add_argument("--state-dir", default=None,
                   help="cluster state directory (default: a fresh temporary directory)")
    p.add_argument("--keep", action="store_true",
                   help="leave the cluster running at the end (stop it with podvirt cluster down)")
    p.add_argument("--no-boot", action="store_true", help="skip booting a real VM")
    p.add_argument("--no-debian", action="store_true",
                   help="skip the Debian VM logged into with ssh (1-3 minutes under TCG)")
    p.add_argument("--no-node", action="store_true",
                   help="no real node: webhook and extender as host processes, the VM booted "
                        "from a host process")
    return p


class Story:
    """Readable output: numbered chapters, indented details."""

    def __init__(self) -> None:
        self.chapter = 0
        self.t0 = time.monotonic()

    def title(self, text: str) -> None:
        self.chapter += 1
        print(f"\n\033[1m{self.chapter}. {text}\033[0m", flush=True)

    def say(self, text: str = "", indent: int = 3) -> None:
        for line in text.splitlines() or [""]:
            print(" " * indent + line, flush=True)


def _pods(cluster) -> dict[str, dict]:
    out = cluster.kubectl("get", "pods", "-o", "json").stdout
    return {p["metadata"]["name"]: p for p in json.loads(out)["items"]}


def _scheduling_reason(cluster, name: str) -> str | None:
    out = cluster.kubectl("get", "events", "-o", "json",
                          f"--field-selector=involvedObject.name={name},reason=FailedScheduling",
                          check=False).stdout
    try:
        events = json.loads(out)["items"]
    except (ValueError, KeyError):
        return None
    return events[-1]["message"] if events else None


def _reason_lines(message: str) -> list[str]:
    """'0/4 nodes are available: 1 why, 2 why. preemption: ...' -> one line per reason."""
    m = re.match(r"(\d+/\d+ nodes are available): (.*?)\.(?: (.*))?$", message, re.S)
    if not m:
        return [message]
    reasons = re.split(r", (?=\d+ )", m.group(2))
    return [m.group(1) + ":"] + [f"  {r}" for r in reasons] + ([m.group(3)] if m.group(3) else [])


def _wait_placed(cluster, names: list[str], timeout: float = 30) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        pods = _pods(cluster)
        settled = all(
            (pods.get(n, {}).get("status", {}).get("phase") == "Running")
            or _scheduling_reason(cluster, n) for n in names)
        if settled or time.monotonic() > deadline:
            return pods
        time.sleep(0.5)


def _memory(pod: dict) -> str:
    for c in pod["spec"]["containers"]:
        if c["name"] == "launcher":
            return c.get("resources", {}).get("requests", {}).get("memory", "?")
    return "?"


def _show_placements(story: Story, cluster, names: list[str]) -> None:
    pods = _wait_placed(cluster, names)
    story.say(f"{'pod':<14}{'memory request':<16}{'node':<14}phase")
    for name in names:
        pod = pods.get(name)
        if pod is None:
            story.say(f"{name:<14}(not stored)")
            continue
        node = pod["spec"].get("nodeName") or "-"
        phase = pod.get("status", {}).get("phase", "?")
        story.say(f"{name:<14}{_memory(pod):<16}{node:<14}{phase}")
        devices = pod["metadata"].get("annotations", {}).get("podvirt.io/assigned-devices")
        if devices:
            addrs = ", ".join(d["address"] for d in json.loads(devices))
            story.say(f"{'':<14}assigned device(s): {addrs}")
    for name in names:
        reason = _scheduling_reason(cluster, name)
        pod = pods.get(name)
        if reason and pod is not None and not pod["spec"].get("nodeName"):
            story.say(f"\n{name} stays Pending. The scheduler's FailedScheduling event says:")
            for line in _reason_lines(reason):
                story.say(line, indent=6)


def _show_report(story: Story, cluster, name: str) -> None:
    story.say(f"What the launcher reported on its pod (kubectl get pod {name} -o yaml):")
    stored = json.loads(cluster.kubectl("get", "pod", name, "-o", "json").stdout)
    for key, value in sorted(stored["metadata"].get("annotations", {}).items()):
        if key.startswith("podvirt.io/") and key.split("/")[1] in (
                "phase", "domain-state", "accel", "node", "started-at", "qemu-rss",
                "failure-reason", "failure-message", "guest-ip"):
            story.say(f"{key}: {value}", indent=6)
    events = json.loads(cluster.kubectl(
        "get", "events", "-o", "json", f"--field-selector=involvedObject.name={name}").stdout)
    for ev in events["items"]:
        # The local cluster runs no DNS: kubelet's MissingClusterDNS warning says so on
        # every pod and is not part of the story.
        if ev.get("reason") == "MissingClusterDNS":
            continue
        if ev.get("source", {}).get("component", "") != "default-scheduler":
            story.say(f"event {ev['reason']}: {ev.get('message', '')}", indent=6)


def _boot_on_host(story: Story, cluster, work: Path) -> int:
    from tests.guest import ensure_guest
    from podvirt.vmspec.downward import render_annotations_file

    story.say("building (or reusing) the tiny guest: Debian cloud kernel + busybox initramfs")
    ensure_guest().install(GUEST_DIR)
    manifest = yaml.safe_load((EXAMPLES / "vm-tiny-guest.yaml").read_text())
    # Without a real node the kernel comes from the host's guest cache, not an image.
    ann = manifest["metadata"]["annotations"]
    ann.pop("podvirt.io/kernel-image")
    ann["podvirt.io/kernel"] = str(GUEST_DIR / "vmlinuz")
    ann["podvirt.io/initrd"] = str(GUEST_DIR / "initramfs.cpio.gz")
    ann["podvirt.io/kernel-args"] = "console=ttyS0 quiet"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    pods = _wait_placed(cluster, ["vm-tiny"])
    pod = pods["vm-tiny"]
    node = pod["spec"].get("nodeName", "")
    story.say(f"vm-tiny is bound to {node or '(nothing yet)'}. kwok plays that node, so the "
              "launcher runs here,\nagainst the pod, the way kubelet would start it there:")
    spec_file = work / "annotations"
    spec_file.write_text(render_annotations_file(pod["metadata"].get("annotations", {})))
    env = dict(os.environ, POD_NAME="vm-tiny", POD_NAMESPACE="default", NODE_NAME=node)
    cmd = [sys.executable, "-m", "podvirt.cli", "launcher", "run", "--spec", str(spec_file),
           "--kubeconfig", str(cluster.kubeconfig), "--work-dir", str(work / "launcher")]
    story.say("$ podvirt launcher run --spec " + str(spec_file) + "\n")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        story.say("│ " + line.rstrip(), indent=6)
    rc = proc.wait()
    story.say(f"\nlauncher exited {rc} after {time.monotonic() - started:.1f}s")
    _show_report(story, cluster, "vm-tiny")
    return rc


def _wait_phase(cluster, name: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}",
                              check=False).stdout.strip()
        if out in ("Running", "Succeeded", "Failed") or time.monotonic() > deadline:
            return out or "?"
        time.sleep(0.5)


def _boot_in_pod(story: Story, cluster) -> int:
    """vm-tiny on the real node: kubelet starts the launcher pod; its log is the console."""
    from podvirt.launcher.kvmboot import MARKER
    story.say("$ kubectl apply -f examples/vm-tiny-guest.yaml")
    started = time.monotonic()
    cluster.kubectl("apply", "-f", str(EXAMPLES / "vm-tiny-guest.yaml"))
    phase = _wait_phase(cluster, "vm-tiny", 180)
    pod = json.loads(cluster.kubectl("get", "pod", "vm-tiny", "-o", "json").stdout)
    story.say(f"vm-tiny is {phase} on {pod['spec'].get('nodeName') or '(no node)'} after "
              f"{time.monotonic() - started:.1f}s: its init containers copied the kernel out "
              "of the\ntiny-guest image, the launcher container started libvirtd and QEMU.")
    if phase != "Running":
        _show_report(story, cluster, "vm-tiny")
        return 1
    story.say("$ kubectl logs -f vm-tiny -c launcher     (the guest's serial console)\n")
    logs = subprocess.Popen([str(cluster.binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}",
                             "logs", "-f", "vm-tiny", "-c", "launcher"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert logs.stdout is not None
    up = False
    for line in logs.stdout:
        story.say("│ " + line.rstrip(), indent=6)
        if MARKER.decode() in line:
            up = True
            break
    if not up:
        story.say("the console ended before the guest came up")
        _show_report(story, cluster, "vm-tiny")
        return 1
    story.say(f"\nthe guest is up {time.monotonic() - started:.1f}s after kubectl apply")
    _show_report(story, cluster, "vm-tiny")
    story.say("\n$ kubectl delete pod vm-tiny     (SIGTERM → the launcher asks the guest "
              "to shut down over ACPI)\n")
    deleted = time.monotonic()
    deleter = subprocess.Popen([str(cluster.binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}",
                                "delete", "pod", "vm-tiny", "--wait=true"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for line in logs.stdout:
        story.say("│ " + line.rstrip(), indent=6)
    logs.wait()
    rc = deleter.wait()
    story.say(f"\nvm-tiny is gone {time.monotonic() - deleted:.1f}s after kubectl delete")
    return rc


def _debian_over_ssh(story: Story, cluster, work: Path) -> int:
    """examples/vm-debian.yaml with a Secret holding a fresh key; log in with ssh."""
    manifest = yaml.safe_load((EXAMPLES / "vm-debian.yaml").read_text())
    name = manifest["metadata"]["name"]
    secret = manifest["metadata"]["annotations"][CLOUD_INIT_SECRET]
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().strip()
    user_data = work / "user-data.yaml"
    user_data.write_text("#cloud-config\nusers:\n  - name: debian\n    shell: /bin/bash\n"
                         f"    ssh_authorized_keys: [\"{public}\"]\n")
    story.say(f"$ kubectl create secret generic {secret} --from-file=userdata={user_data.name}")
    cluster.kubectl("create", "secret", "generic", secret, f"--from-file=userdata={user_data}")
    story.say("$ kubectl apply -f examples/vm-debian.yaml")
    started = time.monotonic()
    cluster.kubectl("apply", "-f", str(EXAMPLES / "vm-debian.yaml"))
    if _wait_phase(cluster, name, 300) != "Running":
        _show_report(story, cluster, name)
        return 1
    pod_ip = cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.podIP}").stdout.strip()
    story.say(f"{name} runs at {pod_ip}; systemd and cloud-init boot under TCG, waiting for "
              "sshd ...")
    ssh = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
           f"debian@{pod_ip}"]
    command = "hostname; . /etc/os-release; echo $PRETTY_NAME; ip -4 -o addr show scope global"
    deadline = time.monotonic() + 600
    while (out := subprocess.run([*ssh, command], capture_output=True, text=True,
                                 timeout=60)).returncode != 0:
        if time.monotonic() > deadline:
            story.say(f"no ssh login: {out.stderr.strip()}")
            return 1
        time.sleep(5)
    story.say(f"\n$ ssh debian@{pod_ip} '{command}'     "
              f"({time.monotonic() - started:.0f}s after kubectl apply)")
    story.say(out.stdout.rstrip(), indent=6)
    story.say(f"\n$ kubectl delete pod {name}     (systemd powers off on the ACPI button)")
    deleted = time.monotonic()
    cluster.kubectl("delete", "pod", name, "--wait=true")
    cluster.kubectl("delete", "secret", secret)
    story.say(f"{name} is gone {time.monotonic() - deleted:.1f}s after kubectl delete")
    return 0


def _for_fake_fleet(path: Path) -> str:
    """A scheduling example aimed at kwok's fake fleet: beside the real node those nodes
    are tainted (cluster/inventory.py), and no container image there is ever pulled."""
    manifest = yaml.safe_load(path.read_text())
    spec = manifest["spec"]
    spec.setdefault("tolerations", []).append(
        {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"})
    spec.setdefault("nodeSelector", {})["type"] = "kwok"
    return yaml.safe_dump(manifest)


def run(args: argparse.Namespace) -> int:
    from podvirt.cluster.cluster import Cluster

    story = Story()
    tmp = tempfile.TemporaryDirectory(prefix="podvirt-demo-")
    state_dir = Path(args.state_dir) if args.state_dir else Path(tmp.name) / "cluster"
    cluster = Cluster(state_dir, progress=lambda m: story.say(m, indent=6))
    rc = 0
    try:
        if args.no_node:
            story.title("A local control plane: etcd, kube-apiserver, kube-scheduler + podvirt "
                        "extender, kwok nodes, podvirt webhook")
        else:
            story.title("A local cluster: etcd, kube-apiserver, kube-controller-manager, "
                        "kube-scheduler + podvirt extender,\n   this machine as a real node "
                        "(kubelet, containerd) running the podvirt chart, kwok's fake fleet")
        cluster.up(node=not args.no_node)
        nodes = cluster.kubectl("get", "nodes", "-L", "podvirt.io/kvm,podvirt.io/zone").stdout
        story.say(nodes)

        story.title("A VM pod with broken annotations is refused at the door")
        story.say("$ kubectl apply -f examples/vm-bad.yaml")
        bad = cluster.kubectl("apply", "-f", str(EXAMPLES / "vm-bad.yaml"), check=False)
        story.say((bad.stderr or bad.stdout).strip(), indent=6)

        story.title("Four VM pods: small, pinned to zone b with hugepages, with a GPU, and one "
                    "too big for any node")
        if not args.no_node:
            story.say("(placed on kwok's fake fleet: the demo adds a toleration of its taint "
                      "and a type=kwok node selector)\n")
        for name in PLACED:
            story.say(f"$ kubectl apply -f examples/{name}")
            if args.no_node:
                cluster.kubectl("apply", "-f", str(EXAMPLES / name))
            else:
                cluster.kubectl("apply", "-f", "-", input=_for_fake_fleet(EXAMPLES / name))
        small = json.loads(cluster.kubectl("get", "pod", "vm-small", "-o", "json").stdout)
        launcher = next(c for c in small["spec"]["containers"] if c["name"] == "launcher")
        story.say("\nThe webhook turned vm-small into a launcher pod; its container:")
        story.say(json.dumps({"image": launcher["image"], "args": launcher.get("args"),
                              "resources": launcher.get("resources")}, indent=2), indent=6)
        story.title("Where the scheduler and the podvirt extender put them")
        _show_placements(story, cluster, [n.removesuffix(".yaml") for n in PLACED])

        if not args.no_boot:
            story.title("Booting one VM for real: launcher pod → libvirtd → QEMU (TCG here)")
            if args.no_node:
                work = Path(tmp.name) / "boot"
                work.mkdir(parents=True, exist_ok=True)
                rc = _boot_on_host(story, cluster, work)
            else:
                rc = _boot_in_pod(story, cluster)
                if rc == 0 and not args.no_debian:
                    story.title("A Debian VM you can log into: cloud-init user, ssh to the "
                                "pod's IP")
                    work = Path(tmp.name) / "debian"
                    work.mkdir(parents=True, exist_ok=True)
                    rc = _debian_over_ssh(story, cluster, work)
        story.title("Done")
        story.say(f"demo took {time.monotonic() - story.t0:.0f}s")
    except KeyboardInterrupt:
        story.say("\ninterrupted")
        rc = 130
    finally:
        if args.keep:
            story.say(f"cluster left running: export KUBECONFIG={cluster.kubeconfig}; "
                      f"stop it with podvirt cluster down --state-dir {state_dir}")
        else:
            story.say("tearing down the local control plane")
            cluster.down()
            tmp.cleanup()
    return rc


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))     # tests.guest: the test guest's builder
    sys.exit(run(parser().parse_args()))
