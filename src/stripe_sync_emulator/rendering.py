"""Helpers every renderer uses: fresh template objects and references to other rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .templates import maker

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore


_MAKERS: dict[str, Callable[[], dict[str, Any]]] = {}


def from_template(key: str) -> dict[str, Any]:
    """A fresh object built from Stripe's fixture ``key`` (each constructor is compiled once)."""
    make = _MAKERS.get(key)
    if make is None:
        make = _MAKERS[key] = maker(key)
    return make()


def ref_or_none(account: AccountStore, name: str, seq: int) -> str | None:
    """The id of row ``seq`` of ``name``; generated link columns hold -1 for "no link"."""
    return None if seq < 0 else account.tables[name].codec.encode(seq)
