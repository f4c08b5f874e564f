"""The MutatingWebhookConfiguration that sends opt-in pods to `podvirt webhook`."""

from __future__ import annotations

import base64

from podvirt.vmspec import keys as k

NAME = "podvirt-webhook"
WEBHOOK_NAME = "vm.podvirt.io"


def mutating_webhook_configuration(url: str, ca_pem: bytes) -> dict:
    """Only pods labelled podvirt.io/vm=true reach the webhook (objectSelector), so an
    outage of podvirt never blocks ordinary pods, while failurePolicy Fail makes sure a VM
    pod is never stored unrendered."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": NAME},
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
            "objectSelector": {"matchLabels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["pods"],
                       "scope": "Namespaced"}],
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
            "admissionReviewVersions": ["v1"],
        }],
    }
