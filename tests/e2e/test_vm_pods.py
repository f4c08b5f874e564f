"""VM pods through the real admission chain, scheduler and kwok."""

from __future__ import annotations

import copy

import pytest
import yaml

from podvirt.vmspec import keys as k

from tests.e2e.support import DATA, missing_from


def _load(name: str) -> dict:
    return yaml.safe_load((DATA / name).read_text())


def _running(pod) -> bool:
    return pod.status.phase == "Running"


@pytest.mark.parametrize("manifest_file, node", [
    pytest.param("vm-zone-b.yaml", "hugepages-b", id="label-pinned-dedicated-hugepages"),
    pytest.param("vm-named-node.yaml", "small", id="name-pinned"),
    pytest.param("vm-gpu.yaml", "big-gpu", id="gpu-passthrough"),
    pytest.param("vm-big-memory.yaml", "big-gpu", id="memory-fits-one-node"),
    pytest.param("vm-emulated.yaml", "no-kvm", id="emulated-on-node-without-kvm"),
])
def test_vm_pod_is_rendered_placed_and_running(manifest_file, node, namespace, apply, wait_pod,
                                               core):
    from podvirt.cluster.cluster import vm_scheduler_name
    from podvirt.vmspec.parse import parse_vm
    from podvirt.webhook.render import render_launcher_pod
    from podvirt.webhook.settings import RenderSettings
    manifest = _load(manifest_file)
    name = manifest["metadata"]["name"]

    apply(DATA / manifest_file, namespace, check=True)
    pod = wait_pod(namespace, name, _running)

    assert pod.spec.node_name == node
    stored = core.api_client.sanitize_for_serialization(pod)
    # The local cluster's webhook renders VM pods for the extender's VM profile.
    expected = render_launcher_pod(manifest, parse_vm(manifest["metadata"]["annotations"],
                                                      name=name),
                                   RenderSettings(scheduler_name=vm_scheduler_name()))
    assert missing_from(stored, expected) == []
    assert k.RENDERED in stored["metadata"]["annotations"]


@pytest.mark.parametrize("override, key", [
    pytest.param({k.VCPUS: "0"}, k.VCPUS, id="zero-vcpus"),
    pytest.param({k.MEMORY: "4GB"}, k.MEMORY, id="memory-not-a-quantity"),
    pytest.param({k.PREFIX + "vcpu": "2"}, k.PREFIX + "vcpu", id="unknown-key"),
    pytest.param({k.DISKS: "root=file:/etc/shadow"}, k.DISKS, id="disk-outside-the-pod"),
    pytest.param({k.RENDERED: "0123456789abcdef"}, k.RENDERED, id="forged-status-key"),
])
def test_bad_vm_pod_is_denied_naming_the_annotation(override, key, namespace, apply, cluster):
    manifest = _load("vm-named-node.yaml")
    manifest["metadata"]["annotations"].update(override)

    result = apply(manifest, namespace)

    assert result.returncode != 0
    assert 'admission webhook "vm.podvirt.io" denied the request' in result.stderr
    assert f"{key}:" in result.stderr
    gone = cluster.kubectl("get", "pod", "-n", namespace, manifest["metadata"]["name"],
                           check=False)
    assert "NotFound" in gone.stderr


@pytest.mark.parametrize("label", [
    pytest.param(None, id="no-opt-in-label"),
    pytest.param("false", id="opt-in-label-false"),
])
def test_pod_without_opt_in_is_untouched(label, namespace, apply, wait_pod, core):
    manifest = _load("plain-pod.yaml")
    if label is not None:
        manifest["metadata"]["labels"] = {k.OPT_IN_LABEL: label}
    sent = copy.deepcopy(manifest)

    apply(manifest, namespace, check=True)
    pod = wait_pod(namespace, "plain", _running)

    stored = core.api_client.sanitize_for_serialization(pod)
    assert missing_from(stored, sent) == []
    assert k.RENDERED not in stored["metadata"]["annotations"]
    assert [c["name"] for c in stored["spec"]["containers"]] == ["app"]
    assert "podvirt.io/vm" not in stored["spec"]["containers"][0]["resources"]["requests"]
    assert [v["name"] for v in stored["spec"].get("volumes", [])
            if not v["name"].startswith("kube-api-access-")] == []


def test_kubectl_prints_what_the_webhook_overrides(namespace, apply, wait_pod):
    """The API server fills in its defaults (restartPolicy, schedulerName, the service
    account...) before the webhook: those are not the user's and draw no warning; a
    container named launcher and a restartPolicy the user wrote do."""
    manifest = _load("vm-named-node.yaml")
    plain = apply(manifest, namespace, check=True)
    assert "Warning:" not in plain.stderr, plain.stderr

    manifest["metadata"]["name"] = "vm-with-placeholder"
    manifest["spec"] = {"containers": [{"name": "launcher", "image": "busybox"}],
                        "restartPolicy": "OnFailure"}
    result = apply(manifest, namespace, check=True)
    assert "Warning: spec.containers[launcher]: your container of this name is replaced by " \
           "podvirt's" in result.stderr, result.stderr
    assert 'Warning: spec.restartPolicy: "OnFailure" is replaced by podvirt\'s "Never"' \
        in result.stderr, result.stderr
    pod = wait_pod(namespace, "vm-with-placeholder", _running)
    assert pod.spec.containers[0].image != "busybox" and pod.spec.restart_policy == "Never"
