"""Fuzz inputs for the webhook and the extender, and the judge of their answers.

Inputs are structured mutations of valid documents (AdmissionReviews, ExtenderArgs,
ExtenderBindingArgs): one to three edits at random JSON paths, annotation values bent at
the string level, and a few raw-byte manglings. Everything is drawn from a seeded
random.Random, so a failing input is reproduced by its seed. The judge is shared by the
pytest tier (which adds hypothesis-generated inputs) and bench/fuzz_bench.py.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import jsonpatch
import requests

from podvirt.vmspec import keys as k

# --- valid seeds ------------------------------------------------------------------------

SEED_ANNOTATIONS: tuple[dict[str, str], ...] = (
    {k.MEMORY: "1Gi", k.DISKS: "root=pvc:root-claim"},
    {k.MEMORY: "2Gi", k.VCPUS: "2", k.DISKS: "root=containerdisk:quay.io/containerdisks/debian:12",
     k.NICS: "eth0", k.PORTS: "22,53/udp", k.DEVICES: "example.com/gpu=1"},
    {k.MEMORY: "4Gi", k.VCPUS: "4", k.DEDICATED_CPUS: "true", k.HUGEPAGES: "2Mi",
     k.DISKS: "root=scratch:10Gi,data=pvc:data", k.NODE_LABELS: "podvirt.io/zone=a",
     k.CPU_MODEL: "host-passthrough", k.START_RETRIES: "3", k.SHUTDOWN_GRACE: "30"},
    {k.MEMORY: "512Mi", k.KERNEL: "/var/lib/podvirt/disks/boot/vmlinuz",
     k.INITRD: "/var/lib/podvirt/disks/boot/initrd", k.KERNEL_ARGS: "console=ttyS0",
     k.DISKS: "boot=containerdisk:example.com/guest:1", k.CLOUD_INIT: "#cloud-config\n{}",
     k.GRAPHICS: "vnc", k.ALLOW_EMULATION: "true", k.NODE_NAMES: "hw-0,hw-1"},
    {k.MEMORY: "1Gi", k.DISKS: "root=scratch:1Gi",
     k.DOMAIN_XML: "<domain type='kvm'><name>{{name}}</name><uuid>{{uuid}}</uuid>"
                   "<memory unit='KiB'>{{memory_kib}}</memory><vcpu>{{vcpus}}</vcpu>"
                   "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
                   "<disk type='file' device='disk'><source file='{{disk:root}}'/>"
                   "<target dev='vda' bus='virtio'/></disk></devices></domain>"},
)
NODE_NAMES = ("hw-0", "hw-1", "hw-2", "hw-3")


def pod(annotations: dict[str, Any], *, name: str = "vm1", namespace: str = "default",
        containers: list | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": "u-" + name,
                         "labels": {k.OPT_IN_LABEL: k.OPT_IN_VALUE},
                         "annotations": dict(annotations)},
            "spec": {"containers": containers or []}}


def review(p: Any, *, uid: str = "uid-1", operation: str = "CREATE",
           old: Any = None) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": "default", "operation": operation, "object": p,
                        "oldObject": old, "dryRun": False}}


def rendered_pod(annotations: dict[str, Any]) -> dict[str, Any]:
    """A launcher pod as the webhook renders it: the extender only ever sees those."""
    from podvirt.vmspec import parse_vm
    from podvirt.webhook.render import render_launcher_pod
    from podvirt.webhook.settings import RenderSettings
    p = pod(annotations)
    return render_launcher_pod(p, parse_vm(annotations, name="vm1"), RenderSettings())


# --- mutations ----------------------------------------------------------------------------

_STRINGS = ("", " ", "0", "-1", "1e400", "9" * 40, "NaN", "null", "true", "Infinity", "0x10",
            "1Gi", "-1Gi", "1.5", "１", "\u202e", "\x00", "a" * 300, "=", ",,,", "a=b=c",
            "../../etc/passwd", "/etc/shadow", "{{name}}", "{{disk:../x}}", "<domain/>",
            "pci:10de:1eb8=1", "example.com/gpu=99999999999999999999", "root=file:/etc",
            "eth0@zz:zz", "host-model", "podvirt.io/", "\ud800".encode("utf-8", "surrogatepass")
            .decode("utf-8", "replace"))
_KEYS = tuple(k.USER_KEYS) + tuple(sorted(k.STATUS_KEYS)) + ("podvirt.io/bogus", "podvirt.io/",
                                                              "", "metadata")


def random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(10 if depth < 3 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice((True, False))
    if choice == 2:
        return rng.choice((0, -1, 1, 2**31, 2**63, 10**30, -10**30, 1.5, 1e308, float("nan"),
                           float("inf")))
    if choice in (3, 4, 5):
        return rng.choice(_STRINGS)
    if choice in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(_KEYS + ("name", "metadata", "items", "Pod")): random_json(rng, depth + 1)
            for _ in range(rng.randrange(4))}


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, prefix + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def bend_string(rng: random.Random, s: str) -> str:
    """String-level edits of an annotation value: the parsers' favourite inputs."""
    op = rng.randrange(8)
    if op == 0 or not s:
        return rng.choice(_STRINGS)
    i = rng.randrange(len(s) + 1)
    if op == 1:
        return s[:i]
    if op == 2:
        return s[:i] + rng.choice(",=:@/ \t\n{}<>&;\x00%") + s[i:]
    if op == 3:
        return s * rng.choice((2, 50, 5000))
    if op == 4:
        return re.sub(r"\d+", lambda _: rng.choice(("0", "-1", "9" * 30, "1e9", "")), s)
    if op == 5:
        return s[:i] + rng.choice(_STRINGS) + s[i:]
    if op == 6:
        return s.upper()
    return s + "," + s


def mutate(rng: random.Random, doc: Any) -> Any:
    """One structural edit at a random path: replace, delete, retype, or bend a string."""
    doc = copy.deepcopy(doc)
    paths = _paths(doc)
    path = rng.choice(paths[1:] or paths)
    if not path:
        return random_json(rng)
    parent, last = _get(doc, path[:-1]), path[-1]
    value = parent[last]
    op = rng.randrange(5)
    if op == 0 and isinstance(parent, dict):
        del parent[last]
    elif op == 1 and isinstance(value, str):
        parent[last] = bend_string(rng, value)
    elif op == 2 and isinstance(parent, dict):
        parent[rng.choice(_KEYS)] = rng.choice(_STRINGS) if rng.random() < .7 else random_json(rng)
    else:
        parent[last] = random_json(rng)
    return doc


def mutate_annotations(rng: random.Random, annotations: dict[str, str]) -> dict[str, Any]:
    a = dict(annotations)
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice(list(a) + list(k.USER_KEYS)) if rng.random() < .85 else rng.choice(_KEYS)
        if rng.random() < .1:
            a.pop(key, None)
        else:
            a[key] = bend_string(rng, str(a.get(key, rng.choice(_STRINGS))))
    return a


def raw_body(rng: random.Random, doc: Any) -> bytes:
    """Byte-level manglings, including nesting deep enough to exhaust a recursive parser."""
    text = json.dumps(doc).encode()
    op = rng.randrange(5)
    if op == 0:
        return text[:rng.randrange(len(text))]
    if op == 1:
        i = rng.randrange(len(text))
        return text[:i] + bytes([rng.randrange(256)]) + text[i + 1:]
    if op == 2:
        depth = rng.choice((100, 5000, 200000))
        return b"[" * depth + b"]" * depth
    if op == 3:
        return b'{"a":' * 20000 + b"1" + b"}" * 20000
    return rng.choice((b"", b"null", b"[]", b"\xff\xfe", b'"x"', b"1e999999", b"{}"))


# --- inputs per endpoint --------------------------------------------------------------------

Body = bytes


def webhook_input(rng: random.Random, i: int) -> Body:
    annotations = rng.choice(SEED_ANNOTATIONS)
    r = rng.random()
    if r < .5:
        doc = review(pod(mutate_annotations(rng, annotations)), uid=f"f-{i}")
    elif r < .65:
        op = rng.choice(("CREATE", "UPDATE"))
        old = pod(annotations) if op == "UPDATE" else None
        doc = review(pod(annotations), uid=f"f-{i}", operation=op, old=old)
        for _ in range(rng.randrange(1, 4)):
            doc = mutate(rng, doc)
    elif r < .8:
        old = pod(annotations)
        doc = review(pod(mutate_annotations(rng, annotations)), uid=f"f-{i}", operation="UPDATE",
                     old=old)
    elif r < .93:
        p = pod(annotations)
        p = mutate(rng, {"p": p}).get("p") if rng.random() < .5 else p
        if isinstance(p, dict) and isinstance(p.get("spec"), dict):
            p["spec"]["containers"] = random_json(rng) if rng.random() < .5 else \
                [{"name": "c", "resources": {"requests": {"cpu": rng.choice(_STRINGS)}}}]
        doc = review(p, uid=f"f-{i}")
    else:
        return raw_body(rng, review(pod(annotations), uid=f"f-{i}"))
    return json.dumps(doc).encode()


def extender_args(rng: random.Random, i: int) -> Body:
    annotations = rng.choice(SEED_ANNOTATIONS)
    p = rendered_pod(annotations)
    r = rng.random()
    if r < .35:
        p["metadata"]["annotations"] = mutate_annotations(rng, p["metadata"]["annotations"])
    names = list(rng.sample(NODE_NAMES, rng.randrange(1, 5))) + (["ghost"] if rng.random() < .2
                                                                  else [])
    if rng.random() < .3:   # nodeCacheCapable false: whole Node objects
        doc: Any = {"Pod": p, "Nodes": {"items": [{"metadata": {"name": n}} for n in names]}}
    else:
        doc = {"Pod": p, "NodeNames": names}
    if .35 <= r < .85:
        for _ in range(rng.randrange(1, 4)):
            doc = mutate(rng, doc)
    elif r >= .93:
        return raw_body(rng, doc)
    return json.dumps(doc).encode()


def binding_args(rng: random.Random, i: int) -> Body:
    doc: Any = {"PodName": f"fuzz-{i}", "PodNamespace": "default", "PodUID": f"u-{i}",
                "Node": rng.choice(NODE_NAMES)}
    r = rng.random()
    if r < .8:
        for _ in range(rng.randrange(1, 4)):
            doc = mutate(rng, doc)
    elif r < .9:
        return raw_body(rng, doc)
    return json.dumps(doc).encode()


GENERATORS: dict[str, Callable[[random.Random, int], Body]] = {
    "/mutate": webhook_input, "/filter": extender_args, "/prioritize": extender_args,
    "/bind": binding_args,
}

# --- the judge ----------------------------------------------------------------------------

# A denial or 400 "names the field" when it mentions a podvirt key or one of these.
_FIELD_WORDS = re.compile(
    r"podvirt\.io/|metadata|spec\b|spec\.|annotations|labels|request\b|request\.|"
    r"ExtenderArgs|ExtenderBindingArgs|Pod\b|body|kind|apiVersion|JSON|uid|operation|object")


@dataclass
class Tally:
    """Counts per endpoint; `problems` keeps a few offending inputs for the report."""
    tried: Counter = field(default_factory=Counter)
    status: Counter = field(default_factory=Counter)
    server_errors: Counter = field(default_factory=Counter)      # 5xx, or a 500 inside a 200
    unnamed_denials: Counter = field(default_factory=Counter)
    bad_answers: Counter = field(default_factory=Counter)        # wrong uid, patch not applicable
    problems: list[str] = field(default_factory=list)

    def note(self, endpoint: str, kind: Counter, body: bytes, detail: str) -> None:
        kind[endpoint] += 1
        if len(self.problems) < 20:
            self.problems.append(f"{endpoint}: {detail} <- {body[:300]!r}")

    def total(self, c: Counter) -> int:
        return sum(c.values())


def judge(tally: Tally, endpoint: str, body: bytes, resp: requests.Response) -> None:
    tally.tried[endpoint] += 1
    tally.status[(endpoint, resp.status_code)] += 1
    if resp.status_code >= 500:
        tally.note(endpoint, tally.server_errors, body, f"HTTP {resp.status_code} {resp.text[:200]}")
        return
    try:
        answer = resp.json()
    except ValueError:
        tally.note(endpoint, tally.bad_answers, body, f"answer is not JSON: {resp.text[:200]}")
        return
    if resp.status_code != 200:
        message = str(answer.get("error", "")) if isinstance(answer, dict) else ""
        if resp.status_code not in (400, 413, 415):
            tally.note(endpoint, tally.bad_answers, body, f"HTTP {resp.status_code} {message}")
        elif not _FIELD_WORDS.search(message) and resp.status_code == 400:
            tally.note(endpoint, tally.unnamed_denials, body, f"400 without a field: {message}")
        return
    if endpoint == "/mutate":
        _judge_review(tally, body, answer)
    elif endpoint == "/filter":
        error = answer.get("Error") or ""
        if error.startswith("podvirt extender error") or "not ready" in error:
            tally.note(endpoint, tally.server_errors, body, f"filter Error: {error[:200]}")
    elif endpoint == "/bind":
        if "podvirt extender error" in (answer.get("Error") or ""):
            tally.note(endpoint, tally.server_errors, body, f"bind Error: {answer['Error'][:200]}")


def _judge_review(tally: Tally, body: bytes, answer: dict) -> None:
    response = answer.get("response") or {}
    status = response.get("status") or {}
    request = json.loads(body)["request"]
    if response.get("uid") != request["uid"]:
        tally.note("/mutate", tally.bad_answers, body, "response uid differs from request uid")
    if status.get("code", 200) >= 500:
        tally.note("/mutate", tally.server_errors, body, f"status {status}")
    elif not response.get("allowed"):
        if not _FIELD_WORDS.search(status.get("message", "")):
            tally.note("/mutate", tally.unnamed_denials, body, f"denial: {status.get('message')}")
    elif "patch" in response:
        try:
            patch = json.loads(base64.b64decode(response["patch"]))
            jsonpatch.apply_patch(request["object"], patch)
        except Exception as exc:    # any failure here is the finding itself
            tally.note("/mutate", tally.bad_answers, body, f"patch does not apply: {exc!r}")


def post(session: requests.Session, url: str, body: bytes, verify: str | bool) -> requests.Response:
    return session.post(url, data=body, headers={"Content-Type": "application/json"},
                        verify=verify, timeout=30)
