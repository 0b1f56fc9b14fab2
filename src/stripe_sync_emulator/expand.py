"""``expand[]`` handling: replace id strings by objects along dotted paths, copy-on-write (rendered
objects may be shared with caches and stored rows, so nothing is modified in place)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import invalid

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore

MAX_DEPTH = 4  # levels, `data` included: Stripe's deepest on a charge list is data.invoice.subscription.default_source


def _tax_ids(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    cid = obj["id"]
    seqs, more = acc.page("tax_ids", [acc.build_filter("tax_ids", "customer", cid)], (None, None), None, None, 10)
    return {"object": "list", "data": [acc.render("tax_ids", s, lm) for s in seqs], "has_more": more,
            "url": f"/v1/customers/{cid}/tax_ids"}


def _subscriptions(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    cid = obj["id"]
    ms = acc.filters_from("subscriptions", {"customer": cid}, set())
    seqs, more = acc.page("subscriptions", ms, (None, None), None, None, 10)
    return {"object": "list", "data": [acc.render("subscriptions", s, lm) for s in seqs], "has_more": more,
            "url": f"/v1/customers/{cid}/subscriptions"}


def _sources(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    return {"object": "list", "data": [], "has_more": False, "url": f"/v1/customers/{obj['id']}/sources"}


def _line_items(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    from .resources import Embed

    t = acc.tables["checkout_sessions"]
    seq = t.seq_of(obj["id"])
    if seq is None:
        return {"object": "list", "data": [], "has_more": False, "url": ""}
    emb = Embed("checkout_line_items", "/v1/checkout/sessions/{id}/line_items")
    return acc.embedded_list(t, seq, obj["id"], emb, lm)


def _stored_field(acc: AccountStore, name: str, ident: str, field: str, default: Any) -> Any:
    """An includable field as stored with the row (rows created through the API), else ``default``."""
    t = acc.tables[name]
    seq = t.seq_of(ident)
    row = t.rows.get(seq) if seq is not None else None
    return default if row is None else row.get(field, default)


OMIT = object()
"""An includable field this object does not have (`tiers` of a per-unit price): expanding it adds nothing."""


def _tiers(acc: AccountStore, obj: dict[str, Any], lm: bool) -> Any:
    tiers = _stored_field(acc, "prices", obj["id"], "tiers", None)
    return OMIT if tiers is None else tiers


def _currency_options(acc: AccountStore, obj: dict[str, Any], lm: bool) -> Any:
    own = {obj.get("currency") or "usd": {"custom_unit_amount": obj.get("custom_unit_amount"),
                                         "tax_behavior": obj.get("tax_behavior"), "unit_amount": obj.get("unit_amount"),
                                         "unit_amount_decimal": obj.get("unit_amount_decimal")}}
    tiers = _tiers(acc, obj, lm)
    if tiers is not OMIT:
        own[next(iter(own))]["tiers"] = tiers
    return {**own, **(_stored_field(acc, "prices", obj["id"], "currency_options", None) or {})}


def _coupon_currency_options(acc: AccountStore, obj: dict[str, Any], lm: bool) -> Any:
    """An amount-off coupon's amounts per currency, its own currency included; none for a percentage."""
    if obj.get("amount_off") is None:
        return OMIT
    t = acc.tables["coupons"]
    seq = t.seq_of(obj["id"])
    if seq is None:
        seq = t.custom_ids.get(obj["id"])
    row = t.rows.get(seq) if seq is not None else None
    stored = (row or {}).get("currency_options") or {}
    return {obj.get("currency") or "usd": {"amount_off": obj["amount_off"]}, **stored}


def _line_discounts(acc: AccountStore, obj: dict[str, Any], lm: bool) -> Any:
    return _stored_field(acc, "checkout_line_items", obj["id"], "discounts", [])


def _line_taxes(acc: AccountStore, obj: dict[str, Any], lm: bool) -> Any:
    return _stored_field(acc, "checkout_line_items", obj["id"], "taxes", [])


# Fields that only appear when expanded ("includable" in Stripe's docs).
INCLUDABLE: dict[tuple[str, str], Callable[[AccountStore, dict[str, Any], bool], dict[str, Any]]] = {
    ("customer", "tax_ids"): _tax_ids,
    ("customer", "subscriptions"): _subscriptions,
    ("customer", "sources"): _sources,
    ("checkout.session", "line_items"): _line_items,
    ("coupon", "currency_options"): _coupon_currency_options,
    ("price", "tiers"): _tiers,
    ("price", "currency_options"): _currency_options,
    ("plan", "tiers"): _tiers,
    ("item", "discounts"): _line_discounts,
    ("item", "taxes"): _line_taxes,
}


def expand(acc: AccountStore, obj: Any, paths: list[str], lm: bool, *, is_list: bool = False) -> Any:
    """Apply every expansion path to ``obj`` (a resource, or a list object when ``is_list``)."""
    for path in paths:
        parts = [p for p in str(path).split(".") if p != ""]
        if not parts:
            continue
        if is_list and parts[0] != "data":
            raise invalid(f"This property cannot be expanded ({path}). You may want to try expanding "
                          f"'data.{path}' instead.", param="expand")
        if len(parts) > MAX_DEPTH:
            raise invalid(f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                          param="expand")
        obj = _walk(acc, obj, parts, path, lm)
    return obj


def _walk(acc: AccountStore, node: Any, parts: list[str], full: str, lm: bool) -> Any:
    if not parts:
        return node
    if isinstance(node, list):
        return [_walk(acc, x, parts, full, lm) for x in node]
    if isinstance(node, str):
        node = _resolve(acc, node, lm, None, full)
    if not isinstance(node, dict):
        return node
    head, rest = parts[0], parts[1:]
    if node.get("object") == "list" and head == "data":
        new = dict(node)
        new["data"] = [_walk(acc, x, rest, full, lm) for x in node.get("data", [])]
        return new
    if node.get("deleted"):
        return node
    inc = INCLUDABLE.get((node.get("object", ""), head))
    new = dict(node)
    if inc is not None and not isinstance(node.get(head), (dict, list)):
        val: Any = inc(acc, node, lm)
    elif head in node:
        val = node[head]
        val = _expand_value(acc, val, lm, head, full) if not rest else val
    else:
        raise invalid(f"This property cannot be expanded ({head}).", param="expand")
    if val is OMIT:
        return new
    if rest:
        if isinstance(val, str):
            val = _resolve(acc, val, lm, head, full)
        val = _walk(acc, val, rest, full, lm)
    new[head] = val
    return new


def _expand_value(acc: AccountStore, val: Any, lm: bool, field: str, full: str) -> Any:
    if val is None or isinstance(val, dict):
        return val
    if isinstance(val, list):
        return [_expand_value(acc, v, lm, field, full) for v in val]
    if isinstance(val, str):
        return _resolve(acc, val, lm, field, full)
    raise invalid(f"This property cannot be expanded ({field}).", param="expand")


def _resolve(acc: AccountStore, ident: str, lm: bool, field: str | None, full: str) -> Any:
    obj = acc.render_by_id(ident, lm, field)
    if obj is None and ident.startswith("ba_"):
        from .families.balance import render_bank_account

        obj = render_bank_account(acc, ident)
    if obj is None:
        if field == "destination" or ident.startswith(("ba_", "card_", "py_", "src_")):
            return ident  # external accounts / sources are not modelled: leave the id
        raise invalid(f"This property cannot be expanded ({field or full}).", param="expand")
    return obj
