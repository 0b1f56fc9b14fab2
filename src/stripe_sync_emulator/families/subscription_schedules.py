"""Subscription schedules."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from ..errors import invalid, missing_param
from ..filters import accepted_not_applied, relation_filter
from ..forms import as_list, to_int
from ..generation import DAY, GenerationContext, pick_earlier
from ..operations import check_params, insert, int_param, live_seq, modify, set_fields
from ..registry import action, creates, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from . import subscriptions

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


SCHEDULE_STATUSES = ("not_started", "active", "completed", "released", "canceled")  # generated status codes


@renders("subscription_schedules")
def render_subscription_schedule(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["subscription_schedules"]
    obj = from_template("subscription_schedule")
    cols = table.cols
    created = table.created[row]
    status = SCHEDULE_STATUSES[cols["status"][row]]
    sub = cols["subscription"][row]
    prices = account.tables["prices"]
    if sub >= 0:
        si_off = account.tables["subscriptions"].offsets["subscription_items"]
        price = account.tables["subscription_items"].cols["price"][si_off[sub]]
    else:
        price = 0
    obj["id"] = table.codec.encode(row)
    obj["created"] = created
    obj["livemode"] = livemode
    obj["customer"] = account.tables["customers"].codec.encode(cols["customer"][row])
    obj["subscription"] = ref_or_none(account, "subscriptions", sub)
    obj["status"] = status
    start = created if status != "not_started" else created + 7 * DAY
    end = start + 365 * DAY
    obj["current_phase"] = {"start_date": start, "end_date": end} if status == "active" else None
    if status == "canceled":
        obj["canceled_at"] = created + DAY
    phase = {
        "add_invoice_items": [], "application_fee_percent": None, "billing_cycle_anchor": None,
        "collection_method": None, "currency": "usd", "default_payment_method": None, "default_tax_rates": [],
        "description": None, "discounts": [], "end_date": end, "invoice_settings": None,
        "items": [{"discounts": [], "metadata": {}, "price": prices.codec.encode(price), "quantity": 1,
                   "tax_rates": [], "plan": prices.codec.encode(price), "billing_thresholds": None}],
        "metadata": {}, "on_behalf_of": None, "proration_behavior": "create_prorations", "start_date": start,
        "transfer_data": None, "trial_end": None, "billing_thresholds": None,
    }
    obj["phases"] = [phase]
    ds = obj["default_settings"]
    ds["transfer_data"] = None
    ds["billing_thresholds"] = None
    return obj


@creates("subscription_schedules")
def create_subscription_schedule(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"customer", "from_subscription", "start_date", "end_behavior", "phases", "metadata",
                          "default_settings", "billing_mode"})
    account = ctx.account
    now = ctx.now()
    sub_id = None
    if params.get("from_subscription"):
        ss = live_seq(ctx, "subscriptions", params["from_subscription"], "from_subscription")
        sub = ctx.render("subscriptions", ss)
        sub_id = sub["id"]
        cid = sub["customer"]
        phases_in = [{"items": [{"price": i["price"]["id"], "quantity": i.get("quantity", 1)}
                                for i in sub["items"]["data"]]}]
    else:
        cid = account.tables["customers"].id_of(live_seq(ctx, "customers", params.get("customer"), "customer"))
        phases_in = as_list(params.get("phases"))
        if not phases_in:
            raise missing_param("phases")
    start = params.get("start_date")
    start_ts = now if start in (None, "", "now") else to_int(start, "start_date")
    phases: list[dict[str, Any]] = []
    t0 = start_ts
    for k, ph in enumerate(phases_in):
        ph = ph if isinstance(ph, dict) else {}
        end = int_param(ph, "end_date") or t0 + 30 * DAY * (int_param(ph, "iterations", 1) or 1)
        items: list[dict[str, Any]] = []
        for j, it in enumerate(as_list(ph.get("items"))):
            price_seq = subscriptions.price_for_item(ctx, it if isinstance(it, dict) else {"price": it}, f"phases[{k}][items][{j}]")
            pid = account.tables["prices"].id_of(price_seq)
            items.append({"billing_thresholds": None, "discounts": [], "metadata": {}, "plan": pid, "price": pid,
                          "quantity": int_param(it, "quantity", 1) if isinstance(it, dict) else 1, "tax_rates": []})
        phases.append({"add_invoice_items": [], "application_fee_percent": None, "billing_cycle_anchor": None,
                       "billing_thresholds": None, "collection_method": None, "currency": "usd",
                       "default_payment_method": None, "default_tax_rates": [], "description": None,
                       "discounts": [], "end_date": end, "invoice_settings": None, "items": items, "metadata": {},
                       "on_behalf_of": None, "proration_behavior": "create_prorations", "start_date": t0,
                       "transfer_data": None, "trial_end": None})
        t0 = end
    seq, obj = account.new_object("subscription_schedules", now)
    active = start_ts <= now
    obj.update({"customer": cid, "subscription": sub_id, "status": "active" if active else "not_started",
                "end_behavior": params.get("end_behavior") or "release", "phases": phases,
                "current_phase": {"start_date": phases[0]["start_date"], "end_date": phases[0]["end_date"]}
                if active and phases else None, "canceled_at": None, "completed_at": None, "released_at": None,
                "released_subscription": None})
    set_fields(obj, params, {"metadata"})
    return insert(ctx, "subscription_schedules", seq, obj, "subscription_schedule.created")


@updates("subscription_schedules")
def update_subscription_schedule(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"metadata", "end_behavior", "phases", "default_settings", "proration_behavior"})
    return modify(ctx, "subscription_schedules", seq, lambda o: set_fields(o, params, {"metadata", "end_behavior"}),
                  "subscription_schedule.updated")[0]


def end_schedule(ctx: Ctx, seq: int, status: str, field: str, event: str) -> dict[str, Any]:
    cur = ctx.render("subscription_schedules", seq)
    if cur["status"] not in ("not_started", "active"):
        raise invalid(f"You cannot {event.split('.')[-1][:-1]} this subscription schedule because it has a "
                      f"status of {cur['status']}.")

    def fn(o: dict[str, Any]) -> None:
        o["status"] = status
        o[field] = ctx.now()
        o["current_phase"] = None
        if status == "released":
            o["released_subscription"] = o.get("subscription")
            o["subscription"] = None

    after, prev = modify(ctx, "subscription_schedules", seq, fn, None)
    ctx.emit(event, after, prev)
    return after


@action("subscription_schedules", "cancel")
def cancel_subscription_schedule(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"invoice_now", "prorate"})
    return end_schedule(ctx, seq, "canceled", "canceled_at", "subscription_schedule.canceled")


@action("subscription_schedules", "release")
def release_subscription_schedule(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"preserve_cancel_date"})
    return end_schedule(ctx, seq, "released", "released_at", "subscription_schedule.released")


list_filters("subscription_schedules", {"customer": relation_filter("customer", "customers", ("customer",)),
                                        "scheduled": accepted_not_applied, "canceled_at": accepted_not_applied,
                                        "completed_at": accepted_not_applied, "released_at": accepted_not_applied})


@generation_step(45)
def generate_subscription_schedules(gen: GenerationContext) -> None:
    """Half of the schedules drive a subscription; the others are not started or canceled."""
    random = gen.random
    sub_created = gen.created["subscriptions"]
    sub_customer = gen.cols["subscriptions"]["customer"]
    sub_status = gen.cols["subscriptions"]["status"]
    created = gen.timeline.sample(gen.sizes["subscription_schedules"], gen.rng, lo=gen.child_lo, bursts=False)
    customer = array("i")
    subscription = array("i")
    status = array("b")
    for t in created:
        if len(sub_created) and random() < 0.5:
            sub = pick_earlier(sub_created, t, random())
            subscription.append(sub)
            customer.append(sub_customer[sub])
            status.append(1 if sub_status[sub] != 3 else 3)
        else:
            subscription.append(-1)
            customer.append(pick_earlier(gen.created["customers"], t, random()))
            status.append(0 if random() < 0.5 else 4)
    gen.created["subscription_schedules"] = created
    gen.cols["subscription_schedules"] = {"customer": customer, "subscription": subscription, "status": status}
