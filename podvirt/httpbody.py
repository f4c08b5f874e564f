"""Request bodies at the HTTP edge of the webhook and the extender: size cap and JSON decode.

Why not Flask's MAX_CONTENT_LENGTH: werkzeug stops reading a chunked body at the cap and
hands back the truncated prefix (a 400 "not JSON" instead of a 413), and a 413 answered
before the body is read leaves it on the socket, where gunicorn drains only 64 KiB before
closing, so the client sees a connection reset instead of the answer. Here the body is read
up to cap + 1 bytes, and an oversized one is drained (up to DRAIN_FACTOR x cap, so a huge
body cannot keep a thread busy) before the 413 goes out on a connection still in step.
"""

from __future__ import annotations

from typing import IO, Any, AsyncIterable, Mapping

from werkzeug.wsgi import get_input_stream

from podvirt import wirejson

DRAIN_FACTOR = 4                # oversized bodies up to 4 x cap still get a clean 413
MAX_DEPTH = 100                 # Kubernetes objects nest ~20 deep; deeper is an attack
_READ = 64 * 1024


class BodyTooLarge(Exception):
    """HTTP 413: the body is longer than the cap."""


class NotJSON(ValueError):
    """HTTP 400: the body is not a JSON document we will process."""


def read_body(environ: Mapping[str, Any], cap: int) -> bytes:
    """The whole request body, at most `cap` bytes, from the WSGI environ.

    `get_input_stream` without a limit gives a stream that ends where the body ends
    (Content-Length, or the server's own chunked decoding), and an empty one when the
    request has neither.
    """
    stream = get_input_stream(environ, max_content_length=None)  # type: ignore[arg-type]
    declared = _content_length(environ)
    if declared is not None and declared > cap:
        if declared <= DRAIN_FACTOR * cap:
            _drain(stream, declared)
        raise BodyTooLarge(f"body of {declared} bytes exceeds the {cap}-byte limit")
    chunks, size = [], 0
    while size <= cap:
        chunk = stream.read(min(_READ, cap + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    _drain(stream, DRAIN_FACTOR * cap - size)
    raise BodyTooLarge(f"body exceeds the {cap}-byte limit")


async def read_body_async(declared: str | None, chunks: AsyncIterable[bytes], cap: int) -> bytes:
    """read_body for an asynchronous server (the extender's RSGI app): `declared` is the
    Content-Length header, `chunks` the body as the server streams it."""
    length = _length(declared)
    if length is not None and length > cap:
        if length <= DRAIN_FACTOR * cap:
            async for _ in chunks:
                pass
        raise BodyTooLarge(f"body of {length} bytes exceeds the {cap}-byte limit")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > DRAIN_FACTOR * cap:
            break
        if size <= cap:
            parts.append(chunk)
    if size > cap:
        raise BodyTooLarge(f"body exceeds the {cap}-byte limit")
    return b"".join(parts)


def _content_length(environ: Mapping[str, Any]) -> int | None:
    return _length(environ.get("CONTENT_LENGTH"))


def _length(header: Any) -> int | None:
    value = str(header or "").strip()
    return int(value) if value.isdigit() else None


def _drain(stream: IO[bytes], budget: int) -> None:
    while budget > 0 and (chunk := stream.read(min(_READ, budget))):
        budget -= len(chunk)


def parse_json(raw: bytes) -> Any:
    """Decode a body; anything that is not JSON, or nests deeper than MAX_DEPTH, is NotJSON.

    The depth limit matters beyond the decoder's own RecursionError: a document the
    decoder just manages would still exhaust the stack later (deepcopy, patch diffing).
    """
    try:
        doc = wirejson.loads(raw)
    except RecursionError:
        raise NotJSON(f"body is not usable JSON: nested deeper than {MAX_DEPTH} levels") \
            from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotJSON(f"body is not JSON: {exc}") from None
    if _too_deep(doc):
        raise NotJSON(f"body is not usable JSON: nested deeper than {MAX_DEPTH} levels")
    return doc


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _too_deep(doc: Any) -> bool:
    """Iterative, so the check itself cannot overflow the stack. A flat list or map (the
    extender's 1000 node names) is recognized at C speed, without a Python-level loop."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if type(node) is dict else node if type(node) is list else ()
        if _SCALARS.issuperset(map(type, children)):
            continue
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False
