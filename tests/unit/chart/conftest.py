"""Fixtures of the chart tests: the helm binary and a caching renderer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.helm import Objects, helm_template, k8s_bin


@pytest.fixture(scope="session")
def helm() -> Path:
    path = k8s_bin("helm")
    if path is None:
        pytest.skip("helm not built (bash hack/k8s/build.sh)")
    return path


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
