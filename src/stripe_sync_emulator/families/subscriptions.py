"""Subscriptions and their items."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import StripeError, invalid, missing_param
from ..events import previous_attributes
from ..filters import EMPTY_ROWS, NOOP, accepted_not_applied, always, field_filter, relation_filter
from ..forms import as_list, to_int
from ..generation import DAY, GenerationContext, pick_earlier
from ..ids import h
from ..objects import id_of
from ..operations import (
    EntitlementWatch,
    bool_param,
    check_params,
    customer_seq_of,
    int_param,
    live_seq,
    modify,
    remove,
    set_fields,
    set_metadata,
)
from ..registry import action, creates, deletes, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from ..store import Matcher, Table
from . import catalog, customers, invoices

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


SUBSCRIPTION_STATUSES = ("active", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "trialing",
                         "paused")  # generated status codes
ACTIVE_SUB_STATUSES = ("active", "trialing", "past_due")  # the statuses that grant entitlements


def billing_period(created: int, interval_days: int, ref: int) -> tuple[int, int]:
    if ref <= created:
        return created, created + interval_days * DAY
    k = (ref - created) // (interval_days * DAY)
    start = created + k * interval_days * DAY
    return start, start + interval_days * DAY


def item_period(account: AccountStore, created: int, price: int) -> tuple[int, int]:
    kind = account.tables["prices"].cols["kind"][price]
    return billing_period(created, 365 if kind == 2 else 30, account.gen_end)


@renders("subscriptions")
def render_subscription(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["subscriptions"]
    obj = from_template("subscription")
    row_hash = h(table.ns, row)
    created = table.created[row]
    cols = table.cols
    status = SUBSCRIPTION_STATUSES[cols["status"][row]]
    customer_seq = cols["customer"][row]
    obj["id"] = table.codec.encode(row)
    obj["created"] = created
    obj["livemode"] = livemode
    obj["customer"] = account.tables["customers"].codec.encode(customer_seq)
    obj["status"] = status
    obj["start_date"] = created
    obj["billing_cycle_anchor"] = created
    obj["currency"] = "usd"
    obj["latest_invoice"] = ref_or_none(account, "invoices", cols["latest_invoice"][row])
    obj["default_payment_method"] = ref_or_none(account, "payment_methods", account.tables["customers"].cols["default_pm"][customer_seq])
    obj["collection_method"] = "send_invoice" if row_hash % 10 == 0 else "charge_automatically"
    obj["days_until_due"] = 30 if row_hash % 10 == 0 else None
    obj["metadata"] = {"seats": str(1 + row_hash % 20)} if row_hash % 3 == 0 else {}
    if status in ("canceled", "incomplete_expired"):
        span = max(1, account.gen_end - created)
        ended = created + DAY + (row_hash >> 8) % span
        obj["canceled_at"] = ended
        obj["ended_at"] = ended
        obj["cancellation_details"] = {"comment": None, "feedback": None, "feedback_option": None,
                                       "reason": ("cancellation_requested", "payment_failed")[(row_hash >> 3) % 2]}
    elif status == "trialing":
        obj["trial_start"] = created
        obj["trial_end"] = created + 14 * DAY
    if status == "active" and row_hash % 17 == 0:
        obj["cancel_at_period_end"] = True
    return obj


@renders("subscription_items")
def render_subscription_item(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["subscription_items"]
    obj = from_template("subscription_item")
    cols = table.cols
    price_row = cols["price"][row]
    created = table.created[row]
    price = account.render("prices", price_row, livemode)
    obj["id"] = table.codec.encode(row)
    obj["created"] = created
    obj["price"] = price
    obj["plan"] = account.render_plan(price_row, livemode)
    obj["quantity"] = cols["qty"][row]
    obj["subscription"] = account.tables["subscriptions"].codec.encode(cols["subscription"][row])
    obj["current_period_start"], obj["current_period_end"] = item_period(account, created, price_row)
    obj["metadata"] = {}
    return obj


SUBSCRIPTION_UPDATE_FIELDS = frozenset({"metadata", "cancel_at_period_end", "cancel_at", "default_payment_method", "description",
                                        "pause_collection", "collection_method", "days_until_due", "trial_end",
                                        "cancellation_details", "default_tax_rates"})


SUBSCRIPTION_IGNORED_PARAMS = frozenset({"payment_behavior", "proration_behavior", "billing_cycle_anchor", "coupon", "discounts",
                                         "promotion_code", "off_session", "automatic_tax", "payment_settings", "trial_from_plan",
                                         "backdate_start_date", "currency", "add_invoice_items", "application_fee_percent",
                                         "transfer_data", "on_behalf_of", "billing_thresholds", "pending_invoice_item_interval",
                                         "trial_settings", "billing_mode", "proration_date", "invoice_settings", "test_clock",
                                         "billing_cycle_anchor_config", "expand"})


def new_item_object(ctx: Ctx, sub_id: str, price_seq: int, qty: int, metadata: Any, created: int) -> tuple[int, dict[str, Any]]:
    account = ctx.account
    seq, obj = account.new_object("subscription_items", created)
    price = ctx.render("prices", price_seq)
    recurring = price.get("recurring") or {}
    if not recurring:
        raise invalid(f"The price specified ({price['id']}) is a one-time price; subscription items need a "
                      "recurring price.", param="items")
    unit_days = {"day": 1, "week": 7, "month": 30, "year": 365}.get(str(recurring.get("interval")), 30)
    days = unit_days * int(recurring.get("interval_count") or 1)
    obj.update({"price": price["id"], "plan": price["id"], "quantity": qty, "subscription": sub_id,
                "current_period_start": created, "current_period_end": created + days * DAY, "discounts": [],
                "tax_rates": [], "billing_thresholds": None})
    if metadata:
        set_metadata(obj, metadata)
    return seq, obj


def price_for_item(ctx: Ctx, item: dict[str, Any], param: str) -> int:
    if item.get("price"):
        return live_seq(ctx, "prices", item["price"], f"{param}[price]")
    if item.get("plan"):
        return live_seq(ctx, "prices", item["plan"], f"{param}[plan]")
    if isinstance(item.get("price_data"), dict):
        price_data = dict(item["price_data"])
        seq, obj = catalog.build_price(ctx, price_data)
        catalog.insert_price(ctx, seq, obj)
        return seq
    raise missing_param(f"{param}[price]")


@creates("subscriptions")
def create_subscription(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, SUBSCRIPTION_UPDATE_FIELDS | SUBSCRIPTION_IGNORED_PARAMS | {"customer", "items", "trial_period_days"}, ("customer",))
    account = ctx.account
    customer_seq = live_seq(ctx, "customers", params["customer"], "customer")
    cid = account.tables["customers"].id_of(customer_seq)
    items = as_list(params.get("items"))
    if not items:
        raise missing_param("items")
    watch = EntitlementWatch(ctx, {customer_seq})
    now = ctx.now()
    seq, obj = account.new_object("subscriptions", now)
    sub_id = obj["id"]
    customer = ctx.render("customers", customer_seq)
    default_pm = params.get("default_payment_method") or None
    if default_pm:
        default_pm = account.tables["payment_methods"].id_of(customers.resolve_pm(ctx, default_pm, "default_payment_method", cid))
    pay_pm = default_pm or (customer.get("invoice_settings") or {}).get("default_payment_method")
    trial_days = int_param(params, "trial_period_days")
    trial_end = params.get("trial_end")
    trial_end_ts = None
    if trial_end == "now":
        trial_end_ts = None
    elif trial_end not in (None, ""):
        trial_end_ts = to_int(trial_end, "trial_end")
    elif trial_days:
        trial_end_ts = now + trial_days * DAY
    obj.update({"customer": cid, "status": "trialing" if trial_end_ts else "active", "start_date": now,
                "billing_cycle_anchor": trial_end_ts or now, "currency": "usd", "default_payment_method": default_pm,
                "collection_method": params.get("collection_method") or "charge_automatically",
                "days_until_due": int_param(params, "days_until_due"), "description": params.get("description"),
                "trial_start": now if trial_end_ts else None, "trial_end": trial_end_ts, "latest_invoice": None,
                "cancel_at_period_end": bool_param(params, "cancel_at_period_end"),
                "cancel_at": int_param(params, "cancel_at"), "default_tax_rates": [], "discounts": []})
    set_fields(obj, params, {"metadata"})
    item_rows = []
    for k, it in enumerate(items):
        it = it if isinstance(it, dict) else {"price": it}
        price_seq = price_for_item(ctx, it, f"items[{k}]")
        qty = int_param(it, "quantity", 1) or 1
        item_rows.append(new_item_object(ctx, sub_id, price_seq, qty, it.get("metadata"), now))
    # Invoice id first so the subscription.created event already carries latest_invoice, as at Stripe.
    inv_seq, inv_obj = account.new_object("invoices", now)
    obj["latest_invoice"] = inv_obj["id"]
    account.tables["subscriptions"].put(seq, account.dehydrate("subscriptions", obj))
    for new_item_seq, new_item in item_rows:
        account.tables["subscription_items"].put(new_item_seq, account.dehydrate("subscription_items", new_item))
        account.tables["subscription_items"].add_child(seq, new_item_seq)
    ctx.emit("customer.subscription.created", ctx.render("subscriptions", seq))
    lines = []
    for _iseq, new_item in item_rows:
        price = ctx.render("prices", account.tables["prices"].seq_of(new_item["price"]) or 0)
        unit = 0 if trial_end_ts else (price.get("unit_amount") or 0)
        lines.append({"price": price, "quantity": new_item["quantity"], "amount": unit * new_item["quantity"],
                      "subscription_item": new_item["id"], "description": f"{new_item['quantity']} × {price['product']}"})
    invoices.build_invoice(ctx, inv_seq, inv_obj, customer_seq, sub_id=sub_id, lines=lines, billing_reason="subscription_create",
                           collection_method=obj["collection_method"])
    if obj["collection_method"] == "charge_automatically":
        invoices.finalize_invoice(ctx, inv_seq, {})
        try:
            invoices.pay_invoice(ctx, inv_seq, {"payment_method": pay_pm} if pay_pm else {})
        except StripeError as exc:
            if exc.status != 402:
                raise
            modify(ctx, "subscriptions", seq, lambda o: o.update(status="incomplete"), "customer.subscription.updated")
    watch.done()
    return ctx.render("subscriptions", seq)


@updates("subscriptions")
def update_subscription(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, SUBSCRIPTION_UPDATE_FIELDS | SUBSCRIPTION_IGNORED_PARAMS | {"items"})
    account = ctx.account
    cur = ctx.render("subscriptions", seq)
    if cur["status"] in ("canceled", "incomplete_expired"):
        raise invalid("A canceled subscription can only update its cancellation_details and metadata.",
                      param=next(iter(params), None))
    customer_seq = customer_seq_of(ctx, cur.get("customer"))
    watch = EntitlementWatch(ctx, {customer_seq} if customer_seq is not None else set())
    before = cur
    now = ctx.now()
    items_t = account.tables["subscription_items"]
    for k, it in enumerate(as_list(params.get("items"))):
        if not isinstance(it, dict):
            raise invalid("Invalid array", param="items")
        if it.get("id"):
            item_seq = live_seq(ctx, "subscription_items", it["id"], f"items[{k}][id]")
            if bool_param(it, "deleted"):
                items_t.delete(item_seq)
                continue
            apply_item_update(ctx, item_seq, it, f"items[{k}]")
        else:
            price_seq = price_for_item(ctx, it, f"items[{k}]")
            new_item_seq, new_item = new_item_object(ctx, cur["id"], price_seq, int_param(it, "quantity", 1) or 1, it.get("metadata"), now)
            items_t.put(new_item_seq, account.dehydrate("subscription_items", new_item))
            items_t.add_child(seq, new_item_seq)

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, SUBSCRIPTION_UPDATE_FIELDS - {"trial_end", "default_payment_method"})
        if "default_payment_method" in params:
            default_pm = params["default_payment_method"]
            o["default_payment_method"] = (account.tables["payment_methods"].id_of(
                customers.resolve_pm(ctx, default_pm, "default_payment_method", o.get("customer"))) if default_pm else None)
        if "trial_end" in params:
            te = params["trial_end"]
            if te == "now":
                o["trial_end"] = now
                if o["status"] == "trialing":
                    o["status"] = "active"
            else:
                o["trial_end"] = to_int(te, "trial_end")
        pc = params.get("pause_collection")
        if pc == "":
            o["pause_collection"] = None

    account.tables["subscriptions"].put(seq, changed_copy(account, "subscriptions", seq, fn))
    after = ctx.render("subscriptions", seq)
    prev = previous_attributes(before, after)
    if prev:
        ctx.emit("customer.subscription.updated", after, prev)
    watch.done()
    return after


def changed_copy(account: AccountStore, name: str, seq: int, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = account.stored(name, seq)
    fn(obj)
    return obj


def apply_item_update(ctx: Ctx, item_seq: int, it: dict[str, Any], param: str) -> None:
    account = ctx.account

    def fn(o: dict[str, Any]) -> None:
        if it.get("price") or it.get("plan") or it.get("price_data"):
            price_seq = price_for_item(ctx, it, param)
            o["price"] = o["plan"] = account.tables["prices"].id_of(price_seq)
        if "quantity" in it:
            o["quantity"] = to_int(it["quantity"], f"{param}[quantity]")
        if "metadata" in it:
            set_metadata(o, it["metadata"])

    account.tables["subscription_items"].put(item_seq, changed_copy(account, "subscription_items", item_seq, fn))


def cancel_subscription_now(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "canceled", "canceled_at": now, "ended_at": now})
        cd = params.get("cancellation_details")
        o["cancellation_details"] = {"comment": (cd or {}).get("comment") if isinstance(cd, dict) else None,
                                     "feedback": (cd or {}).get("feedback") if isinstance(cd, dict) else None,
                                     "feedback_option": None, "reason": "cancellation_requested"}

    account = ctx.account
    account.tables["subscriptions"].put(seq, changed_copy(account, "subscriptions", seq, fn))
    after = ctx.render("subscriptions", seq)
    ctx.emit("customer.subscription.deleted", after)
    return after


@action("subscriptions", "cancel")
@deletes("subscriptions")
def cancel_subscription(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"invoice_now", "prorate", "cancellation_details"})
    cur = ctx.render("subscriptions", seq)
    if cur["status"] in ("canceled", "incomplete_expired"):
        raise StripeError(404, f"No such subscription: '{cur['id']}'", code="resource_missing", param="id")
    customer_seq = customer_seq_of(ctx, cur.get("customer"))
    watch = EntitlementWatch(ctx, {customer_seq} if customer_seq is not None else set())
    out = cancel_subscription_now(ctx, seq, params)
    watch.done()
    return out


def change_with_parent_event(ctx: Ctx, sub_seq: int, change: Callable[[], Any]) -> Any:
    """Run ``change`` (an item edit) and emit ``customer.subscription.updated`` on the parent."""
    before = ctx.render("subscriptions", sub_seq)
    customer_seq = customer_seq_of(ctx, before.get("customer"))
    watch = EntitlementWatch(ctx, {customer_seq} if customer_seq is not None else set())
    result = change()
    after = ctx.render("subscriptions", sub_seq)
    prev = previous_attributes(before, after)
    if prev:
        ctx.emit("customer.subscription.updated", after, prev)
    watch.done()
    return result


@creates("subscription_items")
def create_subscription_item(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"subscription", "price", "plan", "price_data", "quantity", "metadata", "proration_behavior",
                          "payment_behavior", "tax_rates", "discounts", "proration_date", "billing_thresholds"}, ("subscription",))
    account = ctx.account
    sub = live_seq(ctx, "subscriptions", params["subscription"], "subscription")
    sub_id = account.tables["subscriptions"].id_of(sub)

    def change() -> dict[str, Any]:
        price_seq = price_for_item(ctx, params, "items")
        new_item_seq, new_item = new_item_object(ctx, sub_id, price_seq, int_param(params, "quantity", 1) or 1, params.get("metadata"), ctx.now())
        table = account.tables["subscription_items"]
        table.put(new_item_seq, account.dehydrate("subscription_items", new_item))
        table.add_child(sub, new_item_seq)
        return ctx.render("subscription_items", new_item_seq)

    return change_with_parent_event(ctx, sub, change)


def parent_subscription_of(ctx: Ctx, item_seq: int) -> int:
    item = ctx.render("subscription_items", item_seq)
    return ctx.account.live_seq_or_404("subscriptions", item["subscription"], "subscription")


@updates("subscription_items")
def update_subscription_item(ctx: Ctx, item_seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"price", "plan", "price_data", "quantity", "metadata", "proration_behavior", "payment_behavior",
                          "tax_rates", "discounts", "proration_date", "off_session", "billing_thresholds"})

    def change() -> dict[str, Any]:
        apply_item_update(ctx, item_seq, params, "")
        return ctx.render("subscription_items", item_seq)

    return change_with_parent_event(ctx, parent_subscription_of(ctx, item_seq), change)


@deletes("subscription_items")
def delete_subscription_item(ctx: Ctx, item_seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"proration_behavior", "proration_date", "clear_usage"})
    sub = parent_subscription_of(ctx, item_seq)
    if len(ctx.account.child_seqs("subscription_items", "subscriptions", sub)) <= 1:
        raise invalid("A subscription must have at least one active plan. To cancel a subscription, please use "
                      "the cancel API endpoint on /v1/subscriptions.", param="id")
    return change_with_parent_event(ctx, sub, lambda: remove(ctx, "subscription_items", item_seq, None))


def subscription_status_in(account: AccountStore, t: Table, statuses: tuple[str, ...]) -> Matcher:

    codes = {SUBSCRIPTION_STATUSES.index(s) for s in statuses if s in SUBSCRIPTION_STATUSES}
    arr = t.cols.get("status")
    if arr is None:
        return Matcher(None, lambda s, o: o.get("status") in statuses)
    return Matcher(lambda i: arr[i] in codes, lambda s, o: o.get("status") in statuses)


def subscription_status_filter(account: AccountStore, t: Table, value: Any) -> Matcher:

    if value is None:  # Stripe's default: everything but canceled subscriptions
        return subscription_status_in(account, t, tuple(s for s in SUBSCRIPTION_STATUSES if s != "canceled"))
    v = str(value)
    if v == "all":
        return NOOP
    if v == "ended":
        return subscription_status_in(account, t, ("canceled", "incomplete_expired"))
    if v not in SUBSCRIPTION_STATUSES:
        raise invalid("Invalid status: must be one of active, past_due, unpaid, canceled, incomplete, "
                      "incomplete_expired, trialing, paused, all, or ended", param="status")
    return subscription_status_in(account, t, (v,))


def subscription_price_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    want = str(value)
    items = account.tables["subscription_items"]
    pseq = account.tables["prices"].seq_of(want)
    subs: set[int] = set()
    if pseq is not None and pseq < account.tables["prices"].n_gen:
        for item_seq in items.index("price").get(pseq, EMPTY_ROWS):
            subs.add(items.cols["subscription"][item_seq])
    for item_seq, row in items.rows.items():
        if id_of(row.get("price")) == want:
            parent = items.parent_of.get(item_seq)
            if parent is None and item_seq < items.n_gen:
                parent = items.cols["subscription"][item_seq]
            if parent is not None:
                subs.add(parent)
    cands = array("i", sorted(s for s in subs if s < t.n_gen))
    return Matcher(always, lambda s, o: s in subs, cands)


list_filters("subscriptions", {"customer": relation_filter("customer", "customers", ("customer",)),
                               "price": subscription_price_filter, "status": subscription_status_filter,
                               "collection_method": field_filter(("collection_method",)),
                               "test_clock": accepted_not_applied, "automatic_tax": accepted_not_applied,
                               "current_period_end": accepted_not_applied,
                               "current_period_start": accepted_not_applied},
             defaults=("status",))  # Stripe leaves canceled subscriptions out unless asked for


def _generated_status(random: Callable[[], float], created: int, recent: int) -> int:
    draw = random()
    if created >= recent:
        return 6 if draw < 0.25 else (4 if draw < 0.3 else 0)
    return 3 if draw < 0.15 else 1 if draw < 0.18 else 2 if draw < 0.19 else 5 if draw < 0.2 else 0


def _generated_item_count(random: Callable[[], float], is_big: bool) -> int:
    draw = random()
    if is_big or draw < 0.005:
        return 11 + int(random() * 15)
    if draw < 0.05:
        return 4 + int(random() * 6)
    if draw < 0.15:
        return 3
    return 2 if draw < 0.4 else 1


@generation_step(40)
def generate_subscriptions(gen: GenerationContext) -> None:
    """Subscriptions with contiguous items (an item's created is its subscription's)."""
    random = gen.random
    recurring_prices = gen.shared["recurring_prices"]
    recurring_created = gen.shared["recurring_created"]
    customer_created = gen.created["customers"]
    count = gen.sizes["subscriptions"] if recurring_prices else 0
    created = gen.timeline.sample(count, gen.rng, lo=gen.child_lo)
    customer = array("i")
    status = array("b")
    items_of = array("i", [0])
    item_subscription = array("i")
    item_price = array("i")
    item_quantity = array("H")
    item_created = array("q")
    recent = gen.end - 7 * DAY
    big_subscription = count // 2 if count >= 3 else -1
    for sub, t in enumerate(created):
        customer.append(pick_earlier(customer_created, t, random()))
        status.append(_generated_status(random, t, recent))
        item_count = _generated_item_count(random, sub == big_subscription)
        available = bisect_right(recurring_created, t) or 1
        first = int(random() * available)
        for k in range(item_count):
            item_subscription.append(sub)
            item_price.append(recurring_prices[(first + k) % available])
            item_quantity.append(1 if random() < 0.8 else 1 + int(random() * 9))
            item_created.append(t)
        items_of.append(len(item_subscription))
    gen.created["subscriptions"] = created
    gen.created["subscription_items"] = item_created
    latest_invoice = array("i", [-1]) * count  # filled in by the invoices step
    gen.cols["subscriptions"] = {"customer": customer, "status": status, "latest_invoice": latest_invoice}
    gen.cols["subscription_items"] = {"subscription": item_subscription, "price": item_price, "qty": item_quantity}
    gen.offsets["subscriptions"] = {"subscription_items": items_of}
