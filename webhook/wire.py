"""AdmissionReview v1 on the wire: typed shapes, the edge check, and the response builder.

Only this module knows the JSON layout; admission.py decides, app.py does HTTP.
"""

from __future__ import annotations

import base64
from typing import Any, Literal, NotRequired, TypedDict

from podvirt import wirejson
from podvirt.httpbody import NotJSON, parse_json

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class GroupVersionKind(TypedDict):
    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    group: str
    version: str
    resource: str


class AdmissionRequest(TypedDict):
    uid: str
    kind: GroupVersionKind
    resource: NotRequired[GroupVersionResource]
    subResource: NotRequired[str]
    name: NotRequired[str]
    namespace: NotRequired[str]
    operation: Operation
    object: NotRequired[dict[str, Any] | None]
    oldObject: NotRequired[dict[str, Any] | None]
    dryRun: NotRequired[bool]


class Status(TypedDict):
    code: int
    message: str
    status: NotRequired[Literal["Failure"]]
    reason: NotRequired[str]


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]             # base64 of the JSON Patch document
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]


class AdmissionReview(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    request: NotRequired[AdmissionRequest]
    response: NotRequired[AdmissionResponse]


SUPPORTED_VERSIONS = ("admission.k8s.io/v1",)


class BadReview(ValueError):
    """A body that is not an AdmissionReview we can answer (HTTP 400)."""


def parse_review(body: bytes) -> AdmissionReview:
    """Check the envelope once, at the edge; admission.py may then trust its shape."""
    try:
        doc = parse_json(body)
    except NotJSON as exc:
        raise BadReview(str(exc)) from None
    if not isinstance(doc, dict):
        raise BadReview("body must be a JSON object")
    if doc.get("kind") != "AdmissionReview":
        raise BadReview(f"kind must be AdmissionReview, got {doc.get('kind')!r}")
    if doc.get("apiVersion") not in SUPPORTED_VERSIONS:
        raise BadReview(f"apiVersion must be one of {', '.join(SUPPORTED_VERSIONS)}, "
                        f"got {doc.get('apiVersion')!r}")
    req = doc.get("request")
    if not isinstance(req, dict):
        raise BadReview("request is missing")
    if not isinstance(req.get("uid"), str) or not req["uid"]:
        raise BadReview("request.uid is missing")
    if not isinstance(req.get("kind"), dict):
        raise BadReview("request.kind is missing")
    if req.get("operation") not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise BadReview(f"request.operation {req.get('operation')!r} is not an admission operation")
    for key in ("object", "oldObject"):
        if req.get(key) is not None and not isinstance(req[key], dict):
            raise BadReview(f"request.{key} must be an object")
    return doc  # type: ignore[return-value]


def build_response(*, uid: str, allowed: bool, patch: list[dict] | None = None,
                   code: int | None = None, message: str | None = None,
                   warnings: list[str] | None = None) -> AdmissionResponse:
    response: AdmissionResponse = {"uid": uid, "allowed": allowed}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(wirejson.dumps(patch)).decode()
    if not allowed or message:
        response["status"] = {"code": code or (200 if allowed else 403), "message": message or ""}
        if not allowed:
            response["status"]["status"] = "Failure"
    if warnings:
        response["warnings"] = warnings
    return response


def wrap(response: AdmissionResponse, api_version: str = SUPPORTED_VERSIONS[0]) -> AdmissionReview:
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}
