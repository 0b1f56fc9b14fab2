"""Files the emulator makes (Sigma query results), served by ``files_api`` as
``GET /v1/files/{id}`` (the file object) and ``GET /v1/files/{id}/contents`` (the bytes).
Stripe serves contents from ``files.stripe.com``; the emulator serves them on its own address, and a file object's ``url`` names that address, so a client
pointed at the emulator for both hosts (or following ``url``) reads them. Only the newest
``Files.retain`` are kept."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .errors import missing

FILES_HOST = "https://files.stripe.com"
DAY = 86400


@dataclass(frozen=True)
class RawBody:
    """A non-JSON answer (the app sends ``data`` as is with ``content_type``)."""

    data: bytes
    content_type: str
    filename: str | None = None


@dataclass
class StoredFile:
    id: str
    account_id: str
    livemode: bool
    created: int
    filename: str
    purpose: str
    type: str
    data: bytes


class Files:
    """Every account's files, oldest evicted first beyond ``retain``."""

    def __init__(self, retain: int = 200) -> None:
        self.retain = retain
        self.public_base: str | None = None
        """Where contents are served (the emulator's own base URL once it listens)."""
        self._files: OrderedDict[str, StoredFile] = OrderedDict()

    def add(self, account_id: str, livemode: bool, created: int, filename: str, purpose: str, type: str,
            data: bytes) -> StoredFile:
        fid = "file_1" + secrets.token_hex(12)
        f = StoredFile(fid, account_id, livemode, created, filename, purpose, type, data)
        self._files[fid] = f
        while len(self._files) > max(1, self.retain):
            self._files.popitem(last=False)
        return f

    def get(self, fid: str, account_id: str, livemode: bool) -> StoredFile:
        f = self._files.get(fid)
        if f is None or f.account_id != account_id or f.livemode != livemode:
            raise missing("file", fid)
        return f

    def render(self, f: StoredFile) -> dict[str, Any]:
        base = self.public_base or FILES_HOST
        return {"id": f.id, "object": "file", "created": f.created, "expires_at": f.created + 365 * DAY,
                "filename": f.filename,
                "links": {"object": "list", "data": [], "has_more": False, "url": f"/v1/file_links?file={f.id}"},
                "purpose": f.purpose, "size": len(f.data), "title": None, "type": f.type,
                "url": f"{base}/v1/files/{f.id}/contents"}
