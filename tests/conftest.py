"""Tiers by folder: every test under tests/<tier>/ carries that tier's marker, which is what
hack/test.sh selects on; tests/unit/ holds only unmarked (fast-tier) tests. A test that needs
two tiers' machinery (an e2e cluster and libvirt, a real node and fault injection) lives in
the folder whose fixtures it uses and carries the other marker itself."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
TIERS = ("e2e", "libvirt", "node", "hardening")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    misplaced = []
    for item in items:
        folder = item.path.relative_to(HERE).parts[0]
        if folder in TIERS:
            item.add_marker(getattr(pytest.mark, folder))
        elif folder == "unit":
            misplaced += [f"{item.nodeid} ({m.name})" for m in item.iter_markers()
                          if m.name in TIERS]
    if misplaced:
        raise pytest.UsageError("tests/unit/ is the fast tier; these carry a tier marker and "
                                "belong in that tier's folder: " + ", ".join(misplaced))
