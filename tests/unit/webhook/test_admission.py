"""Admission decisions: one named case per rule, idempotency, and a property test that
any annotations are either denied by key or patched into a valid V1Pod."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from kubernetes.client import ApiClient

from podvirt.vmspec import Limits, keys as k
from podvirt.vmspec.contract import DEFAULT_CONTRACT
from podvirt.webhook.admission import decide, respond
from podvirt.webhook.settings import RenderSettings
from podvirt.webhook.render import rendered_hash

VM = {k.OPT_IN_LABEL: "true"}
BASIC = {k.MEMORY: "1Gi", k.DISKS: "root=pvc:root-claim"}


def review(request):
    """What app.py answers for a request (it adds only the HTTP around this)."""
    return respond(request["uid"], decide(request))


def applied(pod: dict, response: dict) -> dict:
    ops = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    return jsonpatch.apply_patch(pod, ops)


@pytest.mark.parametrize("annotations, labels, extra, rule, allowed, code, words", [
    pytest.param(BASIC, {}, {}, "not-a-vm", True, None, [], id="no-opt-in-label-passes"),
    pytest.param(BASIC, {k.OPT_IN_LABEL: "false"}, {}, "not-a-vm", True, None, [],
                 id="label-false-passes"),
    pytest.param(BASIC, VM, {}, "render", True, None, [], id="vm-pod-rendered"),
    pytest.param(BASIC, VM, {"dryRun": True}, "render", True, None, [], id="dry-run-same"),
    pytest.param({**BASIC, k.VCPUS: "0", k.MEMORY: "4GB"}, VM, {}, "invalid-spec", False, 422,
                 [k.VCPUS, k.MEMORY], id="invalid-spec-names-every-key"),
    pytest.param({**BASIC, k.PREFIX + "vcpu": "2"}, VM, {}, "invalid-spec", False, 422,
                 [k.PREFIX + "vcpu", "unknown"], id="unknown-key"),
    pytest.param({**BASIC, k.PHASE: "Running", k.NODE: "n1"}, VM, {}, "status-keys", False, 422,
                 [k.PHASE, k.NODE], id="user-status-keys-denied"),
    pytest.param({**BASIC, k.RENDERED: "0123456789abcdef"}, VM, {}, "rendered-mismatch",
                 False, 422, [k.RENDERED], id="forged-rendered-hash"),
    pytest.param({**BASIC, k.RENDERED: rendered_hash(BASIC)}, VM, {}, "already-rendered", True,
                 None, [], id="rendered-hash-matches"),
    pytest.param(BASIC, VM, {"operation": "DELETE"}, "operation-ignored", True, None, [],
                 id="delete-passes"),
    pytest.param(BASIC, VM, {"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}},
                 "not-a-pod", True, None, [], id="other-kind-passes"),
    pytest.param(BASIC, VM, {"subResource": "status"}, "not-a-pod", True, None, [],
                 id="subresource-passes"),
])
def test_create_rules(make_pod, make_request, annotations, labels, extra, rule, allowed,
                      code, words):
    d = decide(make_request(make_pod(annotations, labels=labels), **extra))
    assert (d.rule, d.allowed, d.code) == (rule, allowed, code)
    for word in words:
        assert word in d.message
    assert bool(d.patch) == (rule == "render")


@pytest.mark.parametrize("pod_kw, rule, words", [
    pytest.param({"containers": [{"name": "log", "image": "busybox"}]}, "not-guaranteed",
                 [k.DEDICATED_CPUS, "'log'", "cpu limit"], id="sidecar-without-limits"),
    pytest.param({"containers": [{"name": "log", "image": "busybox", "resources": {
        "requests": {"cpu": "100m", "memory": "32Mi"},
        "limits": {"cpu": "0.1", "memory": "32Mi"}}}]}, "render", [],
        id="guaranteed-sidecar-ok"),
])
def test_dedicated_needs_guaranteed(make_pod, make_request, pod_kw, rule, words):
    pod = make_pod({**BASIC, k.DEDICATED_CPUS: "true"}, **pod_kw)
    d = decide(make_request(pod))
    assert d.rule == rule
    for word in words:
        assert word in d.message


@pytest.mark.parametrize("old_ann, new_ann, rule", [
    pytest.param(BASIC, {**BASIC, k.PHASE: "Running"}, "update-unchanged",
                 id="status-update-allowed"),
    pytest.param(BASIC, {**BASIC, k.VCPUS: "4"}, "immutable", id="vm-annotation-added"),
    pytest.param({**BASIC, k.VCPUS: "2"}, BASIC, "immutable", id="vm-annotation-removed"),
])
def test_update_rules(make_pod, make_request, old_ann, new_ann, rule):
    d = decide(make_request(make_pod(new_ann), operation="UPDATE", old=make_pod(old_ann)))
    assert d.rule == rule
    if rule == "immutable":
        assert not d.allowed and "immutable" in d.message and k.VCPUS in d.message


@pytest.mark.parametrize("pod, message", [
    pytest.param(None, "missing", id="no-object"),
    pytest.param({"metadata": {"labels": VM, "annotations": ["x"]}}, "annotations",
                 id="annotations-not-a-map"),
    pytest.param({"metadata": {"labels": VM}, "spec": {"containers": "x"}}, "containers",
                 id="containers-not-a-list"),
])
def test_malformed_pods_denied_400(make_request, pod, message):
    d = decide(make_request(pod))
    assert (d.allowed, d.code) == (False, 400) and message in d.message


def test_generate_name_used_for_spec(make_pod, make_request):
    pod = make_pod(BASIC, name=None)
    pod["metadata"]["generateName"] = "web-"
    d = decide(make_request(pod))
    assert d.rule == "render"


def test_response_wire_shape(make_pod, make_request):
    req = make_request(make_pod({**BASIC, k.VCPUS: "x"}))
    resp = review(req)
    assert resp["uid"] == req["uid"] and resp["allowed"] is False
    assert resp["status"]["code"] == 422 and k.VCPUS in resp["status"]["message"]
    ok = review(make_request(make_pod(BASIC)))
    assert ok["patchType"] == "JSONPatch" and json.loads(base64.b64decode(ok["patch"]))
    assert "warnings" not in ok


@pytest.mark.parametrize("extra", [
    pytest.param({}, id="render-warns"),
    pytest.param({"dryRun": True}, id="dry-run-warns-alike"),
])
def test_overrides_are_warned_in_the_review(make_pod, make_request, extra):
    pod = make_pod(BASIC, containers=[{"name": "launcher", "image": "busybox"}],
                   restartPolicy="OnFailure")
    resp = review(make_request(pod, **extra))
    assert resp["allowed"] and resp["warnings"] == [
        "spec.containers[launcher]: your container of this name is replaced by podvirt's",
        'spec.restartPolicy: "OnFailure" is replaced by podvirt\'s "Never"']


def test_denied_pods_get_no_override_warnings(make_pod, make_request):
    pod = make_pod({**BASIC, k.VCPUS: "x"}, containers=[{"name": "launcher", "image": "b"}])
    assert "warnings" not in review(make_request(pod))


@pytest.mark.parametrize("annotations", [
    pytest.param(BASIC, id="basic"),
    pytest.param({**BASIC, k.NODE_NAMES: "n1", k.HUGEPAGES: "2Mi", k.VCPUS: "2",
                  k.DEDICATED_CPUS: "true", k.DISKS: "a=containerdisk:img,b=scratch:1Gi"},
                 id="everything"),
])
def test_reviewing_the_patched_pod_is_a_no_op(make_pod, make_request, annotations):
    pod = make_pod(annotations)
    patched = applied(pod, review(make_request(pod)))
    again = decide(make_request(patched))
    assert (again.rule, again.allowed, again.patch) == ("already-rendered", True, [])
    # Stronger than the hash short-cut: rendering the output again changes nothing.
    from podvirt.vmspec import parse_vm
    from podvirt.webhook.render import patch_for
    assert patch_for(patched, parse_vm(annotations, name="vm1")) == []


# --- property: denied by key, or a valid V1Pod ------------------------------------------

_api = ApiClient()

_VALUES = {
    k.VCPUS: st.sampled_from(["1", "2", "64", "0", "65", "x", "-1"]),
    k.MEMORY: st.sampled_from(["1Gi", "512Mi", "64Mi", "1G", "63Mi", "2Ti", "lots", "1.5Gi"]),
    k.DEDICATED_CPUS: st.sampled_from(["true", "false", "maybe"]),
    k.HUGEPAGES: st.sampled_from(["2Mi", "1Gi", "4Ki", "x"]),
    k.NODE_NAMES: st.sampled_from(["n1", "n1,n2", "", "Bad_Name"]),
    k.NODE_LABELS: st.sampled_from(["zone=a", "a=b,c=d", "nolabel", "x=@"]),
    k.DISKS: st.sampled_from(["r=pvc:c", "r=scratch:1Gi", "r=containerdisk:img:1",
                              "r=file:/var/lib/podvirt/x", "r=file:/etc/shadow", "bad"]),
    k.NICS: st.sampled_from(["eth0=tap", "eth0=user", "eth0=bridge", "e@02:00:00:00:00:01", "eth0"]),
    k.DEVICES: st.sampled_from(["example.com/gpu=1", "pci:10de:1db4", "gpu"]),
    k.CLOUD_INIT_SECRET: st.sampled_from(["seed", "Bad Name"]),
    k.SHUTDOWN_GRACE: st.sampled_from(["30s", "5m", "2h", "x"]),
    k.ALLOW_EMULATION: st.sampled_from(["true", "false"]),
    k.GRAPHICS: st.sampled_from(["vnc", "none", "spice"]),
    k.PHASE: st.just("Running"),
    k.RENDERED: st.text(max_size=16),
    k.PREFIX + "bogus": st.just("1"),
}
_annotations = st.one_of(
    st.fixed_dictionaries({k.MEMORY: _VALUES[k.MEMORY], k.DISKS: _VALUES[k.DISKS]},
                          optional={key: v for key, v in _VALUES.items()
                                    if key not in (k.MEMORY, k.DISKS)}),
    st.dictionaries(st.sampled_from(sorted(k.USER_KEYS)), st.text(max_size=30), max_size=6),
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(annotations=_annotations)
def test_any_annotations_denied_by_key_or_valid_pod(annotations):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "vm", "namespace": "default", "labels": dict(VM),
                        "annotations": annotations},
           "spec": {"containers": [{"name": "side", "image": "busybox"}]}}
    req = {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
           "operation": "CREATE", "object": pod}
    resp = review(req)
    if not resp["allowed"]:
        assert k.PREFIX in resp["status"]["message"]
        return
    result = applied(pod, resp)
    v1pod = _api.deserialize(json.dumps(result), "V1Pod", "application/json")
    assert v1pod.spec.containers[0].name == "launcher"
    assert v1pod.metadata.annotations[k.RENDERED] == rendered_hash(annotations)


# --- user domain XML: the sanitizer's refusals are the denial message ---------------------

def _user_domain(size: str, devices: str = "") -> str:
    return (f"<domain type='kvm'><name>{{{{name}}}}</name>{size}<os><type arch='x86_64' "
            "machine='q35'>hvm</type></os><devices><disk type='file' device='disk'><source "
            f"file='{{{{disk:root}}}}'/><target dev='vda' bus='virtio'/></disk>{devices}"
            "</devices></domain>")


PRICED = "<memory unit='KiB'>{{memory_kib}}</memory><vcpu>{{vcpus}}</vcpu>"


@pytest.mark.parametrize("xml, allowed, message", [
    pytest.param(_user_domain(PRICED, "<graphics type='vnc' port='5900' listen='127.0.0.1'/>"
                              "<serial type='pty'/><interface type='user'><model "
                              "type='virtio'/></interface>"), True, None, id="plain-admitted"),
    pytest.param(_user_domain("<memory unit='GiB'>8</memory><vcpu>16</vcpu>"), False,
                 "podvirt.io/domain-xml: <memory> is 8Gi but podvirt.io/memory prices 2Gi",
                 id="bigger-than-priced"),
    pytest.param(_user_domain("<memory unit='GiB'>2</memory><vcpu>16</vcpu>"), False,
                 "podvirt.io/domain-xml: <vcpu> is 16 but podvirt.io/vcpus prices 2",
                 id="more-vcpus-than-priced"),
    pytest.param(_user_domain(PRICED, "<graphics type='vnc' listen='0.0.0.0'/>"), False,
                 "podvirt.io/domain-xml: <devices><graphics type='vnc' listen='0.0.0.0'> is not "
                 "allowed: listen must be the pod's loopback", id="vnc-beyond-the-pod"),
    pytest.param(_user_domain(PRICED, "<interface type='bridge'><source bridge='cni0'/>"
                              "</interface>"), False,
                 "podvirt.io/domain-xml: <devices><interface type='bridge'> is not allowed: "
                 "attaches the guest to a host bridge", id="host-bridge"),
])
def test_user_domain_xml_denial_names_element_and_values(make_pod, make_request, xml, allowed,
                                                         message):
    annotations = {k.MEMORY: "2Gi", k.VCPUS: "2", k.DISKS: "root=scratch:1Gi", k.DOMAIN_XML: xml}
    d = decide(make_request(make_pod(annotations)))
    assert d.allowed is allowed, d.message
    if message is None:
        assert d.rule == "render" and d.patch
    else:
        assert (d.rule, d.code) == ("invalid-spec", 422)
        assert d.message.startswith(f"invalid VM spec: {message}"), d.message


# --- podvirt.io/eviction-strategy -----------------------------------------------------------

OWNED = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "vms-7c9", "uid": "u1"}]


@pytest.mark.parametrize("annotations, owners, rule, words", [
    pytest.param({**BASIC, k.EVICTION_STRATEGY: "migrate"}, [], "render", [], id="migratable"),
    pytest.param({**BASIC, k.EVICTION_STRATEGY: "shutdown"}, OWNED, "render", [],
                 id="shutdown-any-pod"),
    pytest.param({**BASIC, k.EVICTION_STRATEGY: "live"}, [], "eviction-strategy",
                 [k.EVICTION_STRATEGY, "shutdown, migrate", "'live'"], id="unknown-value"),
    pytest.param({**BASIC, k.EVICTION_STRATEGY: "migrate"}, OWNED, "eviction-strategy",
                 [k.EVICTION_STRATEGY, "ReplicaSet vms-7c9", "bare VM pods"], id="owned-pod"),
    pytest.param({k.MEMORY: "1Gi", k.DISKS: "root=containerdisk:img,s=scratch:1Gi",
                  k.EVICTION_STRATEGY: "migrate"}, [], "render", [],
                 id="ephemeral-disks-are-copied"),
    pytest.param({**BASIC, k.VCPUS: "2", k.DEDICATED_CPUS: "true",
                  k.EVICTION_STRATEGY: "migrate"}, [], "eviction-strategy",
                 ["vCPUs are pinned"], id="dedicated-cpus"),
])
def test_eviction_strategy_checked_at_create(make_pod, make_request, annotations, owners,
                                             rule, words):
    pod = make_pod(annotations)
    pod["metadata"]["ownerReferences"] = owners
    d = decide(make_request(pod))
    assert (d.rule, d.allowed) == (rule, rule == "render")
    for word in words:
        assert word in d.message


@pytest.mark.parametrize("vm, new, rule", [
    pytest.param({k.DISKS: "root=pvc:root-claim"}, "migrate", "update-strategy",
                 id="opt-in-while-running"),
    pytest.param({k.DISKS: "root=scratch:1Gi"}, "migrate", "update-strategy",
                 id="opt-in-with-a-copied-disk"),
    pytest.param({**BASIC, k.VCPUS: "2", k.DEDICATED_CPUS: "true"}, "migrate",
                 "eviction-strategy", id="opt-in-refused"),
    pytest.param({**BASIC, k.VCPUS: "2", k.DEDICATED_CPUS: "true"}, "shutdown",
                 "update-strategy", id="opt-out"),
])
def test_eviction_strategy_may_change_on_a_running_vm(make_pod, make_request, vm, new, rule):
    old = make_pod({k.MEMORY: "1Gi", **vm})
    pod = make_pod({k.MEMORY: "1Gi", **vm, k.EVICTION_STRATEGY: new})
    d = decide(make_request(pod, operation="UPDATE", old=old))
    assert d.rule == rule and d.allowed == (rule == "update-strategy")


def test_a_strategy_change_reads_the_vm_under_its_own_contract(make_pod, make_request):
    """The VM was admitted under the contract stamped on it (8 vCPUs allowed); the
    webhook's limits have since shrunk to 4. The change is still checked: migrating
    pinned vCPUs is refused, not waved through as unparsable."""
    vm = {**BASIC, k.VCPUS: "8", k.DEDICATED_CPUS: "true", k.CONTRACT: DEFAULT_CONTRACT.to_json()}
    old, pod = make_pod(vm), make_pod({**vm, k.EVICTION_STRATEGY: "migrate"})
    stricter = RenderSettings.from_contract(replace(DEFAULT_CONTRACT,
                                                    limits=Limits(max_vcpus=4)))
    d = decide(make_request(pod, operation="UPDATE", old=old), stricter)
    assert (d.rule, d.allowed) == ("eviction-strategy", False)
    assert "vCPUs are pinned" in d.message
