"""Fixtures of the chart tests: the helm binary and a caching renderer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.helm import Objects, helm_template, k8s_bin_or_skip


@pytest.fixture(scope="session")
def helm() -> Path:
    return k8s_bin_or_skip("helm")


@pytest.fixture(scope="session")
def render(helm: Path) -> Callable[..., Objects]:
    cache: dict[str, Objects] = {}

    def _render(values: dict[str, Any] | None = None) -> Objects:
        key = yaml.safe_dump(values or {}, sort_keys=True)
        if key not in cache:
            text = helm_template(helm, values or {})
            cache[key] = [doc for doc in yaml.safe_load_all(text) if doc]
        return cache[key]

    return _render
