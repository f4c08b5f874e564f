"""Helpers shared by the tiers that run against a local control plane (e2e, hardening)."""

import itertools

_counter = itertools.count()


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
