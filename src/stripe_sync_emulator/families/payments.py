"""Charges, payment intents and refunds."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from ..errors import StripeError, invalid, missing_param
from ..filters import created_rows_only_filter, relation_filter, same_row_filter
from ..forms import as_list, to_bool, to_int
from ..generation import GenerationContext, pick_earlier
from ..ids import b62_hash, h
from ..operations import (
    bool_param,
    check_params,
    insert,
    int_param,
    live_seq,
    modify,
    secret_suffix,
    set_fields,
    set_metadata,
)
from ..registry import action, creates, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from . import balance, customers

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


CHARGE_STATUSES = ("succeeded", "failed", "pending")  # generated status codes


REFUND_REASONS = [None, "requested_by_customer", "duplicate", "fraudulent"]


def charge_amount(account: AccountStore, c: int) -> int:
    row_hash = h(account.tables["charges"].ns, c, 1)
    return 500 + (row_hash % 400) * 125


def refund_amounts(account: AccountStore, charge: int) -> dict[int, int]:
    """Amount of each generated refund of a charge (full or 40% partial, split evenly)."""
    refunds = account.extra["refunds_by_charge"].get(charge)
    if not refunds:
        return {}
    total = charge_amount(account, charge)
    if account.extra["partial_refund"].get(charge):
        total = total * 4 // 10
    each = total // len(refunds)
    out = {r: each for r in refunds}
    out[refunds[0]] += total - each * len(refunds)
    return out


@renders("charges")
def render_charge(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["charges"]
    obj = from_template("charge")
    row_hash = h(table.ns, row)
    cols = table.cols
    status = CHARGE_STATUSES[cols["status"][row]]
    pm = cols["payment_method"][row]
    customer_seq = cols["customer"][row]
    amount = charge_amount(account, row)
    ok = status == "succeeded"
    refunded = sum(refund_amounts(account, row).values()) if ok else 0
    card = customers.card_of(account, pm)
    cid = table.codec.encode(row)
    name, email = customers.customer_identity(account, customer_seq) if customer_seq >= 0 else (f"Guest {row}", None)
    obj["id"] = cid
    obj["created"] = table.created[row]
    obj["livemode"] = livemode
    obj["amount"] = amount
    obj["amount_captured"] = amount if ok else 0
    obj["amount_refunded"] = refunded
    obj["refunded"] = ok and refunded == amount
    obj["captured"] = ok
    obj["paid"] = ok
    obj["status"] = status
    obj["currency"] = "usd"
    obj["customer"] = ref_or_none(account, "customers", customer_seq)
    obj["payment_intent"] = account.tables["payment_intents"].codec.encode(row)
    obj["payment_method"] = account.tables["payment_methods"].codec.encode(pm)
    obj["balance_transaction"] = ref_or_none(account, "balance_transactions", cols["bt"][row])
    obj["description"] = f"Payment {row}" if row_hash % 2 else None
    obj["receipt_email"] = email if row_hash % 3 == 0 else None
    obj["receipt_url"] = f"https://pay.stripe.com/receipts/payment/{cid}"
    obj["calculated_statement_descriptor"] = "EMULATED*STORE"
    obj["billing_details"]["name"] = name
    obj["billing_details"]["email"] = email
    d = account.extra["dispute_by_charge"].get(row)
    obj["disputed"] = d is not None
    r = account.extra["review_by_charge"].get(row)
    obj["review"] = ref_or_none(account, "reviews", r) if r is not None else None
    card_details = obj["payment_method_details"]["card"]
    card_details.update({"brand": card["brand"], "last4": card["last4"], "exp_month": card["exp_month"],
                         "exp_year": card["exp_year"], "fingerprint": card["fingerprint"], "funding": card["funding"],
                         "network": card["brand"], "wallet": None, "installments": None, "amount_authorized": amount})
    card_details["overcapture"] = {"maximum_amount_capturable": amount, "status": "unavailable"}
    if not ok:
        obj["failure_code"] = "card_declined"
        obj["failure_message"] = "Your card was declined."
        obj["outcome"] = {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                          "network_status": "declined_by_network", "reason": "generic_decline", "risk_level": "normal",
                          "risk_score": 41, "seller_message": "The bank did not return any further details with this decline.",
                          "type": "issuer_declined"}
    return obj


@renders("payment_intents")
def render_payment_intent(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["payment_intents"]
    charge_seq = account.tables["charges"]
    obj = from_template("payment_intent")
    ok = charge_seq.cols["status"][row] == 0
    amount = charge_amount(account, row)
    pid = table.codec.encode(row)
    obj["id"] = pid
    obj["created"] = table.created[row]
    obj["livemode"] = livemode
    obj["amount"] = amount
    obj["amount_received"] = amount if ok else 0
    obj["currency"] = "usd"
    obj["customer"] = ref_or_none(account, "customers", charge_seq.cols["customer"][row])
    obj["latest_charge"] = charge_seq.codec.encode(row)
    obj["payment_method"] = None if not ok else account.tables["payment_methods"].codec.encode(charge_seq.cols["payment_method"][row])
    obj["status"] = "succeeded" if ok else "requires_payment_method"
    obj["client_secret"] = f"{pid}_secret_{b62_hash(h(table.ns, row, 9), 25)}"
    obj["automatic_payment_methods"] = None
    if not ok:
        obj["last_payment_error"] = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                                     "message": "Your card was declined.", "charge": charge_seq.codec.encode(row)}
    return obj


@renders("refunds")
def render_refund(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["refunds"]
    obj = from_template("refund")
    row_hash = h(table.ns, row)
    c = table.cols["charge"][row]
    charge_seq = account.tables["charges"]
    obj["id"] = table.codec.encode(row)
    obj["created"] = table.created[row]
    obj["amount"] = refund_amounts(account, c).get(row, 0)
    obj["charge"] = charge_seq.codec.encode(c)
    obj["payment_intent"] = account.tables["payment_intents"].codec.encode(c)
    obj["balance_transaction"] = ref_or_none(account, "balance_transactions", table.cols["bt"][row])
    obj["currency"] = "usd"
    obj["reason"] = REFUND_REASONS[row_hash % len(REFUND_REASONS)]
    obj["customer"] = ref_or_none(account, "customers", charge_seq.cols["customer"][c])
    obj["payment_method"] = account.tables["payment_methods"].codec.encode(charge_seq.cols["payment_method"][c])
    obj["metadata"] = {}
    return obj


def new_charge(ctx: Ctx, *, amount: int, currency: str, customer: str | None, pm: int | None,
               payment_intent: str | None, description: str | None, metadata: Any,
               capture: bool = True, declined: bool = False) -> int:
    account = ctx.account
    seq, obj = account.new_object("charges", ctx.now())
    pm_obj = ctx.render("payment_methods", pm) if pm is not None else None
    card = (pm_obj or {}).get("card") or {}
    ok = not declined
    obj.update({
        "amount": amount, "amount_captured": amount if ok and capture else 0, "amount_refunded": 0,
        "captured": ok and capture, "paid": ok, "status": "succeeded" if ok else "failed", "currency": currency,
        "customer": customer, "payment_intent": payment_intent, "description": description,
        "payment_method": pm_obj["id"] if pm_obj else None, "refunded": False, "disputed": False, "review": None,
        "balance_transaction": None, "receipt_url": f"https://pay.stripe.com/receipts/payment/{obj['id']}",
        "calculated_statement_descriptor": "EMULATED*STORE", "receipt_email": None,
    })
    obj["billing_details"] = dict(obj["billing_details"], name=((pm_obj or {}).get("billing_details") or {}).get("name"))
    card_details = dict(obj["payment_method_details"]["card"])
    card_details.update({k: card.get(k) for k in ("brand", "last4", "exp_month", "exp_year", "fingerprint", "funding")})
    card_details.update({"network": card.get("brand"), "wallet": None, "installments": None, "amount_authorized": amount})
    obj["payment_method_details"] = {"card": card_details, "type": "card"}
    if metadata:
        set_metadata(obj, metadata)
    if declined:
        obj["failure_code"] = "card_declined"
        obj["failure_message"] = "Your card was declined."
        obj["outcome"] = dict(obj["outcome"], network_status="declined_by_network", reason="generic_decline",
                              seller_message="The bank did not return any further details with this decline.",
                              type="issuer_declined")
    elif capture:
        fee = amount * 29 // 1000 + 30
        obj["balance_transaction"] = balance.new_balance_transaction(ctx, "charge", obj["id"], amount, fee, description)
    out = insert(ctx, "charges", seq, obj, None)
    ctx.emit("charge.failed" if declined else "charge.succeeded", out)
    return seq


def card_declined_error(charge_id: str | None, pi: dict[str, Any] | None = None) -> StripeError:
    extra: dict[str, Any] = {"decline_code": "generic_decline"}
    if charge_id:
        extra["charge"] = charge_id
    if pi is not None:
        extra["payment_intent"] = pi
    return StripeError(402, "Your card was declined.", type="card_error", code="card_declined", extra=extra)


def card_declines(ctx: Ctx, pm: int | None) -> bool:
    if pm is None:
        return False
    card = ctx.render("payment_methods", pm).get("card") or {}
    return card.get("last4") in customers.DECLINING_LAST4


CHARGE_UPDATE_FIELDS = frozenset({"description", "metadata", "receipt_email", "fraud_details", "shipping", "transfer_group"})


@creates("charges")
def create_charge(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, CHARGE_UPDATE_FIELDS | {"amount", "currency", "customer", "source", "capture", "statement_descriptor",
                                                 "statement_descriptor_suffix", "application_fee_amount", "on_behalf_of",
                                                 "transfer_data", "payment_method"}, ("amount", "currency"))
    amount = to_int(params["amount"], "amount")
    if amount < 50:
        raise invalid("Amount must be at least $0.50 usd", param="amount", code="amount_too_small")
    customer = None
    if params.get("customer"):
        customer = ctx.account.tables["customers"].id_of(live_seq(ctx, "customers", params["customer"], "customer"))
    src = params.get("source") or params.get("payment_method")
    if not src and customer:
        cus = ctx.render("customers", live_seq(ctx, "customers", customer, "customer"))
        src = (cus.get("invoice_settings") or {}).get("default_payment_method")
    if not src:
        raise missing_param("source")
    pm = customers.resolve_pm(ctx, src, "source", customer)
    declined = card_declines(ctx, pm)
    seq = new_charge(ctx, amount=amount, currency=str(params["currency"]).lower(), customer=customer, pm=pm,
                     payment_intent=None, description=params.get("description"), metadata=params.get("metadata"),
                     capture=bool_param(params, "capture", True), declined=declined)
    if declined:
        raise card_declined_error(ctx.account.tables["charges"].id_of(seq))
    if any(k in params for k in ("receipt_email", "shipping", "transfer_group")):
        return update_charge(ctx, seq, {k: params[k] for k in ("receipt_email", "shipping", "transfer_group") if k in params},
                             silent=True)
    return ctx.render("charges", seq)


@updates("charges")
def update_charge(ctx: Ctx, seq: int, params: dict[str, Any], silent: bool = False) -> dict[str, Any]:
    check_params(params, CHARGE_UPDATE_FIELDS | {"customer"})
    return modify(ctx, "charges", seq, lambda o: set_fields(o, params, CHARGE_UPDATE_FIELDS | {"customer"}),
                  None if silent else "charge.updated")[0]


@action("charges", "capture")
def capture_charge(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"amount", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
                          "application_fee_amount", "transfer_data", "transfer_group"})
    cur = ctx.render("charges", seq)
    if cur.get("captured") or cur.get("status") != "succeeded":
        raise invalid(f"Charge {cur['id']} has already been captured.", code="charge_already_captured")
    amount = int_param(params, "amount", cur["amount"]) or cur["amount"]
    bt = balance.new_balance_transaction(ctx, "charge", cur["id"], amount, amount * 29 // 1000 + 30, cur.get("description"))

    def fn(o: dict[str, Any]) -> None:
        o.update({"captured": True, "amount_captured": amount, "balance_transaction": bt})

    after, prev = modify(ctx, "charges", seq, fn, None)
    ctx.emit("charge.captured", after, prev)
    return after


PAYMENT_INTENT_UPDATE_FIELDS = frozenset({"amount", "currency", "customer", "description", "metadata", "receipt_email",
                                          "setup_future_usage", "shipping", "statement_descriptor", "statement_descriptor_suffix",
                                          "transfer_group", "payment_method_types"})


PAYMENT_INTENT_CREATE_ONLY = frozenset({"payment_method", "confirm", "capture_method", "automatic_payment_methods",
                                        "off_session", "return_url", "confirmation_method", "error_on_requires_action",
                                        "mandate_data", "on_behalf_of", "transfer_data", "application_fee_amount",
                                        "payment_method_options", "use_stripe_sdk", "payment_method_data", "radar_options",
                                        "excluded_payment_method_types", "payment_method_configuration"})


@creates("payment_intents")
def create_payment_intent(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, PAYMENT_INTENT_UPDATE_FIELDS | PAYMENT_INTENT_CREATE_ONLY, ("amount", "currency"))
    account = ctx.account
    amount = to_int(params["amount"], "amount")
    if amount < 50:
        raise invalid("Amount must be at least $0.50 usd", param="amount", code="amount_too_small")
    customer = None
    if params.get("customer"):
        customer = account.tables["customers"].id_of(live_seq(ctx, "customers", params["customer"], "customer"))
    pm = customers.resolve_pm(ctx, params["payment_method"], "payment_method", customer) if params.get("payment_method") else None
    seq, obj = account.new_object("payment_intents", ctx.now())
    apm = params.get("automatic_payment_methods")
    obj.update({
        "amount": amount, "amount_capturable": 0, "amount_received": 0, "currency": str(params["currency"]).lower(),
        "customer": customer, "description": params.get("description"), "latest_charge": None,
        "payment_method": account.tables["payment_methods"].id_of(pm) if pm is not None else None,
        "status": "requires_confirmation" if pm is not None else "requires_payment_method",
        "capture_method": params.get("capture_method") or "automatic",
        "confirmation_method": params.get("confirmation_method") or "automatic",
        "client_secret": f"{obj['id']}_secret_{secret_suffix(ctx, 25)}",
        "automatic_payment_methods": {"enabled": to_bool(apm.get("enabled", "true"), "automatic_payment_methods")}
        if isinstance(apm, dict) else None,
        "payment_method_types": as_list(params.get("payment_method_types")) or ["card"],
        "canceled_at": None, "cancellation_reason": None,
    })
    set_fields(obj, params, {"metadata", "receipt_email", "setup_future_usage", "shipping", "statement_descriptor",
                             "statement_descriptor_suffix", "transfer_group"})
    insert(ctx, "payment_intents", seq, obj, "payment_intent.created")
    if bool_param(params, "confirm"):
        return confirm_payment_intent(ctx, seq, {})
    return ctx.render("payment_intents", seq)


@action("payment_intents", "confirm")
def confirm_payment_intent(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"payment_method", "return_url", "off_session", "receipt_email", "setup_future_usage", "shipping",
                          "mandate_data", "payment_method_options", "use_stripe_sdk", "error_on_requires_action",
                          "capture_method", "payment_method_types", "payment_method_data", "radar_options"})
    account = ctx.account
    cur = ctx.render("payment_intents", seq)
    if cur["status"] in ("succeeded", "canceled", "requires_capture"):
        raise invalid(f"This PaymentIntent's status is {cur['status']}, so it cannot be confirmed.",
                      code="payment_intent_unexpected_state")
    pm_ident = params.get("payment_method") or cur.get("payment_method")
    if not pm_ident:
        raise invalid("You cannot confirm this PaymentIntent because it's missing a payment method.",
                      code="payment_intent_unexpected_state", param="payment_method")
    pm = customers.resolve_pm(ctx, pm_ident, "payment_method", cur.get("customer"))
    declined = card_declines(ctx, pm)
    manual = cur.get("capture_method") == "manual"
    charge_seq = new_charge(ctx, amount=cur["amount"], currency=cur["currency"], customer=cur.get("customer"), pm=pm,
                            payment_intent=cur["id"], description=cur.get("description"), metadata=cur.get("metadata"),
                            capture=not manual, declined=declined)
    ch_id = account.tables["charges"].id_of(charge_seq)

    def fn(o: dict[str, Any]) -> None:
        o["payment_method"] = account.tables["payment_methods"].id_of(pm)
        o["latest_charge"] = ch_id
        if declined:
            o["status"] = "requires_payment_method"
            o["last_payment_error"] = {"type": "card_error", "code": "card_declined",
                                       "decline_code": "generic_decline", "message": "Your card was declined.",
                                       "charge": ch_id}
        elif manual:
            o["status"] = "requires_capture"
            o["amount_capturable"] = o["amount"]
        else:
            o["status"] = "succeeded"
            o["amount_received"] = o["amount"]
            o["last_payment_error"] = None

    after, _ = modify(ctx, "payment_intents", seq, fn, None)
    if declined:
        ctx.emit("payment_intent.payment_failed", after)
        raise card_declined_error(ch_id, after)
    ctx.emit("payment_intent.amount_capturable_updated" if manual else "payment_intent.succeeded", after)
    return after


@action("payment_intents", "capture")
def capture_payment_intent(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"amount_to_capture", "application_fee_amount", "statement_descriptor", "metadata", "final_capture"})
    cur = ctx.render("payment_intents", seq)
    if cur["status"] != "requires_capture":
        raise invalid(f"This PaymentIntent could not be captured because it has a status of {cur['status']}. "
                      "Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
                      code="payment_intent_unexpected_state")
    charge_seq = ctx.account.tables["charges"].seq_of(cur["latest_charge"])
    if charge_seq is not None:
        capture_charge(ctx, charge_seq, {})

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "succeeded", "amount_received": o["amount"], "amount_capturable": 0})

    after, _ = modify(ctx, "payment_intents", seq, fn, None)
    ctx.emit("payment_intent.succeeded", after)
    return after


@action("payment_intents", "cancel")
def cancel_payment_intent(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"cancellation_reason"})
    cur = ctx.render("payment_intents", seq)
    if cur["status"] in ("succeeded", "canceled"):
        raise invalid(f"You cannot cancel this PaymentIntent because it has a status of {cur['status']}.",
                      code="payment_intent_unexpected_state")

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "canceled", "canceled_at": ctx.now(),
                  "cancellation_reason": params.get("cancellation_reason") or "requested_by_customer"})

    after, _ = modify(ctx, "payment_intents", seq, fn, None)
    ctx.emit("payment_intent.canceled", after)
    return after


@updates("payment_intents")
def update_payment_intent(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, PAYMENT_INTENT_UPDATE_FIELDS | {"payment_method"})
    if params.get("customer"):
        live_seq(ctx, "customers", params["customer"], "customer")

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, PAYMENT_INTENT_UPDATE_FIELDS)
        if params.get("payment_method"):
            o["payment_method"] = ctx.account.tables["payment_methods"].id_of(
                customers.resolve_pm(ctx, params["payment_method"], "payment_method", o.get("customer")))
            if o["status"] == "requires_payment_method":
                o["status"] = "requires_confirmation"

    return modify(ctx, "payment_intents", seq, fn, None)[0]  # Stripe has no payment_intent.updated


def pay_now(ctx: Ctx, *, amount: int, currency: str, customer: str | None, pm_ident: Any,
            description: str | None) -> tuple[str, str]:
    """PaymentIntent + Charge that succeed (or raise 402): returns (pi_id, charge_id)."""
    pi = create_payment_intent(ctx, {"amount": amount, "currency": currency, "customer": customer,
                                     "payment_method": pm_ident or "pm_card_visa", "confirm": "true",
                                     "description": description})
    return pi["id"], pi["latest_charge"]


@creates("refunds")
def create_refund(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check_params(p, {"charge", "payment_intent", "amount", "reason", "metadata", "refund_application_fee",
                     "reverse_transfer", "instructions_email", "origin", "currency", "customer"})
    account = ctx.account
    if p.get("charge"):
        charge_seq = live_seq(ctx, "charges", p["charge"], "charge")
    elif p.get("payment_intent"):
        pi = ctx.render("payment_intents", live_seq(ctx, "payment_intents", p["payment_intent"], "payment_intent"))
        if not pi.get("latest_charge") or pi.get("status") != "succeeded":
            raise invalid("This PaymentIntent does not have a successful charge to refund.", param="payment_intent")
        charge_seq = account.live_seq_or_404("charges", pi["latest_charge"], "payment_intent")
    else:
        raise invalid("One of the following params should be provided for this request: payment_intent or charge.")
    charge = ctx.render("charges", charge_seq)
    if charge.get("status") != "succeeded":
        raise invalid(f"Charge {charge['id']} has not succeeded, so it cannot be refunded.", param="charge")
    remaining = charge["amount"] - charge.get("amount_refunded", 0)
    amount = int_param(p, "amount", remaining)
    assert amount is not None
    if remaining <= 0:
        raise invalid(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    if amount > remaining or amount <= 0:
        raise invalid(f"Refund amount (${amount / 100:.2f}) is greater than unrefunded amount on charge "
                      f"(${remaining / 100:.2f})", param="amount", code="amount_too_large")
    reason = p.get("reason") or None
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
        raise invalid("Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                      param="reason")
    seq, obj = account.new_object("refunds", ctx.now())
    obj.update({"amount": amount, "charge": charge["id"], "currency": charge["currency"],
                "payment_intent": charge.get("payment_intent"), "reason": reason, "status": "succeeded",
                "customer": charge.get("customer"), "payment_method": charge.get("payment_method"),
                "receipt_number": None, "source_transfer_reversal": None, "transfer_reversal": None})
    set_fields(obj, p, {"metadata"})
    obj["balance_transaction"] = balance.new_balance_transaction(ctx, "refund", obj["id"], -amount, 0, "REFUND FOR CHARGE")
    table = account.tables["refunds"]
    table.put(seq, account.dehydrate("refunds", obj))
    table.add_child(charge_seq, seq)  # shows up in the charge's embedded refunds list
    out = ctx.render("refunds", seq)
    ctx.emit("refund.created", out)

    def fn(o: dict[str, Any]) -> None:
        o["amount_refunded"] = o.get("amount_refunded", 0) + amount
        o["refunded"] = o["amount_refunded"] >= o["amount"]

    after, prev = modify(ctx, "charges", charge_seq, fn, None)
    ctx.emit("charge.refunded", after, prev)
    return out


@updates("refunds")
def update_refund(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"metadata"})
    return modify(ctx, "refunds", seq, lambda o: set_fields(o, params, {"metadata"}), "refund.updated")[0]


_CHARGE = relation_filter("charge", "charges", ("charge",))
_PAYMENT_INTENT_OF_CHARGE = relation_filter("charge", "payment_intents", ("payment_intent",))
list_filters("charges", {"customer": relation_filter("customer", "customers", ("customer",)),
                         "payment_intent": same_row_filter("payment_intents", ("payment_intent",)),
                         "transfer_group": created_rows_only_filter(("transfer_group",))})
list_filters("payment_intents", {"customer": relation_filter("customer", "customers", ("customer",))})
list_filters("refunds", {"charge": _CHARGE, "payment_intent": _PAYMENT_INTENT_OF_CHARGE})


def pick_succeeded_charge(gen: GenerationContext, created: int) -> int:
    """A charge before ``created``, retried a few times to land on a succeeded one."""
    charge_created = gen.created["charges"]
    status = gen.cols["charges"]["status"]
    charge = pick_earlier(charge_created, created, gen.random())
    for _ in range(6):
        if status[charge] == 0:
            break
        charge = pick_earlier(charge_created, created, gen.random())
    return charge


@generation_step(70)
def generate_charges(gen: GenerationContext) -> None:
    """Charges and their payment intents (they share row numbers; 4% of charges fail)."""
    random = gen.random
    pm_created = gen.created["payment_methods"]
    pm_customer = gen.cols["payment_methods"]["customer"]
    created = gen.timeline.sample(gen.sizes["charges"] if len(pm_created) else 0, gen.rng, lo=gen.child_lo)
    payment_method = array("i")
    customer = array("i")
    status = array("b")
    for t in created:
        pm = pick_earlier(pm_created, t, random())
        payment_method.append(pm)
        customer.append(pm_customer[pm])
        status.append(1 if random() < 0.04 else 0)
    gen.created["charges"] = created
    gen.created["payment_intents"] = created
    balance_transaction = array("i", [-1]) * len(created)  # filled in by the balance step
    gen.cols["charges"] = {"customer": customer, "payment_method": payment_method, "status": status,
                           "bt": balance_transaction}
    gen.cols["payment_intents"] = {"customer": customer}
    _generate_refunds(gen)


def _generate_refunds(gen: GenerationContext) -> None:
    """Refunds of succeeded charges; 40% of refunded charges are refunded partially."""
    created = gen.timeline.sample(gen.sizes["refunds"] if len(gen.created["charges"]) else 0, gen.rng,
                                  lo=gen.child_lo + 1)
    charge_of = array("i", (pick_succeeded_charge(gen, t) for t in created))
    gen.created["refunds"] = created
    gen.cols["refunds"] = {"charge": charge_of, "bt": array("i", [-1]) * len(created)}
    refunds_by_charge: dict[int, list[int]] = {}
    for refund, charge in enumerate(charge_of):
        refunds_by_charge.setdefault(charge, []).append(refund)
    gen.extra["refunds_by_charge"] = refunds_by_charge
    gen.extra["partial_refund"] = {charge: gen.random() < 0.4 for charge in refunds_by_charge}
