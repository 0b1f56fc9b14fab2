"""Small readers of rendered objects, shared by the account store, the filters and the families."""

from __future__ import annotations

from typing import Any

from .forms import form_text


def get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def id_of(value: Any) -> Any:
    """An object's id whether the field holds the id or the expanded object."""
    return value.get("id") if isinstance(value, dict) else value


def norm(value: Any) -> str:
    """A field value as a filter compares it: form text, an expanded object by its id."""
    if isinstance(value, dict) and "id" in value:
        return str(value["id"])
    return form_text(value)
