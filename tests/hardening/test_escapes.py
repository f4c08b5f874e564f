"""Escape corpus (tests/hardening/corpus/): domain XMLs and annotations tried as an attacker
would, device type by device type from libvirt's domain schema.

- domains/<type>/*.xml: escapes. Each is refused naming the element and attribute that
  domains.json records (and its rule), by the sanitizer directly, by the real webhook
  over HTTPS, and (a sample) by the launcher before it defines any domain.
- domains-ok/<type>.xml: one harmless positive control per device type (and for the
  domain's own elements). Each is admitted by the webhook and built by the launcher.
- annotations.json: hostile annotation sets, refused naming their key.

The webhook and the launcher give the sanitizer's refusal verbatim (prefixed by the key).
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import jsonpatch
import pytest
import requests

from podvirt.launcher.domain import domain_xml
from podvirt.launcher.exitcodes import EXIT_CONFIG
from podvirt.launcher.hostcontext import DiskAttachment, HostContext
from podvirt.vmspec import SpecInvalid, keys as k, parse_vm
from podvirt.vmspec.domainxml import (DomainXMLRejected, check_user_domain_xml,
                                      fill_placeholders)
from podvirt.vmspec.downward import render_annotations_file
from podvirt.vmspec.model import Disk, PassthroughDevice, VMSpec
from podvirt.webhook.render import LAUNCHER, rendered_hash

from tests.hardening import fuzzlib, services

CORPUS = Path(__file__).parent / "corpus"
DOMAINS = json.loads((CORPUS / "domains.json").read_text())
CONTROLS = sorted(p.name for p in (CORPUS / "domains-ok").glob("*.xml"))
ANNOTATIONS = json.loads((CORPUS / "annotations.json").read_text())
DOMAIN_CASES = [pytest.param(name, id=name.removesuffix(".xml")) for name in sorted(DOMAINS)]
CONTROL_CASES = [pytest.param(name, id=name.removesuffix(".xml")) for name in CONTROLS]
# Devices are assigned by the extender at bind, after admission: a user <hostdev> can only
# pass in the launcher, for the device this pod was given.
GPU = PassthroughDevice("0000:3b:00.0", "10de", "1eb8", resource="example.com/gpu")
ASSIGNED = {"hostdev.xml": (GPU,)}
# Non-device controls are the domain's own elements (os, features, sizes, ...).
DEVICE_TYPES = sorted(n.removesuffix(".xml") for n in CONTROLS if not n.startswith("domain-"))
# Device types no pod may have at all (an unknown element is refused too, but is no type).
REFUSED_OUTRIGHT = sorted({e["element"] for n, e in DOMAINS.items()
                           if n.startswith("refused/") and n != "refused/unknown-device.xml"})


def _vm(xml: str) -> dict[str, str]:
    return {k.MEMORY: "1Gi", k.DISKS: "root=scratch:1Gi", k.DOMAIN_XML: xml}


def _escape(name: str) -> str:
    return (CORPUS / "domains" / name).read_text()


def _control(name: str) -> str:
    return (CORPUS / "domains-ok" / name).read_text()


@pytest.fixture(scope="module")
def webhook(certs, tmp_path_factory) -> Iterator[services.Service]:
    log = tmp_path_factory.mktemp("escapes") / "webhook.log"
    with services.running(services.webhook(certs, log, workers=1)) as svc:
        yield svc
    assert not svc.tracebacks(), svc.tracebacks()[0]


def _review(webhook: services.Service, annotations: dict[str, str]) -> dict:
    body = fuzzlib.review(fuzzlib.pod(annotations))
    resp = requests.post(webhook.url + "/mutate", json=body, verify=webhook.verify, timeout=10)
    assert resp.status_code == 200, resp.text[:300]
    return resp.json()["response"]


def _refusal(name: str, vm: str) -> str:
    """The sanitizer's refusal of an escape in VM `vm`, as admission (parse_vm) words it
    (the name matters: {{name}} is filled in before the XML is parsed)."""
    with pytest.raises(SpecInvalid) as invalid:
        parse_vm(_vm(_escape(name)), name=vm)
    return str(invalid.value)


def _names_it(message: str, expect: dict) -> None:
    """The refusal names the recorded element (its last tag) and attribute, and the rule."""
    if expect["element"]:
        tag = expect["element"].rsplit("/", 1)[-1]
        assert f"<{tag}" in message, message
    if expect["attribute"]:
        assert re.search(rf"\b{re.escape(expect['attribute'])}[=' ]", message), message
    assert expect["says"] in message, message


def _spec(xml: str) -> VMSpec:
    """What parse_vm makes of _vm(xml), without the admission check it runs."""
    return VMSpec(name="vm", vcpus=1, memory_bytes=2**30, domain_xml=xml,
                  disks=(Disk("root", "scratch", "", 2**30),))


@pytest.mark.parametrize("name", DOMAIN_CASES)
def test_sanitizer_refuses_escape(name: str) -> None:
    expect = DOMAINS[name]
    with pytest.raises(DomainXMLRejected) as err:
        check_user_domain_xml(_spec(_escape(name)))
    assert (err.value.element, err.value.attribute) == (expect["element"], expect["attribute"])
    _names_it(str(err.value), expect)
    with pytest.raises(SpecInvalid) as invalid:        # admission says the same, by key
        parse_vm(_vm(_escape(name)), name="vm")
    assert [(v.key, v.rule) for v in invalid.value.violations] == [(k.DOMAIN_XML, str(err.value))]


@pytest.mark.parametrize("name", DOMAIN_CASES)
def test_webhook_denies_escape(webhook: services.Service, name: str) -> None:
    response = _review(webhook, _vm(_escape(name)))
    assert response["allowed"] is False and "patch" not in response
    assert response["status"]["code"] == 422
    assert response["status"]["message"] == f"invalid VM spec: {_refusal(name, 'vm1')}"


@pytest.mark.parametrize("name", CONTROL_CASES)
def test_webhook_admits_control(webhook: services.Service, name: str) -> None:
    response = _review(webhook, _vm(_control(name)))
    if name in ASSIGNED:
        assert response["allowed"] is False
        assert "not a device assigned to this pod" in response["status"]["message"]
        return
    assert response["allowed"] is True, response.get("status")
    patched = jsonpatch.apply_patch(fuzzlib.pod(_vm(_control(name))),
                                    json.loads(base64.b64decode(response["patch"])))
    annotations = patched["metadata"]["annotations"]
    assert annotations[k.DOMAIN_XML] == _control(name)       # the user's domain, untouched
    assert annotations[k.RENDERED] == rendered_hash(_vm(_control(name)))
    assert [c["name"] for c in patched["spec"]["containers"]] == [LAUNCHER]


@pytest.mark.parametrize("name", CONTROL_CASES)
def test_launcher_builds_control(name: str) -> None:
    """The control passes the launcher's sanitizer too, and reaches libvirt intact."""
    spec = _spec(_control(name))
    ctx = HostContext(accel="kvm", uuid="6f1c53a4-3b8d-4a43-9d7e-5b0b6f0d0c11",
                      assigned=ASSIGNED.get(name, ()),
                      disks=(DiskAttachment("root", "/var/lib/podvirt/launcher/root.qcow2",
                                            "qcow2"),))
    if name not in ASSIGNED:
        check_user_domain_xml(spec)
    root = ET.fromstring(domain_xml(spec, ctx))
    given = ET.fromstring(_control(name).replace("{{", "").replace("}}", ""))
    for section in ("devices", "os", "features", "cpu", "cputune", "memoryBacking"):
        want = Counter(c.tag for c in given.iterfind(f"{section}/*"))
        got = Counter(c.tag for c in root.iterfind(f"{section}/*"))
        assert not want - got, (section, want - got)
    assert root.find("devices/disk/source").get("file") == "/var/lib/podvirt/launcher/root.qcow2"


def _stand_ins(xml: str) -> str:
    return fill_placeholders(xml, name="vm", uuid="6f1c53a4-3b8d-4a43-9d7e-5b0b6f0d0c11",
                             memory_kib=2**20, vcpus=1,
                             disk_paths={"root": "/var/lib/podvirt/disks/root/disk.qcow2"})


def _libvirt_accepts(conn, xml: str) -> bool:
    """libvirt's own verdict: its schema (VIR_DOMAIN_DEFINE_VALIDATE) and its parser."""
    import libvirt
    try:
        conn.defineXMLFlags(_stand_ins(xml), libvirt.VIR_DOMAIN_DEFINE_VALIDATE).undefine()
    except (libvirt.libvirtError, DomainXMLRejected):     # DomainXMLRejected: a placeholder
        return False
    return True


@pytest.fixture(scope="module")
def libvirt_test_driver():
    import libvirt
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


@pytest.mark.parametrize("name", CONTROL_CASES)
def test_control_is_a_domain_libvirt_accepts(libvirt_test_driver, name: str) -> None:
    """A control that libvirt would refuse proves nothing about the allowlist."""
    assert _libvirt_accepts(libvirt_test_driver, _control(name))


@pytest.mark.parametrize("name", DOMAIN_CASES)
def test_escape_is_what_libvirt_says(libvirt_test_driver, name: str) -> None:
    """Most escapes are real: libvirt itself would define them. The others (recorded as
    libvirt_accepts: false) are elements of later libvirt releases, configurations libvirt
    refuses for its own reasons, or broken XML; the allowlist refuses them all the same. A
    libvirt upgrade that starts accepting one fails here, for a look at what it now does."""
    assert _libvirt_accepts(libvirt_test_driver, _escape(name)) is \
        DOMAINS[name]["libvirt_accepts"]


def test_every_device_type_has_a_control_and_escapes() -> None:
    escaped = {name.split("/", 1)[0] for name in DOMAINS}
    # <redirfilter> only narrows which USB devices a client may redirect: nothing to escape.
    assert set(DEVICE_TYPES) - escaped == {"redirfilter"}, set(DEVICE_TYPES) - escaped
    assert all(expect["element"] or name.startswith("xml/") for name, expect in DOMAINS.items())


def test_readme_reports_the_corpus() -> None:
    """The README's hardening line states these figures; a grown corpus updates it."""
    readme = (services.REPO / "README.md").read_text()
    figures = (f"{len(DEVICE_TYPES)} device types",
               f"{len(REFUSED_OUTRIGHT)} device types refused outright",
               f"{len(DOMAINS)} hostile domain XMLs", f"{len(CONTROLS)} positive controls")
    for figure in figures:
        assert figure in readme, figure


@pytest.mark.parametrize("name", sorted(ANNOTATIONS))
def test_webhook_denies_annotations(webhook: services.Service, name: str) -> None:
    case = ANNOTATIONS[name]
    response = _review(webhook, case["annotations"])
    assert response["allowed"] is False and "patch" not in response
    if "refusal" in case:          # a key only podvirt writes: refused before any parse rule
        assert response["status"]["message"] == case["refusal"]
        return
    with pytest.raises(SpecInvalid) as invalid:
        parse_vm(case["annotations"], name="vm")
    assert [v.key for v in invalid.value.violations] == [case["expect"]]
    assert response["status"]["message"] == f"invalid VM spec: {invalid.value}"


# The launcher is the last line: given a hostile spec it must fail before it writes
# work/domain.xml, which it does right before defining the domain.
LAUNCHER_CASES = ["qemu/commandline.xml", "refused/filesystem.xml", "xml/billion-laughs.xml",
                  "hostdev/unassigned-pci.xml", "serial/tcp-wildcard.xml",
                  "interface/bridge.xml", "size/memory-8g.xml"]


@pytest.mark.parametrize("name", [pytest.param(n, id=n.removesuffix(".xml"))
                                  for n in LAUNCHER_CASES])
def test_launcher_refuses_before_defining(name: str, tmp_path: Path) -> None:
    spec = tmp_path / "podinfo" / "annotations"
    spec.parent.mkdir()
    spec.write_text(render_annotations_file(_vm(_escape(name))))
    (spec.parent / "name").write_text("vm")
    work, report = tmp_path / "work", tmp_path / "report.jsonl"
    proc = subprocess.run(
        [services.PYTHON, "-m", "podvirt.cli", "launcher", "run", f"--spec={spec}",
         "--connect=test:///default", "--accel=tcg", f"--work-dir={work}",
         f"--pod-root={tmp_path / 'pod'}", f"--report-json={report}"],
        cwd=services.REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    assert not (work / "domain.xml").exists(), "the launcher got as far as defining the domain"
    reported = [json.loads(line) for line in report.read_text().splitlines()]
    statuses = [r["annotations"] for r in reported if r["kind"] == "status"]
    assert statuses, reported
    last = statuses[-1]
    assert (last.get(k.PHASE), last.get(k.FAILURE_REASON), last.get(k.FAILURE_MESSAGE)) == (
        "Failed", "SpecInvalid", f"{spec}: {_refusal(name, 'vm')}")
