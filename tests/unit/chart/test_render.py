"""`helm template` of charts/podvirt with default and non-default values, checked object by object."""

from __future__ import annotations

import base64
import importlib
import re
import subprocess
from typing import Any

import pytest
import yaml

from podvirt.vmspec import keys
from podvirt.vmspec.overhead import ResourceNames

from tests.helm import CHART, KUBE_VERSION, NAMESPACE, RELEASE, RenderError, find, kinds

SECOND_SCHEDULER = {"scheduler": {"deploy": True}}
CERT_MANAGER = {"certManager": {"enabled": True}}


def container(obj: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]["containers"][index]


def hook_of(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")


def scheduler_config(objects) -> dict[str, Any]:
    return yaml.safe_load(find(objects, "ConfigMap", "-scheduler-config")["data"]["config.yaml"])


# --- what is rendered at all -----------------------------------------------------------------

@pytest.mark.parametrize("values, present, absent", [
    pytest.param({}, {"Deployment", "DaemonSet", "Job", "MutatingWebhookConfiguration",
                      "PodDisruptionBudget", "ValidatingAdmissionPolicy"},
                 {"Certificate", "Issuer"}, id="defaults"),
    pytest.param(CERT_MANAGER, {"Certificate", "Issuer", "MutatingWebhookConfiguration"},
                 {"Job"}, id="cert-manager"),
    pytest.param({"probe": {"enabled": False}, "admissionPolicy": {"enabled": False}},
                 {"Deployment"}, {"DaemonSet", "ValidatingAdmissionPolicy"}, id="no-probe-no-policy"),
], )
def test_kinds(render, values, present, absent):
    got = kinds(render(values))
    assert present <= got
    assert not absent & got


@pytest.mark.parametrize("values, deployments", [
    pytest.param({}, {"webhook", "extender", "evacuator"}, id="defaults"),
    pytest.param(SECOND_SCHEDULER, {"webhook", "extender", "scheduler", "evacuator"},
                 id="second-scheduler"),
    pytest.param({"evacuation": {"enabled": False}}, {"webhook", "extender"}, id="no-evacuation"),
])
def test_deployments(render, values, deployments):
    objects = render(values)
    got = {o["metadata"]["name"].removeprefix(f"{RELEASE}-podvirt-")
           for o in objects if o["kind"] == "Deployment"}
    assert got == deployments


# --- webhook -----------------------------------------------------------------------------------

def test_webhook_deployment_is_hardened_and_highly_available(render):
    objects = render()
    dep = find(objects, "Deployment", "-webhook")
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    sc = c["securityContext"]
    assert (sc["runAsNonRoot"], sc["readOnlyRootFilesystem"], sc["allowPrivilegeEscalation"]) == (True, True, False)
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert pod["automountServiceAccountToken"] is True      # the eviction route reads pods
    assert "--evictions" in c["args"]
    no_evictions = find(render({"evacuation": {"enabled": False}}), "Deployment", "-webhook")
    assert no_evictions["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "--evictions" not in container(no_evictions)["args"]
    pdb = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]


def test_webhook_service_reaches_the_container_port(render):
    objects = render()
    c = container(find(objects, "Deployment", "-webhook"))
    svc = find(objects, "Service", "-webhook")
    port_names = {p["name"] for p in c["ports"]}
    assert svc["spec"]["ports"][0]["targetPort"] in port_names
    assert svc["spec"]["selector"] == find(objects, "Deployment", "-webhook")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("values, scheduler_name", [
    pytest.param({}, "podvirt-scheduler", id="cluster-scheduler"),
    pytest.param(SECOND_SCHEDULER, "podvirt-scheduler", id="second-scheduler"),
    pytest.param({"scheduler": {"deploy": True, "name": "vm-sched"}}, "vm-sched", id="renamed"),
])
def test_scheduler_name_is_the_same_in_webhook_and_profile(render, values, scheduler_name):
    objects = render(values)
    contract = yaml.safe_load(find(objects, "ConfigMap", "-contract")["data"]["contract.yaml"])
    assert contract["schedulerName"] == scheduler_name     # what the webhook writes
    assert scheduler_config(objects)["profiles"][-1]["schedulerName"] == scheduler_name


_NOT_BALANCED = {"disabled": [{"name": "NodeResourcesBalancedAllocation"}]}
NO_FIT = {"preFilter": {"disabled": [{"name": "NodeResourcesFit"}]},
          "filter": {"disabled": [{"name": "NodeResourcesFit"}]},
          "preScore": _NOT_BALANCED, "score": _NOT_BALANCED}


def memory_scoring(strategy: str) -> list[dict]:
    return [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
        "type": strategy, "resources": [{"name": "memory", "weight": 1},
                                        {"name": "hugepages-2Mi", "weight": 1},
                                        {"name": "hugepages-1Gi", "weight": 1}]}}}]


VM_PROFILE = {"schedulerName": "podvirt-scheduler", "percentageOfNodesToScore": 100,
              "plugins": NO_FIT, "pluginConfig": memory_scoring("LeastAllocated")}


@pytest.mark.parametrize("values, profiles", [
    # The cluster's own scheduler gets both: plain pods keep the stock plugins.
    pytest.param({}, [{"schedulerName": "default-scheduler"}, VM_PROFILE],
                 id="cluster-scheduler"),
    # A second scheduler must not compete with the cluster's for plain pods.
    pytest.param(SECOND_SCHEDULER, [VM_PROFILE], id="second-scheduler"),
    pytest.param({"scheduler": {"scoring": "pack"}},
                 [{"schedulerName": "default-scheduler"},
                  {**VM_PROFILE, "pluginConfig": memory_scoring("MostAllocated")}], id="pack"),
])
def test_vm_profile_leaves_the_fit_to_the_extender_and_scores_memory_in_tree(render, values,
                                                                            profiles):
    config = scheduler_config(render(values))
    assert config["profiles"] == profiles
    (fit,) = config["extenders"]
    assert fit["filterVerb"] == "filter" and fit["bindVerb"] == "bind"
    assert "prioritizeVerb" not in fit


def test_named_passthrough_resources_get_the_numa_prioritize_entry(render):
    config = scheduler_config(render({"passthrough": {"resources": {
        "10de:1eb8": "nvidia.com/T4", "10de:1eb9": "nvidia.com/T4",
        "driver:mlx5_vfio_pci": "example.com/vf"}}}))
    fit, numa = config["extenders"]
    assert "prioritizeVerb" not in fit
    assert numa["prioritizeVerb"] == "prioritize" and "bindVerb" not in numa
    assert numa["managedResources"] == [{"name": "example.com/vf", "ignoredByScheduler": False},
                                        {"name": "nvidia.com/T4", "ignoredByScheduler": False}]
    assert numa["urlPrefix"] == fit["urlPrefix"] and numa["tlsConfig"] == fit["tlsConfig"]


def test_mutating_webhook_configuration(render):
    objects = render()
    hook = find(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    svc = find(objects, "Service", "-webhook")
    assert hook["objectSelector"] == {"matchLabels": {keys.OPT_IN_LABEL: keys.OPT_IN_VALUE}}
    excluded = hook["namespaceSelector"]["matchExpressions"][0]
    assert (excluded["key"], excluded["operator"]) == ("kubernetes.io/metadata.name", "NotIn")
    assert {NAMESPACE, "kube-system"} <= set(excluded["values"])
    assert (hook["failurePolicy"], hook["sideEffects"], hook["reinvocationPolicy"]) == ("Fail", "None", "IfNeeded")
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 30
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    target = hook["clientConfig"]["service"]
    assert (target["name"], target["namespace"], target["path"]) == (svc["metadata"]["name"], NAMESPACE, "/mutate")
    assert target["port"] in {p["port"] for p in svc["spec"]["ports"]}
    assert "caBundle" not in hook["clientConfig"]   # injected by the post-install hook


def test_ca_bundle_given_by_value(render):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    objects = render({"tls": {"generate": False, "caBundle": pem}})
    hook = find(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    assert base64.b64decode(hook["clientConfig"]["caBundle"]).decode() == pem
    assert "Job" not in kinds(objects)


# --- component flags stay in sync with the CLIs -------------------------------------------------

def _parser():
    from podvirt.cli import build_parser
    return build_parser()


@pytest.mark.parametrize("values, kind, name, module", [
    pytest.param({}, "Deployment", "-webhook", "podvirt.webhook.cli", id="webhook"),
    pytest.param({}, "Deployment", "-extender", "podvirt.extender.cli", id="extender"),
    pytest.param({"extender": {"https": False}}, "Deployment", "-extender", "podvirt.extender.cli",
                 id="extender-http"),
    pytest.param({}, "DaemonSet", "-probe", "podvirt.launcher.cli", id="probe"),
])
def test_container_args_parse_with_the_real_cli(render, values, kind, name, module):
    try:
        importlib.import_module(module)
    except ModuleNotFoundError:
        pytest.skip(f"{module} not written yet")
    args = [a.replace("$(NODE_NAME)", "node-1") for a in container(find(render(values), kind, name))["args"]]
    parsed = _parser().parse_args(args)   # SystemExit (a test error) on an unknown flag
    assert callable(parsed.func)


PASSTHROUGH = {"passthrough": {"enabled": True, "resources": {"10de:1eb8": "example.com/gpu",
                                              "driver:mlx5_vfio_pci": "x.io/vf"},
                                "sysRoot": "/srv/fake/sys", "vfioDir": "/srv/fake/vfio"}}


def test_passthrough_values_reach_every_component_alike(render):
    """One map, rendered once into the contract every component reads with --contract."""
    from podvirt.vmspec.contract import parse_contract
    from podvirt.vmspec.devicemap import DeviceResources
    objects = render(PASSTHROUGH)
    probe = find(objects, "DaemonSet", "-probe")["spec"]["template"]["spec"]
    containers = [container(find(objects, "Deployment", "-webhook")),
                  container(find(objects, "Deployment", "-extender")), *probe["containers"]]
    parsed = [_parser().parse_args([a.replace("$(NODE_NAME)", "n") for a in c["args"]])
              for c in containers]
    assert {str(p.contract) for p in parsed} == {"/etc/podvirt/contract/contract.yaml"}
    contract = parse_contract(yaml.safe_load(
        find(objects, "ConfigMap", "-contract")["data"]["contract.yaml"]))
    assert contract.costs.devices == DeviceResources.parse(
        "10de:1eb8=example.com/gpu,driver:mlx5_vfio_pci=x.io/vf")
    plugin = parsed[-1]
    assert (str(plugin.sys_root), plugin.vfio_dir) == ("/host/sys", "/srv/fake/vfio")
    volumes = {v["name"]: v["hostPath"]["path"] for v in probe["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in probe["containers"][1]["volumeMounts"]}
    assert (volumes["pci-sys"], mounts["pci-sys"]) == ("/srv/fake/sys", "/host/sys")
    # The plugin stats group nodes under --dev-root /host: the host's dir mounted there.
    assert (volumes["vfio-dir"], mounts["vfio-dir"]) == ("/srv/fake/vfio", "/host/srv/fake/vfio")
    assert ("", "pods", "list") in rules_of(objects, "ClusterRole", "-probe")
    on_dev = render({"passthrough": {"enabled": True}})
    assert "vfio-dir" not in {v["name"] for v in find(on_dev, "DaemonSet", "-probe")[
        "spec"]["template"]["spec"]["volumes"]}    # /dev/vfio: already under /host/dev


def test_certs_hook_args_parse_with_the_hook_script(render):
    from .test_certs_hook import hook_module
    hook = hook_module()
    jobs = [o for o in render() if o["kind"] == "Job"]
    assert {hook_of(j) for j in jobs} == {"pre-install,pre-upgrade,pre-rollback",
                                         "post-install,post-upgrade,post-rollback"}
    for job in jobs:
        c = container(job)
        assert c["command"] == ["python3", "/hook/certs_hook.py"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        hook.build_parser().parse_args(c["args"])


# --- scheduler ---------------------------------------------------------------------------------

def test_scheduler_configuration_registers_the_extender(render):
    objects = render()
    ext = scheduler_config(objects)["extenders"][0]
    svc = find(objects, "Service", "-extender")
    assert ext["urlPrefix"] == f"https://{svc['metadata']['name']}.{NAMESPACE}.svc:{svc['spec']['ports'][0]['port']}"
    assert (ext["filterVerb"], ext.get("prioritizeVerb"), ext["bindVerb"]) == ("filter", None, "bind")
    assert ext["nodeCacheCapable"] is True and ext["ignorable"] is False and ext["enableHTTPS"] is True
    assert re.fullmatch(r"\d+(ms|s|m)", ext["httpTimeout"])
    assert ext["tlsConfig"]["caFile"] == "/etc/podvirt/tls/ca.crt"
    assert ext["managedResources"] == [
        {"name": ResourceNames().kvm, "ignoredByScheduler": True},
        {"name": "podvirt.io/vm", "ignoredByScheduler": True}]


def test_second_scheduler_deployment_and_rbac(render):
    objects = render(SECOND_SCHEDULER)
    dep = find(objects, "Deployment", "-scheduler")
    c = container(dep)
    assert c["image"].startswith("registry.k8s.io/kube-scheduler:")
    assert "--config=/etc/podvirt/scheduler/config.yaml" in c["command"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/etc/podvirt/scheduler" in mounts and "/etc/podvirt/tls" in mounts
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    bound = {b["roleRef"]["name"] for b in objects
             if b["kind"] in ("ClusterRoleBinding", "RoleBinding")
             and any(s["name"] == sa for s in b["subjects"])}
    assert {"system:kube-scheduler", "system:volume-scheduler",
            "extension-apiserver-authentication-reader"} <= bound
    lease = find(objects, "Role", "-scheduler-leader-election")
    config = scheduler_config(objects)
    assert config["leaderElection"]["resourceName"] in lease["rules"][1]["resourceNames"]


# --- certificates --------------------------------------------------------------------------------

def test_cert_manager_chain_and_injection(render):
    objects = render(CERT_MANAGER)
    certs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Certificate"}
    serving = certs[f"{RELEASE}-podvirt-serving"]
    assert serving["spec"]["secretName"] == "podvirt-tls"
    assert f"{RELEASE}-podvirt-webhook.{NAMESPACE}.svc" in serving["spec"]["dnsNames"]
    assert f"{RELEASE}-podvirt-extender.{NAMESPACE}.svc" in serving["spec"]["dnsNames"]
    assert certs[f"{RELEASE}-podvirt-ca"]["spec"]["isCA"] is True
    mwc = find(objects, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}-podvirt-serving"
    assert not [o for o in objects if hook_of(o)]


def test_certs_hook_objects_are_all_hooks_and_least_privilege(render):
    objects = [o for o in render() if o["metadata"]["name"].endswith("-certs")
               or o["metadata"]["name"].startswith(f"{RELEASE}-podvirt-certs-")]
    assert {o["kind"] for o in objects} >= {"ServiceAccount", "Role", "ClusterRole", "ConfigMap", "Job"}
    assert all(hook_of(o) for o in objects)
    cluster_role = find(objects, "ClusterRole")
    assert cluster_role["rules"] == [{"apiGroups": ["admissionregistration.k8s.io"],
                                      "resources": ["mutatingwebhookconfigurations",
                                                    "validatingwebhookconfigurations"],
                                      "resourceNames": [f"{RELEASE}-podvirt-webhook"],
                                      "verbs": ["get", "patch"]}]


# --- RBAC ----------------------------------------------------------------------------------------

def rules_of(objects, kind: str, suffix: str) -> list[tuple[str, ...]]:
    return [(r.get("apiGroups", [""])[0], res, verb)
            for r in find(objects, kind, suffix)["rules"]
            for res in r["resources"] for verb in r["verbs"]]


@pytest.mark.parametrize("kind, suffix, expected", [
    pytest.param("ClusterRole", "-extender", {
        ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"),
        ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "patch"),
        ("", "pods/binding", "create"), ("", "bindings", "create")}, id="extender"),
    pytest.param("ClusterRole", "-probe", {
        ("", "nodes", "get"), ("", "nodes", "patch"), ("", "nodes/status", "patch")}, id="probe"),
    pytest.param("Role", "-launcher", {
        ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "patch"),
        ("", "pods/status", "patch"), ("", "events", "create"), ("", "events", "patch")}, id="launcher"),
])
def test_rbac_rules(render, kind, suffix, expected):
    assert set(rules_of(render(), kind, suffix)) == expected


@pytest.mark.parametrize("values", [
    pytest.param({}, id="defaults"),
    pytest.param({**SECOND_SCHEDULER, **CERT_MANAGER}, id="everything"),
])
def test_no_wildcards_and_no_secret_reads(render, values):
    for role in (o for o in render(values) if o["kind"] in ("Role", "ClusterRole")):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule.get("apiGroups", []), role["metadata"]["name"]
            if "secrets" in rule["resources"]:   # only the certs hook, and only its Secret
                assert role["metadata"]["name"].endswith("-certs")
                assert "list" not in rule["verbs"] and "watch" not in rule["verbs"]


def test_launcher_rbac_per_vm_namespace(render):
    objects = render({"launcher": {"namespaces": ["vms-a", "vms-b"]}})
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        assert {o["metadata"]["namespace"] for o in objects
                if o["kind"] == kind and "launcher" in o["metadata"]["name"]} == {"vms-a", "vms-b"}
    policy = find(objects, "ValidatingAdmissionPolicy", "-launcher-own-pod")
    users = policy["spec"]["matchConditions"][0]["expression"]
    assert "system:serviceaccount:vms-a:podvirt-launcher" in users
    assert "system:serviceaccount:vms-b:podvirt-launcher" in users


def test_launcher_status_annotations_match_the_core_keys():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    writable = keys.STATUS_KEYS - {keys.RENDERED, keys.CONTRACT, keys.ASSIGNED_DEVICES,
                                   keys.ASSIGNED_AT, keys.EVACUATE}
    assert set(values["launcher"]["statusAnnotations"]) == writable


# --- evacuation -------------------------------------------------------------------------------

def test_eviction_webhook_sees_only_vm_namespaces(render):
    objects = render({"launcher": {"namespaces": ["vms-a", "vms-b"]}})
    config = find(objects, "ValidatingWebhookConfiguration")
    [hook] = config["webhooks"]
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                              "resources": ["pods/eviction"], "scope": "Namespaced"}]
    assert hook["clientConfig"]["service"]["path"] == "/evict"
    assert hook["sideEffects"] == "NoneOnDryRun" and hook["failurePolicy"] == "Ignore"
    [expr] = hook["namespaceSelector"]["matchExpressions"]
    assert (expr["operator"], expr["values"]) == ("In", ["vms-a", "vms-b"])


def test_evacuator_rights_are_per_vm_namespace(render):
    objects = render({"launcher": {"namespaces": ["vms-a", "vms-b"]}})
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"].removeprefix(f"{RELEASE}-podvirt-")): o
             for o in objects if o["kind"] == "Role"}
    for ns in ("vms-a", "vms-b"):
        assert set(roles[(ns, "evacuator")]["rules"][0]["verbs"]) == {
            "get", "list", "watch", "create", "delete", "patch"}
        assert roles[(ns, "webhook-evictions")]["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")
                and "evacuator" in o["metadata"]["name"]]
    dep = find(objects, "Deployment", "-evacuator")
    args = container(dep)["args"]
    assert args[:3] == ["evacuator", "--namespace=vms-a", "--namespace=vms-b"]
    assert "--same-node" not in args and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 330


def test_ca_injected_into_both_webhook_configurations(render):
    job = next(o for o in render() if o["kind"] == "Job" and "inject" in str(container(o)["args"]))
    assert f"--validating-configuration={RELEASE}-podvirt-webhook" in container(job)["args"]
    cm = find(render(CERT_MANAGER), "ValidatingWebhookConfiguration")
    assert "cert-manager.io/inject-ca-from" in cm["metadata"]["annotations"]


# --- probe -----------------------------------------------------------------------------------------

def test_probe_daemonset(render):
    ds = find(render(), "DaemonSet", "-probe")
    c = container(ds)
    assert c["args"][:3] == ["launcher", "probe", "--node"]
    assert c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert c["image"].startswith("ghcr.io/podvirt/launcher:")


# --- bad values fail rendering with a clear message ---------------------------------------------

@pytest.mark.parametrize("values, message", [
    pytest.param({"certManager": {"enabled": True}, "tls": {"caBundle": "x"}}, "exclude each other",
                 id="cert-manager-and-ca-bundle"),
    pytest.param({"tls": {"generate": False}}, "no CA for the webhook", id="no-ca-source"),
    pytest.param({"webhook": {"timeoutSeconds": 31}}, "between 1 and 30", id="timeout-too-long"),
    pytest.param({"scheduler": {"name": "default-scheduler"}}, "must not be default-scheduler",
                 id="vm-profile-named-default"),
    pytest.param({"scheduler": {"scoring": "balanced"}}, "scheduler.scoring must be spread or pack",
                 id="unknown-scoring"),
    pytest.param({"webhook": {"logLevel": "verbose"}},
                 "webhook.logLevel must be debug, info or warning, got verbose",
                 id="unknown-webhook-log-level"),
])
def test_bad_values_fail(render, values, message):
    with pytest.raises(RenderError, match=message):
        render(values)


# --- lint and values documentation -------------------------------------------------------------------

@pytest.mark.parametrize("sets", [
    pytest.param([], id="defaults"),
    pytest.param(["--set", "certManager.enabled=true,scheduler.deploy=true"], id="cert-manager-second-scheduler"),
])
def test_helm_lint_strict(helm, sets):
    proc = subprocess.run([str(helm), "lint", "--strict", str(CHART), "--namespace", NAMESPACE,
                           "--kube-version", KUBE_VERSION, *sets],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


def test_every_value_is_documented():
    """Each key of the first two levels of values.yaml has a comment line right above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^( {0,2})([A-Za-z][\w-]*):", line)
        if m and not lines[i - 1].strip().startswith("#"):
            undocumented.append(m.group(2))
    assert not undocumented
