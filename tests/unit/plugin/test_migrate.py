"""`kubectl podvirt migrate`: which VMs can move, the target pod, and the flow against a
fake API whose launchers answer as the real ones do."""

import re

import pytest

from podvirt.plugin.migrate import Migration, target_manifest, target_name
from podvirt.plugin.target import PluginError, PodFacts
from podvirt.vmspec import keys as k


def _source(**annotations):
    return {"metadata": {"name": "web", "namespace": "vms", "labels": {k.OPT_IN_LABEL: "true",
                                                                       "app": "web"},
                         "annotations": {"podvirt.io/memory": "1Gi",
                                         "podvirt.io/disks": "root=pvc:root", k.RENDERED: "x",
                                         k.PHASE: "Running", **annotations}},
            "spec": {"nodeName": "n1", "tolerations": [{"key": "t", "operator": "Exists"}],
                     "containers": [{"name": "launcher"}], "volumes": [{"name": "v"}]}}


def test_target_is_the_vm_definition_placed_away_from_the_source():
    m = target_manifest(_source(**{"podvirt.io/disks": "root=pvc:data"}), "web-mig-1")
    meta, spec = m["metadata"], m["spec"]
    assert meta["annotations"] == {"podvirt.io/memory": "1Gi", "podvirt.io/disks": "root=pvc:data",
                                   k.MIGRATION_SOURCE: "web"}
    assert meta["labels"] == {k.OPT_IN_LABEL: "true", "app": "web", k.VM_NAME_LABEL: "web"}
    assert spec["containers"] == [] and "volumes" not in spec and "nodeName" not in spec
    assert spec["tolerations"] == [{"key": "t", "operator": "Exists"}]
    [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "kubernetes.io/hostname", "operator": "NotIn",
                                         "values": ["n1"]}]
    assert "affinity" not in target_manifest(_source(), "t", same_node=True)["spec"]


def test_ephemeral_disks_move_with_the_vm():
    disks = "root=containerdisk:img,s=scratch:1Gi,f=file:/var/lib/podvirt/base.qcow2"
    m = target_manifest(_source(**{"podvirt.io/disks": disks}), "web-mig-1")
    assert m["metadata"]["annotations"]["podvirt.io/disks"] == disks


def test_existing_node_affinity_terms_each_get_the_exclusion():
    src = _source()
    src["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In",
                                                      "values": ["a"]}]},
                              {"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": ["n2"]}]}]}}}
    terms = target_manifest(src, "t")["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert all(t["matchExpressions"][-1]["values"] == ["n1"] for t in terms)
    assert src["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"][-1]["values"] == ["a"], "source changed"


@pytest.mark.parametrize("annotations, owners, words", [
    ({"podvirt.io/devices": "example.com/gpu=1"}, None, "passthrough devices"),
    ({"podvirt.io/dedicated-cpus": "true", "podvirt.io/vcpus": "2"}, None, "pinned"),
    ({}, [{"kind": "ReplicaSet", "name": "web-5d"}], "owned by ReplicaSet web-5d"),
])
def test_vms_that_cannot_move_are_refused_with_the_reason(annotations, owners, words):
    src = _source(**annotations)
    if owners:
        src["metadata"]["ownerReferences"] = owners
    with pytest.raises(PluginError, match=re.escape(words)):
        target_manifest(src, "t")


def test_target_names_fit_a_pod_name():
    assert target_name("web", "abcde") == "web-mig-abcde"
    assert len(target_name("x" * 63)) <= 63


class FakeAPI:
    """Pods by name; the 'launchers' react to what the plugin writes."""

    def __init__(self, migrate_result: str = "ok", target_fails: str = ""):
        self.pods = {"web": _source()}
        self.deleted: list[str] = []
        self.migrate_result, self.target_fails = migrate_result, target_fails
        self.now = 0.0

    def facts(self, name):
        m = self.pods[name]
        return PodFacts(name, "vms", labels=m["metadata"]["labels"],
                        annotations=m["metadata"]["annotations"], phase="Running",
                        launcher_running=True)

    def read(self, name):
        if name not in self.pods:
            raise PluginError(f"pod vms/{name}: not found")
        return self.facts(name)

    def manifest(self, name):
        import copy
        return copy.deepcopy(self.pods[name])

    def create(self, manifest):
        name = manifest["metadata"]["name"]
        manifest["metadata"]["annotations"][k.RENDERED] = "x"
        manifest["metadata"]["annotations"][k.PHASE] = "Failed" if self.target_fails else "Incoming"
        if self.target_fails:
            manifest["metadata"]["annotations"][k.FAILURE_MESSAGE] = self.target_fails
        self.pods[name] = manifest

    def delete(self, name):
        self.deleted.append(name)
        self.pods.pop(name, None)

    def patch_annotations(self, name, changes):
        ann = self.pods[name]["metadata"]["annotations"]
        ann.update({key: v for key, v in changes.items() if v is not None})
        if changes.get(k.ACTION) == k.MIGRATE:
            target = ann[k.MIGRATION_TARGET]
            if self.migrate_result == "ok":
                ann.update({k.ACTION_ACK: "migrate:7:ok", k.PHASE: "Succeeded",
                            k.FAILURE_REASON: k.REASON_MIGRATED})
                self.pods[target]["metadata"]["annotations"][k.PHASE] = "Running"
            elif self.migrate_result == "error":
                ann[k.ACTION_ACK] = "migrate:7:error"
            else:
                ann[k.PHASE] = "Migrating"     # hangs until cancelled
        if changes.get(k.ACTION) == k.MIGRATE_CANCEL:
            ann.update({k.PHASE: "Running", k.ACTION_ACK: "migrate-cancel:8:ok"})

    def warning_events(self, name, reason):
        return ["migrate: live migration: connection refused"] if reason == k.EVENT_ACTION_FAILED \
            else []

    def scheduling_failures(self, name):
        return []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _run(api, **kw):
    return Migration(api, "web", clock=api.clock, sleep=api.sleep, **kw).run()


def test_success_leaves_the_vm_in_the_target_and_deletes_the_ended_source():
    api = FakeAPI()
    message = _run(api)
    [target] = [n for n in api.pods if n != "web"] or [None]
    assert target and target.startswith("web-mig-")
    assert f"migrated to pod vms/{target}" in message and "podvirt.io/vm-name=web" in message
    assert api.deleted == ["web"]


def test_a_failed_migration_deletes_the_target_and_keeps_the_source():
    api = FakeAPI(migrate_result="error")
    with pytest.raises(PluginError, match="connection refused"):
        _run(api)
    assert list(api.pods) == ["web"] and len(api.deleted) == 1


def test_a_migration_that_does_not_end_is_cancelled_at_the_timeout():
    api = FakeAPI(migrate_result="hang")
    with pytest.raises(PluginError, match="timed out"):
        _run(api, timeout=10)
    assert api.pods["web"]["metadata"]["annotations"][k.ACTION] == k.MIGRATE_CANCEL
    assert list(api.pods) == ["web"]


def test_a_target_that_fails_is_reported_and_removed():
    api = FakeAPI(target_fails="cannot listen on migration port 49152")
    with pytest.raises(PluginError, match="failed before the migration: cannot listen"):
        _run(api)
    assert list(api.pods) == ["web"]
