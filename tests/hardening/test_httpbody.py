"""podvirt.httpbody on plain WSGI environs: what is read, what is refused, how much of an
oversized body is drained (all of it up to DRAIN_FACTOR x cap, so the 413 reaches the
client), and which documents are not JSON we will process."""

from __future__ import annotations

import io

import pytest

from podvirt.httpbody import DRAIN_FACTOR, MAX_DEPTH, BodyTooLarge, NotJSON, parse_json, \
    read_body

CAP = 1000


def _environ(body: bytes, *, length: int | None, chunked: bool = False) -> dict:
    environ = {"wsgi.input": io.BytesIO(body)}
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    if chunked:     # the server decodes chunks itself and says the stream ends
        environ["wsgi.input_terminated"] = True
    return environ


@pytest.mark.parametrize("size, length, chunked, outcome, left_unread", [
    pytest.param(10, 10, False, 10, 0, id="small"),
    pytest.param(CAP, CAP, False, CAP, 0, id="exactly-cap"),
    pytest.param(CAP + 1, CAP + 1, False, None, 0, id="cap+1-drained"),
    pytest.param(3 * CAP, 3 * CAP, False, None, 0, id="3xcap-drained"),
    pytest.param(DRAIN_FACTOR * CAP + 1, DRAIN_FACTOR * CAP + 1, False, None,
                 DRAIN_FACTOR * CAP + 1, id="beyond-drain-bound-untouched"),
    pytest.param(CAP, None, True, CAP, 0, id="chunked-exactly-cap"),
    pytest.param(CAP + 1, None, True, None, 0, id="chunked-cap+1-drained"),
    pytest.param(10 * CAP, None, True, None, 10 * CAP - DRAIN_FACTOR * CAP,
                 id="chunked-drain-bounded"),
    pytest.param(10, None, False, 0, 10, id="no-length-not-chunked-reads-nothing"),
])
def test_read_body(size: int, length: int | None, chunked: bool, outcome: int | None,
                   left_unread: int) -> None:
    environ = _environ(b"x" * size, length=length, chunked=chunked)
    if outcome is None:
        with pytest.raises(BodyTooLarge, match=f"{CAP}-byte limit"):
            read_body(environ, CAP)
    else:
        assert read_body(environ, CAP) == b"x" * outcome
    stream = environ["wsgi.input"]
    assert len(stream.getvalue()) - stream.tell() == left_unread


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("raw, error", [
    pytest.param(b'{"a": [1, {"b": null}]}', None, id="object"),
    pytest.param(_nested(MAX_DEPTH), None, id="at-depth-limit"),
    pytest.param(_nested(MAX_DEPTH + 1), "nested deeper than", id="over-depth-limit"),
    pytest.param(_nested(200_000), "nested deeper than", id="decoder-recursion"),
    pytest.param(b'{"a":' * 20000 + b"1" + b"}" * 20000, "nested deeper than",
                 id="deep-objects"),
    pytest.param(b"", "not JSON", id="empty"),
    pytest.param(b"\xff\xfe", "not JSON", id="not-utf8"),
    pytest.param(b'{"a": 1', "not JSON", id="truncated"),
])
def test_parse_json(raw: bytes, error: str | None) -> None:
    if error is None:
        parse_json(raw)
        return
    with pytest.raises(NotJSON, match=error) as err:
        parse_json(raw)
    assert str(err.value).startswith("body is not")
