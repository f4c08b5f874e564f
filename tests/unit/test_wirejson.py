"""podvirt.wirejson: orjson where it can, json where orjson refuses — so what podvirt
accepts and writes is what the standard library would, only faster."""

from __future__ import annotations

import json

import pytest

from podvirt import wirejson
from podvirt.httpbody import MAX_DEPTH, NotJSON, parse_json


@pytest.mark.parametrize("raw", [
    pytest.param(b'{"a": [1, 2.5, "x", null, true]}', id="plain"),
    pytest.param(b'{"n": NaN, "i": Infinity}', id="nan-infinity-json-only"),
    pytest.param(b'"\\ud800"', id="lone-surrogate-json-only"),
    pytest.param(b'{"a": 1, "a": 2}', id="duplicate-key-last-wins"),
])
def test_loads_accepts_what_json_accepts(raw: bytes) -> None:
    expected, got = json.loads(raw), wirejson.loads(raw)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_integers_beyond_64_bits_are_read_as_floats() -> None:
    """The one documented difference from json (no Kubernetes object can carry one)."""
    assert wirejson.loads(b'{"u64": 18446744073709551615}') == {"u64": 2**64 - 1}
    big = wirejson.loads(b'{"big": 123456789012345678901234567890}')["big"]
    assert isinstance(big, float) and big == pytest.approx(1.2345678901234568e29)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"a": 1'])
def test_loads_refuses_what_json_refuses(raw: bytes) -> None:
    with pytest.raises(ValueError):
        wirejson.loads(raw)


@pytest.mark.parametrize("obj", [
    pytest.param({"a": [1, "é", None, True, 2.5]}, id="plain"),
    pytest.param({"big": 2**70}, id="beyond-64-bits"),
    pytest.param({1: "int key"}, id="non-string-key"),
])
def test_dumps_is_compact_json_that_reads_back(obj) -> None:
    out = wirejson.dumps(obj)
    assert isinstance(out, bytes) and b": " not in out and b", " not in out
    assert json.loads(out) == json.loads(json.dumps(obj))


def test_depth_is_checked_past_a_long_flat_list() -> None:
    """The depth check skips flat lists and maps in one C-level pass; a deep value after
    thousands of names must still be found."""
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    names = ",".join(f'"node-{i}"' for i in range(5000))
    assert len(parse_json(f'{{"NodeNames": [{names}]}}'.encode())["NodeNames"]) == 5000
    with pytest.raises(NotJSON, match="nested deeper than"):
        parse_json(f'{{"NodeNames": [{names}, {deep}]}}'.encode())
