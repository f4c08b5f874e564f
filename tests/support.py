"""Helpers shared by the tiers that run against a local control plane (e2e, node, hardening)."""

import dataclasses
import itertools
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_counter = itertools.count()


@contextmanager
def local_cluster(state_dir: Path, *, require: bool = False, **options: Any) -> Iterator[Any]:
    """A podvirt local cluster (podvirt.cluster UpOptions `options`) for a fixture: brought
    down afterwards, also when `up` failed half-way. Without the control-plane binaries the
    test is skipped, or failed where the tier `require`s them."""
    import pytest
    from podvirt.cluster.binaries import BinaryError, locate
    from podvirt.cluster.cluster import Cluster, UpOptions
    try:
        locate()
    except BinaryError as exc:
        (pytest.fail if require else pytest.skip)(f"control-plane binaries unavailable: {exc}")
    cluster = Cluster(state_dir)
    try:
        cluster.up(UpOptions(**options))
        yield cluster
    finally:
        cluster.down()


def make_namespace(cluster, request) -> str:
    """A fresh namespace named after the test. Never deleted: without
    kube-controller-manager it would stay Terminating, and the whole cluster is thrown
    away at the end of the session anyway."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{next(_counter)}"
    cluster.kubectl("create", "namespace", name)
    return name


def core_api(cluster):
    from kubernetes import client
    return client.CoreV1Api(cluster.api_client())


def watch_pod(core, namespace: str, name: str, predicate, timeout: float):
    """The pod once `predicate(pod)` holds, via a watch; fails with its last status."""
    import json
    from kubernetes import watch
    w = watch.Watch()
    last = None
    for event in w.stream(core.list_namespaced_pod, namespace,
                          field_selector=f"metadata.name={name}", timeout_seconds=int(timeout)):
        last = event["object"]
        if predicate(last):
            w.stop()
            return last
    state = json.dumps(last.status.to_dict(), default=str)[:1500] if last else "never seen"
    raise AssertionError(f"pod {namespace}/{name} did not get there in {timeout}s: {state}")


def restart_component(cluster, name: str, down_seconds: float = 0,
                      sig: signal.Signals = signal.SIGKILL, group: bool = True) -> None:
    """Signal a component's process group (SIGKILL: a crash; SIGTERM: a service restart),
    or with group=False its main process only (containerd's service does that, so the
    container shims, and the containers, live on), wait until it is gone, keep it down a
    while, start the same argv and wait for it to be healthy. The cluster's state file
    records the new pid, so `down` stops it."""
    from podvirt.cluster import processes, state
    component = cluster.state.component(name)
    argv = Path(f"/proc/{component.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    (os.killpg if group else os.kill)(component.pid, sig)
    deadline = time.monotonic() + 30
    while _running(component.pid) and time.monotonic() < deadline:   # its ports freed
        time.sleep(0.05)
    time.sleep(down_seconds)
    pid, started = processes.spawn([a.decode() for a in argv], Path(component.log))
    state.save(cluster.layout.state_file, cluster.state.with_component(
        dataclasses.replace(component, pid=pid, started=started)))
    processes.wait_until(name, component.probe.ok, pid, Path(component.log), 60)


def _running(pid: int) -> bool:
    """Some thread of the process is still alive. The leader of a multi-threaded (Go)
    process reads as a zombie as soon as its own thread exits, while the other threads
    still hold the shared file table, listening sockets included: restarting then failed
    with "bind: address already in use". Only a zombie leader alone holds nothing."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" or len(tasks) > 1
