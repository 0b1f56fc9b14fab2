"""Decoding of Stripe's form/query encoding (``metadata[k]=v``, ``expand[]=x``, ``items[0][price]=p``)
and coercion of the resulting string leaves.

Stripe SDKs flatten nested params with bracket keys; arrays come either indexed (``expand[0]``,
the Python and Node SDKs) or as ``expand[]``. Everything arrives as a string.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid

_TOKEN = re.compile(r"\[([^\[\]]*)\]")
# Hash-typed params whose keys may look numeric but must stay dicts.
_HASH_KEYS = {"metadata"}


def split_key(key: str) -> list[str]:
    """``a[b][0][]`` -> ``["a", "b", "0", ""]``."""
    i = key.find("[")
    if i < 0:
        return [key]
    parts = [key[:i]]
    parts.extend(_TOKEN.findall(key[i:]))
    return parts


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Build a nested dict from (key, value) pairs, then turn index-keyed dicts into lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = split_key(key)
        node: Any = root
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if part == "":
                # ``x[]``: append; a following ``[field]`` opens a new element only when that
                # field is already set on the last element (Rails-style grouping).
                if not isinstance(node, _AppendList):
                    raise invalid(f"Invalid array parameter: {key}", param=parts[0])
                if last:
                    node.append(value)
                    break
                nxt = parts[depth + 1]
                if not node or not isinstance(node[-1], dict) or nxt in node[-1]:
                    node.append({})
                node = node[-1]
                continue
            if isinstance(node, list):
                raise invalid(f"Invalid array parameter: {key}", param=parts[0])
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if parts[depth + 1] == "":
                    if not isinstance(child, _AppendList):
                        child = _AppendList()
                        node[part] = child
                elif not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _listify(root, None)


class _AppendList(list):
    """Marks lists built from ``[]`` keys while parsing."""


def _listify(node: Any, parent_key: str | None) -> Any:
    if isinstance(node, list):
        return [_listify(v, None) for v in node]
    if isinstance(node, dict):
        if node and parent_key not in _HASH_KEYS and all(k.isdigit() for k in node):
            return [_listify(node[k], None) for k in sorted(node, key=int)]
        return {k: _listify(v, k) for k, v in node.items()}
    return node


def parse_qs(text: str) -> dict[str, Any]:
    """Parse an urlencoded string (query string or form body)."""
    return parse_pairs(parse_qsl(text, keep_blank_values=True))


def as_list(value: Any) -> list[Any]:
    """A param that may arrive as a single value or as an array."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def to_int(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise invalid(f"Invalid integer: {value}", param=param)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise invalid(f"Invalid integer: {value}", param=param) from None


def to_float(value: Any, param: str) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise invalid(f"Invalid decimal: {value}", param=param) from None


def to_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s == "true":
        return True
    if s == "false":
        return False
    raise invalid(f"Invalid boolean: {value}", param=param)


def flatten(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Inverse of ``parse_pairs`` (indexed arrays), used to canonicalise params and by tests."""
    out: list[tuple[str, str]] = []
    for k, v in params.items():
        key = f"{prefix}[{k}]" if prefix else str(k)
        if isinstance(v, dict):
            out.extend(flatten(v, key))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    out.extend(flatten(item, f"{key}[{i}]"))
                else:
                    out.append((f"{key}[{i}]", form_text(item)))
        else:
            out.append((key, form_text(v)))
    return out


def form_text(v: Any) -> str:
    """A value as form encoding writes it: `true`/`false`, empty for None."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return ""
    return str(v)
