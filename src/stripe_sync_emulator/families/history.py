"""The event history Stripe holds for generated data: events of the objects created in the last 30
days of the generated range (creations, and the updates the generated state implies: invoices
finalized, paid, voided...), as generated rows of the ``events`` table, rendered on demand.

An event of this history carries its object as it is now (for a generated object not changed since,
as it was created); the events the API's changes emit are kept as they were, like Stripe's.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from ..events import RETENTION_SECONDS, build_event
from ..generation import DAY, GenerationContext
from ..registry import generation_step, renders
from ..versions import render_at
from .checkout import CHECKOUT_STATUSES
from .invoices import INVOICE_STATUSES
from .payments import CHARGE_STATUSES

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore

# (event type, source type, seconds after the object's creation when it happens).
EVENT_TYPES: tuple[tuple[str, str, int], ...] = (
    ("customer.created", "customers", 0),
    ("product.created", "products", 0),
    ("price.created", "prices", 0),
    ("coupon.created", "coupons", 0),
    ("promotion_code.created", "promotion_codes", 0),
    ("tax_rate.created", "tax_rates", 0),
    ("payment_method.attached", "payment_methods", 0),
    ("customer.tax_id.created", "tax_ids", 0),
    ("customer.subscription.created", "subscriptions", 0),
    ("subscription_schedule.created", "subscription_schedules", 0),
    ("invoice.created", "invoices", 0),
    ("invoice.finalized", "invoices", 3600),
    ("invoice.paid", "invoices", 3600),
    ("invoice.voided", "invoices", 2 * DAY),
    ("invoice.marked_uncollectible", "invoices", 20 * DAY),
    ("invoiceitem.created", "invoiceitems", 0),
    ("credit_note.created", "credit_notes", 0),
    ("payment_intent.created", "payment_intents", 0),
    ("payment_intent.succeeded", "payment_intents", 0),
    ("payment_intent.payment_failed", "payment_intents", 0),
    ("charge.succeeded", "charges", 0),
    ("charge.failed", "charges", 0),
    ("charge.pending", "charges", 0),
    ("refund.created", "refunds", 0),
    ("charge.dispute.created", "disputes", 0),
    ("radar.early_fraud_warning.created", "early_fraud_warnings", 0),
    ("review.opened", "reviews", 0),
    ("setup_intent.created", "setup_intents", 0),
    ("checkout.session.completed", "checkout_sessions", 0),
    ("checkout.session.expired", "checkout_sessions", DAY),
    ("payout.created", "payouts", 0),
    ("transfer.created", "transfers", 0),
)
_CODE = {typ: k for k, (typ, _, _) in enumerate(EVENT_TYPES)}


def _applies(gen: GenerationContext, typ: str, row: int) -> bool:
    """Whether the generated state of ``row`` implies this event."""
    cols = gen.cols
    if typ.startswith("invoice.") and typ != "invoice.created":
        status = INVOICE_STATUSES[cols["invoices"]["status"][row]]
        return {"invoice.finalized": status != "draft", "invoice.paid": status == "paid",
                "invoice.voided": status == "void", "invoice.marked_uncollectible": status == "uncollectible"}[typ]
    if typ.startswith(("charge.succeeded", "charge.failed", "charge.pending")):
        return typ == "charge." + CHARGE_STATUSES[cols["charges"]["status"][row]]
    if typ in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        ok = cols["charges"]["status"][row] == 0
        return ok if typ == "payment_intent.succeeded" else cols["charges"]["status"][row] == 1
    if typ.startswith("checkout.session."):
        return "checkout.session." + {"complete": "completed", "expired": "expired"}.get(
            CHECKOUT_STATUSES[cols["checkout_sessions"]["status"][row]], "") == typ
    return True


@generation_step(1000)
def generate_event_history(gen: GenerationContext) -> None:
    """No random numbers: the history follows from the data, and no other step's draws move."""
    lo = gen.end - RETENTION_SECONDS
    found: list[tuple[int, int, int]] = []
    for typ, source, delay in EVENT_TYPES:
        created = gen.created.get(source)
        if created is None:
            continue
        code = _CODE[typ]
        for row in range(bisect_left(created, lo - delay), len(created)):
            at = created[row] + delay
            if lo <= at <= gen.end and _applies(gen, typ, row):
                found.append((at, code, row))
    found.sort()
    gen.created["events"] = array("q", (at for at, _, _ in found))
    gen.cols["events"] = {"type": array("b", (code for _, code, _ in found)),
                          "source": array("i", (row for _, _, row in found))}


@renders("events")
def render_history_event(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["events"]
    typ, source, _ = EVENT_TYPES[table.cols["type"][row]]
    obj = account.render(source, table.cols["source"][row], livemode) or {}
    obj = render_at(account, obj, account.api_version, livemode)
    return build_event(account, row, typ, obj, None, created=table.created[row], livemode=livemode,
                       api_version=account.api_version, request_id=None, idempotency_key=None, pending_webhooks=0)


def event_types_matching(match: Any) -> set[int]:
    """Codes of the history's event types ``match(type)`` accepts (for the ``type`` list filter)."""
    return {code for code, (typ, _, _) in enumerate(EVENT_TYPES) if match(typ)}
