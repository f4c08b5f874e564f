"""Escape corpus (tests/hardening/corpus/): hostile domain XMLs and annotations. Each is
refused with a message naming what is wrong: by the sanitizer directly, by the real
webhook over HTTPS, and by the launcher before it defines any domain."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import requests

import fuzzlib
import services
from podvirt.vmspec import SpecInvalid, keys as k, parse_vm
from podvirt.vmspec.domainxml import DomainXMLRejected, check_user_domain_xml
from podvirt.vmspec.downward import render_annotations_file

CORPUS = Path(__file__).parent / "corpus"
DOMAINS = json.loads((CORPUS / "domains.json").read_text())
ANNOTATIONS = json.loads((CORPUS / "annotations.json").read_text())
DOMAIN_CASES = [pytest.param(name, expect, id=name.removesuffix(".xml"))
                for name, expect in sorted(DOMAINS.items())]


def _vm(xml: str) -> dict[str, str]:
    return {k.MEMORY: "1Gi", k.DOMAIN_XML: xml}


@pytest.fixture(scope="module")
def webhook(certs, tmp_path_factory) -> Iterator[services.Service]:
    log = tmp_path_factory.mktemp("escapes") / "webhook.log"
    with services.running(services.webhook(certs, log, workers=1)) as svc:
        yield svc
    assert not svc.tracebacks(), svc.tracebacks()[0]


def _denial(webhook: services.Service, annotations: dict[str, str]) -> dict:
    body = fuzzlib.review(fuzzlib.pod(annotations))
    resp = requests.post(webhook.url + "/mutate", json=body, verify=webhook.verify, timeout=10)
    assert resp.status_code == 200, resp.text[:300]
    return resp.json()["response"]


@pytest.mark.parametrize("name, expect", DOMAIN_CASES)
def test_sanitizer_rejects(name: str, expect: str) -> None:
    with pytest.raises(DomainXMLRejected) as err:
        check_user_domain_xml((CORPUS / "domains" / name).read_text())
    assert expect in str(err.value)


@pytest.mark.parametrize("name, expect", DOMAIN_CASES)
def test_webhook_denies_domain_xml(webhook: services.Service, name: str, expect: str) -> None:
    response = _denial(webhook, _vm((CORPUS / "domains" / name).read_text()))
    assert response["allowed"] is False and "patch" not in response
    assert response["status"]["code"] == 422
    message = response["status"]["message"]
    assert k.DOMAIN_XML in message and expect in message, message


@pytest.mark.parametrize("name", sorted(ANNOTATIONS))
def test_webhook_denies_annotations(webhook: services.Service, name: str) -> None:
    case = ANNOTATIONS[name]
    response = _denial(webhook, case["annotations"])
    assert response["allowed"] is False and "patch" not in response
    assert case["expect"] in response["status"]["message"], response["status"]["message"]
    if not any(key in k.STATUS_KEYS for key in case["annotations"]):   # a parse rule, too
        with pytest.raises(SpecInvalid, match=case["expect"]):
            parse_vm(case["annotations"], name="vm")


# The launcher is the last line: given a hostile spec it must fail before it writes
# work/domain.xml, which it does right before defining the domain.
LAUNCHER_CASES = ["qemu-commandline.xml", "filesystem-passthrough.xml", "billion-laughs.xml",
                  "unassigned-hostdev.xml"]


@pytest.mark.parametrize("name", [pytest.param(n, id=n.removesuffix(".xml"))
                                  for n in LAUNCHER_CASES])
def test_launcher_refuses_before_defining(name: str, tmp_path: Path) -> None:
    spec = tmp_path / "podinfo" / "annotations"
    spec.parent.mkdir()
    spec.write_text(render_annotations_file(_vm((CORPUS / "domains" / name).read_text())))
    (spec.parent / "name").write_text("vm")
    work, report = tmp_path / "work", tmp_path / "report.jsonl"
    proc = subprocess.run(
        [services.PYTHON, "-m", "podvirt.cli", "launcher", "run", f"--spec={spec}",
         "--connect=test:///default", "--accel=tcg", f"--work-dir={work}",
         f"--pod-root={tmp_path / 'pod'}", f"--report-json={report}"],
        cwd=services.REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (work / "domain.xml").exists(), "the launcher got as far as defining the domain"
    reported = [json.loads(line) for line in report.read_text().splitlines()]
    assert any("Failed" in json.dumps(r) for r in reported), reported
    assert any(DOMAINS[name] in json.dumps(r) for r in reported), reported
