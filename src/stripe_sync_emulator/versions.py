"""API versions: the ``Stripe-Version`` a request asks for, and objects rendered at it.

Objects are built at the default version (``DEFAULT_API_VERSION``). The one older version modelled,
``2025-02-24.acacia`` (the last before the 2025 "basil" changes), is rendered by rewriting each object
the fields of which changed shape between the two, for the types the engine syncs (see the README's
"API versions"). Additive changes need no rewriting: Stripe sends new fields at every version. Any
other version is refused with Stripe's own error rather than answered at another version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import StripeError

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore

DEFAULT_API_VERSION = "2026-10-28.endive"  # the version the bundled stripe SDK pins
PRE_BASIL = "2025-02-24.acacia"
MODELLED_VERSIONS = (DEFAULT_API_VERSION, PRE_BASIL)
_WELL_FORMED = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def requested_version(header: str | None, default: str) -> str:
    """The version to answer at: the header's, else the account's default; refused when unmodelled."""
    if not header:
        return default
    version = header.strip()
    if version in MODELLED_VERSIONS:
        return version
    message = f"Invalid Stripe API version: {version}"
    if _WELL_FORMED.match(version):
        message += (f". The emulator renders objects only at {' and '.join(MODELLED_VERSIONS)}; "
                    "it never answers at another version than the one asked for")
    raise StripeError(400, message)


def check_modelled(version: str) -> str:
    """A configured default version must be one the emulator renders."""
    if version not in MODELLED_VERSIONS:
        raise ValueError(f"API version {version!r} is not modelled; choose one of {', '.join(MODELLED_VERSIONS)}")
    return version


# ---- 2025-02-24.acacia --------------------------------------------------------------------------------

Rewrite = Callable[["AccountStore", dict[str, Any], bool], dict[str, Any]]


def _price_object(acc: AccountStore, value: Any, lm: bool) -> Any:
    if isinstance(value, str):
        seq = acc.tables["prices"].seq_of(value)
        return acc.render("prices", seq, lm) if seq is not None else value
    return value


def _plan_of(acc: AccountStore, price: Any, lm: bool) -> Any:
    if isinstance(price, dict) and price.get("recurring"):
        seq = acc.tables["prices"].seq_of(price["id"])
        return acc.render_plan(seq, lm) if seq is not None else None
    return None


def _tax_amounts(taxes: Any) -> list[dict[str, Any]]:
    out = []
    for t in taxes or []:
        details = t.get("tax_rate_details") or {}
        out.append({"amount": t.get("amount", 0), "inclusive": t.get("tax_behavior") == "inclusive",
                    "tax_rate": details.get("tax_rate"), "taxability_reason": t.get("taxability_reason"),
                    "taxable_amount": t.get("taxable_amount")})
    return out


def _invoice(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    parent = out.pop("parent", None) or {}
    sub_details = parent.get("subscription_details") or None
    quote = parent.get("quote_details") or None
    taxes = out.pop("total_taxes", None)
    out.pop("total_pretax_credit_amounts", None)
    total_tax_amounts = _tax_amounts(taxes)
    out.update({
        "subscription": (sub_details or {}).get("subscription"),
        "subscription_details": {"metadata": (sub_details or {}).get("metadata")} if sub_details else None,
        "quote": (quote or {}).get("quote"),
        "total_tax_amounts": total_tax_amounts,
        "tax": sum(t["amount"] for t in total_tax_amounts if not t["inclusive"]) if total_tax_amounts else None,
        "paid": out.get("status") == "paid",
        "paid_out_of_band": bool(obj.get("paid_out_of_band", False)),
        "charge": None, "payment_intent": None,  # invoices are not linked to payments in the emulator
        "discount": None,
        "subscription_proration_date": None,
    })
    return out


def _invoice_line(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    parent = out.pop("parent", None) or {}
    pricing = out.pop("pricing", None) or {}
    taxes = out.pop("taxes", None)
    out.pop("pretax_credit_amounts", None)
    details = (pricing.get("price_details") or {})
    price = _price_object(acc, details.get("price"), lm)
    sub_item = parent.get("subscription_item_details") or None
    ii = parent.get("invoice_item_details") or None
    origin = sub_item or ii or {}
    qty = out.get("quantity") or 1
    out.update({
        "type": "subscription" if sub_item else "invoiceitem",
        "price": price, "plan": _plan_of(acc, price, lm),
        "proration": bool(origin.get("proration", False)),
        "proration_details": origin.get("proration_details") or {"credited_items": None},
        "subscription_item": (sub_item or {}).get("subscription_item"),
        "invoice_item": (ii or {}).get("invoice_item") if ii else (sub_item or {}).get("invoice_item"),
        "tax_amounts": [{"amount": t["amount"], "inclusive": t["inclusive"], "tax_rate": t["tax_rate"],
                         "taxability_reason": t["taxability_reason"], "taxable_amount": t["taxable_amount"]}
                        for t in _tax_amounts(taxes)],
        "tax_rates": [],
        "amount_excluding_tax": out.get("amount"),
        "unit_amount_excluding_tax": str((out.get("amount") or 0) // max(1, qty)),
    })
    return out


def _invoice_item(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    parent = out.pop("parent", None) or {}
    pricing = out.pop("pricing", None) or {}
    price = _price_object(acc, (pricing.get("price_details") or {}).get("price"), lm)
    sub = parent.get("subscription_details") or {}
    unit = pricing.get("unit_amount_decimal")
    out.update({"price": price, "plan": _plan_of(acc, price, lm), "proration": bool(out.get("proration", False)),
                "subscription": sub.get("subscription") or out.get("subscription"),
                "subscription_item": sub.get("subscription_item"),
                "unit_amount": int(float(unit)) if unit is not None else None, "unit_amount_decimal": unit})
    return out


def _subscription(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    items = (out.get("items") or {}).get("data") or []
    first = items[0] if items and isinstance(items[0], dict) else {}
    out["current_period_start"] = first.get("current_period_start", out.get("start_date"))
    out["current_period_end"] = first.get("current_period_end", out.get("start_date"))
    return out


def _subscription_item(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    out.pop("current_period_start", None)
    out.pop("current_period_end", None)
    return out


def _credit_note(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    out["tax_amounts"] = _tax_amounts(out.pop("total_taxes", None))
    out.pop("pretax_credit_amounts", None)
    return out


def _credit_note_line(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    out["tax_amounts"] = _tax_amounts(out.pop("taxes", None))
    out.pop("pretax_credit_amounts", None)
    qty = out.get("quantity") or 1
    out.setdefault("amount_excluding_tax", out.get("amount"))
    out.setdefault("unit_amount_excluding_tax", str((out.get("amount") or 0) // max(1, qty)))
    return out


def _coupon_object(acc: AccountStore, ident: Any, lm: bool) -> Any:
    if not isinstance(ident, str):
        return ident
    seq = acc.tables["coupons"].seq_of(ident)
    if seq is None:
        seq = acc.tables["coupons"].custom_ids.get(ident)
    return acc.render("coupons", seq, lm) if seq is not None else ident


def _discount(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    source = out.pop("source", None) or {}
    out["coupon"] = _coupon_object(acc, source.get("coupon"), lm)
    return out


def _promotion_code(acc: AccountStore, obj: dict[str, Any], lm: bool) -> dict[str, Any]:
    out = dict(obj)
    promotion = out.pop("promotion", None) or {}
    out["coupon"] = _coupon_object(acc, promotion.get("coupon"), lm)
    return out


PRE_BASIL_REWRITES: dict[str, Rewrite] = {
    "invoice": _invoice,
    "line_item": _invoice_line,
    "invoiceitem": _invoice_item,
    "subscription": _subscription,
    "subscription_item": _subscription_item,
    "credit_note": _credit_note,
    "credit_note_line_item": _credit_note_line,
    "discount": _discount,
    "promotion_code": _promotion_code,
}
# The field whose presence says an object is still at the default version (so a rewrite runs once).
_MARKERS = {"invoice": "total_taxes", "line_item": "pricing", "invoiceitem": "pricing",
            "subscription_item": "current_period_end", "credit_note": "total_taxes", "credit_note_line_item": "taxes",
            "discount": "source", "promotion_code": "promotion"}


def _rewrite_needed(obj: dict[str, Any]) -> bool:
    kind = obj.get("object")
    if kind == "subscription":
        return "current_period_end" not in obj
    marker = _MARKERS.get(kind or "")
    return marker is not None and marker in obj


def render_at(acc: AccountStore, body: Any, version: str, lm: bool) -> Any:
    """``body`` as Stripe renders it at ``version`` (copy-on-write; events keep their own version)."""
    if version == DEFAULT_API_VERSION:
        return body
    return _walk(acc, body, lm)


def _walk(acc: AccountStore, node: Any, lm: bool) -> Any:
    if isinstance(node, list):
        new_list = [_walk(acc, x, lm) for x in node]
        return node if all(a is b for a, b in zip(new_list, node, strict=True)) else new_list
    if not isinstance(node, dict) or node.get("object") == "event" or node.get("deleted"):
        return node
    # The object first (a subscription reads its items' periods before they lose them), then what
    # it holds, including the objects a rewrite brought in (a line's price, a discount's coupon).
    out = PRE_BASIL_REWRITES[node["object"]](acc, node, lm) if _rewrite_needed(node) else node
    changed: dict[str, Any] = {}
    for k, v in out.items():
        if isinstance(v, (dict, list)):
            nv = _walk(acc, v, lm)
            if nv is not v:
                changed[k] = nv
    return {**out, **changed} if changed else out
