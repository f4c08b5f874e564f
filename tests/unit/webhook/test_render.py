"""Each rendering option alone, then the launcher pod as a whole."""

from __future__ import annotations

import copy

import pytest

from podvirt.vmspec import CostSettings, demand, keys as k, parse_vm
from podvirt.vmspec.overhead import StorageConstants
from podvirt.webhook import render as r
from podvirt.webhook.qos import not_guaranteed
from podvirt.webhook.settings import RenderSettings

BASIC = {k.MEMORY: "1Gi", k.DISKS: "root=pvc:root-claim"}


def rendered(extra: dict | None = None, settings: RenderSettings = RenderSettings(), *,
             containers: list | None = None, **spec_kw):
    annotations = {**BASIC, **(extra or {})}
    pod = {"metadata": {"name": "vm1", "labels": {k.OPT_IN_LABEL: "true"},
                        "annotations": annotations},
           "spec": {"containers": containers or [], **spec_kw}}
    return r.render_launcher_pod(pod, parse_vm(annotations, name="vm1"), settings)


def launcher(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "launcher")


def volume(pod: dict, name: str) -> dict:
    return next(v for v in pod["spec"]["volumes"] if v["name"] == name)


def test_launcher_container_contract():
    c = launcher(rendered())
    assert "command" not in c     # the image's entrypoint (tini, then podvirt) runs it
    assert c["args"] == ["launcher", "run", "--spec", "/etc/podvirt/annotations",
                         "--metrics-port", "9101"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9101, "protocol": "TCP"}]
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]} == {
        "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace",
        "NODE_NAME": "spec.nodeName"}
    assert {"name": "podvirt-spec", "mountPath": "/etc/podvirt", "readOnly": True} \
        in c["volumeMounts"]


def test_spec_volume_is_downward_api():
    v = volume(rendered(), "podvirt-spec")
    assert {i["path"]: i["fieldRef"]["fieldPath"] for i in v["downwardAPI"]["items"]} == {
        "annotations": "metadata.annotations", "labels": "metadata.labels",
        "name": "metadata.name", "namespace": "metadata.namespace", "uid": "metadata.uid"}


@pytest.mark.parametrize("extra, requests, limits", [
    pytest.param({}, {"cpu": "100m", "devices.podvirt.io/kvm": "1", "podvirt.io/vm": "1"},
                 {"podvirt.io/vm": "1"}, id="shared-cpu-has-no-cpu-limit"),
    pytest.param({k.VCPUS: "2", k.DEDICATED_CPUS: "true"}, {"cpu": "2"}, {"cpu": "2"},
                 id="dedicated-cpu-integer-request-equals-limit"),
    pytest.param({k.HUGEPAGES: "2Mi"}, {"hugepages-2Mi": "1Gi"}, {"hugepages-2Mi": "1Gi"},
                 id="hugepages-request-equals-limit"),
    pytest.param({k.DEVICES: "example.com/gpu=2"}, {"example.com/gpu": "2"},
                 {"example.com/gpu": "2"}, id="device-plugin-resources"),
    pytest.param({k.ALLOW_EMULATION: "true"}, {"podvirt.io/vm": "1"}, {}, id="emulation-no-kvm"),
])
def test_resources(extra, requests, limits):
    annotations = {**BASIC, **extra}
    res = launcher(rendered(extra))["resources"]
    d = demand(parse_vm(annotations))
    from podvirt.quantity import format_bytes
    assert res["requests"]["memory"] == res["limits"]["memory"] == format_bytes(d.memory)
    assert requests.items() <= res["requests"].items()
    assert limits.items() <= res["limits"].items()
    if extra.get(k.ALLOW_EMULATION):
        assert "devices.podvirt.io/kvm" not in res["requests"]
    if not extra.get(k.DEDICATED_CPUS):
        assert "cpu" not in res["limits"]


@pytest.mark.parametrize("disks, volume_source, init", [
    pytest.param("root=pvc:claim1", {"persistentVolumeClaim": {"claimName": "claim1"}}, False,
                 id="pvc"),
    # 2Gi of guest disk plus the most its qcow2's metadata can take (qemu-img measure: 320Ki).
    pytest.param("root=scratch:2Gi", {"emptyDir": {"sizeLimit": "2050Mi"}}, False, id="scratch"),
    pytest.param("root=containerdisk:quay.io/x/debian:12", {"emptyDir": {}}, True,
                 id="containerdisk-copier"),
    pytest.param("root=file:/var/lib/podvirt/root.img", None, False, id="file-adds-nothing"),
])
def test_disk_volumes(disks, volume_source, init):
    pod = rendered({k.DISKS: disks})
    names = {v["name"] for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in launcher(pod)["volumeMounts"]}
    if volume_source is None:
        assert names == {"podvirt-spec"} and "disk-root" not in mounts
        return
    assert {key: val for key, val in volume(pod, "disk-root").items() if key != "name"} \
        == volume_source
    assert mounts["disk-root"] == "/var/lib/podvirt/disks/root"
    inits = pod["spec"].get("initContainers", [])
    assert [c["name"] for c in inits] == (["podvirt-tools", "disk-root"] if init else [])
    if init:
        tools, copier = inits
        assert tools["image"] == RenderSettings().launcher_image
        assert tools["command"] == ["cp", "/usr/lib/podvirt/busybox", "/podvirt-tools/busybox"]
        # The copier runs the launcher image's static busybox, nothing of the disk image.
        assert copier["image"] == "quay.io/x/debian:12"
        assert copier["command"] == ["/podvirt-tools/busybox", "cp", "-a", "/disk/.",
                                     "/var/lib/podvirt/disks/root"]
        assert copier["volumeMounts"] == [
            {"name": "podvirt-tools", "mountPath": "/podvirt-tools"},
            {"name": "disk-root", "mountPath": "/var/lib/podvirt/disks/root"}]


@pytest.mark.parametrize("extra, storage", [
    pytest.param({}, "256Mi", id="pvc-only-the-launcher"),
    pytest.param({k.DISKS: "root=scratch:100Ti"}, str(100 * 2**40 + 25 * 2**30 + 257 * 2**20),
                 id="scratch-with-qcow2-metadata"),
    pytest.param({k.DISKS: "root=containerdisk:quay.io/x/debian:12,data=file:/tmp/podvirt/d.img"},
                 str(20 * 2**30 + 256 * 2**20), id="overlays-default-10Gi-each"),
    pytest.param({k.DISKS: "root=containerdisk:quay.io/x/debian:12,size=3Gi"},
                 str(3 * 2**30 + 256 * 2**20), id="containerdisk-size"),
    pytest.param({k.DISKS: "root=pvc:c", k.KERNEL_IMAGE: "localhost/k:1", k.KERNEL: "/boot/k"},
                 str(2**30 + 256 * 2**20), id="kernel-image-copy"),
])
def test_ephemeral_storage_request_equals_limit(extra, storage):
    from podvirt.quantity import parse_bytes
    res = launcher(rendered(extra))["resources"]
    assert res["requests"]["ephemeral-storage"] == res["limits"]["ephemeral-storage"]
    assert parse_bytes(res["requests"]["ephemeral-storage"]) == parse_bytes(storage)


def test_kernel_boot_volume_limit_is_what_the_pod_requests_for_it():
    settings = RenderSettings(costs=CostSettings(storage=StorageConstants(kernel_boot=2**29)))
    pod = rendered({k.KERNEL_IMAGE: "localhost/k:1", k.KERNEL: "/boot/k"}, settings)
    assert volume(pod, "kernel-boot")["emptyDir"] == {"sizeLimit": "512Mi"}
    assert launcher(pod)["resources"]["limits"]["ephemeral-storage"] == "768Mi"


def test_kernel_image_copied_into_the_pod_by_an_init_container():
    pod = rendered({k.KERNEL_IMAGE: "localhost/podvirt/tiny-guest:0.1.0",
                    k.KERNEL: "/boot/vmlinuz", k.INITRD: "/boot/initramfs.cpio.gz"})
    inits = {c["name"]: c for c in pod["spec"]["initContainers"]}
    assert list(inits) == ["podvirt-tools", "kernel-boot"]
    copier = inits["kernel-boot"]
    assert copier["image"] == "localhost/podvirt/tiny-guest:0.1.0"
    assert copier["command"] == ["/podvirt-tools/busybox", "cp", "/boot/vmlinuz",
                                 "/boot/initramfs.cpio.gz", "/var/lib/podvirt/kernel-boot/"]
    assert copier["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "kernel-boot", "mountPath": "/var/lib/podvirt/kernel-boot",
            "readOnly": True} in launcher(pod)["volumeMounts"]


def test_cloud_init_secret_projected_into_spec_volume():
    v = volume(rendered({k.CLOUD_INIT_SECRET: "seed"}), "podvirt-spec")
    sources = v["projected"]["sources"]
    assert sources[0]["downwardAPI"]["items"][0]["path"] == "annotations"
    assert sources[1] == {"secret": {"name": "seed", "items": [
        {"key": "userdata", "path": "cloud-init/userdata"}]}}


def test_hugepages_volume():
    pod = rendered({k.HUGEPAGES: "2Mi"})
    assert volume(pod, "hugepages") == {"name": "hugepages", "emptyDir": {"medium": "HugePages"}}
    assert {"name": "hugepages", "mountPath": "/dev/hugepages"} in launcher(pod)["volumeMounts"]


def _terms(pod):
    return pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


@pytest.mark.parametrize("extra, user_affinity, terms", [
    pytest.param({k.NODE_NAMES: "n1,n2"}, None,
                 [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                    "values": ["n1", "n2"]}]}], id="node-names-match-fields"),
    pytest.param({k.NODE_LABELS: "zone=b,disk=ssd"}, None,
                 [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]},
                                        {"key": "disk", "operator": "In", "values": ["ssd"]}]}],
                 id="node-labels-match-expressions"),
    pytest.param({k.NODE_NAMES: "n1"},
                 [{"matchExpressions": [{"key": "a", "operator": "Exists"}]},
                  {"matchExpressions": [{"key": "b", "operator": "Exists"}]}],
                 [{"matchExpressions": [{"key": "a", "operator": "Exists"}],
                   "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                  {"matchExpressions": [{"key": "b", "operator": "Exists"}],
                   "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}],
                 id="anded-into-every-user-term"),
])
def test_pinning(extra, user_affinity, terms):
    spec_kw = {}
    if user_affinity:
        spec_kw["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                                {"nodeSelectorTerms": user_affinity}}}
    assert _terms(rendered(extra, **spec_kw)) == terms


def test_no_pinning_no_affinity():
    assert "affinity" not in rendered()["spec"]


@pytest.mark.parametrize("extra, added", [
    pytest.param({}, [], id="only-libvirt-child-caps"),
    pytest.param({k.NICS: "eth0", k.PORTS: "22"}, [], id="pod-nic-needs-no-net-admin"),
    pytest.param({k.DEDICATED_CPUS: "true"}, ["SYS_NICE"], id="dedicated-adds-sys-nice"),
    pytest.param({k.DEVICES: "pci:10de:1eb8"}, ["SYS_RESOURCE"],
                 id="passthrough-adds-sys-resource-for-memlock"),
])
def test_security(extra, added):
    sc = launcher(rendered(extra))["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["capabilities"]["add"] == [*r.LIBVIRT_CHILD_CAPS, *added]


def test_memlock_capability_can_be_withheld():
    sc = launcher(rendered({k.DEVICES: "pci:10de:1eb8"},
                           settings=RenderSettings(vfio_memlock_capability=False)))
    assert sc["securityContext"]["capabilities"]["add"] == list(r.LIBVIRT_CHILD_CAPS)


def test_pci_request_becomes_the_resource_the_device_plugin_serves():
    from dataclasses import replace
    from podvirt.vmspec import DEFAULT_COSTS, DeviceResources
    mapped = RenderSettings(costs=replace(DEFAULT_COSTS, devices=DeviceResources.parse(
        "10de:1eb8=example.com/gpu")))
    for settings, resource in ((RenderSettings(), "pci.podvirt.io/10de-1eb8"),
                               (mapped, "example.com/gpu")):
        limits = launcher(rendered({k.DEVICES: "pci:10de:1eb8=2"}, settings=settings))[
            "resources"]["limits"]
        assert limits[resource] == "2"


def test_pod_policy():
    s = RenderSettings(scheduler_name="podvirt-scheduler", grace_margin_seconds=20)
    pod = rendered({k.SHUTDOWN_GRACE: "2m"}, settings=s)
    assert pod["spec"]["schedulerName"] == "podvirt-scheduler"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 140
    assert pod["metadata"]["annotations"][k.RENDERED] == r.rendered_hash(
        pod["metadata"]["annotations"])
    assert launcher(pod)["image"] == s.launcher_image


@pytest.mark.parametrize("annotations, digest", [
    pytest.param({k.MEMORY: "1Gi", k.DISKS: "root=pvc:root-claim",
                  k.CLOUD_INIT: "#cloud-config\nhostname: vm\n", "other": "x"},
                 "dcff1ae9b0d8249d", id="ascii"),
    pytest.param({k.MEMORY: "1Gi", k.CLOUD_INIT: "#cloud-config\nmotd: grüße \x7f\n"},
                 "9e2326b99b4e6e04", id="non-ascii-and-del"),
])
def test_rendered_hash_is_stable_across_versions(annotations, digest):
    # Pods rendered by an earlier webhook carry these; a changed hash would deny them.
    assert r.rendered_hash(annotations) == digest


def test_sidecars_kept_launcher_replaced():
    sidecar = {"name": "log", "image": "busybox"}
    stale = {"name": "launcher", "image": "evil"}
    pod = rendered(containers=[sidecar, stale])
    assert [c["name"] for c in pod["spec"]["containers"]] == ["launcher", "log"]
    assert pod["spec"]["containers"][1] == sidecar
    assert launcher(pod)["image"] != "evil"


def test_dedicated_launcher_pod_is_guaranteed():
    pod = rendered({k.VCPUS: "2", k.DEDICATED_CPUS: "true",
                    k.DISKS: "root=containerdisk:img:1"})
    assert pod["spec"]["initContainers"] and not_guaranteed(pod) == []


@pytest.mark.parametrize("extra", [
    pytest.param({}, id="basic"),
    pytest.param({k.NODE_NAMES: "n1", k.NODE_LABELS: "a=b", k.HUGEPAGES: "2Mi",
                  k.DISKS: "a=containerdisk:img,b=scratch:1Gi", k.CLOUD_INIT_CONFIGMAP: "c"},
                 id="everything"),
])
def test_render_is_idempotent(extra):
    annotations = {**BASIC, **extra}
    spec = parse_vm(annotations, name="vm1")
    once = rendered(extra)
    assert r.render_launcher_pod(once, spec) == once
    assert r.patch_for(once, spec) == []


def test_render_leaves_the_users_pod_untouched():
    annotations = {**BASIC, k.NODE_LABELS: "zone=a", k.HUGEPAGES: "2Mi",
                   k.DISKS: "a=containerdisk:img", k.PORTS: "22", k.NICS: "eth0"}
    pod = {"metadata": {"name": "vm1", "labels": {"app": "db"}, "annotations": annotations},
           "spec": {"containers": [{"name": "log", "image": "busybox", "ports": []}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": []}]}}},
                    "securityContext": {"sysctls": []}, "volumes": []}}
    before = copy.deepcopy(pod)
    out = r.render_launcher_pod(pod, parse_vm(annotations, name="vm1"))
    assert pod == before and out != before


@pytest.mark.parametrize("before, after, ops", [
    pytest.param({"metadata": {"annotations": {"a/b": "1"}}, "spec": {}},
                 {"metadata": {"annotations": {"a/b": "1", "x~y": "2"}}, "spec": {}},
                 [{"op": "add", "path": "/metadata/annotations/x~0y", "value": "2"}],
                 id="annotation-key-escaped"),
    pytest.param({"metadata": {}, "spec": {"a": 1, "b": 2}},
                 {"metadata": {"labels": {"l": "v"}}, "spec": {"a": 1}},
                 [{"op": "remove", "path": "/spec/b"},
                  {"op": "add", "path": "/metadata/labels", "value": {"l": "v"}}],
                 id="remove-and-add-map"),
])
def test_diff_patch(before, after, ops):
    import jsonpatch
    got = r.diff_patch(before, after)
    assert sorted(got, key=str) == sorted(ops, key=str)
    assert jsonpatch.apply_patch(before, got) == after


def test_launcher_service_account_setting():
    from dataclasses import replace

    from podvirt.vmspec import parse_vm
    from podvirt.webhook.render import render_launcher_pod
    from podvirt.webhook.settings import RenderSettings

    pod = {"metadata": {"name": "vm", "labels": {"podvirt.io/vm": "true"},
                        "annotations": {"podvirt.io/memory": "1Gi",
                                        "podvirt.io/disks": "root=scratch:1Gi"}},
           "spec": {"containers": []}}
    spec = parse_vm(pod["metadata"]["annotations"], name="vm")
    plain = render_launcher_pod(pod, spec, RenderSettings())
    assert "serviceAccountName" not in plain["spec"]
    named = render_launcher_pod(pod, spec, replace(RenderSettings(),
                                                   launcher_service_account="podvirt-launcher"))
    assert named["spec"]["serviceAccountName"] == "podvirt-launcher"
    assert named["spec"]["automountServiceAccountToken"] is True


@pytest.mark.parametrize("ports, user_sysctls, expected", [
    pytest.param("8080", None, None, id="unprivileged-ports-leave-sysctls-alone"),
    pytest.param("22,8080/tcp", None, [{"name": "net.ipv4.ip_unprivileged_port_start",
                                        "value": "22"}], id="port-22-lowers-the-bound"),
    pytest.param("80", [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                 [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                 id="a-lower-user-bound-stays"),
    pytest.param("80", [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "1024"},
                        {"name": "kernel.shm_rmid_forced", "value": "1"}],
                 [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"},
                  {"name": "kernel.shm_rmid_forced", "value": "1"}], id="a-higher-one-is-lowered"),
])
def test_guest_ports_declared_and_bindable_without_capabilities(ports, user_sysctls, expected):
    extra = {k.NICS: "eth0", k.PORTS: ports}
    pod = rendered(extra) if user_sysctls is None else _rendered_with_sysctls(extra, user_sysctls)
    assert [p["containerPort"] for p in launcher(pod)["ports"]] == \
        [9101, *sorted(int(p.split("/")[0]) for p in ports.split(","))]
    assert (pod["spec"].get("securityContext") or {}).get("sysctls") == expected


def _rendered_with_sysctls(extra, sysctls):
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "vm", "annotations": {**BASIC, **extra}},
           "spec": {"containers": [], "securityContext": {"sysctls": sysctls}}}
    return r.render_launcher_pod(pod, parse_vm(pod["metadata"]["annotations"]))


# A VM pod as the API server hands it to webhooks: its defaults and the ServiceAccount
# plugin's already filled in. None of those is the user's, so none is warned about.
API_DEFAULTED = {"restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                 "schedulerName": "default-scheduler", "serviceAccountName": "default",
                 "serviceAccount": "default", "dnsPolicy": "ClusterFirst", "priority": 0,
                 "securityContext": {}, "enableServiceLinks": True,
                 "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": []}}]}
SIDECAR = {"name": "agent", "image": "registry.example/agent:1"}


@pytest.mark.parametrize("user, settings, warnings", [
    pytest.param({}, RenderSettings(), [], id="api-defaults-are-not-the-users"),
    pytest.param({"containers": [{"name": "launcher", "image": "busybox"}, SIDECAR]},
                 RenderSettings(),
                 ["spec.containers[launcher]: your container of this name is replaced by "
                  "podvirt's"], id="container-named-launcher"),
    pytest.param({"restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 5,
                  "schedulerName": "my-scheduler"}, RenderSettings(),
                 ['spec.restartPolicy: "OnFailure" is replaced by podvirt\'s "Never"',
                  "spec.terminationGracePeriodSeconds: 5 is replaced by podvirt's 75",
                  'spec.schedulerName: "my-scheduler" is replaced by podvirt\'s '
                  '"podvirt-scheduler"'], id="pod-policy-fields"),
    pytest.param({"automountServiceAccountToken": False, "serviceAccountName": "mine"},
                 RenderSettings(launcher_service_account="podvirt-launcher"),
                 ['spec.serviceAccountName: "mine" is replaced by podvirt\'s "podvirt-launcher"',
                  "spec.automountServiceAccountToken: false is replaced by podvirt's true"],
                 id="service-account"),
    pytest.param({"volumes": [{"name": "disk-root", "hostPath": {"path": "/srv"}}],
                  "initContainers": [{"name": "podvirt-tools", "image": "x"}]},
                 RenderSettings(),
                 ["spec.initContainers[podvirt-tools]: your init container of this name is "
                  "replaced by podvirt's",
                  "spec.volumes[disk-root]: your volume of this name is replaced by podvirt's"],
                 id="reserved-volume-and-init-container-names"),
    pytest.param({"securityContext": {"sysctls": [{"name": r.UNPRIVILEGED_PORT_SYSCTL,
                                                   "value": "1024"}]}}, RenderSettings(),
                 [f"spec.securityContext.sysctls[{r.UNPRIVILEGED_PORT_SYSCTL}]: your sysctl of "
                  "this name is replaced by podvirt's"], id="sysctl-too-high-for-port-22"),
    pytest.param({"securityContext": {"sysctls": [{"name": r.UNPRIVILEGED_PORT_SYSCTL,
                                                   "value": "0"}]}}, RenderSettings(), [],
                 id="sysctl-low-enough-kept"),
    pytest.param({"securityContext": {"sysctls": [{"name": r.UNPRIVILEGED_PORT_SYSCTL,
                                                   "value": "\u00b9"}]}}, RenderSettings(),
                 [f"spec.securityContext.sysctls[{r.UNPRIVILEGED_PORT_SYSCTL}]: your sysctl of "
                  "this name is replaced by podvirt's"], id="sysctl-not-ascii-digits"),
    pytest.param({"affinity": {"nodeAffinity": {}}}, RenderSettings(), [],
                 id="affinity-merged-not-replaced"),
])
def test_overridden_fields_are_warned_about(user, settings, warnings):
    annotations = {k.MEMORY: "1Gi", k.DISKS: "root=containerdisk:quay.io/x/debian:12",
                   k.NICS: "eth0", k.PORTS: "22"}
    spec = {**API_DEFAULTED, **user}
    if "volumes" in user:
        spec["volumes"] = API_DEFAULTED["volumes"] + user["volumes"]
    pod = {"metadata": {"name": "vm1", "labels": {k.OPT_IN_LABEL: "true"},
                        "annotations": annotations}, "spec": {"containers": [SIDECAR], **spec}}
    out = r.render_launcher_pod(pod, parse_vm(annotations, name="vm1"), settings)
    assert r.override_warnings(pod, out) == warnings
    # Rendering the launcher pod again replaces nothing.
    assert r.override_warnings(out, r.render_launcher_pod(out, parse_vm(annotations,
                                                                        name="vm1"), settings)) == []


def test_replaced_annotation_is_warned_about_and_long_values_cut():
    annotations = {**BASIC, "prometheus.io/port": "8080", "prometheus.io/path": "/" + "x" * 80}
    pod = {"metadata": {"name": "vm1", "labels": {k.OPT_IN_LABEL: "true"},
                        "annotations": annotations}, "spec": {"containers": []}}
    out = r.render_launcher_pod(pod, parse_vm(annotations, name="vm1"))
    assert r.override_warnings(pod, out) == [
        'metadata.annotations[prometheus.io/port]: "8080" is replaced by podvirt\'s "9101"',
        f'metadata.annotations[prometheus.io/path]: "/{"x" * 35}... is replaced by podvirt\'s '
        '"/metrics"']
