"""The Files API's read routes: ``GET /v1/files/{id}`` and ``GET /v1/files/{id}/contents``
(the bytes, not JSON: answered as a ``RawBody``). See ``files`` for where contents are served."""

from __future__ import annotations

from typing import Any

from .api import Request, add_route
from .errors import unknown_param
from .files import RawBody


def _no_params(rq: Request, allowed: tuple[str, ...] = ()) -> None:
    for k in rq.params:
        if k not in allowed:
            raise unknown_param(k)


def get_file(rq: Request, id: str) -> Any:
    _no_params(rq, ("expand",))
    files = rq.ctx.core.files
    return files.render(files.get(id, rq.account.id, rq.lm))


def get_file_contents(rq: Request, id: str) -> Any:
    _no_params(rq)
    f = rq.ctx.core.files.get(id, rq.account.id, rq.lm)
    content_type = {"csv": "text/csv", "json": "application/json", "pdf": "application/pdf"}.get(
        f.type, "application/octet-stream")
    return RawBody(f.data, content_type, f.filename)


add_route("GET", "/v1/files/{id}/contents", get_file_contents)
add_route("GET", "/v1/files/{id}", get_file)
