"""The chart against a real kube-apiserver (podvirt's local control plane, kwok nodes).

- every rendered manifest passes `kubectl apply --dry-run=server` (cert-manager's CRDs
  are absent here, so its objects are left out of that check);
- `helm install` creates the release; the certificate hook script, run with the very
  arguments of the release's hook Jobs (no Job controller runs here), creates the TLS
  Secret and injects its CA into the MutatingWebhookConfiguration;
- a pod built from the webhook Deployment's template is scheduled and Running on a kwok
  node (no controller-manager runs, so Deployments create no pods by themselves);
- the ValidatingAdmissionPolicies hold: with a token bound to its pod, the launcher
  ServiceAccount may write its own pod's status annotations and nothing else, and the
  probe only its own node.

Uses $PODVIRT_KUBECONFIG when set (an existing cluster), else starts one with
podvirt.cluster in a temporary state dir.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from cryptography import x509

from tests.helm import CHART, NAMESPACE, helm_template, k8s_bin

pytestmark = pytest.mark.timeout(300)

VM_NAMESPACE = "chart-vms"
HOOK = CHART / "files" / "certs_hook.py"


class Kube:
    """kubectl/helm bound to one kubeconfig, plus a Python client."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_bin = k8s_bin("kubectl")
        self.helm_bin = k8s_bin("helm")
        from kubernetes import client, config
        self.api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api)

    def run(self, binary: Path | None, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        proc = subprocess.run([str(binary), *args], input=input, capture_output=True, text=True,
                              env=env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{Path(str(binary)).name} {' '.join(args)} exited "
                                 f"{proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(self.kubectl_bin, *args, **kw)

    def helm(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(self.helm_bin, *args, **kw)

    def client_with_token(self, token: str):
        """A Python client that authenticates as a ServiceAccount token."""
        from kubernetes import client
        cfg = client.Configuration()
        cfg.host = self.api.configuration.host
        cfg.ssl_ca_cert = self.api.configuration.ssl_ca_cert
        cfg.api_key = {"authorization": f"Bearer {token}"}
        return client.CoreV1Api(client.ApiClient(cfg))


@pytest.fixture(scope="module")
def kube(tmp_path_factory) -> Iterator[Kube]:
    if k8s_bin("kubectl") is None or k8s_bin("helm") is None:
        pytest.skip("kubectl/helm not built (bash hack/k8s/build.sh)")
    given = os.environ.get("PODVIRT_KUBECONFIG")
    if given:
        yield Kube(given)
        return
    try:
        from podvirt.cluster.cluster import Cluster, UpOptions
    except ImportError as exc:
        pytest.skip(f"no PODVIRT_KUBECONFIG and podvirt.cluster unavailable ({exc})")
    cluster = Cluster(tmp_path_factory.mktemp("chart-cluster"), progress=lambda m: print(m, flush=True))
    # The chart is under test, not the services: no local webhook or extender processes.
    cluster.up(UpOptions(webhook=False, extender=False, node=False))
    try:
        yield Kube(str(cluster.kubeconfig))
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def namespaces(kube: Kube) -> str:
    for ns in (NAMESPACE, VM_NAMESPACE):
        if kube.kubectl("get", "namespace", ns, check=False).returncode != 0:
            kube.kubectl("create", "namespace", ns)
    return NAMESPACE


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("values", [
    pytest.param({}, id="defaults"),
    pytest.param({"scheduler": {"deploy": True}, "certManager": {"enabled": True}},
                 id="second-scheduler-cert-manager"),
])
def test_every_manifest_passes_server_dry_run(kube, namespaces, values):
    values = {**values, "launcher": {"namespaces": [VM_NAMESPACE]}}
    objects = [o for o in docs(helm_template(kube.helm_bin, values))
               if o["apiVersion"].split("/")[0] != "cert-manager.io"]
    out = kube.kubectl("apply", "--dry-run=server", "-o", "name", "-f", "-",
                       input=yaml.safe_dump_all(objects)).stdout.split()
    assert len(out) == len(objects)


@pytest.fixture(scope="module")
def release(kube: Kube, namespaces: str) -> Iterator[str]:
    name = f"pv{uuid.uuid4().hex[:6]}"
    print(f"helm install {name}", flush=True)
    # --no-hooks: no Job controller runs here; test_certs_hook_* runs the hooks' script.
    kube.helm("install", name, str(CHART), "--namespace", NAMESPACE, "--no-hooks",
              "--set", f"launcher.namespaces={{{VM_NAMESPACE}}}")
    try:
        yield name
    finally:
        kube.helm("uninstall", name, "--namespace", NAMESPACE, check=False)
        kube.kubectl("-n", NAMESPACE, "delete", "secret", "podvirt-tls", "podvirt-tls-ca",
                     "--ignore-not-found")


def test_helm_install_creates_the_release_objects(kube, release):
    manifest = docs(kube.helm("get", "manifest", release, "-n", NAMESPACE).stdout)
    assert len(manifest) > 20
    for obj in manifest:
        ns = obj["metadata"].get("namespace")
        args = ["get", obj["kind"].lower(), obj["metadata"]["name"], "-o", "name"]
        kube.kubectl(*(["-n", ns] if ns else []), *args)
    status = json.loads(kube.helm("status", release, "-n", NAMESPACE, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"


def run_hook(kube: Kube, args: list[str]) -> str:
    env = {**os.environ, "KUBECONFIG": kube.kubeconfig,
           "PODVIRT_BIN": str(Path(sys.executable).with_name("podvirt"))}
    proc = subprocess.run([sys.executable, str(HOOK), *args], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def test_certs_hooks_issue_the_secret_and_inject_the_ca(kube, release):
    if not Path(sys.executable).with_name("podvirt").exists():
        pytest.skip("podvirt console script not installed in this venv")
    hooks = docs(kube.helm("get", "hooks", release, "-n", NAMESPACE).stdout)
    job_args = {j["metadata"]["annotations"]["helm.sh/hook"]:
                j["spec"]["template"]["spec"]["containers"][0]["args"]
                for j in hooks if j["kind"] == "Job"}
    pre = job_args["pre-install,pre-upgrade,pre-rollback"]
    post = job_args["post-install,post-upgrade,post-rollback"]

    assert "created" in run_hook(kube, pre)
    assert "kept" in run_hook(kube, pre)            # an upgrade keeps a good certificate
    secret = kube.core.read_namespaced_secret("podvirt-tls", NAMESPACE)
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret.data["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{release}-podvirt-webhook.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert f"{release}-podvirt-extender.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert "ca.key" not in secret.data            # the mounted Secret has no signing key
    ca_secret = kube.core.read_namespaced_secret("podvirt-tls-ca", NAMESPACE)
    assert ca_secret.data["ca.crt"] == secret.data["ca.crt"] and ca_secret.data["ca.key"]

    # A certificate lacking a name (the chart gained a Service) is reissued by the same CA.
    secret.data["tls.crt"] = base64.b64encode(b"not a certificate").decode()
    kube.core.replace_namespaced_secret("podvirt-tls", NAMESPACE, secret)
    assert "issuing, stored certificate is not valid PEM" in run_hook(kube, pre)
    renewed = kube.core.read_namespaced_secret("podvirt-tls", NAMESPACE)
    assert renewed.data["ca.crt"] == ca_secret.data["ca.crt"]
    assert x509.load_pem_x509_certificate(base64.b64decode(renewed.data["tls.crt"]))

    assert "1 caBundle(s) updated" in run_hook(kube, post)
    assert "0 caBundle(s) updated" in run_hook(kube, post)
    mwc = json.loads(kube.kubectl("get", "mutatingwebhookconfiguration", f"{release}-podvirt-webhook",
                                  "-o", "json").stdout)
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == secret.data["ca.crt"]


def wait_for(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_webhook_pod_template_is_scheduled_and_running(kube, release):
    dep = json.loads(kube.kubectl("-n", NAMESPACE, "get", "deployment", f"{release}-podvirt-webhook",
                                  "-o", "json").stdout)
    template = dep["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{release}-webhook-template", "namespace": NAMESPACE,
                        "labels": template["metadata"]["labels"]},
           "spec": template["spec"]}
    kube.kubectl("apply", "-f", "-", input=json.dumps(pod))
    try:
        seen: list[Any] = []

        def running():
            seen[:] = [kube.core.read_namespaced_pod(pod["metadata"]["name"], NAMESPACE)]
            return seen[0].spec.node_name and seen[0].status.phase == "Running"
        try:
            wait_for("the webhook pod to run on a kwok node", running, timeout=60)
        except AssertionError:
            raise AssertionError(f"pod never Running: {seen[0].spec.node_name=} {seen[0].status}") from None
    finally:
        kube.kubectl("-n", NAMESPACE, "delete", "pod", pod["metadata"]["name"], "--wait=false")


# --- admission policies -------------------------------------------------------------------------

def make_pod(kube: Kube, name: str, node: str | None = None) -> Any:
    spec: dict[str, Any] = {"serviceAccountName": "podvirt-launcher",
                            "containers": [{"name": "c", "image": "example.invalid/none"}]}
    if node:
        spec["nodeName"] = node
    return kube.core.create_namespaced_pod(VM_NAMESPACE, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "chart-test"}}, "spec": spec})


def bound_token(kube: Kube, namespace: str, sa: str, pod: Any | None) -> str:
    from kubernetes import client
    spec = client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    if pod is not None:
        spec.bound_object_ref = client.V1BoundObjectReference(
            kind="Pod", api_version="v1", name=pod.metadata.name, uid=pod.metadata.uid)
    return kube.core.create_namespaced_service_account_token(
        sa, namespace, client.AuthenticationV1TokenRequest(spec=spec)).status.token


def denied(call) -> str:
    """The API server's message when the call is refused; "" when it succeeds."""
    from kubernetes.client.exceptions import ApiException
    try:
        call()
    except ApiException as exc:
        assert exc.status in (403, 422), exc.body
        return json.loads(exc.body)["message"]
    return ""


@pytest.fixture(scope="module")
def vm_pods(kube: Kube, release: str) -> Iterator[tuple[Any, Any]]:
    node = kube.core.list_node().items[0].metadata.name
    mine, other = (make_pod(kube, f"chart-vm-{s}-{uuid.uuid4().hex[:5]}", node) for s in ("a", "b"))
    try:
        yield mine, other
    finally:
        for p in (mine, other):
            kube.core.delete_namespaced_pod(p.metadata.name, VM_NAMESPACE, grace_period_seconds=0)


def annotate(key: str, value: str) -> dict:
    return {"metadata": {"annotations": {key: value}}}


def test_launcher_may_write_only_its_own_pods_status(kube, release, vm_pods):
    mine, other = vm_pods
    launcher = kube.client_with_token(bound_token(kube, VM_NAMESPACE, "podvirt-launcher", mine))
    unbound = kube.client_with_token(bound_token(kube, VM_NAMESPACE, "podvirt-launcher", None))
    patch = lambda api, pod, body: lambda: api.patch_namespaced_pod(pod.metadata.name, VM_NAMESPACE, body)
    # Policies take effect once the API server's informer has them: wait for the first denial.
    wait_for("the launcher policy to be active",
             lambda: denied(patch(launcher, other, annotate("podvirt.io/phase", "Running"))))

    cases = [
        ("own pod, phase", patch(launcher, mine, annotate("podvirt.io/phase", "Running")), ""),
        ("own pod, status subresource",
         lambda: launcher.patch_namespaced_pod_status(mine.metadata.name, VM_NAMESPACE, {"status": {
             "conditions": [{"type": "podvirt.io/VMReady", "status": "True"}]}}), ""),
        ("other pod", patch(launcher, other, annotate("podvirt.io/phase", "Failed")), "bound to"),
        ("own pod, user key", patch(launcher, mine, annotate("podvirt.io/memory", "64Gi")), "status annotations"),
        ("own pod, assigned devices", patch(launcher, mine, annotate("podvirt.io/assigned-devices", "[]")),
         "status annotations"),
        ("own pod, label", patch(launcher, mine, {"metadata": {"labels": {"app": "x"}}}), "labels"),
        ("token not bound to a pod", patch(unbound, mine, annotate("podvirt.io/phase", "Running")), "bound to"),
    ]
    got = {name: denied(call) for name, call, _ in cases}
    for name, _, expected in cases:
        assert (expected in got[name]) if expected else got[name] == "", (name, got[name])
    final = kube.core.read_namespaced_pod(mine.metadata.name, VM_NAMESPACE)
    assert final.metadata.annotations.get("podvirt.io/phase") == "Running"
    assert "podvirt.io/memory" not in final.metadata.annotations


def test_launcher_rbac_stops_at_its_namespace(kube, release, vm_pods):
    mine, _ = vm_pods
    launcher = kube.client_with_token(bound_token(kube, VM_NAMESPACE, "podvirt-launcher", mine))
    msg = denied(lambda: launcher.list_namespaced_pod(NAMESPACE))
    assert "forbidden" in msg
    assert denied(lambda: launcher.list_namespaced_secret(VM_NAMESPACE))


def test_probe_may_write_only_its_own_node(kube, release):
    nodes = [n.metadata.name for n in kube.core.list_node().items]
    if len(nodes) < 2:
        pytest.skip("needs two nodes")
    own, other = nodes[:2]
    probe_pod = kube.core.create_namespaced_pod(NAMESPACE, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"chart-probe-{uuid.uuid4().hex[:5]}"},
        "spec": {"nodeName": own, "serviceAccountName": f"{release}-podvirt-probe",
                 "containers": [{"name": "c", "image": "example.invalid/none"}]}})
    try:
        probe = kube.client_with_token(
            bound_token(kube, NAMESPACE, f"{release}-podvirt-probe", probe_pod))
        label = lambda node, key, value: lambda: probe.patch_node(node, {"metadata": {"labels": {key: value}}})
        wait_for("the probe policy to be active", lambda: denied(label(other, "podvirt.io/kvm", "true")))
        assert denied(label(own, "podvirt.io/kvm", "true")) == ""
        assert "the node its pod runs on" in denied(label(other, "podvirt.io/kvm", "false"))
        assert "podvirt.io labels" in denied(label(own, "node-role.kubernetes.io/control-plane", ""))
        assert "spec" in denied(lambda: probe.patch_node(own, {"spec": {"unschedulable": True}}))
    finally:
        kube.core.delete_namespaced_pod(probe_pod.metadata.name, NAMESPACE, grace_period_seconds=0)
