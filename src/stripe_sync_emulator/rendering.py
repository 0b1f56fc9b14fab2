"""Helpers every renderer uses: fresh template objects and references to other rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .templates import maker

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore


_MAKERS: dict[str, Callable[[], dict[str, Any]]] = {}


def from_template(key: str) -> dict[str, Any]:
    f = _MAKERS.get(key)
    if f is None:
        f = _MAKERS[key] = maker(key)
    return f()


def ref_or_none(account: AccountStore, name: str, seq: int) -> str | None:
    return None if seq < 0 else account.tables[name].codec.encode(seq)
