"""Disputes, early fraud warnings and reviews: what can go wrong after a charge. Stripe has no
endpoint creating them; the control API (and ``mutate_random``) does.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from ..errors import invalid
from ..filters import relation_filter
from ..generation import DAY, GenerationContext
from ..ids import h
from ..operations import (
    bool_param,
    check_params,
    insert,
    int_param,
    live_seq,
    merge_hashes,
    modify,
    set_fields,
)
from ..registry import action, creates, generation_step, list_filters, renders, updates
from ..rendering import from_template
from . import payments

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


DISPUTE_REASONS = ["fraudulent", "product_not_received", "duplicate", "subscription_canceled", "general"]


@renders("disputes")
def render_dispute(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["disputes"]
    obj = from_template("dispute")
    row_hash = h(table.ns, row)
    c = table.cols["charge"][row]
    created = table.created[row]
    age = account.gen_end - created
    status = ("won", "lost")[row_hash % 2] if age > 30 * DAY else ("needs_response", "under_review")[row_hash % 2]
    obj["id"] = table.codec.encode(row)
    obj["created"] = created
    obj["livemode"] = livemode
    obj["amount"] = payments.charge_amount(account, c)
    obj["charge"] = account.tables["charges"].codec.encode(c)
    obj["payment_intent"] = account.tables["payment_intents"].codec.encode(c)
    obj["currency"] = "usd"
    obj["reason"] = DISPUTE_REASONS[row_hash % len(DISPUTE_REASONS)]
    obj["status"] = status
    obj["is_charge_refundable"] = False
    obj["evidence_details"] = {"due_by": created + 21 * DAY, "has_evidence": status != "needs_response",
                               "past_due": False, "submission_count": 0 if status == "needs_response" else 1,
                               "enhanced_eligibility": {},
                               "submission_method": "not_submitted" if status == "needs_response" else "manual"}
    obj["payment_method_details"]["card"]["case_type"] = "chargeback"
    return obj


@renders("early_fraud_warnings")
def render_early_fraud_warning(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["early_fraud_warnings"]
    obj = from_template("radar.early_fraud_warning")
    row_hash = h(table.ns, row)
    c = table.cols["charge"][row]
    obj.update({"id": table.codec.encode(row), "created": table.created[row], "livemode": livemode,
                "charge": account.tables["charges"].codec.encode(c),
                "payment_intent": account.tables["payment_intents"].codec.encode(c),
                "fraud_type": ("made_with_stolen_card", "unauthorized_use_of_card", "misc")[row_hash % 3],
                "actionable": row_hash % 4 != 0})
    return obj


@renders("reviews")
def render_review(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["reviews"]
    obj = from_template("review")
    row_hash = h(table.ns, row)
    c = table.cols["charge"][row]
    is_open = account.gen_end - table.created[row] < 7 * DAY
    obj.update({"id": table.codec.encode(row), "created": table.created[row], "livemode": livemode,
                "charge": account.tables["charges"].codec.encode(c),
                "payment_intent": account.tables["payment_intents"].codec.encode(c), "open": is_open,
                "opened_reason": ("rule", "manual")[row_hash % 2], "reason": "rule" if is_open else ("approved", "refunded")[row_hash % 2],
                "closed_reason": None if is_open else ("approved", "refunded")[row_hash % 2]})
    return obj


@creates("disputes", control_only=True)
def create_dispute(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"charge", "amount", "reason", "status", "metadata"}, ("charge",))
    account = ctx.account
    charge_seq = live_seq(ctx, "charges", params["charge"], "charge")
    charge = ctx.render("charges", charge_seq)
    now = ctx.now()
    seq, obj = account.new_object("disputes", now)
    obj.update({"amount": int_param(params, "amount", charge["amount"]), "charge": charge["id"],
                "payment_intent": charge.get("payment_intent"), "currency": charge["currency"],
                "reason": params.get("reason") or "fraudulent", "status": params.get("status") or "needs_response",
                "balance_transactions": [], "is_charge_refundable": False})
    obj["evidence_details"] = {"due_by": now + 21 * DAY, "has_evidence": False, "past_due": False,
                               "submission_count": 0, "enhanced_eligibility": {}, "submission_method": "not_submitted"}
    set_fields(obj, params, {"metadata"})
    out = insert(ctx, "disputes", seq, obj, "charge.dispute.created")
    account.tables["charges"].put(charge_seq, dict(account.stored("charges", charge_seq), disputed=True))  # no event at Stripe either
    return out


@updates("disputes")
def update_dispute(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"evidence", "metadata", "submit", "intended_submission_method"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, {"metadata"})
        if isinstance(params.get("evidence"), dict):
            o["evidence"] = merge_hashes(o.get("evidence") or {}, params["evidence"])
            o["evidence_details"] = dict(o.get("evidence_details") or {}, has_evidence=True)
        if bool_param(params, "submit", True) and params.get("evidence"):
            o["status"] = "under_review"
            ed = dict(o.get("evidence_details") or {})
            ed["submission_count"] = int(ed.get("submission_count") or 0) + 1
            ed["submission_method"] = "manual"
            o["evidence_details"] = ed

    return modify(ctx, "disputes", seq, fn, "charge.dispute.updated")[0]


@action("disputes", "close")
def close_dispute(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    after, prev = modify(ctx, "disputes", seq, lambda o: o.update(status="lost"), None)
    ctx.emit("charge.dispute.closed", after, prev)
    return after


@creates("early_fraud_warnings", control_only=True)
def create_early_fraud_warning(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"charge", "fraud_type", "actionable"}, ("charge",))
    account = ctx.account
    charge = ctx.render("charges", live_seq(ctx, "charges", params["charge"], "charge"))
    seq, obj = account.new_object("early_fraud_warnings", ctx.now())
    obj.update({"charge": charge["id"], "payment_intent": charge.get("payment_intent"),
                "fraud_type": params.get("fraud_type") or "made_with_stolen_card",
                "actionable": bool_param(params, "actionable", True)})
    return insert(ctx, "early_fraud_warnings", seq, obj, "radar.early_fraud_warning.created")


@updates("early_fraud_warnings")
def update_early_fraud_warning(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"actionable", "fraud_type"})
    return modify(ctx, "early_fraud_warnings", seq, lambda o: set_fields(o, params, {"actionable", "fraud_type"}),
                  "radar.early_fraud_warning.updated")[0]


@creates("reviews", control_only=True)
def create_review(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"charge", "reason"}, ("charge",))
    account = ctx.account
    charge_seq = live_seq(ctx, "charges", params["charge"], "charge")
    charge = ctx.render("charges", charge_seq)
    seq, obj = account.new_object("reviews", ctx.now())
    obj.update({"charge": charge["id"], "payment_intent": charge.get("payment_intent"), "open": True,
                "opened_reason": "rule", "reason": params.get("reason") or "rule", "closed_reason": None})
    out = insert(ctx, "reviews", seq, obj, "review.opened")
    account.tables["charges"].put(charge_seq, dict(account.stored("charges", charge_seq), review=out["id"]))
    return out


@action("reviews", "approve")
def approve_review(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    cur = ctx.render("reviews", seq)
    if not cur.get("open"):
        raise invalid("This review is already closed.")
    after, _ = modify(ctx, "reviews", seq, lambda o: o.update(open=False, reason="approved", closed_reason="approved"), None)
    ctx.emit("review.closed", after)
    return after


_CHARGE_FILTERS = {"charge": relation_filter("charge", "charges", ("charge",)),
                   "payment_intent": relation_filter("charge", "payment_intents", ("payment_intent",))}
list_filters("disputes", _CHARGE_FILTERS)
list_filters("early_fraud_warnings", _CHARGE_FILTERS)
list_filters("reviews", {})


@generation_step(80)
def generate_disputes_and_reviews(gen: GenerationContext) -> None:
    """Disputes, early fraud warnings and reviews, each on a succeeded charge."""
    has_charges = len(gen.created["charges"])
    for name in ("disputes", "early_fraud_warnings", "reviews"):
        created = gen.timeline.sample(gen.sizes[name] if has_charges else 0, gen.rng, lo=gen.child_lo + 1,
                                      bursts=False)
        gen.created[name] = created
        gen.cols[name] = {"charge": array("i", (payments.pick_succeeded_charge(gen, t) for t in created))}
    gen.extra["dispute_by_charge"] = {charge: d for d, charge in enumerate(gen.cols["disputes"]["charge"])}
    gen.extra["review_by_charge"] = {charge: r for r, charge in enumerate(gen.cols["reviews"]["charge"])}
