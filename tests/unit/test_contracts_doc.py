"""docs/contracts.md names exactly the phases and failure reasons the launcher writes."""

import re
import typing
from pathlib import Path

from podvirt.launcher.report import Phase
from podvirt.vmspec import keys as k

CONTRACTS = (Path(__file__).parents[2] / "docs" / "contracts.md").read_text()
REPORTING = CONTRACTS.split("## Launcher -> pod reporting", 1)[1].split("\n## ", 1)[0]


def test_the_phase_list_is_the_launchers():
    listed = re.search(r"- phase \(([A-Za-z|]+)", REPORTING)
    assert listed, "contracts.md lost its phase list"
    assert listed.group(1).split("|") == list(typing.get_args(Phase))


def test_the_failure_reasons_are_the_launchers():
    listed = re.search(r"failure-reason\s*\(([^;]*);", REPORTING)
    assert listed, "contracts.md lost its failure-reason list"
    reasons = {value for name, value in vars(k).items() if name.startswith("REASON_")}
    assert set(re.split(r",\s*", listed.group(1).strip())) == reasons
