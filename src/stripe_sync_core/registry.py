"""The one registry of supported Stripe object types.

Every part of the engine reads this table: webhook routing, backfill, single-object sync, account
deletion and the schema tests. Adding an object type is one entry here plus one migration.
Stripe event-type strings live here and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from .errors import InvalidInput

DeletionPolicy = Literal["flag", "remove"]


@dataclass(frozen=True)
class NestedList:
    """A list embedded in a parent object that Stripe truncates (to 10 items by default)."""

    field: str
    """Field of the parent holding the list object, e.g. ``lines`` on an invoice."""
    path: str
    """List endpoint of the full list, with ``{id}`` standing for the parent's id."""
    child_table: str | None = None
    """Registry table the items are also stored in, when they have one."""
    parent_field: str | None = None
    """Column of the child table naming the parent (`subscription` on subscription items)."""
    retire_missing: bool = False
    """Children stored earlier but absent from the complete list were removed: record their deletion."""


@dataclass(frozen=True)
class ParentListing:
    """How a type that Stripe lists only per parent is reached."""

    parent_table: str
    path: str
    """List endpoint with ``{parent_id}`` standing for the parent's id."""
    parent_filter: str | None = None
    """Query parameter naming the parent, when ``path`` takes it as a filter instead."""
    expand_on_parent: str | None = None
    """Field of the parent that embeds these children when the parent list asks ``expand[]=data.<field>``."""
    only_with: str | None = None
    """A list endpoint that must hold something for any of these children to exist (an active
    entitlement comes from a feature): when it is empty as a run starts, no parent is asked."""


@dataclass(frozen=True)
class SilentField:
    """A field Stripe changes without an event of the object's own: only another object's event hints at
    it (a dispute's for a charge's `disputed`, a price's for the prices embedded in subscription items).
    An incremental run refreshes the rows such an event may have touched; `verify` calls a difference
    confined to these fields `stale` rather than `changed`.

    Paths are dotted through embedded lists (`items.data.price`: the `price` of every item)."""

    path: str
    after: tuple[str, ...]
    """Event types after which the field may have changed."""
    named_by: tuple[str, ...] = ()
    """Paths in the event's object holding the ids of the rows to refresh (`charge` of a dispute)."""
    holds_id_at: str | None = None
    """Path in the row holding the event object's id (`items.data.price`): rows embedding it are refreshed."""


@dataclass(frozen=True)
class ObjectType:
    """Everything the engine knows about one supported Stripe object type."""

    table: str
    stripe_object: str
    id_prefixes: tuple[str, ...]
    list_path: str | None
    retrieve_path: str | None
    list_filters: frozenset[str] = frozenset({"created"})
    list_params: tuple[tuple[str, str], ...] = ()
    parent: ParentListing | None = None
    parent_column: str | None = None
    """A column filled from the parent's id for objects that do not name their parent themselves."""
    event_types: tuple[str, ...] = ()
    deleted_event_types: tuple[str, ...] = ()
    nested_lists: tuple[NestedList, ...] = ()
    deletion: DeletionPolicy = "flag"
    final_states: frozenset[str] = frozenset()
    status_field: str = "status"
    created_field: str = "created"
    """The field `created[gte]` / `created[lte]` filter on (invoice items call it `date`)."""
    fixture_key: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    includable: tuple[str, ...] = ()
    """Fields Stripe sends only when asked (`expand[]=tiers`): every fetch of this type asks for them,
    so the stored copy is the whole object."""
    volatile: tuple[str, ...] = ()
    """Fields whose value differs between two reads of an unchanged object (signed URLs): `verify`
    ignores them (dotted paths, through embedded lists)."""
    silent_fields: tuple[SilentField, ...] = ()

    @property
    def listable_by_created(self) -> bool:
        return self.list_path is not None and "created" in self.list_filters

    def created_of(self, obj: dict) -> int | None:
        value = obj.get(self.created_field)
        return value if isinstance(value, int) else None

    def is_final(self, obj: dict) -> bool:
        """True when the payload is in a state that never changes again, so it can be trusted as is."""
        return bool(self.final_states) and obj.get(self.status_field) in self.final_states


def _entry(table: str, stripe_object: str, prefixes: Iterable[str], list_path: str | None,
           retrieve_path: str | None, **kwargs) -> ObjectType:
    kwargs.setdefault("fixture_key", stripe_object)
    return ObjectType(table, stripe_object, tuple(prefixes), list_path, retrieve_path, **kwargs)


PRICE_EVENTS = ("price.updated",)
PLAN_EVENTS = ("plan.updated",)
INVOICE_EVENTS_NAMING_ITEMS = ("invoice.created", "invoice.updated", "invoice.finalized")

_ENTRIES: tuple[ObjectType, ...] = (
    _entry("accounts", "account", ["acct_"], "/v1/accounts", "/v1/accounts/{id}",
           event_types=("account.updated",), aliases=("account",)),
    _entry("customers", "customer", ["cus_"], "/v1/customers", "/v1/customers/{id}",
           list_filters=frozenset({"created", "email"}),
           event_types=("customer.created", "customer.updated", "customer.deleted"),
           deleted_event_types=("customer.deleted",), aliases=("customer",)),
    _entry("products", "product", ["prod_"], "/v1/products", "/v1/products/{id}",
           list_filters=frozenset({"created", "active"}),
           event_types=("product.created", "product.updated", "product.deleted"),
           deleted_event_types=("product.deleted",), aliases=("product",)),
    _entry("prices", "price", ["price_"], "/v1/prices", "/v1/prices/{id}",
           list_filters=frozenset({"created", "active", "product"}),
           event_types=("price.created", "price.updated", "price.deleted"),
           deleted_event_types=("price.deleted",), aliases=("price",), includable=("tiers", "currency_options")),
    _entry("plans", "plan", ["plan_"], "/v1/plans", "/v1/plans/{id}",
           list_filters=frozenset({"created", "active", "product"}),
           event_types=("plan.created", "plan.updated", "plan.deleted"),
           deleted_event_types=("plan.deleted",), aliases=("plan",), includable=("tiers",)),
    _entry("coupons", "coupon", [], "/v1/coupons", "/v1/coupons/{id}",
           event_types=("coupon.created", "coupon.updated", "coupon.deleted"),
           deleted_event_types=("coupon.deleted",), aliases=("coupon",), includable=("currency_options",)),
    _entry("promotion_codes", "promotion_code", ["promo_"], "/v1/promotion_codes",
           "/v1/promotion_codes/{id}", list_filters=frozenset({"created", "customer", "active"}),
           event_types=("promotion_code.created", "promotion_code.updated"), aliases=("promotion_code",)),
    _entry("tax_rates", "tax_rate", ["txr_"], "/v1/tax_rates", "/v1/tax_rates/{id}",
           list_filters=frozenset({"created", "active"}),
           event_types=("tax_rate.created", "tax_rate.updated"), aliases=("tax_rate",)),
    _entry("subscriptions", "subscription", ["sub_"], "/v1/subscriptions", "/v1/subscriptions/{id}",
           list_filters=frozenset({"created", "customer", "status", "price"}),
           list_params=(("status", "all"),),
           event_types=(
               "customer.subscription.created", "customer.subscription.deleted",
               "customer.subscription.paused", "customer.subscription.pending_update_applied",
               "customer.subscription.pending_update_expired", "customer.subscription.resumed",
               "customer.subscription.trial_will_end", "customer.subscription.updated",
           ),
           nested_lists=(NestedList("items", "/v1/subscription_items?subscription={id}", "subscription_items",
                                     parent_field="subscription", retire_missing=True),),
           final_states=frozenset({"canceled", "incomplete_expired"}), aliases=("subscription",),
           silent_fields=(SilentField("items.data.price", PRICE_EVENTS, holds_id_at="items.data.price"),
                          SilentField("items.data.plan", PLAN_EVENTS, holds_id_at="items.data.plan"))),
    _entry("subscription_items", "subscription_item", ["si_"], None, "/v1/subscription_items/{id}",
           list_filters=frozenset(),
           parent=ParentListing("subscriptions", "/v1/subscription_items", parent_filter="subscription"),
           aliases=("subscription_item",),
           silent_fields=(SilentField("price", PRICE_EVENTS, holds_id_at="price"),
                          SilentField("plan", PLAN_EVENTS, holds_id_at="plan"))),
    _entry("subscription_schedules", "subscription_schedule", ["sub_sched_"], "/v1/subscription_schedules",
           "/v1/subscription_schedules/{id}", list_filters=frozenset({"created", "customer"}),
           event_types=(
               "subscription_schedule.aborted", "subscription_schedule.canceled",
               "subscription_schedule.completed", "subscription_schedule.created",
               "subscription_schedule.expiring", "subscription_schedule.released",
               "subscription_schedule.updated",
           ),
           final_states=frozenset({"canceled", "completed", "released"}), aliases=("subscription_schedule",)),
    _entry("invoices", "invoice", ["in_"], "/v1/invoices", "/v1/invoices/{id}",
           list_filters=frozenset({"created", "customer", "subscription", "status"}),
           event_types=(
               "invoice.created", "invoice.deleted", "invoice.finalized", "invoice.finalization_failed",
               "invoice.marked_uncollectible", "invoice.paid", "invoice.payment_action_required",
               "invoice.payment_failed", "invoice.payment_succeeded", "invoice.sent", "invoice.upcoming",
               "invoice.updated", "invoice.voided", "invoice.overdue", "invoice.will_be_due",
           ),
           deleted_event_types=("invoice.deleted",),
           nested_lists=(NestedList("lines", "/v1/invoices/{id}/lines"),),
           final_states=frozenset({"void"}), aliases=("invoice",),
           volatile=("hosted_invoice_url", "invoice_pdf")),
    _entry("invoice_items", "invoiceitem", ["ii_"], "/v1/invoiceitems", "/v1/invoiceitems/{id}",
           list_filters=frozenset({"created", "customer", "invoice"}),
           event_types=("invoiceitem.created", "invoiceitem.updated", "invoiceitem.deleted"),
           deleted_event_types=("invoiceitem.deleted",), created_field="date",
           aliases=("invoice_item", "invoiceitem"),
           # Invoicing a pending item sets its `invoice` with no invoiceitem event: the invoice's lines name it.
           silent_fields=(SilentField("invoice", INVOICE_EVENTS_NAMING_ITEMS, named_by=(
               "lines.data.parent.invoice_item_details.invoice_item", "lines.data.invoice_item")),)),
    _entry("credit_notes", "credit_note", ["cn_"], "/v1/credit_notes", "/v1/credit_notes/{id}",
           list_filters=frozenset({"created", "customer", "invoice"}),
           event_types=("credit_note.created", "credit_note.updated", "credit_note.voided"),
           nested_lists=(NestedList("lines", "/v1/credit_notes/{id}/lines"),),
           final_states=frozenset({"void"}), aliases=("credit_note",)),
    _entry("charges", "charge", ["ch_", "py_"], "/v1/charges", "/v1/charges/{id}",
           list_filters=frozenset({"created", "customer", "payment_intent"}),
           event_types=(
               "charge.captured", "charge.expired", "charge.failed", "charge.pending", "charge.refunded",
               "charge.succeeded", "charge.updated",
           ),
           nested_lists=(NestedList("refunds", "/v1/refunds?charge={id}", "refunds", parent_field="charge"),),
           final_states=frozenset({"failed", "succeeded"}), aliases=("charge",), volatile=("receipt_url",),
           # A dispute sets its charge's `disputed` without a charge event.
           silent_fields=(SilentField("disputed", ("charge.dispute.created", "charge.dispute.closed"),
                                      named_by=("charge",)),)),
    _entry("refunds", "refund", ["re_", "pyr_"], "/v1/refunds", "/v1/refunds/{id}",
           list_filters=frozenset({"created", "charge", "payment_intent"}),
           event_types=("refund.created", "refund.failed", "refund.updated", "charge.refund.updated"),
           final_states=frozenset({"failed", "canceled"}), aliases=("refund",)),
    _entry("disputes", "dispute", ["dp_", "du_"], "/v1/disputes", "/v1/disputes/{id}",
           list_filters=frozenset({"created", "charge", "payment_intent"}),
           event_types=(
               "charge.dispute.closed", "charge.dispute.created", "charge.dispute.funds_reinstated",
               "charge.dispute.funds_withdrawn", "charge.dispute.updated",
           ),
           final_states=frozenset({"won", "lost"}), aliases=("dispute",)),
    _entry("payment_intents", "payment_intent", ["pi_"], "/v1/payment_intents", "/v1/payment_intents/{id}",
           list_filters=frozenset({"created", "customer"}),
           event_types=(
               "payment_intent.amount_capturable_updated", "payment_intent.canceled", "payment_intent.created",
               "payment_intent.partially_funded", "payment_intent.payment_failed", "payment_intent.processing",
               "payment_intent.requires_action", "payment_intent.succeeded",
           ),
           final_states=frozenset({"canceled", "succeeded"}), aliases=("payment_intent",)),
    _entry("payment_methods", "payment_method", ["pm_", "card_", "src_", "ba_"], None,
           "/v1/payment_methods/{id}", list_filters=frozenset({"type"}),
           parent=ParentListing("customers", "/v1/customers/{parent_id}/payment_methods"),
           event_types=(
               "payment_method.attached", "payment_method.automatically_updated", "payment_method.detached",
               "payment_method.updated",
           ),
           aliases=("payment_method",)),
    _entry("setup_intents", "setup_intent", ["seti_"], "/v1/setup_intents", "/v1/setup_intents/{id}",
           list_filters=frozenset({"created", "customer", "payment_method"}),
           event_types=(
               "setup_intent.canceled", "setup_intent.created", "setup_intent.requires_action",
               "setup_intent.setup_failed", "setup_intent.succeeded",
           ),
           final_states=frozenset({"canceled", "succeeded"}), aliases=("setup_intent",)),
    _entry("payouts", "payout", ["po_"], "/v1/payouts", "/v1/payouts/{id}",
           list_filters=frozenset({"created", "status", "arrival_date"}),
           event_types=(
               "payout.canceled", "payout.created", "payout.failed", "payout.paid",
               "payout.reconciliation_completed", "payout.updated",
           ),
           final_states=frozenset({"paid", "failed", "canceled"}), aliases=("payout",)),
    _entry("balance_transactions", "balance_transaction", ["txn_"], "/v1/balance_transactions",
           "/v1/balance_transactions/{id}", list_filters=frozenset({"created", "payout", "type", "source"}),
           final_states=frozenset({"available"}), aliases=("balance_transaction",)),
    _entry("transfers", "transfer", ["tr_"], "/v1/transfers", "/v1/transfers/{id}",
           list_filters=frozenset({"created", "destination"}),
           event_types=("transfer.created", "transfer.reversed", "transfer.updated"), aliases=("transfer",)),
    _entry("checkout_sessions", "checkout.session", ["cs_"], "/v1/checkout/sessions",
           "/v1/checkout/sessions/{id}",
           list_filters=frozenset({"created", "customer", "payment_intent", "subscription", "status"}),
           event_types=(
               "checkout.session.async_payment_failed", "checkout.session.async_payment_succeeded",
               "checkout.session.completed", "checkout.session.expired",
           ),
           nested_lists=(NestedList("line_items", "/v1/checkout/sessions/{id}/line_items",
                                    "checkout_session_line_items", parent_field="checkout_session",
                                    retire_missing=True),),
           final_states=frozenset({"complete", "expired"}),
           aliases=("checkout_session", "checkout.session"),
           silent_fields=(SilentField("line_items.data.price", PRICE_EVENTS, holds_id_at="line_items.data.price"),)),
    _entry("checkout_session_line_items", "item", ["li_"], None, None, list_filters=frozenset(),
           parent=ParentListing("checkout_sessions", "/v1/checkout/sessions/{parent_id}/line_items",
                                expand_on_parent="line_items"),
           parent_column="checkout_session", deletion="remove", aliases=("checkout_session_line_item",),
           includable=("discounts", "taxes"),
           silent_fields=(SilentField("price", PRICE_EVENTS, holds_id_at="price"),)),
    _entry("tax_ids", "tax_id", ["txi_"], None, "/v1/tax_ids/{id}", list_filters=frozenset(),
           parent=ParentListing("customers", "/v1/customers/{parent_id}/tax_ids", expand_on_parent="tax_ids"),
           event_types=("customer.tax_id.created", "customer.tax_id.deleted", "customer.tax_id.updated"),
           deleted_event_types=("customer.tax_id.deleted",), deletion="remove", aliases=("tax_id",)),
    _entry("early_fraud_warnings", "radar.early_fraud_warning", ["issfr_"], "/v1/radar/early_fraud_warnings",
           "/v1/radar/early_fraud_warnings/{id}", list_filters=frozenset({"created", "charge", "payment_intent"}),
           event_types=("radar.early_fraud_warning.created", "radar.early_fraud_warning.updated"),
           aliases=("early_fraud_warning", "radar.early_fraud_warning")),
    _entry("reviews", "review", ["prv_"], "/v1/reviews", "/v1/reviews/{id}",
           event_types=("review.closed", "review.opened"),
           # A review is final once closed; Stripe then sets `closed_reason`.
           final_states=frozenset({"approved", "refunded", "refunded_as_fraud", "disputed", "redacted",
                                   "canceled", "payment_never_settled", "acknowledged"}),
           status_field="closed_reason", aliases=("review",)),
    _entry("features", "entitlements.feature", ["feat_"], "/v1/entitlements/features",
           "/v1/entitlements/features/{id}", list_filters=frozenset({"lookup_key", "archived"}),
           aliases=("feature", "entitlements.feature")),
    _entry("active_entitlements", "entitlements.active_entitlement", ["ent_"], None,
           "/v1/entitlements/active_entitlements/{id}", list_filters=frozenset(),
           parent=ParentListing("customers", "/v1/entitlements/active_entitlements", parent_filter="customer",
                                only_with="/v1/entitlements/features"),
           parent_column="customer",
           event_types=("entitlements.active_entitlement_summary.updated",),
           deletion="remove", aliases=("active_entitlement", "customer_with_entitlements")),
)

MAX_EXPAND_DEPTH = 4
"""Stripe expands at most four levels (`data.line_items.data.discounts`)."""
MAX_EXPANSIONS = 20
"""A ceiling on `expand[]` values per request; the engine asks for far fewer (a test checks it)."""

REGISTRY: dict[str, ObjectType] = {entry.table: entry for entry in _ENTRIES}
"""Supported object types by table name, in dependency order (parents before children)."""

EVENT_TYPES: dict[str, ObjectType] = {
    event_type: entry for entry in _ENTRIES for event_type in entry.event_types
}
"""Every routed webhook event type and the object type it carries."""

ENTITLEMENT_SUMMARY_EVENT = "entitlements.active_entitlement_summary.updated"
UPCOMING_INVOICE_EVENT = "invoice.upcoming"

_BY_STRIPE_OBJECT: dict[str, ObjectType] = {entry.stripe_object: entry for entry in _ENTRIES}
_BY_NAME: dict[str, ObjectType] = {
    name: entry for entry in _ENTRIES for name in (entry.table, entry.stripe_object, *entry.aliases)
}
_PREFIXES: list[tuple[str, ObjectType]] = sorted(
    ((prefix, entry) for entry in _ENTRIES for prefix in entry.id_prefixes),
    key=lambda pair: len(pair[0]), reverse=True,
)


class UnknownObjectType(InvalidInput, KeyError):
    """Raised for a name, id or `object` value that names no supported type."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a sentence.
        return str(self.args[0])


def object_type(name: str) -> ObjectType:
    """Look a type up by table name, Stripe `object` value or alias (`customer`, `checkout_sessions`...)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        supported = ", ".join(sorted(REGISTRY))
        raise UnknownObjectType(f"unknown object type {name!r}; supported: {supported}") from None


def object_type_for_stripe_object(stripe_object: str) -> ObjectType | None:
    return _BY_STRIPE_OBJECT.get(stripe_object)


_STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,255}")


def object_type_for_id(object_id: str) -> ObjectType:
    """The type of an object from its id prefix (the longest matching prefix wins: `sub_sched_` over `sub_`).

    Only a well-formed id is accepted (letters, digits, underscores): this is the door for ids typed
    by people and scripts (`sync ID`)."""
    if not _STRIPE_ID.fullmatch(object_id):
        raise UnknownObjectType(f"{object_id!r} is not a Stripe object id (letters, digits and underscores only)")
    for prefix, entry in _PREFIXES:
        if object_id.startswith(prefix):
            return entry
    raise UnknownObjectType(f"cannot tell the object type of {object_id!r} from its id prefix")


def includable_expansions(entry: ObjectType, prefix: str = "") -> list[str]:
    """`expand[]` values asking for `entry`'s includable fields, each under `prefix` (`data.` on a list)."""
    return [f"{prefix}{name}" for name in entry.includable]


def retrieve_expansions(entry: ObjectType, nested_fields: Iterable[str] = ()) -> list[str]:
    """`expand[]` values of a retrieve of `entry`: its includable fields, the nested lists named (which
    Stripe sends only when expanded) and, inside those, their items' includable fields."""
    out = includable_expansions(entry)
    for name in nested_fields:
        out.append(name)
        nested = next((n for n in entry.nested_lists if n.field == name), None)
        child = REGISTRY.get(nested.child_table or "") if nested is not None else None
        if child is not None:
            out += includable_expansions(child, f"{name}.data.")
    return checked_expansions(out)


def checked_expansions(paths: list[str]) -> list[str]:
    """`paths`, after checking they stay within Stripe's limits (a registry mistake, not a runtime state)."""
    if len(paths) > MAX_EXPANSIONS or any(len(p.split(".")) > MAX_EXPAND_DEPTH for p in paths):
        raise RuntimeError(f"expansions beyond Stripe's limits: {paths}")
    return paths


def object_path(template: str, **ids: str) -> str:
    """A Stripe path with ids put in, each percent-encoded, so an id from a webhook body or a command
    line stays one path segment (`cus_x/../../charges/ch_1` cannot reach another endpoint)."""
    return template.format(**{name: quote(str(value), safe="") for name, value in ids.items()})


class UnexpectedObject(InvalidInput, ValueError):
    """Stripe answered with an object of another type than the one asked for: nothing is stored."""


def check_object(entry: ObjectType, obj: dict, object_id: str) -> dict:
    """`obj` if it is the `entry` object `object_id`; raises `UnexpectedObject` otherwise."""
    if obj.get("object") != entry.stripe_object or obj.get("id") != object_id:
        raise UnexpectedObject(f"asked Stripe for {entry.stripe_object} {object_id!r}, got "
                               f"{obj.get('object')!r} {obj.get('id')!r}: not stored")
    return obj


def values_at(obj: object, path: str) -> list:
    """The values at a dotted path, through embedded lists (`items.data.price` gives every item's
    price); an embedded object stands for its id where a path ends at a reference."""
    current: list = [obj]
    for name in path.split("."):
        found: list = []
        for value in current:
            if isinstance(value, dict) and name in value:
                inner = value[name]
                found.extend(inner if isinstance(inner, list) else [inner])
        current = found
    return current


def ids_at(obj: object, path: str) -> set[str]:
    """The object ids a path holds: strings, or the `id` of embedded objects."""
    out = set()
    for value in values_at(obj, path):
        ref = value.get("id") if isinstance(value, dict) else value
        if isinstance(ref, str) and ref:
            out.add(ref)
    return out


def expand_only_lists(entry: ObjectType) -> list[str]:
    """Nested lists of `entry`, stored in a child table, that Stripe sends only when asked to expand
    them (`line_items` of a checkout session)."""
    return [n.field for n in entry.nested_lists if n.child_table and any(
        e.parent is not None and e.parent.parent_table == entry.table and e.parent.expand_on_parent == n.field
        for e in REGISTRY.values())]
