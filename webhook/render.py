"""VMSpec + user pod -> launcher pod, assembled by small options (docs/contracts.md,
"Launcher pod").

Each option takes the pod being built and a RenderContext and edits that pod; RULES says
which option applies when, so the table reads like the contract. Options only ever add or
replace things by name (our container, volumes, init containers), which makes rendering a
rendered pod a no-op.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from podvirt.quantity import format_bytes, format_millis
from podvirt.vmspec import Demand, VMSpec, demand, keys as k, vm_annotations
from podvirt.vmspec.model import KERNEL_BOOT_DIR, METRICS_PORT, SPEC_DIR, SPEC_FILE
from podvirt.vmspec.overhead import qcow2_file_bytes
from podvirt.webhook.settings import RenderSettings

Pod = dict[str, Any]
JsonPatch = list[dict[str, Any]]

LAUNCHER = "launcher"
SPEC_VOLUME = "podvirt-spec"
HUGEPAGES_VOLUME = "hugepages"
# Images the pod copies files out of (containerdisks, kernel images) are often FROM
# scratch: no shell, no cp. The first init container puts the launcher image's static
# busybox into this volume, and the copiers run it from there.
TOOLS_VOLUME = "podvirt-tools"
TOOLS_DIR = "/podvirt-tools"
TOOLS_INIT = "podvirt-tools"
KERNEL_BOOT_VOLUME = "kernel-boot"
# The downward-API files the launcher reads, and the pod fields they come from.
_DOWNWARD_FILES = (("annotations", "metadata.annotations"), ("labels", "metadata.labels"),
                   ("name", "metadata.name"), ("namespace", "metadata.namespace"),
                   ("uid", "metadata.uid"))
_ENV = (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
        ("NODE_NAME", "spec.nodeName"))


# The canonical form stored hashes were made of: sorted keys, no spaces, ASCII.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def rendered_hash(annotations: Mapping[str, str] | None) -> str:
    """Fingerprint of the VM annotations; stored in podvirt.io/rendered."""
    canonical = _CANONICAL.encode(vm_annotations(annotations))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RenderContext:
    spec: VMSpec
    demand: Demand
    settings: RenderSettings


Option = Callable[[Pod, RenderContext], None]


def _put_named(owner: dict, key: str, new: dict) -> None:
    """Put `new` into the list of named objects at owner[key], in place of the one of the
    same name or at the end. The list put there is a new one: the old one may be the user's
    (rendering shares with the input pod what it does not change)."""
    items = list(owner.get(key) or [])
    for i, item in enumerate(items):
        if item.get("name") == new["name"]:
            items[i] = new
            break
    else:
        items.append(new)
    owner[key] = items


def _launcher(pod: Pod) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == LAUNCHER)


# --- options ---------------------------------------------------------------------------

def launcher_container(pod: Pod, ctx: RenderContext) -> None:
    container = {
        "name": LAUNCHER,
        "image": ctx.settings.launcher_image,
        # The image's entrypoint (tini -> podvirt, images/launcher.Containerfile) stays:
        # its PID 1 reaps the processes QEMU daemonizes.
        "args": ["launcher", "run", "--spec", SPEC_FILE, "--metrics-port", str(METRICS_PORT)],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "env": [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
                for name, path in _ENV],
        "volumeMounts": [{"name": SPEC_VOLUME, "mountPath": SPEC_DIR, "readOnly": True}],
        "resources": {"requests": {}, "limits": {}},
    }
    # The launcher goes first so `kubectl logs/exec` default to it; sidecars keep their order.
    others = [c for c in pod["spec"].get("containers") or [] if c.get("name") != LAUNCHER]
    pod["spec"]["containers"] = [container, *others]


def resources(pod: Pod, ctx: RenderContext) -> None:
    d = ctx.demand
    _launcher(pod)["resources"] = {"requests": _quantities(d.requests),
                                   "limits": _quantities(d.limits)}


def _quantities(values: Mapping[str, int]) -> dict[str, str]:
    """Kubernetes quantities of the core's whole units: millicores for cpu, counts for
    extended resources (vendor/name), bytes for the rest."""
    return {name: format_millis(v) if name == "cpu" else str(v) if "/" in name
            else format_bytes(v) for name, v in values.items()}


# Ports below this need CAP_NET_BIND_SERVICE in the pod's network namespace, unless the
# pod lowers the bound with this sysctl (namespaced, on kubelet's default safe list).
UNPRIVILEGED_PORT_SYSCTL = "net.ipv4.ip_unprivileged_port_start"
PRIVILEGED_PORTS_BELOW = 1024


def guest_ports(pod: Pod, ctx: RenderContext) -> None:
    # passt listens on these in the pod and forwards them into the guest; declaring them
    # lets Services target them by name and shows them in `kubectl describe`.
    launcher = _launcher(pod)
    for port in ctx.spec.ports:
        _put_named(launcher, "ports", {"name": f"{port.protocol}-{port.number}",
                                       "containerPort": port.number,
                                       "protocol": port.protocol.upper()})
    lowest = min(port.number for port in ctx.spec.ports)
    if lowest < PRIVILEGED_PORTS_BELOW:
        # passt (no capabilities) must bind the guest's port 22 in the pod: lower the
        # bound for this pod's network namespace rather than grant NET_BIND_SERVICE.
        context = dict(pod["spec"].get("securityContext") or {})
        given = next((x.get("value") for x in context.get("sysctls") or []
                      if x.get("name") == UNPRIVILEGED_PORT_SYSCTL), None)
        if not (isinstance(given, str) and re.fullmatch(r"[0-9]{1,5}", given)
                and int(given) <= lowest):
            _put_named(context, "sysctls", {"name": UNPRIVILEGED_PORT_SYSCTL, "value": str(lowest)})
            pod["spec"]["securityContext"] = context


def spec_volume(pod: Pod, ctx: RenderContext) -> None:
    items = [{"path": path, "fieldRef": {"fieldPath": field}} for path, field in _DOWNWARD_FILES]
    ci = ctx.spec.cloud_init
    if ci and (ci.secret or ci.configmap):
        # Secret/ConfigMap user data joins the same volume as cloud-init/userdata (a
        # projected volume) instead of a second mount nested inside a read-only volume.
        kind, name = ("secret", ci.secret) if ci.secret else ("configMap", ci.configmap)
        volume = {"name": SPEC_VOLUME, "projected": {"sources": [
            {"downwardAPI": {"items": items}},
            {kind: {"name": name, "items": [{"key": "userdata",
                                             "path": "cloud-init/userdata"}]}}]}}
    else:
        volume = {"name": SPEC_VOLUME, "downwardAPI": {"items": items}}
    _put_named(pod["spec"], "volumes", volume)


def copy_tools(pod: Pod, ctx: RenderContext) -> None:
    s = ctx.settings
    _put_named(pod["spec"], "volumes", {"name": TOOLS_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}})
    _put_named(pod["spec"], "initContainers", _init_container(
        TOOLS_INIT, s.launcher_image, ["cp", s.static_busybox, f"{TOOLS_DIR}/busybox"], [], s))


def disk_volumes(pod: Pod, ctx: RenderContext) -> None:
    launcher = _launcher(pod)
    for disk in ctx.spec.disks:
        name = f"disk-{disk.name}"
        if disk.kind == "file":
            continue            # the path is already inside the pod
        if disk.kind == "pvc":
            source = {"persistentVolumeClaim": {"claimName": disk.source}}
        elif disk.kind == "scratch":
            # Room for the qcow2's metadata too: over its sizeLimit kubelet evicts the pod.
            source = {"emptyDir": {"sizeLimit": format_bytes(qcow2_file_bytes(disk.size_bytes))}}
        else:
            source = {"emptyDir": {}}
            # A containerdisk image keeps its disk under /disk; the copy lives in an
            # emptyDir the launcher can write to (QEMU opens its disks read-write).
            _put_named(pod["spec"], "initContainers", _init_container(
                name, disk.source, [f"{TOOLS_DIR}/busybox", "cp", "-a", "/disk/.", disk.mount_dir],
                [{"name": name, "mountPath": disk.mount_dir}], ctx.settings))
        _put_named(pod["spec"], "volumes", {"name": name, **source})
        _put_named(launcher, "volumeMounts", {"name": name, "mountPath": disk.mount_dir})


def kernel_boot(pod: Pod, ctx: RenderContext) -> None:
    """Kernel and initrd copied out of podvirt.io/kernel-image into the pod (KubeVirt's
    kernel boot container, as an init container)."""
    spec = ctx.spec
    files = [path for path in (spec.kernel, spec.initrd) if path]
    _put_named(pod["spec"], "volumes", {"name": KERNEL_BOOT_VOLUME, "emptyDir": {
        "sizeLimit": format_bytes(ctx.settings.costs.storage.kernel_boot)}})
    mount = {"name": KERNEL_BOOT_VOLUME, "mountPath": KERNEL_BOOT_DIR}
    _put_named(pod["spec"], "initContainers", _init_container(
        KERNEL_BOOT_VOLUME, spec.kernel_image or "", [f"{TOOLS_DIR}/busybox", "cp", *files,
                                                      KERNEL_BOOT_DIR + "/"], [mount],
        ctx.settings))
    _put_named(_launcher(pod), "volumeMounts", {**mount, "readOnly": True})


def _init_container(name: str, image: str, command: list[str], mounts: list[dict],
                    s: RenderSettings) -> dict:
    res = {"cpu": s.copier_cpu, "memory": s.copier_memory}
    return {
        "name": name, "image": image, "command": command,
        "volumeMounts": [{"name": TOOLS_VOLUME, "mountPath": TOOLS_DIR}, *mounts],
        "resources": {"requests": dict(res), "limits": dict(res)},
        "securityContext": {"privileged": False, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }


def hugepages_volume(pod: Pod, ctx: RenderContext) -> None:
    # QEMU maps guest memory from a hugetlbfs mount; the HugePages medium provides one
    # backed by the pod's hugepages-<size> request.
    _put_named(pod["spec"], "volumes",
               {"name": HUGEPAGES_VOLUME, "emptyDir": {"medium": "HugePages"}})
    _put_named(_launcher(pod), "volumeMounts",
               {"name": HUGEPAGES_VOLUME, "mountPath": "/dev/hugepages"})


_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def node_affinity(pod: Pod, ctx: RenderContext) -> None:
    pin = ctx.spec.pinning
    fields = ([{"key": "metadata.name", "operator": "In", "values": list(pin.node_names)}]
              if pin.node_names else [])
    exprs = [{"key": key, "operator": "In", "values": [value]} for key, value in pin.node_labels]
    # New maps down to the terms (the user's stay as they are), each keeping the user's keys.
    affinity = dict(pod["spec"].get("affinity") or {})
    node = dict(affinity.get("nodeAffinity") or {})
    required = dict(node.get(_REQUIRED) or {})
    terms = [dict(term) for term in required.get("nodeSelectorTerms") or [{}]]
    # Terms are ORed and requirements inside a term ANDed: adding ours to every term of
    # the user's own affinity keeps both constraints.
    for term in terms:
        for key, reqs in (("matchFields", fields), ("matchExpressions", exprs)):
            existing = list(term.get(key) or [])
            existing.extend(r for r in reqs if r not in existing)
            if existing:
                term[key] = existing
            else:
                term.pop(key, None)
    required["nodeSelectorTerms"] = terms
    node[_REQUIRED] = required
    affinity["nodeAffinity"] = node
    pod["spec"]["affinity"] = affinity


def pod_policy(pod: Pod, ctx: RenderContext) -> None:
    spec = pod["spec"]
    spec["schedulerName"] = ctx.settings.scheduler_name
    if ctx.settings.launcher_service_account:
        spec["serviceAccountName"] = ctx.settings.launcher_service_account
        spec["automountServiceAccountToken"] = True   # the launcher reports through the API
    spec["restartPolicy"] = "Never"     # a VM that stopped is finished; the launcher retries starts
    spec["terminationGracePeriodSeconds"] = (ctx.spec.shutdown_grace_seconds
                                             + ctx.settings.grace_margin_seconds)
    meta = pod["metadata"]
    meta.setdefault("labels", {})[k.OPT_IN_LABEL] = k.OPT_IN_VALUE
    annotations = meta.setdefault("annotations", {})
    # Where Prometheus' pod discovery (the common prometheus.io/* convention) scrapes the
    # launcher's domain metrics.
    annotations.update({"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics"})
    annotations[k.RENDERED] = rendered_hash(meta.get("annotations"))
    # The launcher parses the VM under the contract it was admitted with (contract.py).
    annotations[k.CONTRACT] = ctx.settings.contract_json


# libvirtd runs as root in the launcher container and forks QEMU through
# virSetUIDGIDWithCaps: it sets the child's uid/gid (SETGID, SETUID) and clears its
# capabilities and bounding set (SETPCAP) before exec; the one-off QEMU capability probe
# also keeps DAC_OVERRIDE (libvirt's qemuProcessQMPLaunch, as root). libvirt can only hand
# a child capabilities the container has, so without these four QEMU never starts
# ("cannot apply process capabilities -5"). QEMU running the guest gets none of them.
LIBVIRT_CHILD_CAPS = ("DAC_OVERRIDE", "SETGID", "SETUID", "SETPCAP")


def security(pod: Pod, ctx: RenderContext) -> None:
    add = list(LIBVIRT_CHILD_CAPS)
    if ctx.spec.dedicated_cpus:
        add.append("SYS_NICE")      # pin vCPU threads to the exclusive CPUs (sched_setaffinity)
    if ctx.spec.devices and ctx.settings.vfio_memlock_capability:
        # VFIO pins all guest RAM: libvirt raises QEMU's RLIMIT_MEMLOCK to guest RAM + 1GiB
        # (the overhead's vfio term), above the container's hard limit: setrlimit needs it.
        add.append("SYS_RESOURCE")
    _launcher(pod)["securityContext"] = {"privileged": False, "allowPrivilegeEscalation": False,
                                         "capabilities": {"drop": ["ALL"], "add": add}}


def _always(spec: VMSpec) -> bool:
    return True


# (when, option): applied in this order.
RULES: tuple[tuple[Callable[[VMSpec], bool], Option], ...] = (
    (_always, launcher_container),
    (_always, resources),
    (lambda s: bool(s.ports), guest_ports),
    (_always, spec_volume),
    (lambda s: s.kernel_image is not None or any(d.kind == "containerdisk" for d in s.disks),
     copy_tools),
    (lambda s: bool(s.disks), disk_volumes),
    (lambda s: s.kernel_image is not None, kernel_boot),
    (lambda s: s.hugepage_bytes is not None, hugepages_volume),
    (lambda s: bool(s.pinning), node_affinity),
    (_always, security),
    (_always, pod_policy),
)


def render_launcher_pod(pod: Mapping[str, Any], spec: VMSpec,
                        settings: RenderSettings = RenderSettings()) -> Pod:
    """The launcher pod for a user's VM pod; the input is not modified.

    Only the maps rules write keys into are copied (pod, metadata, labels, annotations,
    spec); options put new lists and maps in place of the user's instead of editing them
    (_put_named), so all that rendering leaves alone (a sidecar, tolerations, status,
    managedFields, ...) is shared with the input, and diff_patch skips it by identity.
    """
    meta = dict(pod.get("metadata") or {})
    for key in ("labels", "annotations"):
        if isinstance(meta.get(key), dict):
            meta[key] = dict(meta[key])         # string values: a flat copy is a full one
    out: Pod = {**pod, "metadata": meta, "spec": dict(pod.get("spec") or {})}
    ctx = RenderContext(spec, demand(spec, settings.costs), settings)
    for applies, option in RULES:
        if applies(spec):
            option(out, ctx)
    return out


# --- what rendering overrode ------------------------------------------------------------

# Lists whose items rendering adds or replaces by name (spec.<path>).
_NAMED_LISTS = (("containers", "container"), ("initContainers", "init container"),
                ("volumes", "volume"))
# Spec fields rendering merges into instead of replacing: their own rules below, or none.
_MERGED = {"containers", "initContainers", "volumes", "affinity", "securityContext"}
# What the API server (defaulting, the ServiceAccount plugin) writes into every pod before
# webhooks see it: a value the user did not write, so replacing it is no news to them.
_API_DEFAULTS = {"schedulerName": "default-scheduler", "restartPolicy": "Always",
                 "terminationGracePeriodSeconds": 30, "serviceAccountName": "default"}


def override_warnings(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """One warning per value the user wrote that the launcher pod replaces (a container
    named launcher, restartPolicy, schedulerName, ...), for the AdmissionReview's
    `warnings`, which kubectl prints: a replaced field must not vanish silently.

    Found by comparing the pod before and after rendering, so a new option's overrides
    are reported too; rendering a rendered pod changes nothing and warns of nothing."""
    out: list[str] = []
    spec, new_spec = before.get("spec") or {}, after.get("spec") or {}
    for key, what in _NAMED_LISTS:
        out += _replaced_items(f"spec.{key}", what, spec.get(key), new_spec.get(key))
    sysctls = (spec.get("securityContext") or {}).get("sysctls")
    out += _replaced_items("spec.securityContext.sysctls", "sysctl", sysctls,
                           (new_spec.get("securityContext") or {}).get("sysctls"))
    for key, value in spec.items():
        if key not in _MERGED and new_spec.get(key, _MISSING) != value \
                and _API_DEFAULTS.get(key, _MISSING) != value:
            out.append(f"spec.{key}: {_short(value)} is replaced by podvirt's "
                       f"{_short(new_spec.get(key))}")
    meta, new_meta = before.get("metadata") or {}, after.get("metadata") or {}
    for field in ("labels", "annotations"):
        new_values = new_meta.get(field) or {}
        for key, value in (meta.get(field) or {}).items():
            if new_values.get(key, _MISSING) != value:
                out.append(f"metadata.{field}[{key}]: {_short(value)} is replaced by "
                           f"podvirt's {_short(new_values.get(key))}")
    return out


def _replaced_items(path: str, what: str, old: Any, new: Any) -> list[str]:
    if not old:
        return []       # nothing of the user's to replace (most pods: no volumes, no sysctls)
    ours = {item.get("name"): item for item in new or [] if isinstance(item, dict)}
    return [f"{path}[{item['name']}]: your {what} of this name is replaced by podvirt's"
            for item in old or []
            if isinstance(item, dict) and item.get("name") in ours and ours[item["name"]] != item]


def _short(value: Any) -> str:
    """A value for a warning line (the API server cuts long warnings)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _escape(key: str) -> str:
    """A JSON Pointer reference token (RFC 6901): ~ and / escaped."""
    return key.replace("~", "~0").replace("/", "~1")


def diff_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> JsonPatch:
    """JSON Patch from `before` to `after`: one op per changed spec field, and per changed
    label or annotation (so the patch never rewrites keys it did not change).

    Coarse on purpose: whole fields are replaced, which is cheap to compute and to apply,
    and 'add' on an object member creates or replaces it alike.
    """
    ops: JsonPatch = []
    _diff(before, after, "", {"metadata": {"labels": {}, "annotations": {}}, "spec": {}}, ops)
    return ops


def _diff(old: Any, new: Any, path: str, depth: Mapping[str, Any], ops: JsonPatch) -> None:
    """Append to `ops` what turns `old` into `new` at JSON Pointer `path`."""
    if old is new:
        return
    if not isinstance(old, dict) or not isinstance(new, dict):
        if old != new:
            ops.append({"op": "add", "path": path, "value": new})
        return
    if removed := old.keys() - new.keys():
        ops += [{"op": "remove", "path": f"{path}/{_escape(key)}"} for key in sorted(removed)]
    for key, value in new.items():
        if key in depth:
            _diff(old.get(key, {}) if key in old else None, value, f"{path}/{_escape(key)}",
                  depth[key], ops)
        elif (before := old.get(key, _MISSING)) is not value and before != value:
            ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": value})


_MISSING = object()


def patch_for(pod: Mapping[str, Any], spec: VMSpec,
              settings: RenderSettings = RenderSettings()) -> JsonPatch:
    return diff_patch(pod, render_launcher_pod(pod, spec, settings))
