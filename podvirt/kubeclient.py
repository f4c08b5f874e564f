"""What every podvirt process that talks to the API server needs the same way: a client
from a kubeconfig or the pod's own credentials, and the Event it records on a pod."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def now_rfc3339() -> str:
    """Now, as the API server writes times (seconds, UTC, "Z")."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def api_client(kubeconfig: str | None = None) -> Any:
    """A kubernetes ApiClient: `kubeconfig` if given, else in-cluster credentials. Raises
    the client's ConfigException (or OSError) when neither is usable."""
    from kubernetes import client, config
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    conf = client.Configuration()
    config.load_incluster_config(client_configuration=conf)
    return client.ApiClient(conf)


def pod_event(namespace: str, pod: str, reason: str, message: str, *, component: str,
              warning: bool = False, uid: str | None = None, host: str | None = None) -> Any:
    """A core/v1 Event about a pod, as `kubectl describe pod` shows it."""
    from kubernetes import client
    now = now_rfc3339()
    return client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{pod}.", namespace=namespace),
        involved_object=client.V1ObjectReference(kind="Pod", name=pod, uid=uid,
                                                 namespace=namespace, api_version="v1"),
        reason=reason, message=message[:1024], type="Warning" if warning else "Normal",
        source=client.V1EventSource(component=component, host=host),
        first_timestamp=now, last_timestamp=now, count=1)
