"""How the emulator's objects become rows of Sigma's reporting tables.

Each reporting table with data is fed by one or more of the emulator's types (``SOURCES``): a
deriver turns one rendered object into zero or more rows (column -> plain value; the reporting
store converts them to Sigma's types). Most columns are Stripe's object fields flattened the way
Sigma names them (``shipping.address.city`` -> ``shipping_address_city``, a reference
``customer`` -> ``customer_id``); ``ALIASES`` covers the columns Sigma names differently. The
remaining tables of the 187 exist and are empty."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from .schema import tables

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore

Row = dict[str, Any]
Deriver = Callable[["AccountStore", str, int, dict[str, Any]], Iterable[Row]]

_ID_LIKE = re.compile(r"^[a-z]+(?:_[a-z]+)*_[A-Za-z0-9]+")


def flatten(obj: dict[str, Any], plan: Plan, prefix: str = "", out: Row | None = None) -> Row:
    """The fields of ``obj`` a table wants, flattened: ``{"a": {"b": 1}, "customer": "cus_1"}`` gives
    ``a_b`` and ``customer`` / ``customer_id``; an embedded object also gives ``<field>_id``; lists
    stay whole (stored as JSON text). Only the branches leading to a wanted name are walked."""
    out = {} if out is None else out
    wanted, branches = plan
    for k, v in obj.items():
        key = prefix + k
        if isinstance(v, dict):
            if "id" in v and "object" in v:
                out.setdefault(key + "_id", v["id"])
                out.setdefault(key, v["id"])
            if key + "_" in branches and v.get("object") != "list":
                flatten(v, plan, key + "_", out)
        else:
            if key in wanted:
                out.setdefault(key, v)
            if isinstance(v, str) and key + "_id" in wanted and _ID_LIKE.match(v):
                out.setdefault(key + "_id", v)
    return out


Plan = tuple[frozenset[str], frozenset[str]]  # (wanted flattened names, prefixes worth walking into)


_LINE_PARENT = ("parent_subscription_item_details_", "parent_invoice_item_details_")

_CHARGE_ALIASES: dict[str, str | tuple[str, ...]] = {
    "card_" + k: "payment_method_details_card_" + k
    for k in ("brand", "country", "exp_month", "exp_year", "fingerprint", "funding", "last4", "network")}
_CHARGE_ALIASES.update({
    "card_cvc_check": "payment_method_details_card_checks_cvc_check",
    "card_address_zip_check": "payment_method_details_card_checks_address_postal_code_check",
    "card_address_line1_check": "payment_method_details_card_checks_address_line1_check",
    "payment_method_type": "payment_method_details_type", "payment_method_id": "payment_method",
    "invoice_id": "invoice"})

# Sigma column -> flattened field(s), first present wins, per table (only where the names differ).
ALIASES: dict[str, dict[str, str | tuple[str, ...]]] = {
    "charges": _CHARGE_ALIASES,
    "invoices": {"date": "created"},
    "transfers": {"date": "created"},
    "subscriptions": {"start": "start_date", "billing": "collection_method"},
    "coupons": {"applies_to_products": "applies_to_products"},
    "promotion_codes": {"restrictions_minium_amount": "restrictions_minimum_amount",
                        "restrictions_minium_amount_currency": "restrictions_minimum_amount_currency"},
    "invoice_line_items": {"price_id": ("pricing_price_details_price", "price"),
                           "plan_id": ("pricing_price_details_price", "plan"),
                           "invoice_item_id": ("parent_invoice_item_details_invoice_item", "invoice_item"),
                           "subscription_item_id": ("parent_subscription_item_details_subscription_item",
                                                    "subscription_item"),
                           "subscription": tuple(p + "subscription" for p in _LINE_PARENT) + ("subscription",),
                           "proration": tuple(p + "proration" for p in _LINE_PARENT) + ("proration",),
                           "source_id": ("parent_invoice_item_details_invoice_item",
                                         "parent_subscription_item_details_subscription_item"),
                           "source_type": ("parent_type",)},
    "payment_intents": {"payment_method_id": "payment_method"},
}


@cache
def _plan(table: str) -> Plan:
    names = set(tables()[table].column_names)
    for alias in ALIASES.get(table, {}).values():
        names.update((alias,) if isinstance(alias, str) else alias)
    branches = {name[:i + 1] for name in names for i, ch in enumerate(name) if ch == "_"}
    return frozenset(names), frozenset(branches)


def columns_from(table: str, obj: dict[str, Any], extra: Row | None = None) -> Row:
    """The table's columns found in ``obj`` (flattened, with the table's aliases)."""
    flat = flatten(obj, _plan(table))
    if extra:
        flat.update(extra)
    aliases = ALIASES.get(table, {})
    out: Row = {}
    for col in tables()[table].column_names:
        alias = aliases.get(col)
        if alias is not None:
            for name in (alias,) if isinstance(alias, str) else alias:
                if flat.get(name) is not None:
                    out[col] = flat[name]
                    break
        if col not in out and col in flat:
            out[col] = flat[col]
    return out


def parent_id(account: AccountStore, type_name: str, seq: int) -> str | None:
    """The id of a child row's parent (an invoice line's invoice...)."""
    t = account.tables[type_name]
    parent = t.rt.parent
    if parent is None:
        return None
    pt = account.tables[parent]
    pseq = t.parent_of_generated(pt, seq) if seq < t.n_gen else t.parent_of.get(seq)
    return None if pseq is None or pseq < 0 else pt.id_of(pseq)


def _plain(table: str) -> Deriver:
    def derive(account: AccountStore, type_name: str, seq: int, obj: dict[str, Any]) -> Iterable[Row]:
        return [columns_from(table, obj)]
    return derive


def _child(table: str, parent_column: str) -> Deriver:
    def derive(account: AccountStore, type_name: str, seq: int, obj: dict[str, Any]) -> Iterable[Row]:
        row = columns_from(table, obj)
        if not row.get(parent_column):
            row[parent_column] = parent_id(account, type_name, seq)
        return [row]
    return derive


def _metadata(table: str) -> Deriver:
    id_column = next(c for c in tables()[table].column_names if c not in ("key", "value", "batch_timestamp"))

    def derive(account: AccountStore, type_name: str, seq: int, obj: dict[str, Any]) -> Iterable[Row]:
        meta = obj.get("metadata") or {}
        return [{id_column: obj["id"], "key": k, "value": v} for k, v in sorted(meta.items())]
    return derive


def _plans(account: AccountStore, type_name: str, seq: int, obj: dict[str, Any]) -> Iterable[Row]:
    plan = account.render_plan(seq, True) if obj.get("recurring") else None
    return [columns_from("plans", plan)] if plan else []


def _payout_as_transfer(account: AccountStore, type_name: str, seq: int, obj: dict[str, Any]) -> Iterable[Row]:
    # Sigma's transfers table holds payouts too (po_ ids), dated by their arrival.
    return [columns_from("transfers", obj, {"date": obj.get("arrival_date"), "kind": "payout"})]


_MONTHS_PER = {"day": 12 / 365, "week": 12 / 52, "month": 1.0, "year": 12.0}


def _item_change_events(account: AccountStore, type_name: str, seq: int, obj: dict[str, Any]) -> Iterable[Row]:
    """An item's start, and its end when the subscription ended, with the monthly-normalised
    recurring revenue it adds or removes (Sigma's MRR table, simplified)."""
    price: dict[str, Any] = obj["price"] if isinstance(obj.get("price"), dict) else {}
    sub_id = obj.get("subscription") or parent_id(account, type_name, seq)
    sub = account.render_by_id(sub_id, True) if isinstance(sub_id, str) else None
    if not sub or sub.get("deleted"):
        return []
    qty = obj.get("quantity") or 1
    recurring = price.get("recurring") or {}
    per_month = _MONTHS_PER.get(recurring.get("interval", "month"), 1.0) * (recurring.get("interval_count") or 1)
    mrr = int(round((price.get("unit_amount") or 0) * qty / per_month))
    product = price.get("product")
    base = {"product_id": product.get("id") if isinstance(product, dict) else product, "price_id": price.get("id"),
            "customer_id": sub.get("customer") if isinstance(sub.get("customer"), str) else None,
            "subscription_item_id": obj["id"], "subscription_id": sub.get("id"), "currency": price.get("currency")}
    start = obj.get("created") or sub.get("start_date") or sub.get("created")
    rows = [base | {"event_timestamp": start, "local_event_timestamp": start, "event_type": "ACTIVE_START",
                    "mrr_change": mrr, "quantity_change": qty}]
    ended = sub.get("ended_at")
    if ended and sub.get("status") == "canceled":
        rows.append(base | {"event_timestamp": ended, "local_event_timestamp": ended, "event_type": "ACTIVE_END",
                            "mrr_change": -mrr, "quantity_change": -qty})
    return rows


@dataclass(frozen=True)
class Source:
    table: str  # Sigma table
    type_name: str  # the emulator's type feeding it
    derive: Deriver


def _sources() -> list[Source]:
    plain = {  # Sigma table -> emulator type, one row per object
        "customers": "customers", "charges": "charges", "balance_transactions": "balance_transactions",
        "invoices": "invoices", "invoice_items": "invoiceitems", "subscriptions": "subscriptions",
        "transfers": "transfers", "refunds": "refunds", "disputes": "disputes", "prices": "prices",
        "products": "products", "coupons": "coupons", "payment_intents": "payment_intents",
        "payment_methods": "payment_methods", "setup_intents": "setup_intents", "credit_notes": "credit_notes",
        "promotion_codes": "promotion_codes", "tax_rates": "tax_rates", "early_fraud_warnings": "early_fraud_warnings",
        "subscription_schedules": "subscription_schedules", "checkout_sessions": "checkout_sessions",
        "customer_tax_ids": "tax_ids", "connected_accounts": "accounts",
    }
    out = [Source(t, ty, _plain(t)) for t, ty in plain.items()]
    out += [
        Source("subscription_items", "subscription_items", _child("subscription_items", "subscription_id")),
        Source("invoice_line_items", "invoice_lines", _child("invoice_line_items", "invoice_id")),
        Source("credit_note_line_items", "credit_note_lines", _child("credit_note_line_items", "credit_note_id")),
        Source("checkout_line_items", "checkout_line_items", _child("checkout_line_items", "checkout_session_id")),
        Source("plans", "prices", _plans),
        Source("transfers", "payouts", _payout_as_transfer),
        Source("subscription_item_change_events", "subscription_items", _item_change_events),
    ]
    with_metadata = {s.table: s.type_name for s in out if s.derive.__qualname__.startswith("_plain")}
    with_metadata["subscription_items"] = "subscription_items"
    for table, type_name in with_metadata.items():
        meta = f"{table}_metadata"
        if meta in tables():
            out.append(Source(meta, type_name, _metadata(meta)))
    return out


SOURCES: list[Source] = _sources()

# Types whose rows also read another type's objects: when that type changes, they are derived again
# (an item's change events end when its subscription is canceled).
DEPENDS: dict[str, tuple[str, ...]] = {"subscription_items": ("subscriptions",)}
