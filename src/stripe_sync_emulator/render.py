"""Renderers: generated row number -> Stripe object, built from the template on demand.

Each renderer reads the row's compact columns and derives the rest (names, amounts, card
details) from a hash of the row, so nothing per object is stored. Embedded lists (``items``,
``lines``, ``refunds``) are added by the account store for every row, generated or not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .generator import (
    CHARGE_STATUS,
    CS_MODE,
    CS_STATUS,
    INV_STATUS,
    PRICE_KIND,
    SCHED_STATUS,
    SETI_STATUS,
    SUB_STATUS,
)
from .ids import b62_hash, h
from .templates import maker

if TYPE_CHECKING:  # pragma: no cover
    from .account import AccountStore

DAY = 86400
MONTH = 30 * DAY

FIRST = ["Ada", "Alan", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Donald", "Frances", "Edsger", "Radia",
         "Tim", "Hedy", "John", "Sophie", "Guido", "Anita", "Dennis", "Karen", "Niklaus", "Shafi", "Leslie",
         "Jean", "Bjarne", "Lynn", "Yukihiro", "Joan", "Brian", "Mary", "Rob", "Carol", "James"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Knuth", "Allen",
        "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "McCarthy", "Wilson", "van Rossum", "Borg", "Ritchie",
        "Jones", "Wirth", "Goldwasser", "Lamport", "Sammet", "Stroustrup", "Conway", "Matsumoto", "Clarke",
        "Kernighan", "Keller", "Pike", "Shaw", "Gosling"]
CITIES = [("Berlin", "DE", "10115", None), ("Paris", "FR", "75001", None), ("London", "GB", "EC1A 1BB", None),
          ("San Francisco", "US", "94103", "CA"), ("New York", "US", "10001", "NY"), ("Austin", "US", "73301", "TX"),
          ("Toronto", "CA", "M5H 2N2", "ON"), ("Sydney", "AU", "2000", "NSW"), ("Dublin", "IE", "D02 X285", None),
          ("Tokyo", "JP", "100-0001", None), ("Madrid", "ES", "28001", None), ("Seattle", "US", "98101", "WA")]
ADJ = ["Basic", "Pro", "Team", "Enterprise", "Starter", "Growth", "Premium", "Ultra", "Lite", "Plus", "Max", "Core"]
NOUN = ["Plan", "Seats", "Storage", "Support", "Analytics", "API Access", "Add-on", "Bundle", "License",
        "Credits", "Hosting", "Backup"]
FEATURES = ["SSO", "Audit log", "Priority support", "Custom domains", "API access", "Advanced analytics",
            "Unlimited projects", "Webhooks", "Data export", "Team roles", "SLA", "Sandbox"]
BRANDS = [("visa", "4242"), ("visa", "1881"), ("mastercard", "4444"), ("mastercard", "5100"), ("amex", "8431"),
          ("discover", "1117")]
TAX_RATES = [("VAT", "DE", 19.0, "vat", "VAT Germany"), ("VAT", "FR", 20.0, "vat", "VAT France"),
             ("VAT", "GB", 20.0, "vat", "VAT United Kingdom"), ("Sales Tax", "US", 7.25, "sales_tax", "California"),
             ("GST", "AU", 10.0, "gst", "GST Australia")]
TAX_ID_TYPES = [("eu_vat", "DE", "DE{0:09d}"), ("eu_vat", "FR", "FRAB{0:09d}"), ("gb_vat", "GB", "GB{0:09d}"),
                ("us_ein", "US", "{0:02d}-{0:07d}"), ("au_abn", "AU", "{0:011d}")]
REFUND_REASONS = [None, "requested_by_customer", "duplicate", "fraudulent"]
DISPUTE_REASONS = ["fraudulent", "product_not_received", "duplicate", "subscription_canceled", "general"]

_MK: dict[str, Callable[[], dict[str, Any]]] = {}


def mk(key: str) -> dict[str, Any]:
    f = _MK.get(key)
    if f is None:
        f = _MK[key] = maker(key)
    return f()


# ---- shared derived values --------------------------------------------------------------------

def customer_identity(acc: AccountStore, c: int) -> tuple[str, str]:
    x = h(acc.tables["customers"].ns, c)
    first = FIRST[x % len(FIRST)]
    last = LAST[(x >> 8) % len(LAST)]
    return f"{first} {last}", f"{first.lower()}.{last.lower().replace(' ', '')}.{c}@example.com"


def price_amount(acc: AccountStore, p: int) -> int:
    """Unit amount of a generated price (precomputed per account: prices are few and hot)."""
    amounts = acc.extra.get("price_amounts")
    if amounts is None:
        t = acc.tables["prices"]
        kinds = t.cols["kind"]
        amounts = acc.extra["price_amounts"] = [
            (5, 9, 10, 12, 15, 19, 20, 25, 29, 49, 99, 199)[h(t.ns, q, 1) % 12] * 100 * (10 if kinds[q] == 2 else 1)
            for q in range(t.n_gen)]
    return amounts[p]


def charge_amount(acc: AccountStore, c: int) -> int:
    x = h(acc.tables["charges"].ns, c, 1)
    return 500 + (x % 400) * 125


def refund_amounts(acc: AccountStore, charge: int) -> dict[int, int]:
    """Amount of each generated refund of a charge (full or 40% partial, split evenly)."""
    refunds = acc.extra["refunds_by_charge"].get(charge)
    if not refunds:
        return {}
    total = charge_amount(acc, charge)
    if acc.extra["partial_refund"].get(charge):
        total = total * 4 // 10
    each = total // len(refunds)
    out = {r: each for r in refunds}
    out[refunds[0]] += total - each * len(refunds)
    return out


def line_amount(acc: AccountStore, line: int) -> int:
    cols = acc.tables["invoice_lines"].cols
    p = cols["price"][line]
    return (price_amount(acc, p) if p >= 0 else 1000) * cols["qty"][line]


def invoice_total(acc: AccountStore, v: int) -> int:
    offs = acc.tables["invoices"].offsets["invoice_lines"]
    return sum(line_amount(acc, ln) for ln in range(offs[v], offs[v + 1]))


def card_of(acc: AccountStore, pm: int) -> dict[str, Any]:
    x = h(acc.tables["payment_methods"].ns, pm, 3)
    brand, last4 = BRANDS[x % len(BRANDS)]
    return {"brand": brand, "last4": last4, "exp_month": 1 + (x >> 8) % 12, "exp_year": 2027 + (x >> 12) % 6,
            "fingerprint": b62_hash(x, 16), "funding": "credit" if (x >> 16) % 4 else "debit",
            "country": "US"}


def _ref(acc: AccountStore, name: str, seq: int) -> str | None:
    return None if seq < 0 else acc.tables[name].codec.encode(seq)


def _period(created: int, interval_days: int, ref: int) -> tuple[int, int]:
    if ref <= created:
        return created, created + interval_days * DAY
    k = (ref - created) // (interval_days * DAY)
    start = created + k * interval_days * DAY
    return start, start + interval_days * DAY


# ---- catalog ------------------------------------------------------------------------------------

def r_product(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["products"]
    o = mk("product")
    x = h(t.ns, i)
    c = t.created[i]
    o["id"] = t.codec.encode(i)
    o["created"] = c
    o["updated"] = c
    o["livemode"] = lm
    o["name"] = f"{ADJ[x % len(ADJ)]} {NOUN[(x >> 8) % len(NOUN)]} {i}"
    o["description"] = f"{o['name']} (generated)" if x % 3 else None
    o["active"] = (x >> 20) % 20 != 0
    offs = t.offsets["prices"]
    o["default_price"] = acc.tables["prices"].codec.encode(offs[i]) if offs[i + 1] > offs[i] else None
    o["metadata"] = {"tier": ADJ[x % len(ADJ)].lower()} if x % 2 else {}
    return o


def r_price(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["prices"]
    o = mk("price")
    x = h(t.ns, i)
    kind = t.cols["kind"][i]
    amt = price_amount(acc, i)
    o["id"] = t.codec.encode(i)
    o["created"] = t.created[i]
    o["livemode"] = lm
    o["product"] = acc.tables["products"].codec.encode(t.cols["product"][i])
    o["unit_amount"] = amt
    o["unit_amount_decimal"] = str(amt)
    o["active"] = (x >> 20) % 25 != 0 or acc.tables["products"].offsets["prices"][t.cols["product"][i]] == i
    if kind:
        o["type"] = "recurring"
        o["recurring"] = {"interval": PRICE_KIND[kind], "interval_count": 1, "meter": None,
                          "trial_period_days": None, "usage_type": "licensed"}
    else:
        o["type"] = "one_time"
        o["recurring"] = None
    o["nickname"] = ("Monthly", "Yearly")[kind - 1] if kind and x % 2 else None
    o["lookup_key"] = f"price_{i}_{PRICE_KIND[kind]}" if x % 5 == 0 else None
    return o


def plan_from_price(price: dict[str, Any]) -> dict[str, Any]:
    """The ``plan`` view of a recurring price (Stripe serves both under the same id)."""
    o = mk("plan")
    rec = price.get("recurring") or {}
    amt = price.get("unit_amount")
    o.update({
        "id": price["id"], "active": price.get("active", True), "amount": amt,
        "amount_decimal": None if amt is None else str(amt), "billing_scheme": price.get("billing_scheme", "per_unit"),
        "created": price["created"], "currency": price.get("currency", "usd"), "interval": rec.get("interval", "month"),
        "interval_count": rec.get("interval_count", 1), "livemode": price.get("livemode", False),
        "metadata": price.get("metadata") or {}, "meter": rec.get("meter"), "nickname": price.get("nickname"),
        "product": price.get("product"), "tiers_mode": price.get("tiers_mode"),
        "trial_period_days": rec.get("trial_period_days"), "usage_type": rec.get("usage_type", "licensed"),
    })
    if isinstance(o["product"], dict):
        o["product"] = o["product"]["id"]
    return o


def r_coupon(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["coupons"]
    o = mk("coupon")
    x = h(t.ns, i)
    o["id"] = t.codec.encode(i)
    o["created"] = t.created[i]
    o["livemode"] = lm
    if x % 3:
        pct = (5, 10, 15, 20, 25, 30, 50)[x % 7]
        o["percent_off"] = float(pct)
        o["name"] = f"{pct}% off"
    else:
        amt = (500, 1000, 2000)[(x >> 4) % 3]
        o["amount_off"] = amt
        o["currency"] = "usd"
        o["name"] = f"${amt // 100} off"
    dur = ("once", "repeating", "forever")[(x >> 8) % 3]
    o["duration"] = dur
    o["duration_in_months"] = 3 if dur == "repeating" else None
    o["times_redeemed"] = (x >> 12) % 40
    o["max_redemptions"] = 100 if (x >> 20) % 4 == 0 else None
    return o


def r_promotion_code(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["promotion_codes"]
    o = mk("promotion_code")
    x = h(t.ns, i)
    o["id"] = t.codec.encode(i)
    o["created"] = t.created[i]
    o["livemode"] = lm
    o["code"] = f"{ADJ[x % len(ADJ)].upper()}{10 + i}"
    o["promotion"] = {"coupon": acc.tables["coupons"].codec.encode(t.cols["coupon"][i]), "type": "coupon"}
    o["active"] = x % 6 != 0
    o["times_redeemed"] = (x >> 8) % 20
    return o


def r_tax_rate(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["tax_rates"]
    o = mk("tax_rate")
    name, country, pct, ttype, desc = TAX_RATES[i % len(TAX_RATES)]
    o.update({"id": t.codec.encode(i), "created": t.created[i], "livemode": lm, "display_name": name,
              "country": country, "jurisdiction": country, "percentage": pct + (i // len(TAX_RATES)),
              "effective_percentage": pct + (i // len(TAX_RATES)), "tax_type": ttype, "description": desc,
              "inclusive": i % 2 == 1, "state": "CA" if country == "US" else None})
    return o


def r_feature(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["features"]
    o = mk("entitlements.feature")
    name = FEATURES[i % len(FEATURES)]
    suffix = f" {i // len(FEATURES) + 1}" if i >= len(FEATURES) else ""
    o.update({"id": t.codec.encode(i), "livemode": lm, "name": name + suffix,
              "lookup_key": (name + suffix).lower().replace(" ", "_").replace("-", "_"), "active": True,
              "metadata": {}})
    return o


def r_product_feature(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["product_features"]
    o = mk("product_feature")
    o["id"] = t.codec.encode(i)
    o["livemode"] = lm
    o["entitlement_feature"] = acc.render("features", t.cols["feature"][i], lm)
    return o


# ---- customers and attached objects -------------------------------------------------------------

def r_customer(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["customers"]
    o = mk("customer")
    x = h(t.ns, i)
    name, email = customer_identity(acc, i)
    city, country, postal, state = CITIES[(x >> 16) % len(CITIES)]
    o["id"] = t.codec.encode(i)
    o["created"] = t.created[i]
    o["livemode"] = lm
    o["name"] = name
    o["email"] = email
    o["phone"] = f"+1555{(x >> 24) % 10_000_000:07d}" if x % 3 else None
    o["address"] = {"city": city, "country": country, "line1": f"{1 + x % 999} Main Street", "line2": None,
                    "postal_code": postal, "state": state}
    o["invoice_prefix"] = b62_hash(x, 8).upper()
    o["description"] = "Generated customer" if x % 4 == 0 else None
    o["metadata"] = {"segment": ("smb", "mid", "enterprise")[x % 3]} if x % 2 else {}
    pm = t.cols["default_pm"][i]
    o["invoice_settings"]["default_payment_method"] = _ref(acc, "payment_methods", pm)
    o["next_invoice_sequence"] = 1 + (x >> 40) % 9
    o["preferred_locales"] = ["en"] if x % 5 == 0 else []
    o["currency"] = "usd"
    return o


def r_payment_method(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["payment_methods"]
    o = mk("payment_method")
    c = t.cols["customer"][i]
    card = card_of(acc, i)
    o["id"] = t.codec.encode(i)
    o["created"] = t.created[i]
    o["livemode"] = lm
    o["customer"] = _ref(acc, "customers", c)
    name, email = customer_identity(acc, c) if c >= 0 else (None, None)
    bd = o["billing_details"]
    bd["name"] = name
    bd["email"] = email
    oc = o["card"]
    oc.update({"brand": card["brand"], "display_brand": card["brand"], "last4": card["last4"],
               "exp_month": card["exp_month"], "exp_year": card["exp_year"], "fingerprint": card["fingerprint"],
               "funding": card["funding"], "wallet": None, "generated_from": None})
    oc["networks"] = {"available": [card["brand"]], "preferred": None}
    o["metadata"] = {}
    o["allow_redisplay"] = "always" if c >= 0 else "unspecified"
    return o


def r_tax_id(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["tax_ids"]
    o = mk("tax_id")
    x = h(t.ns, i)
    ttype, country, fmt = TAX_ID_TYPES[x % len(TAX_ID_TYPES)]
    cus = acc.tables["customers"].codec.encode(t.cols["customer"][i])
    o.update({"id": t.codec.encode(i), "created": t.created[i], "livemode": lm, "customer": cus,
              "owner": {"customer": cus, "type": "customer", "customer_account": None}, "type": ttype,
              "country": country, "value": fmt.format((x >> 8) % 1_000_000_000)})
    o["verification"] = {"status": ("verified", "pending", "unavailable")[(x >> 40) % 3], "verified_address": None,
                         "verified_name": None}
    return o


# ---- billing --------------------------------------------------------------------------------------

def r_subscription(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["subscriptions"]
    o = mk("subscription")
    x = h(t.ns, i)
    c = t.created[i]
    cols = t.cols
    status = SUB_STATUS[cols["status"][i]]
    cust = cols["customer"][i]
    o["id"] = t.codec.encode(i)
    o["created"] = c
    o["livemode"] = lm
    o["customer"] = acc.tables["customers"].codec.encode(cust)
    o["status"] = status
    o["start_date"] = c
    o["billing_cycle_anchor"] = c
    o["currency"] = "usd"
    o["latest_invoice"] = _ref(acc, "invoices", cols["latest_invoice"][i])
    o["default_payment_method"] = _ref(acc, "payment_methods", acc.tables["customers"].cols["default_pm"][cust])
    o["collection_method"] = "send_invoice" if x % 10 == 0 else "charge_automatically"
    o["days_until_due"] = 30 if x % 10 == 0 else None
    o["metadata"] = {"seats": str(1 + x % 20)} if x % 3 == 0 else {}
    if status in ("canceled", "incomplete_expired"):
        span = max(1, acc.gen_end - c)
        ended = c + DAY + (x >> 8) % span
        o["canceled_at"] = ended
        o["ended_at"] = ended
        o["cancellation_details"] = {"comment": None, "feedback": None,
                                     "reason": ("cancellation_requested", "payment_failed")[(x >> 3) % 2]}
    elif status == "trialing":
        o["trial_start"] = c
        o["trial_end"] = c + 14 * DAY
    if status == "active" and x % 17 == 0:
        o["cancel_at_period_end"] = True
    return o


def _item_period(acc: AccountStore, created: int, price: int) -> tuple[int, int]:
    kind = acc.tables["prices"].cols["kind"][price]
    return _period(created, 365 if kind == 2 else 30, acc.gen_end)


def r_subscription_item(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["subscription_items"]
    o = mk("subscription_item")
    cols = t.cols
    p = cols["price"][i]
    c = t.created[i]
    price = acc.render("prices", p, lm)
    o["id"] = t.codec.encode(i)
    o["created"] = c
    o["livemode"] = lm
    o["price"] = price
    o["plan"] = acc.render_plan(p, lm)
    o["quantity"] = cols["qty"][i]
    o["subscription"] = acc.tables["subscriptions"].codec.encode(cols["subscription"][i])
    o["current_period_start"], o["current_period_end"] = _item_period(acc, c, p)
    o["metadata"] = {}
    return o


def r_subscription_schedule(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["subscription_schedules"]
    o = mk("subscription_schedule")
    cols = t.cols
    c = t.created[i]
    status = SCHED_STATUS[cols["status"][i]]
    sub = cols["subscription"][i]
    prices = acc.tables["prices"]
    if sub >= 0:
        si_off = acc.tables["subscriptions"].offsets["subscription_items"]
        price = acc.tables["subscription_items"].cols["price"][si_off[sub]]
    else:
        price = 0
    o["id"] = t.codec.encode(i)
    o["created"] = c
    o["livemode"] = lm
    o["customer"] = acc.tables["customers"].codec.encode(cols["customer"][i])
    o["subscription"] = _ref(acc, "subscriptions", sub)
    o["status"] = status
    start = c if status != "not_started" else c + 7 * DAY
    end = start + 365 * DAY
    o["current_phase"] = {"start_date": start, "end_date": end} if status == "active" else None
    if status == "canceled":
        o["canceled_at"] = c + DAY
    phase = {
        "add_invoice_items": [], "application_fee_percent": None, "billing_cycle_anchor": None,
        "collection_method": None, "currency": "usd", "default_payment_method": None, "default_tax_rates": [],
        "description": None, "discounts": [], "end_date": end, "invoice_settings": None,
        "items": [{"discounts": [], "metadata": {}, "price": prices.codec.encode(price), "quantity": 1,
                   "tax_rates": [], "plan": prices.codec.encode(price), "billing_thresholds": None}],
        "metadata": {}, "on_behalf_of": None, "proration_behavior": "create_prorations", "start_date": start,
        "transfer_data": None, "trial_end": None, "billing_thresholds": None,
    }
    o["phases"] = [phase]
    ds = o["default_settings"]
    ds["transfer_data"] = None
    ds["billing_thresholds"] = None
    return o


def r_invoice(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["invoices"]
    o = mk("invoice")
    x = h(t.ns, i)
    cols = t.cols
    c = t.created[i]
    cust = cols["customer"][i]
    sub = cols["subscription"][i]
    status = INV_STATUS[cols["status"][i]]
    total = invoice_total(acc, i)
    name, email = customer_identity(acc, cust)
    cus_id = acc.tables["customers"].codec.encode(cust)
    inv_id = t.codec.encode(i)
    o["id"] = inv_id
    o["created"] = c
    o["livemode"] = lm
    o["customer"] = cus_id
    o["customer_name"] = name
    o["customer_email"] = email
    o["currency"] = "usd"
    o["status"] = status
    o["subtotal"] = o["subtotal_excluding_tax"] = o["total"] = o["total_excluding_tax"] = total
    o["amount_due"] = total
    paid = status == "paid"
    o["amount_paid"] = total if paid else 0
    o["amount_remaining"] = 0 if paid or status in ("void", "uncollectible") else total
    o["attempted"] = status != "draft"
    o["attempt_count"] = 1 if status in ("paid", "open", "uncollectible") else 0
    o["auto_advance"] = status in ("draft", "open")
    reason = cols["reason"][i]
    o["period_start"] = c - MONTH if reason == 1 else c
    o["period_end"] = c
    o["billing_reason"] = ("subscription_create", "subscription_cycle", "manual")[reason]
    if sub >= 0:
        o["parent"] = {"quote_details": None, "type": "subscription_details",
                       "subscription_details": {"metadata": {}, "subscription": acc.tables["subscriptions"].codec.encode(sub)}}
    o["collection_method"] = "charge_automatically" if x % 8 else "send_invoice"
    if o["collection_method"] == "send_invoice":
        o["due_date"] = c + 30 * DAY
    finalized = None
    if status != "draft":
        finalized = c + 3600
        o["number"] = f"{b62_hash(h(acc.tables['customers'].ns, cust), 8).upper()}-{1 + i % 9999:04d}"
        o["hosted_invoice_url"] = f"https://invoice.stripe.com/i/acct_test/{inv_id}"
        o["invoice_pdf"] = f"https://pay.stripe.com/invoice/acct_test/{inv_id}/pdf"
        o["effective_at"] = finalized
        o["webhooks_delivered_at"] = c
    o["status_transitions"] = {
        "finalized_at": finalized, "marked_uncollectible_at": c + 20 * DAY if status == "uncollectible" else None,
        "paid_at": finalized if paid else None, "voided_at": c + 2 * DAY if status == "void" else None,
    }
    o["ending_balance"] = 0 if status != "draft" else None
    o["total_taxes"] = []
    o["total_pretax_credit_amounts"] = []
    o["total_discount_amounts"] = []
    return o


def r_invoice_line(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["invoice_lines"]
    o = mk("line_item")
    cols = t.cols
    inv_t = acc.tables["invoices"]
    v = t.parent_of_generated(inv_t, i)
    p = cols["price"][i]
    si = cols["subscription_item"][i]
    amt = line_amount(acc, i)
    c = inv_t.created[v]
    prices = acc.tables["prices"]
    price_id = prices.codec.encode(p) if p >= 0 else None
    prod = prices.cols["product"][p] if p >= 0 else -1
    o["id"] = t.codec.encode(i)
    o["livemode"] = lm
    o["invoice"] = inv_t.codec.encode(v)
    o["amount"] = amt
    o["subtotal"] = amt
    o["currency"] = "usd"
    o["quantity"] = cols["qty"][i]
    o["metadata"] = {}
    o["pricing"] = {"type": "price_details", "unit_amount_decimal": str(amt // max(1, cols["qty"][i])),
                    "price_details": {"price": price_id, "product": _ref(acc, "products", prod)}}
    if si >= 0:
        sub = acc.tables["subscription_items"].cols["subscription"][si]
        sub_id = acc.tables["subscriptions"].codec.encode(sub)
        o["description"] = f"{cols['qty'][i]} × product {prod} (at ${price_amount(acc, p) / 100:.2f})"
        o["period"] = {"start": c, "end": c + MONTH}
        o["subscription"] = sub_id
        o["parent"] = {"type": "subscription_item_details", "invoice_item_details": None,
                       "subscription_item_details": {"invoice_item": None, "proration": False,
                                                     "proration_details": {"credited_items": None},
                                                     "subscription": sub_id,
                                                     "subscription_item": acc.tables["subscription_items"].codec.encode(si)}}
    else:
        o["description"] = f"One-off item {i}"
        o["period"] = {"start": c, "end": c}
        o["subscription"] = None
        o["parent"] = {"type": "invoice_item_details", "subscription_item_details": None,
                       "invoice_item_details": {"invoice_item": None, "proration": False,
                                                "proration_details": {"credited_items": None}, "subscription": None}}
    return o


def r_invoiceitem(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["invoiceitems"]
    o = mk("invoiceitem")
    x = h(t.ns, i)
    c = t.created[i]
    p = t.cols["price"][i]
    qty = 1 + x % 3
    unit = price_amount(acc, p) if p >= 0 else 1000
    prices = acc.tables["prices"]
    o.update({"id": t.codec.encode(i), "livemode": lm, "date": c, "amount": unit * qty, "net_amount": unit * qty,
              "customer": acc.tables["customers"].codec.encode(t.cols["customer"][i]), "currency": "usd",
              "description": f"Pending item {i}", "quantity": qty, "quantity_decimal": str(qty),
              "period": {"start": c, "end": c}, "invoice": None, "metadata": {}})
    o["pricing"] = {"type": "price_details", "unit_amount_decimal": str(unit),
                    "price_details": {"price": prices.codec.encode(p) if p >= 0 else None,
                                      "product": _ref(acc, "products", prices.cols["product"][p] if p >= 0 else -1)}}
    return o


def r_credit_note(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["credit_notes"]
    o = mk("credit_note")
    x = h(t.ns, i)
    v = t.cols["invoice"][i]
    inv_t = acc.tables["invoices"]
    offs = t.offsets["credit_note_lines"]
    lines = acc.tables["credit_note_lines"].cols["line"]
    amount = sum(line_amount(acc, lines[k]) for k in range(offs[i], offs[i + 1]))
    paid = inv_t.cols["status"][v] == 2
    void = x % 15 == 0
    o.update({
        "id": t.codec.encode(i), "created": t.created[i], "livemode": lm, "amount": amount, "subtotal": amount,
        "subtotal_excluding_tax": amount, "total": amount, "total_excluding_tax": amount,
        "customer": acc.tables["customers"].codec.encode(inv_t.cols["customer"][v]), "invoice": inv_t.codec.encode(v),
        "effective_at": t.created[i], "memo": "Service credit" if x % 2 else None, "currency": "usd",
        "number": f"CN-{i + 1:06d}", "status": "void" if void else "issued",
        "voided_at": t.created[i] + DAY if void else None, "type": "post_payment" if paid else "pre_payment",
        "reason": (None, "duplicate", "order_change", "product_unsatisfactory")[x % 4],
        "post_payment_amount": amount if paid else 0, "pre_payment_amount": 0 if paid else amount,
        "pdf": f"https://pay.stripe.com/credit_notes/acct_test/{t.codec.encode(i)}/pdf", "refunds": [],
        "total_taxes": [], "metadata": {},
    })
    return o


def r_credit_note_line(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["credit_note_lines"]
    o = mk("credit_note_line_item")
    line = t.cols["line"][i]
    amt = line_amount(acc, line)
    qty = acc.tables["invoice_lines"].cols["qty"][line]
    o.update({"id": t.codec.encode(i), "livemode": lm, "amount": amt, "quantity": qty,
              "invoice_line_item": acc.tables["invoice_lines"].codec.encode(line), "type": "invoice_line_item",
              "description": f"Credit for line {line}", "unit_amount": amt // max(1, qty),
              "unit_amount_decimal": str(amt // max(1, qty)), "tax_rates": [], "metadata": {}})
    return o


# ---- payments ---------------------------------------------------------------------------------

def r_charge(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["charges"]
    o = mk("charge")
    x = h(t.ns, i)
    cols = t.cols
    status = CHARGE_STATUS[cols["status"][i]]
    pm = cols["payment_method"][i]
    cust = cols["customer"][i]
    amount = charge_amount(acc, i)
    ok = status == "succeeded"
    refunded = sum(refund_amounts(acc, i).values()) if ok else 0
    card = card_of(acc, pm)
    cid = t.codec.encode(i)
    name, email = customer_identity(acc, cust) if cust >= 0 else (f"Guest {i}", None)
    o["id"] = cid
    o["created"] = t.created[i]
    o["livemode"] = lm
    o["amount"] = amount
    o["amount_captured"] = amount if ok else 0
    o["amount_refunded"] = refunded
    o["refunded"] = ok and refunded == amount
    o["captured"] = ok
    o["paid"] = ok
    o["status"] = status
    o["currency"] = "usd"
    o["customer"] = _ref(acc, "customers", cust)
    o["payment_intent"] = acc.tables["payment_intents"].codec.encode(i)
    o["payment_method"] = acc.tables["payment_methods"].codec.encode(pm)
    o["balance_transaction"] = _ref(acc, "balance_transactions", cols["bt"][i])
    o["description"] = f"Payment {i}" if x % 2 else None
    o["receipt_email"] = email if x % 3 == 0 else None
    o["receipt_url"] = f"https://pay.stripe.com/receipts/payment/{cid}"
    o["calculated_statement_descriptor"] = "EMULATED*STORE"
    o["billing_details"]["name"] = name
    o["billing_details"]["email"] = email
    d = acc.extra["dispute_by_charge"].get(i)
    o["disputed"] = d is not None
    r = acc.extra["review_by_charge"].get(i)
    o["review"] = _ref(acc, "reviews", r) if r is not None else None
    pmd = o["payment_method_details"]["card"]
    pmd.update({"brand": card["brand"], "last4": card["last4"], "exp_month": card["exp_month"],
                "exp_year": card["exp_year"], "fingerprint": card["fingerprint"], "funding": card["funding"],
                "network": card["brand"], "wallet": None, "installments": None, "amount_authorized": amount})
    pmd["overcapture"] = {"maximum_amount_capturable": amount, "status": "unavailable"}
    if not ok:
        o["failure_code"] = "card_declined"
        o["failure_message"] = "Your card was declined."
        o["outcome"] = {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                        "network_status": "declined_by_network", "reason": "generic_decline", "risk_level": "normal",
                        "risk_score": 41, "seller_message": "The bank did not return any further details with this decline.",
                        "type": "issuer_declined"}
    return o


def r_payment_intent(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["payment_intents"]
    ch = acc.tables["charges"]
    o = mk("payment_intent")
    ok = ch.cols["status"][i] == 0
    amount = charge_amount(acc, i)
    pid = t.codec.encode(i)
    o["id"] = pid
    o["created"] = t.created[i]
    o["livemode"] = lm
    o["amount"] = amount
    o["amount_received"] = amount if ok else 0
    o["currency"] = "usd"
    o["customer"] = _ref(acc, "customers", ch.cols["customer"][i])
    o["latest_charge"] = ch.codec.encode(i)
    o["payment_method"] = None if not ok else acc.tables["payment_methods"].codec.encode(ch.cols["payment_method"][i])
    o["status"] = "succeeded" if ok else "requires_payment_method"
    o["client_secret"] = f"{pid}_secret_{b62_hash(h(t.ns, i, 9), 25)}"
    o["automatic_payment_methods"] = None
    if not ok:
        o["last_payment_error"] = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                                   "message": "Your card was declined.", "charge": ch.codec.encode(i)}
    return o


def r_refund(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["refunds"]
    o = mk("refund")
    x = h(t.ns, i)
    c = t.cols["charge"][i]
    ch = acc.tables["charges"]
    o["id"] = t.codec.encode(i)
    o["created"] = t.created[i]
    o["livemode"] = lm
    o["amount"] = refund_amounts(acc, c).get(i, 0)
    o["charge"] = ch.codec.encode(c)
    o["payment_intent"] = acc.tables["payment_intents"].codec.encode(c)
    o["balance_transaction"] = _ref(acc, "balance_transactions", t.cols["bt"][i])
    o["currency"] = "usd"
    o["reason"] = REFUND_REASONS[x % len(REFUND_REASONS)]
    o["customer"] = _ref(acc, "customers", ch.cols["customer"][c])
    o["payment_method"] = acc.tables["payment_methods"].codec.encode(ch.cols["payment_method"][c])
    o["metadata"] = {}
    return o


def r_dispute(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["disputes"]
    o = mk("dispute")
    x = h(t.ns, i)
    c = t.cols["charge"][i]
    created = t.created[i]
    age = acc.gen_end - created
    status = ("won", "lost")[x % 2] if age > 30 * DAY else ("needs_response", "under_review")[x % 2]
    o["id"] = t.codec.encode(i)
    o["created"] = created
    o["livemode"] = lm
    o["amount"] = charge_amount(acc, c)
    o["charge"] = acc.tables["charges"].codec.encode(c)
    o["payment_intent"] = acc.tables["payment_intents"].codec.encode(c)
    o["currency"] = "usd"
    o["reason"] = DISPUTE_REASONS[x % len(DISPUTE_REASONS)]
    o["status"] = status
    o["is_charge_refundable"] = False
    o["evidence_details"] = {"due_by": created + 21 * DAY, "has_evidence": status != "needs_response",
                             "past_due": False, "submission_count": 0 if status == "needs_response" else 1,
                             "enhanced_eligibility": {}}
    o["payment_method_details"]["card"]["case_type"] = "chargeback"
    return o


def r_early_fraud_warning(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["early_fraud_warnings"]
    o = mk("radar.early_fraud_warning")
    x = h(t.ns, i)
    c = t.cols["charge"][i]
    o.update({"id": t.codec.encode(i), "created": t.created[i], "livemode": lm,
              "charge": acc.tables["charges"].codec.encode(c),
              "payment_intent": acc.tables["payment_intents"].codec.encode(c),
              "fraud_type": ("made_with_stolen_card", "unauthorized_use_of_card", "misc")[x % 3],
              "actionable": x % 4 != 0})
    return o


def r_review(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["reviews"]
    o = mk("review")
    x = h(t.ns, i)
    c = t.cols["charge"][i]
    is_open = acc.gen_end - t.created[i] < 7 * DAY
    o.update({"id": t.codec.encode(i), "created": t.created[i], "livemode": lm,
              "charge": acc.tables["charges"].codec.encode(c),
              "payment_intent": acc.tables["payment_intents"].codec.encode(c), "open": is_open,
              "opened_reason": ("rule", "manual")[x % 2], "reason": "rule" if is_open else ("approved", "refunded")[x % 2],
              "closed_reason": None if is_open else ("approved", "refunded")[x % 2]})
    return o


def r_setup_intent(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["setup_intents"]
    o = mk("setup_intent")
    cols = t.cols
    status = SETI_STATUS[cols["status"][i]]
    sid = t.codec.encode(i)
    o.update({"id": sid, "created": t.created[i], "livemode": lm,
              "customer": _ref(acc, "customers", cols["customer"][i]),
              "payment_method": acc.tables["payment_methods"].codec.encode(cols["payment_method"][i])
              if status == "succeeded" else None,
              "status": status, "client_secret": f"{sid}_secret_{b62_hash(h(t.ns, i, 9), 25)}",
              "cancellation_reason": "abandoned" if status == "canceled" else None,
              "automatic_payment_methods": None})
    return o


def r_checkout_session(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["checkout_sessions"]
    o = mk("checkout.session")
    cols = t.cols
    c = t.created[i]
    cust = cols["customer"][i]
    status = CS_STATUS[cols["status"][i]]
    mode = CS_MODE[cols["mode"][i]]
    offs = t.offsets["checkout_line_items"]
    li = acc.tables["checkout_line_items"].cols
    total = sum(price_amount(acc, li["price"][k]) * li["qty"][k] for k in range(offs[i], offs[i + 1]))
    sid = t.codec.encode(i)
    name, email = customer_identity(acc, cust) if cust >= 0 else (None, f"guest{i}@example.com")
    o["id"] = sid
    o["created"] = c
    o["livemode"] = lm
    o["customer"] = _ref(acc, "customers", cust)
    o["customer_email"] = email if cust < 0 else None
    o["customer_details"] = {"address": None, "email": email, "name": name, "phone": None, "tax_exempt": "none",
                             "tax_ids": [], "business_name": None, "individual_name": None}
    o["mode"] = mode
    o["status"] = status
    o["payment_status"] = "paid" if status == "complete" else "unpaid"
    o["amount_subtotal"] = total
    o["amount_total"] = total
    o["currency"] = "usd"
    o["expires_at"] = c + DAY
    o["url"] = f"https://checkout.stripe.com/c/pay/{sid}" if status == "open" else None
    o["payment_intent"] = None
    o["invoice_creation"] = None if mode == "subscription" else o["invoice_creation"]
    o["metadata"] = {}
    return o


def r_checkout_line_item(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["checkout_line_items"]
    o = mk("item")
    p = t.cols["price"][i]
    qty = t.cols["qty"][i]
    price = acc.render("prices", p, lm)
    amt = price_amount(acc, p) * qty
    prod = acc.tables["prices"].cols["product"][p]
    o.update({"id": t.codec.encode(i), "amount_subtotal": amt, "amount_total": amt, "amount_discount": 0,
              "amount_tax": 0, "currency": "usd", "description": f"Product {prod}", "price": price,
              "quantity": qty, "metadata": {}})
    return o


# ---- money movement ---------------------------------------------------------------------------------

def _payout_amount(acc: AccountStore, i: int) -> int:
    return 10_000 + h(acc.tables["payouts"].ns, i, 1) % 5_000_000


def _transfer_amount(acc: AccountStore, i: int) -> int:
    return 1_000 + h(acc.tables["transfers"].ns, i, 1) % 500_000


def r_payout(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["payouts"]
    o = mk("payout")
    x = h(t.ns, i)
    c = t.created[i]
    age = acc.gen_end - c
    status = "paid" if age > 3 * DAY else ("in_transit" if age > DAY else "pending")
    o.update({"id": t.codec.encode(i), "created": c, "livemode": lm, "amount": _payout_amount(acc, i),
              "arrival_date": c + 2 * DAY, "balance_transaction": _ref(acc, "balance_transactions", t.cols["bt"][i]),
              "currency": "usd", "destination": f"ba_{b62_hash(h(acc.ns, 1), 24)}", "status": status,
              "reconciliation_status": "completed" if status == "paid" else "not_applicable",
              "description": "STRIPE PAYOUT", "automatic": x % 5 != 0, "metadata": {}})
    o["trace_id"] = {"status": "supported" if status == "paid" else "pending",
                     "value": f"TRACE{x % 10**12:012d}" if status == "paid" else None}
    return o


def r_transfer(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["transfers"]
    o = mk("transfer")
    x = h(t.ns, i)
    tid = t.codec.encode(i)
    d = t.cols["destination"][i]
    dests = acc.transfer_destinations
    dest = dests[d] if 0 <= d < len(dests) else f"acct_1{b62_hash(h(acc.ns, 2, d), 15)}"
    o.update({"id": tid, "created": t.created[i], "livemode": lm, "amount": _transfer_amount(acc, i),
              "balance_transaction": _ref(acc, "balance_transactions", t.cols["bt"][i]), "currency": "usd",
              "destination": dest, "destination_payment": f"py_{b62_hash(x, 24)}",
              "transfer_group": f"group_{i % 50}" if x % 3 == 0 else None, "metadata": {}, "source_type": "card"})
    o["reversals"] = {"object": "list", "data": [], "has_more": False, "url": f"/v1/transfers/{tid}/reversals"}
    return o


def r_balance_transaction(acc: AccountStore, i: int, lm: bool) -> dict[str, Any]:
    t = acc.tables["balance_transactions"]
    o = mk("balance_transaction")
    kind = t.cols["kind"][i]
    src = t.cols["source"][i]
    c = t.created[i]
    if kind == 0:
        amount = charge_amount(acc, src)
        fee = amount * 29 // 1000 + 30
        source = acc.tables["charges"].codec.encode(src)
        typ, cat, desc = "charge", "charge", f"Payment {src}"
        fee_details = [{"amount": fee, "application": None, "currency": "usd", "description": "Stripe processing fees",
                        "type": "stripe_fee"}]
    else:
        fee = 0
        fee_details = []
        if kind == 1:
            rch = acc.tables["refunds"].cols["charge"][src]
            amount = -refund_amounts(acc, rch).get(src, 0)
            source = acc.tables["refunds"].codec.encode(src)
            typ, cat, desc = "refund", "refund", "REFUND FOR CHARGE"
        elif kind == 2:
            amount = -_payout_amount(acc, src)
            source = acc.tables["payouts"].codec.encode(src)
            typ, cat, desc = "payout", "payout", "STRIPE PAYOUT"
        else:
            amount = -_transfer_amount(acc, src)
            source = acc.tables["transfers"].codec.encode(src)
            typ, cat, desc = "transfer", "transfer", None
    available_on = c + 2 * DAY
    o.update({"id": t.codec.encode(i), "created": c, "livemode": lm, "amount": amount, "fee": fee,
              "net": amount - fee, "fee_details": fee_details, "source": source, "type": typ,
              "reporting_category": cat, "description": desc, "currency": "usd", "available_on": available_on,
              "status": "available" if available_on <= acc.gen_end else "pending"})
    return o


RENDERERS: dict[str, Callable[[AccountStore, int, bool], dict[str, Any]]] = {
    "products": r_product, "prices": r_price, "coupons": r_coupon, "promotion_codes": r_promotion_code,
    "tax_rates": r_tax_rate, "features": r_feature, "product_features": r_product_feature,
    "customers": r_customer, "payment_methods": r_payment_method, "tax_ids": r_tax_id,
    "subscriptions": r_subscription, "subscription_items": r_subscription_item,
    "subscription_schedules": r_subscription_schedule, "invoices": r_invoice, "invoice_lines": r_invoice_line,
    "invoiceitems": r_invoiceitem, "credit_notes": r_credit_note, "credit_note_lines": r_credit_note_line,
    "charges": r_charge, "payment_intents": r_payment_intent, "refunds": r_refund, "disputes": r_dispute,
    "early_fraud_warnings": r_early_fraud_warning, "reviews": r_review, "setup_intents": r_setup_intent,
    "checkout_sessions": r_checkout_session, "checkout_line_items": r_checkout_line_item, "payouts": r_payout,
    "transfers": r_transfer, "balance_transactions": r_balance_transaction,
}
