"""Checkout sessions and their line items."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from ..errors import invalid, missing_param
from ..filters import NOOP, created_rows_only_filter, enum_filter, field_filter, relation_filter
from ..forms import as_list
from ..generation import DAY, GenerationContext, pick_earlier
from ..objects import id_of
from ..operations import check_params, customer_seq_of, int_param, live_seq, modify, set_fields
from ..registry import action, creates, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from ..store import Matcher, Table
from . import catalog, customers, payments, subscriptions

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


CHECKOUT_STATUSES = ("complete", "expired", "open")  # generated status codes
CHECKOUT_MODES = ("payment", "subscription")


@renders("checkout_sessions")
def render_checkout_session(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["checkout_sessions"]
    obj = from_template("checkout.session")
    cols = table.cols
    created = table.created[row]
    customer_seq = cols["customer"][row]
    status = CHECKOUT_STATUSES[cols["status"][row]]
    mode = CHECKOUT_MODES[cols["mode"][row]]
    offs = table.offsets["checkout_line_items"]
    li = account.tables["checkout_line_items"].cols
    total = sum(catalog.price_amount(account, li["price"][k]) * li["qty"][k] for k in range(offs[row], offs[row + 1]))
    sid = table.codec.encode(row)
    name, email = customers.customer_identity(account, customer_seq) if customer_seq >= 0 else (None, f"guest{row}@example.com")
    obj["id"] = sid
    obj["created"] = created
    obj["livemode"] = livemode
    obj["customer"] = ref_or_none(account, "customers", customer_seq)
    obj["customer_email"] = email if customer_seq < 0 else None
    obj["customer_details"] = {"address": None, "email": email, "name": name, "phone": None, "tax_exempt": "none",
                               "tax_ids": [], "business_name": None, "individual_name": None}
    obj["mode"] = mode
    obj["status"] = status
    obj["payment_status"] = "paid" if status == "complete" else "unpaid"
    obj["amount_subtotal"] = total
    obj["amount_total"] = total
    obj["currency"] = "usd"
    obj["expires_at"] = created + DAY
    obj["url"] = f"https://checkout.stripe.com/c/pay/{sid}" if status == "open" else None
    obj["payment_intent"] = None
    obj["invoice_creation"] = None if mode == "subscription" else obj["invoice_creation"]
    obj["metadata"] = {}
    return obj


@renders("checkout_line_items")
def render_checkout_line_item(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["checkout_line_items"]
    obj = from_template("item")
    price_row = table.cols["price"][row]
    qty = table.cols["qty"][row]
    price = account.render("prices", price_row, livemode)
    amt = catalog.price_amount(account, price_row) * qty
    prod = account.tables["prices"].cols["product"][price_row]
    obj.update({"id": table.codec.encode(row), "amount_subtotal": amt, "amount_total": amt, "amount_discount": 0,
                "amount_tax": 0, "currency": "usd", "description": f"Product {prod}", "price": price,
                "quantity": qty, "metadata": {}})
    return obj


def _session_coupon(ctx: Ctx, params: dict[str, Any]) -> tuple[dict[str, Any], str | None] | None:
    """The coupon of ``discounts[0]`` (a coupon or a promotion code) and the promotion code's id."""
    discounts = as_list(params.get("discounts"))
    if not discounts:
        return None
    first = discounts[0] if isinstance(discounts[0], dict) else {}
    promo_id = first.get("promotion_code")
    if promo_id:
        promo = ctx.render("promotion_codes", live_seq(ctx, "promotion_codes", promo_id, "discounts[0][promotion_code]"))
        coupon_id = (promo.get("promotion") or {}).get("coupon") or promo.get("coupon")
        return ctx.render("coupons", live_seq(ctx, "coupons", id_of(coupon_id), "discounts[0][promotion_code]")), promo["id"]
    if first.get("coupon"):
        return ctx.render("coupons", live_seq(ctx, "coupons", first["coupon"], "discounts[0][coupon]")), None
    raise missing_param("discounts[0][coupon]")


def _line_discount(coupon: dict[str, Any] | None, amount: int, total: int) -> int:
    """This line's share of the coupon: a percentage of it, or the amount off split by subtotal."""
    if coupon is None or total <= 0:
        return 0
    if coupon.get("percent_off") is not None:
        return int(round(amount * float(coupon["percent_off"]) / 100))
    return min(amount, int(coupon.get("amount_off") or 0) * amount // total)


@creates("checkout_sessions")
def create_checkout_session(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"mode", "line_items", "customer", "customer_email", "success_url", "cancel_url", "metadata",
                          "payment_method_types", "client_reference_id", "customer_creation", "subscription_data",
                          "payment_intent_data", "allow_promotion_codes", "expires_at", "ui_mode", "locale", "return_url",
                          "billing_address_collection", "discounts", "automatic_tax", "tax_id_collection", "submit_type",
                          "shipping_address_collection", "phone_number_collection", "consent_collection", "custom_fields",
                          "custom_text", "invoice_creation", "setup_intent_data", "saved_payment_method_options",
                          "payment_method_collection", "currency", "customer_update", "redirect_on_completion"}, ("mode",))
    account = ctx.account
    mode = params["mode"]
    if mode not in ("payment", "subscription", "setup"):
        raise invalid("Invalid mode: must be one of payment, setup, or subscription", param="mode")
    customer = None
    if params.get("customer"):
        customer = account.tables["customers"].id_of(live_seq(ctx, "customers", params["customer"], "customer"))
    items = as_list(params.get("line_items"))
    if mode != "setup" and not items:
        raise missing_param("line_items")
    now = ctx.now()
    seq, obj = account.new_object("checkout_sessions", now)
    li_rows = []
    coupon_promo = _session_coupon(ctx, params)
    coupon, promo_id = coupon_promo if coupon_promo else (None, None)
    priced = []
    for k, it in enumerate(items):
        it = it if isinstance(it, dict) else {}
        price_seq = subscriptions.price_for_item(ctx, it, f"line_items[{k}]")
        price = ctx.render("prices", price_seq)
        qty = int_param(it, "quantity", 1) or 1
        rates = [ctx.render("tax_rates", live_seq(ctx, "tax_rates", r, f"line_items[{k}][tax_rates]"))
                 for r in as_list(it.get("tax_rates"))]
        priced.append((price, qty, (price.get("unit_amount") or 0) * qty, rates))
    subtotal = sum(amt for _, _, amt, _ in priced)
    total = discount_total = tax_total = 0
    discount_obj = None
    if coupon is not None:
        discount_obj = {"id": f"di_{obj['id'][8:32]}", "object": "discount", "checkout_session": obj["id"],
                        "customer": customer, "customer_account": None, "end": None, "invoice": None,
                        "invoice_item": None, "promotion_code": promo_id,
                        "source": {"coupon": coupon["id"], "type": "coupon"}, "start": now, "subscription": None,
                        "subscription_item": None}
    for price, qty, amt, rates in priced:
        off = _line_discount(coupon, amt, subtotal)
        taxes: list[dict[str, Any]] = []
        tax = 0
        for rate in rates:
            one = 0 if rate.get("inclusive") else int(round((amt - off) * float(rate.get("percentage") or 0) / 100))
            taxes.append({"amount": one, "rate": rate, "taxability_reason": None, "taxable_amount": amt - off})
            tax += one
        discount_total, tax_total, total = discount_total + off, tax_total + tax, total + amt - off + tax
        line_seq, line_obj = account.new_object("checkout_line_items", now)
        prod = ctx.render("products", live_seq(ctx, "products", id_of(price["product"]), "line_items"))
        line_obj.update({"amount_discount": off, "amount_subtotal": amt, "amount_tax": tax, "amount_total": amt - off + tax,
                         "currency": price.get("currency", "usd"), "description": prod.get("name"), "price": price["id"],
                         "quantity": qty, "metadata": {},
                         "discounts": [{"amount": off, "discount": discount_obj}] if discount_obj else [],
                         "taxes": taxes})
        li_rows.append((line_seq, line_obj))
    email = params.get("customer_email")
    obj.update({"mode": mode, "status": "open", "payment_status": "unpaid" if mode != "setup" else "no_payment_required",
                "customer": customer, "customer_email": email, "amount_subtotal": subtotal, "amount_total": total,
                "total_details": {"amount_discount": discount_total, "amount_shipping": 0, "amount_tax": tax_total},
                "discounts": [{"coupon": coupon["id"], "promotion_code": promo_id}] if coupon else [],
                "currency": "usd", "expires_at": int_param(params, "expires_at", now + DAY),
                "success_url": params.get("success_url"), "cancel_url": params.get("cancel_url"),
                "client_reference_id": params.get("client_reference_id"),
                "url": f"https://checkout.stripe.com/c/pay/{obj['id']}", "payment_intent": None,
                "subscription": None, "invoice": None, "setup_intent": None,
                "customer_details": None, "payment_method_types": as_list(params.get("payment_method_types")) or ["card"],
                "customer_creation": params.get("customer_creation") or ("if_required" if mode == "payment" else None),
                "invoice_creation": None})
    set_fields(obj, params, {"metadata"})
    account.tables["checkout_sessions"].put(seq, account.dehydrate("checkout_sessions", obj))
    line_table = account.tables["checkout_line_items"]
    for line_seq, line_obj in li_rows:
        line_table.put(line_seq, account.dehydrate("checkout_line_items", line_obj))
        line_table.add_child(seq, line_seq)
    return ctx.render("checkout_sessions", seq)  # Stripe emits no event on creation


@updates("checkout_sessions")
def update_checkout_session(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"metadata", "collected_information", "shipping_options"})
    return modify(ctx, "checkout_sessions", seq, lambda o: set_fields(o, params, {"metadata"}), None)[0]


@action("checkout_sessions", "expire")
def expire_checkout_session(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    cur = ctx.render("checkout_sessions", seq)
    if cur["status"] != "open":
        raise invalid(f"Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout "
                      f"Session has a status of \"{cur['status']}\".")
    after, _ = modify(ctx, "checkout_sessions", seq, lambda o: o.update(status="expired", url=None), None)
    ctx.emit("checkout.session.expired", after)
    return after


@action("checkout_sessions", "complete", control_only=True)
def complete_checkout_session(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    """Control-only (a customer paying on the hosted page): pays and emits checkout.session.completed."""
    account = ctx.account
    cur = ctx.render("checkout_sessions", seq)
    if cur["status"] != "open":
        raise invalid(f"Checkout Session {cur['id']} is {cur['status']}, not open.")
    customer = cur.get("customer")
    email = cur.get("customer_email") or f"buyer{seq}@example.com"
    if not customer and (cur["mode"] == "subscription" or cur.get("customer_creation") == "always"):
        customer = customers.create_customer(ctx, {"email": email})["id"]
    pm = params.get("payment_method") or "pm_card_visa"
    updates: dict[str, Any] = {"status": "complete", "url": None,
                               "payment_status": "paid" if cur["mode"] != "setup" else "no_payment_required",
                               "customer": customer,
                               "customer_details": {"address": None, "email": email, "name": None, "phone": None,
                                                    "tax_exempt": "none", "tax_ids": [], "business_name": None,
                                                    "individual_name": None}}
    if cur["mode"] == "payment" and cur["amount_total"]:
        pi_id, _ = payments.pay_now(ctx, amount=cur["amount_total"], currency=cur["currency"], customer=customer, pm_ident=pm,
                                    description=f"Checkout {cur['id']}")
        updates["payment_intent"] = pi_id
    elif cur["mode"] == "subscription":
        items = []
        for line_seq in account.child_seqs("checkout_line_items", "checkout_sessions", seq):
            li = ctx.render("checkout_line_items", line_seq)
            items.append({"price": id_of(li["price"]), "quantity": li["quantity"]})
        cs = customer_seq_of(ctx, customer)
        if cs is not None:
            cus = ctx.render("customers", cs)
            if not (cus.get("invoice_settings") or {}).get("default_payment_method"):
                pm_seq = customers.resolve_pm(ctx, pm, "payment_method")
                customers.attach_payment_method(ctx, pm_seq, {"customer": customer})
                customers.update_customer(ctx, cs, {"invoice_settings": {"default_payment_method": account.tables["payment_methods"].id_of(pm_seq)}})
        sub = subscriptions.create_subscription(ctx, {"customer": customer, "items": items})
        updates["subscription"] = sub["id"]
        updates["invoice"] = sub.get("latest_invoice")
    elif cur["mode"] == "setup":
        item_seq = customers.create_setup_intent(ctx, {"customer": customer, "payment_method": pm, "confirm": "true"} if customer
                                                 else {"payment_method": pm, "confirm": "true"})
        updates["setup_intent"] = item_seq["id"]
    after, _ = modify(ctx, "checkout_sessions", seq, lambda o: o.update(updates), None)
    ctx.emit("checkout.session.completed", after)
    return after


def customer_details_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    email = value.get("email") if isinstance(value, dict) else None
    if email is None:
        return NOOP
    return field_filter(("customer_details", "email"))(account, t, email)


list_filters("checkout_sessions", {"customer": relation_filter("customer", "customers", ("customer",)),
                                   "customer_details": customer_details_filter,
                                   "payment_intent": created_rows_only_filter(("payment_intent",)),
                                   "payment_link": created_rows_only_filter(("payment_link",)),
                                   "status": enum_filter("status", CHECKOUT_STATUSES, ("status",)),
                                   "subscription": created_rows_only_filter(("subscription",))})


def _add_line_items(gen: GenerationContext, line_items: dict[str, array], created: int, count: int,
                    subscription_mode: bool) -> None:
    random = gen.random
    if subscription_mode:
        recurring_prices = gen.shared["recurring_prices"]
        available = bisect_right(gen.shared["recurring_created"], created) or 1
        for _ in range(count):
            line_items["price"].append(recurring_prices[int(random() * available)])
            line_items["qty"].append(1)
            line_items["created"].append(created)
    else:
        available = bisect_right(gen.created["prices"], created) or 1
        for _ in range(count):
            line_items["price"].append(int(random() * available))
            line_items["qty"].append(1 + int(random() * 2))
            line_items["created"].append(created)


@generation_step(100)
def generate_checkout_sessions(gen: GenerationContext) -> None:
    """1-3 line items each (one session has 12); 30% are subscription checkouts."""
    random = gen.random
    customer_created = gen.created["customers"]
    customer_count = len(customer_created)
    has_recurring = len(gen.shared["recurring_prices"])
    created = gen.timeline.sample(gen.sizes["checkout_sessions"] if len(gen.cols["prices"]["product"]) else 0,
                                  gen.rng, lo=gen.child_lo)
    customer = array("i")
    status = array("b")
    mode = array("b")
    items_of = array("i", [0])
    line_items = {"price": array("i"), "qty": array("H"), "created": array("q")}
    big_session = len(created) // 2 if len(created) >= 2 else -1
    day_ago = gen.end - DAY
    for session, t in enumerate(created):
        customer.append(pick_earlier(customer_created, t, random()) if (customer_count and random() >= 0.2) else -1)
        draw = random()
        status.append((2 if draw < 0.5 else 0) if t >= day_ago else (0 if draw < 0.8 else 1))
        session_mode = 1 if (has_recurring and random() < 0.3) else 0
        mode.append(session_mode)
        count = 12 if session == big_session else 1 + int(random() * 3)
        _add_line_items(gen, line_items, t, count, session_mode == 1)
        items_of.append(len(line_items["price"]))
    gen.created["checkout_sessions"] = created
    gen.created["checkout_line_items"] = line_items["created"]
    gen.cols["checkout_sessions"] = {"customer": customer, "status": status, "mode": mode}
    gen.cols["checkout_line_items"] = {"price": line_items["price"], "qty": line_items["qty"]}
    gen.offsets["checkout_sessions"] = {"checkout_line_items": items_of}
