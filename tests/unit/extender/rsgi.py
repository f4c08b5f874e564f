"""The extender's RSGI app (extender/app.py ExtenderApp) called without a server: RSGI's
scope and protocol objects as granian hands them over, the body in chunks."""

from __future__ import annotations

import asyncio
import json as jsonlib
from dataclasses import dataclass
from typing import Any


@dataclass
class Scope:
    method: str
    path: str
    headers: dict[str, str]         # RSGI's: lower-case names, get()
    http_version: str = "1.1"


class Proto:
    """RSGI's HTTP protocol: iterating gives the body in chunks; one response."""

    def __init__(self, body: bytes, chunk: int = 4096):
        self.chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        self.read = 0
        self.response: tuple[int, list[tuple[str, str]], bytes] | None = None

    def __aiter__(self):
        async def chunks():
            for c in self.chunks:
                self.read += 1
                yield c
        return chunks()

    def response_bytes(self, status: int, headers: list, body: bytes) -> None:
        assert self.response is None, "answered twice"
        self.response = (status, headers, body)


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]
    data: bytes
    chunks_read: int

    def get_json(self) -> Any:
        assert self.headers["content-type"] == "application/json", self.headers
        return jsonlib.loads(self.data)

    def text(self) -> str:
        return self.data.decode()


class Client:
    def __init__(self, app: Any):
        self.app = app

    def request(self, method: str, path: str, body: bytes = b"", *,
                headers: dict[str, str] | None = None, http_version: str = "1.1") -> Reply:
        proto = Proto(body)
        asyncio.run(self.app(Scope(method, path, headers or {}, http_version), proto))
        assert proto.response is not None, "no response"
        status, pairs, data = proto.response
        return Reply(status, dict(pairs), data, proto.read)

    def post(self, path: str, json: Any = None, data: bytes | None = None, **kw: Any) -> Reply:
        body = data if data is not None else jsonlib.dumps(json).encode()
        headers = {"content-length": str(len(body)), **kw.pop("headers", {})}
        return self.request("POST", path, body, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)
