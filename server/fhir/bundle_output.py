"""Bundles as bytes: stored resource JSON is spliced in as it is, never parsed and re-serialised."""

from __future__ import annotations

import orjson

from server.fhir.dates import instant_text
from server.fhir.versions import etag, new_id
from server.store.resources import StoredVersion

_STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    204: "204 No Content",
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    409: "409 Conflict",
    410: "410 Gone",
    412: "412 Precondition Failed",
    422: "422 Unprocessable Entity",
}


def status_text(status: int) -> str:
    return _STATUS_TEXT.get(status, str(status))


def search_entry(base: str, rtype: str, rid: str, content: bytes, mode: bytes) -> bytes:
    return b'{"fullUrl":"%s/%s/%s","resource":%s,"search":{"mode":%s}}' % (
        base.encode(),
        rtype.encode(),
        rid.encode(),
        content,
        mode,
    )


def history_entry(base: str, v: StoredVersion) -> bytes:
    method = v.method or "PUT"
    url = v.rtype if method == "POST" else f"{v.rtype}/{v.rid}"
    status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}.get(method, "200 OK")
    if method == "PUT" and v.version == 1:
        status = "201 Created"
    response = orjson.dumps(
        {"status": status, "etag": etag(v.version), "lastModified": instant_text(v.lu)}
    )
    request = orjson.dumps({"method": method, "url": url})
    head = b'{"fullUrl":"%s/%s/%s",' % (base.encode(), v.rtype.encode(), v.rid.encode())
    body = b'"resource":%s,' % v.content if v.content is not None and not v.deleted else b""
    return head + body + b'"request":' + request + b',"response":' + response + b"}"


def bundle_bytes(kind: str, total: int | None, links: list[tuple[str, str]], entries: list[bytes]) -> bytes:
    head = {"resourceType": "Bundle", "id": new_id(), "type": kind}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
