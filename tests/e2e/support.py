"""Helpers of the e2e tests: their manifests (DATA) and the comparison of what the API
server stored with what podvirt rendered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podvirt.quantity import QuantityError, parse_decimal

DATA = Path(__file__).parent / "data"


def _same_scalar(stored: Any, expected: Any) -> bool:
    if stored == expected:
        return True
    if isinstance(stored, str) and isinstance(expected, str):
        # The API server canonicalizes quantities ("1024Mi" is stored as "1Gi").
        try:
            return parse_decimal(stored) == parse_decimal(expected)
        except QuantityError:
            return False
    return False


def _server_added(item: Any) -> bool:
    """ServiceAccount admission's token volume and its mounts (kube-api-access-<hash>)."""
    return isinstance(item, dict) and str(item.get("name", "")).startswith("kube-api-access-")


def missing_from(stored: Any, expected: Any, path: str = "") -> list[str]:
    """Where `expected` is not contained in `stored`: every key of a mapping and every item
    of a list (same order, same length) must be there; the server may add defaults and the
    ServiceAccount token volume."""
    if isinstance(expected, dict):
        if not isinstance(stored, dict):
            return [f"{path}: expected a mapping, stored {stored!r}"]
        out = []
        for key, value in expected.items():
            if key not in stored:
                out.append(f"{path}.{key}: missing (expected {value!r})")
            else:
                out += missing_from(stored[key], value, f"{path}.{key}")
        return out
    if isinstance(expected, list):
        if isinstance(stored, list):
            stored = [item for item in stored if not _server_added(item)]
        if not isinstance(stored, list) or len(stored) != len(expected):
            return [f"{path}: expected {len(expected)} item(s), stored {stored!r}"]
        return [m for i, (s, e) in enumerate(zip(stored, expected))
                for m in missing_from(s, e, f"{path}[{i}]")]
    return [] if _same_scalar(stored, expected) else [f"{path}: stored {stored!r}, "
                                                      f"rendered {expected!r}"]
