"""Customers and what hangs off them directly: payment methods, tax ids and setup intents."""

from __future__ import annotations

import re
from array import array
from typing import TYPE_CHECKING, Any

from ..errors import invalid, missing_param
from ..filters import NOOP, accepted_not_applied, always, field_filter, relation_filter
from ..forms import as_list, to_int
from ..generation import GenerationContext, pick_earlier
from ..ids import b62_hash, h
from ..objects import get_path, id_of
from ..operations import (
    EntitlementWatch,
    bool_param,
    check_params,
    hash_param,
    insert,
    live_seq,
    modify,
    remove,
    secret_suffix,
    set_fields,
)
from ..registry import action, creates, deletes, generation_step, list_filters, renders, updates
from ..rendering import from_template, ref_or_none
from ..store import Matcher, Table
from ..templates import make
from . import subscriptions

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


SETUP_INTENT_STATUSES = ("succeeded", "requires_payment_method", "canceled")  # generated status codes


FIRST_NAMES = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Donald", "Frances", "Edsger", "Radia",
               "Tim", "Hedy", "John", "Sophie", "Guido", "Anita", "Dennis", "Karen", "Niklaus", "Shafi", "Leslie",
               "Jean", "Bjarne", "Lynn", "Yukihiro", "Joan", "Brian", "Mary", "Rob", "Carol", "James"]


LAST_NAMES = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Knuth", "Allen",
              "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "McCarthy", "Wilson", "van Rossum", "Borg", "Ritchie",
              "Jones", "Wirth", "Goldwasser", "Lamport", "Sammet", "Stroustrup", "Conway", "Matsumoto", "Clarke",
              "Kernighan", "Keller", "Pike", "Shaw", "Gosling"]


CITIES = [("Berlin", "DE", "10115", None), ("Paris", "FR", "75001", None), ("London", "GB", "EC1A 1BB", None),
          ("San Francisco", "US", "94103", "CA"), ("New York", "US", "10001", "NY"), ("Austin", "US", "73301", "TX"),
          ("Toronto", "CA", "M5H 2N2", "ON"), ("Sydney", "AU", "2000", "NSW"), ("Dublin", "IE", "D02 X285", None),
          ("Tokyo", "JP", "100-0001", None), ("Madrid", "ES", "28001", None), ("Seattle", "US", "98101", "WA")]


BRANDS = [("visa", "4242"), ("visa", "1881"), ("mastercard", "4444"), ("mastercard", "5100"), ("amex", "8431"),
          ("discover", "1117")]


TAX_ID_TYPES = [("eu_vat", "DE", "DE{0:09d}"), ("eu_vat", "FR", "FRAB{0:09d}"), ("gb_vat", "GB", "GB{0:09d}"),
                ("us_ein", "US", "{0:02d}-{0:07d}"), ("au_abn", "AU", "{0:011d}")]


def customer_identity(account: AccountStore, c: int) -> tuple[str, str]:
    row_hash = h(account.tables["customers"].ns, c)
    first = FIRST_NAMES[row_hash % len(FIRST_NAMES)]
    last = LAST_NAMES[(row_hash >> 8) % len(LAST_NAMES)]
    return f"{first} {last}", f"{first.lower()}.{last.lower().replace(' ', '')}.{c}@example.com"


def card_of(account: AccountStore, pm: int) -> dict[str, Any]:
    row_hash = h(account.tables["payment_methods"].ns, pm, 3)
    brand, last4 = BRANDS[row_hash % len(BRANDS)]
    return {"brand": brand, "last4": last4, "exp_month": 1 + (row_hash >> 8) % 12, "exp_year": 2027 + (row_hash >> 12) % 6,
            "fingerprint": b62_hash(row_hash, 16), "funding": "credit" if (row_hash >> 16) % 4 else "debit",
            "country": "US"}


@renders("customers")
def render_customer(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["customers"]
    obj = from_template("customer")
    row_hash = h(table.ns, row)
    name, email = customer_identity(account, row)
    city, country, postal, state = CITIES[(row_hash >> 16) % len(CITIES)]
    obj["id"] = table.codec.encode(row)
    obj["created"] = table.created[row]
    obj["livemode"] = livemode
    obj["name"] = name
    obj["email"] = email
    obj["phone"] = f"+1555{(row_hash >> 24) % 10_000_000:07d}" if row_hash % 3 else None
    obj["address"] = {"city": city, "country": country, "line1": f"{1 + row_hash % 999} Main Street", "line2": None,
                      "postal_code": postal, "state": state}
    obj["invoice_prefix"] = b62_hash(row_hash, 8).upper()
    obj["description"] = "Generated customer" if row_hash % 4 == 0 else None
    obj["metadata"] = {"segment": ("smb", "mid", "enterprise")[row_hash % 3]} if row_hash % 2 else {}
    pm = table.cols["default_pm"][row]
    obj["invoice_settings"]["default_payment_method"] = ref_or_none(account, "payment_methods", pm)
    obj["next_invoice_sequence"] = 1 + (row_hash >> 40) % 9
    obj["preferred_locales"] = ["en"] if row_hash % 5 == 0 else []
    obj["currency"] = "usd"
    return obj


@renders("payment_methods")
def render_payment_method(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["payment_methods"]
    obj = from_template("payment_method")
    c = table.cols["customer"][row]
    card = card_of(account, row)
    obj["id"] = table.codec.encode(row)
    obj["created"] = table.created[row]
    obj["livemode"] = livemode
    obj["customer"] = ref_or_none(account, "customers", c)
    name, email = customer_identity(account, c) if c >= 0 else (None, None)
    bd = obj["billing_details"]
    bd["name"] = name
    bd["email"] = email
    oc = obj["card"]
    oc.update({"brand": card["brand"], "display_brand": card["brand"], "last4": card["last4"],
               "exp_month": card["exp_month"], "exp_year": card["exp_year"], "fingerprint": card["fingerprint"],
               "funding": card["funding"], "wallet": None, "generated_from": None})
    oc["networks"] = {"available": [card["brand"]], "preferred": None}
    obj["metadata"] = {}
    obj["allow_redisplay"] = "always" if c >= 0 else "unspecified"
    return obj


@renders("tax_ids")
def render_tax_id(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["tax_ids"]
    obj = from_template("tax_id")
    row_hash = h(table.ns, row)
    ttype, country, fmt = TAX_ID_TYPES[row_hash % len(TAX_ID_TYPES)]
    cus = account.tables["customers"].codec.encode(table.cols["customer"][row])
    obj.update({"id": table.codec.encode(row), "created": table.created[row], "livemode": livemode, "customer": cus,
                "owner": {"customer": cus, "type": "customer", "customer_account": None}, "type": ttype,
                "country": country, "value": fmt.format((row_hash >> 8) % 1_000_000_000)})
    obj["verification"] = {"status": ("verified", "pending", "unavailable")[(row_hash >> 40) % 3], "verified_address": None,
                           "verified_name": None}
    return obj


@renders("setup_intents")
def render_setup_intent(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["setup_intents"]
    obj = from_template("setup_intent")
    cols = table.cols
    status = SETUP_INTENT_STATUSES[cols["status"][row]]
    sid = table.codec.encode(row)
    obj.update({"id": sid, "created": table.created[row], "livemode": livemode,
                "customer": ref_or_none(account, "customers", cols["customer"][row]),
                "payment_method": account.tables["payment_methods"].codec.encode(cols["payment_method"][row])
                if status == "succeeded" else None,
                "status": status, "client_secret": f"{sid}_secret_{b62_hash(h(table.ns, row, 9), 25)}",
                "cancellation_reason": "abandoned" if status == "canceled" else None,
                "automatic_payment_methods": None})
    return obj


CUSTOMER_FIELDS = frozenset({"name", "email", "description", "phone", "address", "shipping", "metadata", "invoice_settings",
                             "preferred_locales", "tax_exempt", "balance", "invoice_prefix", "next_invoice_sequence"})


CUSTOMER_CREATE_ONLY = frozenset({"payment_method", "tax_id_data", "test_clock", "source", "coupon", "promotion_code",
                                  "validate", "tax", "cash_balance", "default_source", "discounts"})


@creates("customers")
def create_customer(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, CUSTOMER_FIELDS | CUSTOMER_CREATE_ONLY)
    account = ctx.account
    seq, obj = account.new_object("customers", ctx.now())
    obj.update({"address": None, "balance": 0, "currency": None, "discount": None, "shipping": None, "phone": None,
                "description": None, "email": None, "name": None, "delinquent": False, "preferred_locales": [],
                "invoice_prefix": b62_hash(h(account.ns, seq, 11), 8).upper(), "next_invoice_sequence": 1,
                "tax_exempt": "none", "test_clock": None,
                "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                     "rendering_options": None}})
    set_fields(obj, params, CUSTOMER_FIELDS)
    insert(ctx, "customers", seq, obj, "customer.created")
    if params.get("payment_method"):
        attach_payment_method(ctx, resolve_pm(ctx, params["payment_method"], "payment_method"), {"customer": obj["id"]})
    for td in as_list(params.get("tax_id_data")):
        create_customer_tax_id(ctx, seq, td if isinstance(td, dict) else {})
    return ctx.render("customers", seq)


@updates("customers")
def update_customer(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, CUSTOMER_FIELDS | CUSTOMER_CREATE_ONLY - {"payment_method", "tax_id_data"})
    inv = params.get("invoice_settings")
    if isinstance(inv, dict) and inv.get("default_payment_method"):
        live_seq(ctx, "payment_methods", inv["default_payment_method"], "invoice_settings[default_payment_method]")
    after, _ = modify(ctx, "customers", seq, lambda o: set_fields(o, params, CUSTOMER_FIELDS), "customer.updated")
    return after


@deletes("customers")
def delete_customer(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.account
    cid = account.tables["customers"].id_of(seq)
    watch = EntitlementWatch(ctx, {seq})
    for s in account.all_seqs("subscriptions", account.filters_from("subscriptions", {"customer": cid}, set())):
        subscriptions.cancel_subscription_now(ctx, s, {})
    out = remove(ctx, "customers", seq, "customer.deleted")
    watch.before.pop(seq, None)
    watch.done()
    return out


MAGIC_CARDS = {"visa": ("visa", "4242"), "visa_debit": ("visa", "5556"), "mastercard": ("mastercard", "4444"),
               "amex": ("amex", "8431"), "discover": ("discover", "1117"), "us": ("visa", "4242"),
               "chargeDeclined": ("visa", "0002"), "chargeDeclinedInsufficientFunds": ("visa", "9995")}


DECLINING_LAST4 = {"0002", "9995"}


def new_card_payment_method(ctx: Ctx, brand: str, last4: str, customer: str | None = None,
                            params: dict[str, Any] | None = None) -> int:
    account = ctx.account
    seq, obj = account.new_object("payment_methods", ctx.now())
    row_hash = h(account.ns, seq, 21)
    obj["type"] = "card"
    obj["customer"] = customer
    obj["allow_redisplay"] = "unspecified"
    obj["billing_details"] = {"address": None, "email": None, "name": None, "phone": None, "tax_id": None}
    card = dict(make("payment_method")["card"])
    card.update({"brand": brand, "display_brand": brand, "last4": last4, "exp_month": 1 + row_hash % 12,
                 "exp_year": 2028 + (row_hash >> 8) % 5, "fingerprint": b62_hash(row_hash, 16), "wallet": None,
                 "generated_from": None, "networks": {"available": [brand], "preferred": None}})
    obj["card"] = card
    if params:
        set_fields(obj, params, {"billing_details", "metadata", "allow_redisplay"})
    insert(ctx, "payment_methods", seq, obj, None)
    return seq


def resolve_pm(ctx: Ctx, ident: Any, param: str, customer: str | None = None) -> int:
    """A payment method row; Stripe's test ids (``pm_card_visa``, ``tok_visa``...) create a new one."""
    ident = str(id_of(ident))
    for prefix in ("pm_card_", "tok_"):
        if ident.startswith(prefix):
            brand, last4 = MAGIC_CARDS.get(ident[len(prefix):], ("visa", "4242"))
            return new_card_payment_method(ctx, brand, last4, customer)
    return live_seq(ctx, "payment_methods", ident, param)


@creates("payment_methods")
def create_payment_method(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"type", "card", "billing_details", "metadata", "customer", "payment_method", "allow_redisplay"})
    if params.get("payment_method"):  # cloning onto a connected account: just make a new card
        return ctx.render("payment_methods", resolve_pm(ctx, params["payment_method"], "payment_method"))
    if params.get("type") != "card":
        if not params.get("type"):
            raise missing_param("type")
        raise invalid("The emulator only supports card payment methods.", param="type")
    card = hash_param(params.get("card"))
    number = str(card.get("number") or "")
    token = str(card.get("token") or "")
    if token.startswith("tok_"):
        brand, last4 = MAGIC_CARDS.get(token[4:], ("visa", "4242"))
    else:
        last4 = number[-4:] if len(number) >= 4 else "4242"
        brand = {"4": "visa", "5": "mastercard", "3": "amex", "6": "discover"}.get(number[:1], "visa")
    seq = new_card_payment_method(ctx, brand, last4, None, params)
    return ctx.render("payment_methods", seq)


@action("payment_methods", "attach")
def attach_payment_method(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"customer"}, ("customer",))
    c = live_seq(ctx, "customers", params["customer"], "customer")
    cid = ctx.account.tables["customers"].id_of(c)

    def fn(o: dict[str, Any]) -> None:
        o["customer"] = cid

    after, _ = modify(ctx, "payment_methods", seq, fn, None)
    ctx.emit("payment_method.attached", after)
    return after


@action("payment_methods", "detach")
def detach_payment_method(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, set())
    cur = ctx.render("payment_methods", seq)
    if not cur.get("customer"):
        raise invalid("The payment method you provided is not attached to a customer so detachment is impossible.",
                      param="payment_method")

    def fn(o: dict[str, Any]) -> None:
        o["customer"] = None

    after, prev = modify(ctx, "payment_methods", seq, fn, None)
    ctx.emit("payment_method.detached", after, prev)
    return after


@updates("payment_methods")
def update_payment_method(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"billing_details", "metadata", "card", "allow_redisplay"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, {"billing_details", "metadata", "allow_redisplay"})
        if isinstance(params.get("card"), dict):
            card = dict(o.get("card") or {})
            for k in ("exp_month", "exp_year"):
                if k in params["card"]:
                    card[k] = to_int(params["card"][k], f"card[{k}]")
            o["card"] = card

    return modify(ctx, "payment_methods", seq, fn, "payment_method.updated")[0]


def create_customer_tax_id(ctx: Ctx, customer_seq: int, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("type"):
        raise missing_param("type")
    if not params.get("value"):
        raise missing_param("value")
    account = ctx.account
    cid = account.tables["customers"].id_of(customer_seq)
    country = next((country for kind, country, _ in TAX_ID_TYPES if kind == params["type"]), None)
    if country is None and "_" in str(params["type"]):
        country = str(params["type"]).split("_")[0].upper()
    seq, obj = account.new_object("tax_ids", ctx.now())
    obj.update({"customer": cid, "owner": {"customer": cid, "type": "customer", "customer_account": None},
                "type": params["type"], "value": params["value"], "country": country,
                "verification": {"status": "pending", "verified_address": None, "verified_name": None}})
    return insert(ctx, "tax_ids", seq, obj, "customer.tax_id.created")


@creates("tax_ids")
def create_tax_id(ctx: Ctx, params: dict[str, Any], customer_seq: int | None = None) -> dict[str, Any]:
    if customer_seq is None:
        check_params(params, {"type", "value", "owner"}, ("type", "value"))
        owner = hash_param(params.get("owner"))
        if owner.get("type") not in (None, "customer"):
            raise invalid("The emulator only supports customer-owned tax ids.", param="owner[type]")
        customer_seq = live_seq(ctx, "customers", owner.get("customer"), "owner[customer]")
    else:
        check_params(params, {"type", "value"}, ("type", "value"))
    return create_customer_tax_id(ctx, customer_seq, params)


@deletes("tax_ids")
def delete_tax_id(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    return remove(ctx, "tax_ids", seq, "customer.tax_id.deleted")


@creates("setup_intents")
def create_setup_intent(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"customer", "payment_method", "confirm", "usage", "metadata", "payment_method_types", "description",
                          "automatic_payment_methods", "return_url", "single_use", "on_behalf_of", "mandate_data",
                          "attach_to_self", "flow_directions", "payment_method_options", "use_stripe_sdk",
                          "payment_method_data", "payment_method_configuration", "excluded_payment_method_types"})
    account = ctx.account
    customer = None
    if params.get("customer"):
        customer = account.tables["customers"].id_of(live_seq(ctx, "customers", params["customer"], "customer"))
    seq, obj = account.new_object("setup_intents", ctx.now())
    pm = resolve_pm(ctx, params["payment_method"], "payment_method") if params.get("payment_method") else None
    obj.update({"customer": customer, "description": params.get("description"), "usage": params.get("usage") or "off_session",
                "payment_method": account.tables["payment_methods"].id_of(pm) if pm is not None else None,
                "status": "requires_confirmation" if pm is not None else "requires_payment_method",
                "client_secret": f"{obj['id']}_secret_{secret_suffix(ctx, 25)}",
                "payment_method_types": as_list(params.get("payment_method_types")) or ["card"],
                "automatic_payment_methods": None, "latest_attempt": None, "mandate": None})
    set_fields(obj, params, {"metadata"})
    insert(ctx, "setup_intents", seq, obj, "setup_intent.created")
    if bool_param(params, "confirm"):
        return confirm_setup_intent(ctx, seq, {})
    return ctx.render("setup_intents", seq)


@action("setup_intents", "confirm")
def confirm_setup_intent(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"payment_method", "return_url", "mandate_data", "payment_method_options", "use_stripe_sdk",
                          "payment_method_data"})
    cur = ctx.render("setup_intents", seq)
    if cur["status"] in ("succeeded", "canceled"):
        raise invalid(f"This SetupIntent's status is {cur['status']}, so it cannot be confirmed.",
                      code="setup_intent_unexpected_state")
    pm_ident = params.get("payment_method") or cur.get("payment_method") or "pm_card_visa"
    pm = resolve_pm(ctx, pm_ident, "payment_method")
    pm_id = ctx.account.tables["payment_methods"].id_of(pm)
    if cur.get("customer") and ctx.render("payment_methods", pm).get("customer") != cur["customer"]:
        attach_payment_method(ctx, pm, {"customer": cur["customer"]})

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "succeeded", "payment_method": pm_id})

    after, _ = modify(ctx, "setup_intents", seq, fn, None)
    ctx.emit("setup_intent.succeeded", after)
    return after


@action("setup_intents", "cancel")
def cancel_setup_intent(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"cancellation_reason"})
    cur = ctx.render("setup_intents", seq)
    if cur["status"] in ("succeeded", "canceled"):
        raise invalid(f"You cannot cancel this SetupIntent because it has a status of {cur['status']}.",
                      code="setup_intent_unexpected_state")

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "canceled", "cancellation_reason": params.get("cancellation_reason") or "requested_by_customer"})

    after, _ = modify(ctx, "setup_intents", seq, fn, None)
    ctx.emit("setup_intent.canceled", after)
    return after


@updates("setup_intents")
def update_setup_intent(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"customer", "description", "metadata", "payment_method", "payment_method_types", "flow_directions"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, {"customer", "description", "metadata"})
        if params.get("payment_method"):
            o["payment_method"] = ctx.account.tables["payment_methods"].id_of(
                resolve_pm(ctx, params["payment_method"], "payment_method"))

    return modify(ctx, "setup_intents", seq, fn, None)[0]  # no setup_intent.updated event at Stripe


_EMAIL_ROW = re.compile(r"\.(\d+)@example\.com$")


def customer_email_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    """Generated emails end in ``.<row>@example.com``: check_params that one row instead of rendering all."""
    want = str(value)
    m = _EMAIL_ROW.search(want)
    cands = array("i")
    if m and int(m.group(1)) < t.n_gen:
        i = int(m.group(1))
        obj = account.render("customers", i, False)
        if obj is not None and obj.get("email") == want:
            cands.append(i)
    return Matcher(always, lambda s, o: o.get("email") == want, cands)


def tax_owner_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    if not isinstance(value, dict):
        raise invalid("Invalid hash", param="owner")
    typ = value.get("type")
    if typ and typ != "customer":
        return Matcher(None, lambda s, o: get_path(o, ("owner", "type")) == typ)
    cus = value.get("customer")
    if cus:
        return relation_filter("customer", "customers", ("customer",))(account, t, cus)
    return NOOP


_CUSTOMER = relation_filter("customer", "customers", ("customer",))
list_filters("customers", {"email": customer_email_filter, "test_clock": accepted_not_applied})
list_filters("payment_methods", {"customer": _CUSTOMER, "type": field_filter(("type",))})
list_filters("tax_ids", {"owner": tax_owner_filter, "customer": _CUSTOMER})
list_filters("setup_intents", {"customer": _CUSTOMER,
                               "payment_method": relation_filter("payment_method", "payment_methods",
                                                                 ("payment_method",)),
                               "attach_to_self": accepted_not_applied})


@generation_step(30)
def generate_customers(gen: GenerationContext) -> None:
    """Customers, their payment methods (the first is the default) and tax ids."""
    random = gen.random
    customer_count = gen.sizes["customers"]
    customer_created = gen.timeline.sample(customer_count, gen.rng, first_at_start=True)
    gen.created["customers"] = customer_created
    pm_created = gen.timeline.sample(gen.sizes["payment_methods"], gen.rng, lo=gen.child_lo)
    pm_customer = array("i", (pick_earlier(customer_created, t, random()) if (customer_count and random() >= 0.1)
                              else -1 for t in pm_created))
    gen.created["payment_methods"] = pm_created
    gen.cols["payment_methods"] = {"customer": pm_customer}
    default_pm = array("i", [-1]) * customer_count
    for pm, customer in enumerate(pm_customer):
        if customer >= 0 and default_pm[customer] < 0:
            default_pm[customer] = pm
    gen.cols["customers"] = {"default_pm": default_pm}
    tax_id_created = gen.timeline.sample(gen.sizes["tax_ids"], gen.rng, lo=gen.child_lo)
    gen.created["tax_ids"] = tax_id_created
    gen.cols["tax_ids"] = {"customer": array("i", (pick_earlier(customer_created, t, random())
                                                   for t in tax_id_created))}


@generation_step(90)
def generate_setup_intents(gen: GenerationContext) -> None:
    random = gen.random
    pm_created = gen.created["payment_methods"]
    pm_customer = gen.cols["payment_methods"]["customer"]
    created = gen.timeline.sample(gen.sizes["setup_intents"] if len(pm_created) else 0, gen.rng, lo=gen.child_lo)
    payment_method = array("i", (pick_earlier(pm_created, t, random()) for t in created))
    gen.created["setup_intents"] = created
    gen.cols["setup_intents"] = {
        "payment_method": payment_method,
        "customer": array("i", (pm_customer[pm] for pm in payment_method)),
        "status": array("b", (0 if r < 0.85 else 1 if r < 0.95 else 2 for r in (random() for _ in created))),
    }
