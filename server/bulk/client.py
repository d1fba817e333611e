"""A Bulk Data client for `planfit export`: kick-off, polling as told, resumable downloads.

It speaks only HTTP, exactly like any other Bulk Data client, so it exercises the same API a health
plan uses. State lives in `<out>/.planfit-export.json` (the status URL, then the manifest and the
files finished), so a second run continues the same job and skips what is already on disk: a file
is complete when its size matches the server's; a partial `.part` file is continued with a Range
request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx
import orjson
from tqdm import tqdm

STATE_FILE = ".planfit-export.json"
_CHUNK = 1 << 20


class ExportFailed(Exception):
    """The server refused or failed the export; the message is its diagnostics."""


@dataclass(frozen=True)
class ExportRequest:
    group_id: str
    params: list[tuple[str, str]]

    @property
    def key(self) -> list:
        """What a saved state must match to be continued."""
        return [self.group_id, sorted(self.params)]


Token = Callable[[], str | None]


class JobGone(Exception):
    """The job or its files no longer exist on the server (expired or cancelled)."""


class BulkClient:
    """HTTP with a bearer token that is fetched again once if the server says it expired (401)."""

    def __init__(self, http: httpx.Client, token: Token):
        self.http = http
        self.token = token
        self._bearer = token()

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._bearer}"} if self._bearer else {}

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        response = self.http.request(method, url, headers={**headers, **self.auth_headers()}, **kwargs)
        if response.status_code == 401:
            self._bearer = self.token()
            response = self.http.request(method, url, headers={**headers, **self.auth_headers()}, **kwargs)
        return response


def _diagnostics(response: httpx.Response) -> str:
    try:
        issues = response.json().get("issue", [])
        return "; ".join(i.get("diagnostics", i.get("code", "")) for i in issues) or response.text
    except ValueError:
        return response.text


def _load_state(out: Path, request: ExportRequest) -> dict:
    path = out / STATE_FILE
    if path.is_file():
        state = orjson.loads(path.read_bytes())
        if state.get("key") == request.key:
            return state
    return _fresh_state(request)


def _fresh_state(request: ExportRequest) -> dict:
    return {"key": request.key, "done": {}}


def _save_state(out: Path, state: dict) -> None:
    tmp = out / (STATE_FILE + ".tmp")
    tmp.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
    tmp.replace(out / STATE_FILE)


def kick_off(client: BulkClient, fhir_base: str, request: ExportRequest) -> str:
    response = client.request(
        "GET",
        f"{fhir_base}/Group/{request.group_id}/$export",
        params=request.params,
        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    if response.status_code != 202:
        raise ExportFailed(f"kick-off refused ({response.status_code}): {_diagnostics(response)}")
    return response.headers["Content-Location"]


def poll(client: BulkClient, status_url: str, bar: tqdm) -> dict:
    """Wait as told (Retry-After) until the manifest is ready."""
    while True:
        response = client.request("GET", status_url, headers={"Accept": "application/json"})
        if response.status_code == 200:
            return response.json()
        if response.status_code == 404:
            raise JobGone()
        if response.status_code not in (202, 429):
            raise ExportFailed(f"export failed ({response.status_code}): {_diagnostics(response)}")
        bar.set_description_str(response.headers.get("X-Progress", "waiting"))
        time.sleep(float(response.headers.get("Retry-After", "1")))


def _name(item: dict) -> str:
    return item["url"].rsplit("/", 1)[1]


def remote_size(client: BulkClient, item: dict) -> int:
    head = client.request("HEAD", item["url"])
    if head.status_code == 404:
        raise JobGone()
    if head.status_code != 200:
        raise ExportFailed(f"{_name(item)}: {head.status_code} {_diagnostics(head)}")
    return int(head.headers["Content-Length"])


def download(client: BulkClient, item: dict, size: int, out: Path, bar: tqdm) -> None:
    """Fetch one file into `out`, continuing a partial `.part` download with a Range request."""
    name = _name(item)
    part = out / (name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if have > size:
        part.unlink()
        have = 0
    headers = {"Accept": "application/fhir+ndjson", **client.auth_headers()}
    if have:
        headers["Range"] = f"bytes={have}-"
    with client.http.stream("GET", item["url"], headers=headers) as response:
        if response.status_code == 404:
            raise JobGone()
        if response.status_code not in (200, 206):
            raise ExportFailed(f"{name}: {response.status_code}")
        mode = "ab" if response.status_code == 206 else "wb"
        bar.update(have if mode == "ab" else 0)
        with open(part, mode) as f:
            for chunk in response.iter_bytes(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
    if part.stat().st_size != size:
        raise ExportFailed(f"{name}: incomplete download")
    part.replace(out / name)


def _is_done(state: dict, out: Path, name: str) -> bool:
    size = state["done"].get(name)
    return size is not None and (out / name).is_file() and (out / name).stat().st_size == size


def _manifest(client: BulkClient, fhir_base: str, request: ExportRequest, out: Path, state: dict) -> dict:
    if "manifest" in state:
        return state["manifest"]
    with tqdm(total=None, bar_format="{desc} [{elapsed}]", desc="kick-off", leave=False) as bar:
        if "status_url" not in state:
            state["status_url"] = kick_off(client, fhir_base, request)
            _save_state(out, state)
        manifest = poll(client, state["status_url"], bar)
    state["manifest"] = manifest
    _save_state(out, state)
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def _download_all(client: BulkClient, manifest: dict, out: Path, state: dict) -> None:
    items = [i for i in manifest["output"] + manifest["error"] if not _is_done(state, out, _name(i))]
    sizes = [remote_size(client, item) for item in items]
    with tqdm(total=sum(sizes), unit="B", unit_scale=True, desc="download") as bar:
        for item, size in zip(items, sizes):
            download(client, item, size, out, bar)
            state["done"][_name(item)] = size
            _save_state(out, state)


def run(client: BulkClient, fhir_base: str, request: ExportRequest, out: Path) -> dict:
    """Export the Group into `out`, continuing a previous run; returns the manifest.

    If the job expired or was cancelled meanwhile, a new one is started, once.
    """
    out.mkdir(parents=True, exist_ok=True)
    state = _load_state(out, request)
    for _ in range(2):
        try:
            manifest = _manifest(client, fhir_base, request, out, state)
            _download_all(client, manifest, out, state)
            return manifest
        except JobGone:
            # Files of the vanished job must not pass for files of the next one.
            for name in state["done"]:
                (out / name).unlink(missing_ok=True)
            state = _fresh_state(request)
            _save_state(out, state)
    raise ExportFailed("the export job disappeared twice (expired or cancelled): try again")
