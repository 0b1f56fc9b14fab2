"""Create / update / delete / action operations for every writable type, with the events and
side effects Stripe produces. The HTTP API, the control API and ``mutate_random`` all call these.

Conventions: stored rows are replaced, never modified in place (``modify`` works on a copy), so
rendered objects and event payloads already handed out stay valid snapshots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .account import ACTIVE_SUB_STATUSES, AccountStore, id_of
from .core import Ctx
from .errors import StripeError, invalid, missing_param, unknown_param
from .events import previous_attributes
from .forms import as_list, to_bool, to_float, to_int
from .ids import b62_hash, h, stable_hash
from .render import TAX_ID_TYPES, plan_from_price
from .templates import make

DAY = 86400

INT_FIELDS = {
    "amount", "amount_off", "unit_amount", "quantity", "duration_in_months", "max_redemptions", "redeem_by",
    "expires_at", "trial_period_days", "days_until_due", "trial_end", "cancel_at", "application_fee_amount",
    "billing_cycle_anchor", "due_date", "interval_count", "exp_month", "exp_year", "start_date", "end_date",
    "iterations", "minimum_amount", "balance", "next_invoice_sequence", "arrival_date", "amount_captured",
    "credit_amount", "refund_amount", "out_of_band_amount", "amount_to_capture",
}
FLOAT_FIELDS = {"percent_off", "percentage", "application_fee_percent", "amount_percent"}
BOOL_FIELDS = {
    "active", "cancel_at_period_end", "auto_advance", "inclusive", "discountable", "proration", "shippable",
    "captured", "confirm", "off_session", "enabled", "first_time_transaction", "disabled", "connect", "submit",
    "attach_to_self", "paid_out_of_band", "deleted", "capture", "actionable", "clear_usage", "single_use",
}


# ---- parameter helpers -------------------------------------------------------------------------

def check(params: dict[str, Any], allowed: set[str] | frozenset[str], required: tuple[str, ...] = ()) -> None:
    for k in params:
        if k not in allowed and k != "expand":
            raise unknown_param(k)
    for r in required:
        if params.get(r) in (None, ""):
            raise missing_param(r)


def coerce(key: str, v: Any) -> Any:
    if isinstance(v, dict):
        return {k: coerce(k, x) for k, x in v.items()}
    if isinstance(v, list):
        return [coerce(key, x) for x in v]
    if v == "" or v is None:
        return None
    if key in INT_FIELDS:
        return to_int(v, key)
    if key in FLOAT_FIELDS:
        return to_float(v, key)
    if key in BOOL_FIELDS:
        return to_bool(v, key)
    return v


def _merge(dst: Any, src: dict[str, Any]) -> dict[str, Any]:
    out = dict(dst) if isinstance(dst, dict) else {}
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "metadata":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def set_metadata(obj: dict[str, Any], value: Any) -> None:
    """Stripe semantics: keys merge, ``""`` unsets a key, ``metadata=""`` clears everything."""
    if value in ("", None):
        obj["metadata"] = {}
        return
    if not isinstance(value, dict):
        raise invalid("Invalid object", param="metadata")
    md = dict(obj.get("metadata") or {})
    for k, v in value.items():
        if len(md) >= 50 and k not in md and v != "":
            raise invalid("Metadata can have at most 50 keys.", param="metadata")
        if v == "" or v is None:
            md.pop(k, None)
        else:
            md[str(k)] = str(v)
    obj["metadata"] = md


def set_fields(obj: dict[str, Any], params: dict[str, Any], fields: set[str] | frozenset[str]) -> None:
    for k in fields:
        if k not in params:
            continue
        if k == "metadata":
            set_metadata(obj, params[k])
            continue
        v = coerce(k, params[k])
        if isinstance(v, dict) and isinstance(obj.get(k), dict):
            obj[k] = _merge(obj[k], v)
        else:
            obj[k] = v


def _hash(v: Any) -> dict[str, Any]:
    """A hash-typed param, or an empty one."""
    return v if isinstance(v, dict) else {}


def int_param(params: dict[str, Any], key: str, default: int | None = None) -> int | None:
    v = params.get(key)
    if v in (None, ""):
        return default
    return to_int(v, key)


def bool_param(params: dict[str, Any], key: str, default: bool = False) -> bool:
    v = params.get(key)
    if v in (None, ""):
        return default
    return to_bool(v, key)


# ---- generic row operations ---------------------------------------------------------------------

def insert(ctx: Ctx, name: str, seq: int, obj: dict[str, Any], event: str | None = None,
           parent: int | None = None) -> dict[str, Any]:
    t = ctx.acc.tables[name]
    t.put(seq, ctx.acc.dehydrate(name, obj))
    if parent is not None:
        t.add_child(parent, seq)
    out = ctx.render(name, seq)
    if event:
        ctx.emit(event, out)
    return out


def modify(ctx: Ctx, name: str, seq: int, fn: Callable[[dict[str, Any]], None],
           event: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply ``fn`` to a copy of the stored row; emit ``event`` with previous_attributes if anything changed."""
    acc = ctx.acc
    before = ctx.render(name, seq)
    obj = acc.stored(name, seq)
    fn(obj)
    acc.tables[name].put(seq, obj)
    after = ctx.render(name, seq)
    prev = previous_attributes(before, after)
    if event and prev:
        ctx.emit(event, after, prev)
    return after, prev


def remove(ctx: Ctx, name: str, seq: int, event: str | None = None) -> dict[str, Any]:
    t = ctx.acc.tables[name]
    before = ctx.render(name, seq)
    t.delete(seq)
    if event:
        final = dict(before)
        ctx.emit(event, final)
    return {"id": t.id_of(seq), "object": t.rt.object, "deleted": True}


def _live(ctx: Ctx, name: str, ident: Any, param: str) -> int:
    if ident in (None, ""):
        raise missing_param(param)
    if isinstance(ident, dict):
        ident = ident.get("id")
    return ctx.acc.live_seq_or_404(name, str(ident), param)


def _idem_suffix(ctx: Ctx, n: int = 24) -> str:
    return b62_hash(stable_hash(ctx.acc.ns, "secret", ctx.acc.tables["events"].next_seq, ctx.now()), n)


# ---- entitlements ------------------------------------------------------------------------------------

class EntitlementWatch:
    """Snapshot customers' entitlements before a change; emit summary events for those that changed."""

    def __init__(self, ctx: Ctx, customers: set[int]) -> None:
        self.ctx = ctx
        self.before = {c: ctx.acc.entitlement_features(c) for c in customers}

    def add(self, c: int) -> None:
        if c not in self.before:
            self.before[c] = self.ctx.acc.entitlement_features(c)

    def done(self) -> None:
        acc = self.ctx.acc
        for c, before in self.before.items():
            if acc.entitlement_features(c) != before:
                self.ctx.emit("entitlements.active_entitlement_summary.updated",
                              acc.entitlement_summary(c, self.ctx.livemode))


def _cust_seq(ctx: Ctx, ident: Any) -> int | None:
    if not ident:
        return None
    return ctx.acc.tables["customers"].seq_of(str(id_of(ident)))


def customers_with_product(acc: AccountStore, prod: int) -> set[int]:
    prices = acc.tables["prices"]
    pid = acc.tables["products"].id_of(prod)
    pseqs: set[int] = set()
    if prod < acc.tables["products"].n_gen and "product" in prices.cols:
        pseqs.update(prices.index("product").get(prod, ()))
    for s, row in prices.rows.items():
        if id_of(row.get("product")) == pid:
            pseqs.add(s)
    subs: set[int] = set()
    for p in pseqs:
        pid_ = prices.id_of(p)
        for m in [acc.build_filter("subscriptions", "price", pid_)]:
            subs.update(acc.all_seqs("subscriptions", [m]))
    out: set[int] = set()
    for s in subs:
        sub = acc.render("subscriptions", s, False) or {}
        if sub.get("status") in ACTIVE_SUB_STATUSES:
            c = acc.tables["customers"].seq_of(id_of(sub.get("customer")) or "")
            if c is not None:
                out.add(c)
    return out


# ---- customers ---------------------------------------------------------------------------------------

CUS_FIELDS = frozenset({"name", "email", "description", "phone", "address", "shipping", "metadata", "invoice_settings",
                        "preferred_locales", "tax_exempt", "balance", "invoice_prefix", "next_invoice_sequence"})
CUS_EXTRA = frozenset({"payment_method", "tax_id_data", "test_clock", "source", "coupon", "promotion_code",
                       "validate", "tax", "cash_balance", "default_source", "discounts"})


def create_customer(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, CUS_FIELDS | CUS_EXTRA)
    acc = ctx.acc
    seq, obj = acc.new_object("customers", ctx.now())
    obj.update({"address": None, "balance": 0, "currency": None, "discount": None, "shipping": None, "phone": None,
                "description": None, "email": None, "name": None, "delinquent": False, "preferred_locales": [],
                "invoice_prefix": b62_hash(h(acc.ns, seq, 11), 8).upper(), "next_invoice_sequence": 1,
                "tax_exempt": "none", "test_clock": None,
                "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                     "rendering_options": None}})
    set_fields(obj, p, CUS_FIELDS)
    insert(ctx, "customers", seq, obj, "customer.created")
    if p.get("payment_method"):
        attach_payment_method(ctx, resolve_pm(ctx, p["payment_method"], "payment_method"), {"customer": obj["id"]})
    for td in as_list(p.get("tax_id_data")):
        _create_tax_id(ctx, seq, td if isinstance(td, dict) else {})
    return ctx.render("customers", seq)


def update_customer(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, CUS_FIELDS | CUS_EXTRA - {"payment_method", "tax_id_data"})
    inv = p.get("invoice_settings")
    if isinstance(inv, dict) and inv.get("default_payment_method"):
        _live(ctx, "payment_methods", inv["default_payment_method"], "invoice_settings[default_payment_method]")
    after, _ = modify(ctx, "customers", seq, lambda o: set_fields(o, p, CUS_FIELDS), "customer.updated")
    return after


def delete_customer(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    acc = ctx.acc
    cid = acc.tables["customers"].id_of(seq)
    watch = EntitlementWatch(ctx, {seq})
    for s in acc.all_seqs("subscriptions", acc.filters_from("subscriptions", {"customer": cid}, set())):
        _cancel_subscription(ctx, s, {})
    out = remove(ctx, "customers", seq, "customer.deleted")
    watch.before.pop(seq, None)
    watch.done()
    return out


# ---- catalog -------------------------------------------------------------------------------------------

PROD_FIELDS = frozenset({"name", "active", "description", "metadata", "images", "url", "unit_label", "shippable",
                         "statement_descriptor", "tax_code", "marketing_features", "package_dimensions", "type"})


def create_product(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, PROD_FIELDS | {"id", "default_price_data", "tax_details"}, ("name",))
    acc = ctx.acc
    now = ctx.now()
    seq, obj = acc.new_object("products", now, p.get("id") or None)
    obj.update({"active": True, "description": None, "images": [], "marketing_features": [],
                "package_dimensions": None, "shippable": None, "statement_descriptor": None, "tax_code": None,
                "unit_label": None, "updated": now, "url": None, "type": "service", "default_price": None})
    set_fields(obj, p, PROD_FIELDS)
    dpd = p.get("default_price_data")
    price_seq = price_obj = None
    if isinstance(dpd, dict):
        price_seq, price_obj = _build_price(ctx, {**dpd, "product": obj["id"]}, product_known=True)
        obj["default_price"] = price_obj["id"]
    out = insert(ctx, "products", seq, obj, "product.created")
    if price_seq is not None and price_obj is not None:
        _insert_price(ctx, price_seq, price_obj)
        out = ctx.render("products", seq)
    return out


def update_product(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, PROD_FIELDS | {"default_price", "tax_details"})
    if p.get("default_price"):
        ps = _live(ctx, "prices", p["default_price"], "default_price")
        price = ctx.render("prices", ps)
        if id_of(price.get("product")) != ctx.acc.tables["products"].id_of(seq):
            raise invalid("The price must belong to this product.", param="default_price")

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, PROD_FIELDS)
        if "default_price" in p:
            o["default_price"] = p["default_price"] or None
        o["updated"] = ctx.now()

    after, _ = modify(ctx, "products", seq, fn, "product.updated")
    return after


def delete_product(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    acc = ctx.acc
    pid = acc.tables["products"].id_of(seq)
    if acc.all_seqs("prices", [acc.build_filter("prices", "product", pid)]):
        raise invalid("This product cannot be deleted because it has one or more user-created prices.",
                      param="id")
    return remove(ctx, "products", seq, "product.deleted")


PRICE_FIELDS = frozenset({"nickname", "lookup_key", "metadata", "active", "tax_behavior", "billing_scheme",
                          "custom_unit_amount", "tiers", "tiers_mode", "transform_quantity", "currency_options"})


def _build_price(ctx: Ctx, p: dict[str, Any], *, product_known: bool = False, custom_id: str | None = None,
                 ) -> tuple[int, dict[str, Any]]:
    acc = ctx.acc
    if not p.get("currency"):
        raise missing_param("currency")
    prod = p.get("product")
    if not prod and isinstance(p.get("product_data"), dict):
        prod = create_product(ctx, p["product_data"])["id"]
    if not prod:
        raise missing_param("product")
    if not product_known:
        _live(ctx, "products", prod, "product")
    amount = int_param(p, "unit_amount")
    if amount is None and p.get("unit_amount_decimal") not in (None, ""):
        amount = int(float(p["unit_amount_decimal"]))
    if amount is None and not p.get("custom_unit_amount") and not p.get("tiers"):
        raise missing_param("unit_amount")
    seq, obj = acc.new_object("prices", ctx.now(), custom_id)
    rec = p.get("recurring")
    obj.update({"active": True, "billing_scheme": "per_unit", "currency": str(p["currency"]).lower(),
                "custom_unit_amount": None, "lookup_key": None, "nickname": None, "product": str(id_of(prod)),
                "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
                "unit_amount": amount, "unit_amount_decimal": None if amount is None else str(amount)})
    if isinstance(rec, dict):
        interval = rec.get("interval")
        if interval not in ("day", "week", "month", "year"):
            raise invalid("Invalid recurring[interval]: must be one of day, week, month, or year",
                          param="recurring[interval]")
        obj["type"] = "recurring"
        obj["recurring"] = {"interval": interval, "interval_count": int_param(rec, "interval_count", 1),
                            "meter": rec.get("meter"), "trial_period_days": int_param(rec, "trial_period_days"),
                            "usage_type": rec.get("usage_type") or "licensed"}
    else:
        obj["type"] = "one_time"
        obj["recurring"] = None
    set_fields(obj, p, PRICE_FIELDS)
    return seq, obj


def _insert_price(ctx: Ctx, seq: int, obj: dict[str, Any]) -> dict[str, Any]:
    out = insert(ctx, "prices", seq, obj, "price.created")
    if out.get("recurring"):
        ctx.emit("plan.created", plan_from_price(out))
    return out


def create_price(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, PRICE_FIELDS | {"currency", "unit_amount", "unit_amount_decimal", "product", "product_data",
                             "recurring", "transfer_lookup_key"}, ("currency",))
    seq, obj = _build_price(ctx, p)
    return _insert_price(ctx, seq, obj)


def update_price(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"active", "nickname", "lookup_key", "metadata", "tax_behavior", "transfer_lookup_key",
              "currency_options"})
    after, prev = modify(ctx, "prices", seq, lambda o: set_fields(o, p, PRICE_FIELDS), "price.updated")
    if prev and after.get("recurring"):
        ctx.emit("plan.updated", plan_from_price(after), prev)
    return after


def create_plan(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"id", "amount", "amount_decimal", "currency", "interval", "interval_count", "product", "nickname",
              "metadata", "active", "usage_type", "trial_period_days", "billing_scheme", "meter", "tiers",
              "tiers_mode", "transform_usage"}, ("currency", "interval"))
    prod = p.get("product")
    if isinstance(prod, dict):
        prod = create_product(ctx, prod)["id"]
    if not prod:
        raise missing_param("product")
    price_params = {"currency": p["currency"], "product": prod, "nickname": p.get("nickname"),
                    "recurring": {"interval": p["interval"], "interval_count": p.get("interval_count") or 1,
                                  "usage_type": p.get("usage_type") or "licensed",
                                  "trial_period_days": p.get("trial_period_days")}}
    if p.get("amount") not in (None, ""):
        price_params["unit_amount"] = p["amount"]
    elif p.get("amount_decimal") not in (None, ""):
        price_params["unit_amount_decimal"] = p["amount_decimal"]
    if "metadata" in p:
        price_params["metadata"] = p["metadata"]
    if "active" in p:
        price_params["active"] = p["active"]
    seq, obj = _build_price(ctx, {k: v for k, v in price_params.items() if v is not None},
                            custom_id=p.get("id") or None)
    out = insert(ctx, "prices", seq, obj, None)
    plan = plan_from_price(out)
    ctx.emit("plan.created", plan)
    ctx.emit("price.created", out)
    return plan


def update_plan(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"active", "nickname", "metadata", "trial_period_days", "product"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, PRICE_FIELDS)
        if "trial_period_days" in p and o.get("recurring"):
            o["recurring"] = dict(o["recurring"], trial_period_days=int_param(p, "trial_period_days"))
        if p.get("product"):
            o["product"] = str(p["product"])

    after, prev = modify(ctx, "prices", seq, fn, None)
    plan = plan_from_price(after)
    if prev:
        ctx.emit("plan.updated", plan, prev)
        ctx.emit("price.updated", after, prev)
    return plan


def delete_plan(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    plan = plan_from_price(ctx.render("prices", seq))
    t = ctx.acc.tables["prices"]
    t.delete(seq)
    ctx.emit("plan.deleted", plan)
    return {"id": t.id_of(seq), "object": "plan", "deleted": True}


COUPON_FIELDS = frozenset({"percent_off", "amount_off", "currency", "duration", "duration_in_months",
                           "max_redemptions", "redeem_by", "name", "metadata", "applies_to", "currency_options"})


def create_coupon(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, COUPON_FIELDS | {"id"})
    if p.get("percent_off") in (None, "") and p.get("amount_off") in (None, ""):
        raise invalid("You must pass either percent_off or amount_off.", param="percent_off")
    if p.get("amount_off") not in (None, "") and not p.get("currency"):
        raise missing_param("currency")
    seq, obj = ctx.acc.new_object("coupons", ctx.now(), p.get("id") or None)
    obj.update({"amount_off": None, "currency": None, "duration": "once", "duration_in_months": None,
                "max_redemptions": None, "name": None, "percent_off": None, "redeem_by": None,
                "times_redeemed": 0, "valid": True})
    set_fields(obj, p, COUPON_FIELDS)
    return insert(ctx, "coupons", seq, obj, "coupon.created")


def update_coupon(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"name", "metadata", "currency_options"})
    return modify(ctx, "coupons", seq, lambda o: set_fields(o, p, {"name", "metadata"}), "coupon.updated")[0]


def delete_coupon(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    return remove(ctx, "coupons", seq, "coupon.deleted")


PROMO_FIELDS = frozenset({"code", "customer", "expires_at", "max_redemptions", "restrictions", "active", "metadata"})


def create_promotion_code(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, PROMO_FIELDS | {"promotion", "coupon"})
    promo = _hash(p.get("promotion"))
    coupon = promo.get("coupon") or p.get("coupon")
    if not coupon:
        raise missing_param("promotion[coupon]")
    _live(ctx, "coupons", coupon, "promotion[coupon]")
    seq, obj = ctx.acc.new_object("promotion_codes", ctx.now())
    obj.update({"active": True, "code": b62_hash(h(ctx.acc.ns, seq, 5), 8).upper(), "customer": None,
                "expires_at": None, "max_redemptions": None, "times_redeemed": 0,
                "promotion": {"coupon": coupon, "type": "coupon"}})
    set_fields(obj, p, PROMO_FIELDS)
    return insert(ctx, "promotion_codes", seq, obj, "promotion_code.created")


def update_promotion_code(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"active", "metadata", "restrictions"})
    fields = {"active", "metadata", "restrictions"}
    return modify(ctx, "promotion_codes", seq, lambda o: set_fields(o, p, fields), "promotion_code.updated")[0]


TAX_RATE_FIELDS = frozenset({"display_name", "percentage", "inclusive", "active", "country", "state",
                             "jurisdiction", "description", "tax_type", "metadata"})


def create_tax_rate(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, TAX_RATE_FIELDS, ("display_name", "percentage", "inclusive"))
    seq, obj = ctx.acc.new_object("tax_rates", ctx.now())
    obj.update({"active": True, "country": None, "description": None, "jurisdiction": None, "state": None,
                "tax_type": None, "jurisdiction_level": None})
    set_fields(obj, p, TAX_RATE_FIELDS)
    obj["effective_percentage"] = obj.get("percentage")
    return insert(ctx, "tax_rates", seq, obj, "tax_rate.created")


def update_tax_rate(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    fields = TAX_RATE_FIELDS - {"percentage", "inclusive"}
    check(p, fields)
    return modify(ctx, "tax_rates", seq, lambda o: set_fields(o, p, fields), "tax_rate.updated")[0]


def create_feature(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"name", "lookup_key", "metadata"}, ("name", "lookup_key"))
    seq, obj = ctx.acc.new_object("features", ctx.now())
    obj.update({"active": True, "name": p["name"], "lookup_key": p["lookup_key"]})
    set_fields(obj, p, {"metadata"})
    return insert(ctx, "features", seq, obj, None)


def update_feature(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"name", "active", "metadata"})
    return modify(ctx, "features", seq, lambda o: set_fields(o, p, {"name", "active", "metadata"}), None)[0]


def create_product_feature(ctx: Ctx, prod: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"entitlement_feature"}, ("entitlement_feature",))
    acc = ctx.acc
    f = _live(ctx, "features", p["entitlement_feature"], "entitlement_feature")
    if f in acc.features_of_product(prod):
        raise invalid("A feature with this id is already attached to the product.", param="entitlement_feature")
    watch = EntitlementWatch(ctx, customers_with_product(acc, prod))
    seq, obj = acc.new_object("product_features", ctx.now())
    obj["entitlement_feature"] = acc.tables["features"].id_of(f)
    out = insert(ctx, "product_features", seq, obj, None, parent=prod)
    watch.done()
    return out


def delete_product_feature(ctx: Ctx, prod: int, seq: int) -> dict[str, Any]:
    acc = ctx.acc
    watch = EntitlementWatch(ctx, customers_with_product(acc, prod))
    out = remove(ctx, "product_features", seq, None)
    watch.done()
    return out


# ---- payment methods & tax ids --------------------------------------------------------------------------

MAGIC_CARDS = {"visa": ("visa", "4242"), "visa_debit": ("visa", "5556"), "mastercard": ("mastercard", "4444"),
               "amex": ("amex", "8431"), "discover": ("discover", "1117"), "us": ("visa", "4242"),
               "chargeDeclined": ("visa", "0002"), "chargeDeclinedInsufficientFunds": ("visa", "9995")}
DECLINING = {"0002", "9995"}


def _new_pm(ctx: Ctx, brand: str, last4: str, customer: str | None = None,
            p: dict[str, Any] | None = None) -> int:
    acc = ctx.acc
    seq, obj = acc.new_object("payment_methods", ctx.now())
    x = h(acc.ns, seq, 21)
    obj["type"] = "card"
    obj["customer"] = customer
    obj["allow_redisplay"] = "unspecified"
    obj["billing_details"] = {"address": None, "email": None, "name": None, "phone": None, "tax_id": None}
    card = dict(make("payment_method")["card"])
    card.update({"brand": brand, "display_brand": brand, "last4": last4, "exp_month": 1 + x % 12,
                 "exp_year": 2028 + (x >> 8) % 5, "fingerprint": b62_hash(x, 16), "wallet": None,
                 "generated_from": None, "networks": {"available": [brand], "preferred": None}})
    obj["card"] = card
    if p:
        set_fields(obj, p, {"billing_details", "metadata", "allow_redisplay"})
    insert(ctx, "payment_methods", seq, obj, None)
    return seq


def resolve_pm(ctx: Ctx, ident: Any, param: str, customer: str | None = None) -> int:
    """A payment method row; Stripe's test ids (``pm_card_visa``, ``tok_visa``...) create a new one."""
    ident = str(id_of(ident))
    for prefix in ("pm_card_", "tok_"):
        if ident.startswith(prefix):
            brand, last4 = MAGIC_CARDS.get(ident[len(prefix):], ("visa", "4242"))
            return _new_pm(ctx, brand, last4, customer)
    return _live(ctx, "payment_methods", ident, param)


def create_payment_method(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"type", "card", "billing_details", "metadata", "customer", "payment_method", "allow_redisplay"})
    if p.get("payment_method"):  # cloning onto a connected account: just make a new card
        return ctx.render("payment_methods", resolve_pm(ctx, p["payment_method"], "payment_method"))
    if p.get("type") != "card":
        if not p.get("type"):
            raise missing_param("type")
        raise invalid("The emulator only supports card payment methods.", param="type")
    card = _hash(p.get("card"))
    number = str(card.get("number") or "")
    token = str(card.get("token") or "")
    if token.startswith("tok_"):
        brand, last4 = MAGIC_CARDS.get(token[4:], ("visa", "4242"))
    else:
        last4 = number[-4:] if len(number) >= 4 else "4242"
        brand = {"4": "visa", "5": "mastercard", "3": "amex", "6": "discover"}.get(number[:1], "visa")
    seq = _new_pm(ctx, brand, last4, None, p)
    return ctx.render("payment_methods", seq)


def attach_payment_method(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"customer"}, ("customer",))
    c = _live(ctx, "customers", p["customer"], "customer")
    cid = ctx.acc.tables["customers"].id_of(c)

    def fn(o: dict[str, Any]) -> None:
        o["customer"] = cid

    after, _ = modify(ctx, "payment_methods", seq, fn, None)
    ctx.emit("payment_method.attached", after)
    return after


def detach_payment_method(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    cur = ctx.render("payment_methods", seq)
    if not cur.get("customer"):
        raise invalid("The payment method you provided is not attached to a customer so detachment is impossible.",
                      param="payment_method")

    def fn(o: dict[str, Any]) -> None:
        o["customer"] = None

    after, prev = modify(ctx, "payment_methods", seq, fn, None)
    ctx.emit("payment_method.detached", after, prev)
    return after


def update_payment_method(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"billing_details", "metadata", "card", "allow_redisplay"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, {"billing_details", "metadata", "allow_redisplay"})
        if isinstance(p.get("card"), dict):
            card = dict(o.get("card") or {})
            for k in ("exp_month", "exp_year"):
                if k in p["card"]:
                    card[k] = to_int(p["card"][k], f"card[{k}]")
            o["card"] = card

    return modify(ctx, "payment_methods", seq, fn, "payment_method.updated")[0]


def _create_tax_id(ctx: Ctx, cust: int, p: dict[str, Any]) -> dict[str, Any]:
    if not p.get("type"):
        raise missing_param("type")
    if not p.get("value"):
        raise missing_param("value")
    acc = ctx.acc
    cid = acc.tables["customers"].id_of(cust)
    country = next((c for t, c, _ in TAX_ID_TYPES if t == p["type"]), None)
    if country is None and "_" in str(p["type"]):
        country = str(p["type"]).split("_")[0].upper()
    seq, obj = acc.new_object("tax_ids", ctx.now())
    obj.update({"customer": cid, "owner": {"customer": cid, "type": "customer", "customer_account": None},
                "type": p["type"], "value": p["value"], "country": country,
                "verification": {"status": "pending", "verified_address": None, "verified_name": None}})
    return insert(ctx, "tax_ids", seq, obj, "customer.tax_id.created")


def create_tax_id(ctx: Ctx, p: dict[str, Any], cust: int | None = None) -> dict[str, Any]:
    if cust is None:
        check(p, {"type", "value", "owner"}, ("type", "value"))
        owner = _hash(p.get("owner"))
        if owner.get("type") not in (None, "customer"):
            raise invalid("The emulator only supports customer-owned tax ids.", param="owner[type]")
        cust = _live(ctx, "customers", owner.get("customer"), "owner[customer]")
    else:
        check(p, {"type", "value"}, ("type", "value"))
    return _create_tax_id(ctx, cust, p)


def delete_tax_id(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    return remove(ctx, "tax_ids", seq, "customer.tax_id.deleted")


# ---- money movement primitives ----------------------------------------------------------------------------

def _balance_transaction(ctx: Ctx, kind: str, source: str, amount: int, fee: int, description: str | None) -> str:
    seq, obj = ctx.acc.new_object("balance_transactions", ctx.now())
    fee_details = [{"amount": fee, "application": None, "currency": "usd", "description": "Stripe processing fees",
                    "type": "stripe_fee"}] if fee else []
    obj.update({"amount": amount, "available_on": ctx.now() + 2 * DAY, "currency": "usd", "description": description,
                "exchange_rate": None, "fee": fee, "fee_details": fee_details, "net": amount - fee,
                "reporting_category": kind, "source": source, "status": "pending", "type": kind})
    insert(ctx, "balance_transactions", seq, obj, None)
    return obj["id"]


def _new_charge(ctx: Ctx, *, amount: int, currency: str, customer: str | None, pm: int | None,
                payment_intent: str | None, description: str | None, metadata: Any,
                capture: bool = True, declined: bool = False) -> int:
    acc = ctx.acc
    seq, obj = acc.new_object("charges", ctx.now())
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
    pmd = dict(obj["payment_method_details"]["card"])
    pmd.update({k: card.get(k) for k in ("brand", "last4", "exp_month", "exp_year", "fingerprint", "funding")})
    pmd.update({"network": card.get("brand"), "wallet": None, "installments": None, "amount_authorized": amount})
    obj["payment_method_details"] = {"card": pmd, "type": "card"}
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
        obj["balance_transaction"] = _balance_transaction(ctx, "charge", obj["id"], amount, fee, description)
    out = insert(ctx, "charges", seq, obj, None)
    ctx.emit("charge.failed" if declined else "charge.succeeded", out)
    return seq


def _card_error(charge_id: str | None, pi: dict[str, Any] | None = None) -> StripeError:
    extra: dict[str, Any] = {"decline_code": "generic_decline"}
    if charge_id:
        extra["charge"] = charge_id
    if pi is not None:
        extra["payment_intent"] = pi
    return StripeError(402, "Your card was declined.", type="card_error", code="card_declined", extra=extra)


def _pm_declines(ctx: Ctx, pm: int | None) -> bool:
    if pm is None:
        return False
    card = ctx.render("payment_methods", pm).get("card") or {}
    return card.get("last4") in DECLINING


# ---- charges ---------------------------------------------------------------------------------------

CHARGE_UPDATE = frozenset({"description", "metadata", "receipt_email", "fraud_details", "shipping", "transfer_group"})


def create_charge(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, CHARGE_UPDATE | {"amount", "currency", "customer", "source", "capture", "statement_descriptor",
                              "statement_descriptor_suffix", "application_fee_amount", "on_behalf_of",
                              "transfer_data", "payment_method"}, ("amount", "currency"))
    amount = to_int(p["amount"], "amount")
    if amount < 50:
        raise invalid("Amount must be at least $0.50 usd", param="amount", code="amount_too_small")
    customer = None
    if p.get("customer"):
        customer = ctx.acc.tables["customers"].id_of(_live(ctx, "customers", p["customer"], "customer"))
    src = p.get("source") or p.get("payment_method")
    if not src and customer:
        cus = ctx.render("customers", _live(ctx, "customers", customer, "customer"))
        src = (cus.get("invoice_settings") or {}).get("default_payment_method")
    if not src:
        raise missing_param("source")
    pm = resolve_pm(ctx, src, "source", customer)
    declined = _pm_declines(ctx, pm)
    seq = _new_charge(ctx, amount=amount, currency=str(p["currency"]).lower(), customer=customer, pm=pm,
                      payment_intent=None, description=p.get("description"), metadata=p.get("metadata"),
                      capture=bool_param(p, "capture", True), declined=declined)
    if declined:
        raise _card_error(ctx.acc.tables["charges"].id_of(seq))
    if any(k in p for k in ("receipt_email", "shipping", "transfer_group")):
        return update_charge(ctx, seq, {k: p[k] for k in ("receipt_email", "shipping", "transfer_group") if k in p},
                             silent=True)
    return ctx.render("charges", seq)


def update_charge(ctx: Ctx, seq: int, p: dict[str, Any], silent: bool = False) -> dict[str, Any]:
    check(p, CHARGE_UPDATE | {"customer"})
    return modify(ctx, "charges", seq, lambda o: set_fields(o, p, CHARGE_UPDATE | {"customer"}),
                  None if silent else "charge.updated")[0]


def capture_charge(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"amount", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
              "application_fee_amount", "transfer_data", "transfer_group"})
    cur = ctx.render("charges", seq)
    if cur.get("captured") or cur.get("status") != "succeeded":
        raise invalid(f"Charge {cur['id']} has already been captured.", code="charge_already_captured")
    amount = int_param(p, "amount", cur["amount"]) or cur["amount"]
    bt = _balance_transaction(ctx, "charge", cur["id"], amount, amount * 29 // 1000 + 30, cur.get("description"))

    def fn(o: dict[str, Any]) -> None:
        o.update({"captured": True, "amount_captured": amount, "balance_transaction": bt})

    after, prev = modify(ctx, "charges", seq, fn, None)
    ctx.emit("charge.captured", after, prev)
    return after


# ---- payment intents -----------------------------------------------------------------------------------

PI_UPDATE = frozenset({"amount", "currency", "customer", "description", "metadata", "receipt_email",
                       "setup_future_usage", "shipping", "statement_descriptor", "statement_descriptor_suffix",
                       "transfer_group", "payment_method_types"})
PI_CREATE_EXTRA = frozenset({"payment_method", "confirm", "capture_method", "automatic_payment_methods",
                             "off_session", "return_url", "confirmation_method", "error_on_requires_action",
                             "mandate_data", "on_behalf_of", "transfer_data", "application_fee_amount",
                             "payment_method_options", "use_stripe_sdk", "payment_method_data", "radar_options",
                             "excluded_payment_method_types", "payment_method_configuration"})


def create_payment_intent(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, PI_UPDATE | PI_CREATE_EXTRA, ("amount", "currency"))
    acc = ctx.acc
    amount = to_int(p["amount"], "amount")
    if amount < 50:
        raise invalid("Amount must be at least $0.50 usd", param="amount", code="amount_too_small")
    customer = None
    if p.get("customer"):
        customer = acc.tables["customers"].id_of(_live(ctx, "customers", p["customer"], "customer"))
    pm = resolve_pm(ctx, p["payment_method"], "payment_method", customer) if p.get("payment_method") else None
    seq, obj = acc.new_object("payment_intents", ctx.now())
    apm = p.get("automatic_payment_methods")
    obj.update({
        "amount": amount, "amount_capturable": 0, "amount_received": 0, "currency": str(p["currency"]).lower(),
        "customer": customer, "description": p.get("description"), "latest_charge": None,
        "payment_method": acc.tables["payment_methods"].id_of(pm) if pm is not None else None,
        "status": "requires_confirmation" if pm is not None else "requires_payment_method",
        "capture_method": p.get("capture_method") or "automatic",
        "confirmation_method": p.get("confirmation_method") or "automatic",
        "client_secret": f"{obj['id']}_secret_{_idem_suffix(ctx, 25)}",
        "automatic_payment_methods": {"enabled": to_bool(apm.get("enabled", "true"), "automatic_payment_methods")}
        if isinstance(apm, dict) else None,
        "payment_method_types": as_list(p.get("payment_method_types")) or ["card"],
        "canceled_at": None, "cancellation_reason": None,
    })
    set_fields(obj, p, {"metadata", "receipt_email", "setup_future_usage", "shipping", "statement_descriptor",
                        "statement_descriptor_suffix", "transfer_group"})
    insert(ctx, "payment_intents", seq, obj, "payment_intent.created")
    if bool_param(p, "confirm"):
        return confirm_payment_intent(ctx, seq, {})
    return ctx.render("payment_intents", seq)


def confirm_payment_intent(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"payment_method", "return_url", "off_session", "receipt_email", "setup_future_usage", "shipping",
              "mandate_data", "payment_method_options", "use_stripe_sdk", "error_on_requires_action",
              "capture_method", "payment_method_types", "payment_method_data", "radar_options"})
    acc = ctx.acc
    cur = ctx.render("payment_intents", seq)
    if cur["status"] in ("succeeded", "canceled", "requires_capture"):
        raise invalid(f"This PaymentIntent's status is {cur['status']}, so it cannot be confirmed.",
                      code="payment_intent_unexpected_state")
    pm_ident = p.get("payment_method") or cur.get("payment_method")
    if not pm_ident:
        raise invalid("You cannot confirm this PaymentIntent because it's missing a payment method.",
                      code="payment_intent_unexpected_state", param="payment_method")
    pm = resolve_pm(ctx, pm_ident, "payment_method", cur.get("customer"))
    declined = _pm_declines(ctx, pm)
    manual = cur.get("capture_method") == "manual"
    ch = _new_charge(ctx, amount=cur["amount"], currency=cur["currency"], customer=cur.get("customer"), pm=pm,
                     payment_intent=cur["id"], description=cur.get("description"), metadata=cur.get("metadata"),
                     capture=not manual, declined=declined)
    ch_id = acc.tables["charges"].id_of(ch)

    def fn(o: dict[str, Any]) -> None:
        o["payment_method"] = acc.tables["payment_methods"].id_of(pm)
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
        raise _card_error(ch_id, after)
    ctx.emit("payment_intent.amount_capturable_updated" if manual else "payment_intent.succeeded", after)
    return after


def capture_payment_intent(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"amount_to_capture", "application_fee_amount", "statement_descriptor", "metadata", "final_capture"})
    cur = ctx.render("payment_intents", seq)
    if cur["status"] != "requires_capture":
        raise invalid(f"This PaymentIntent could not be captured because it has a status of {cur['status']}. "
                      "Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
                      code="payment_intent_unexpected_state")
    ch = ctx.acc.tables["charges"].seq_of(cur["latest_charge"])
    if ch is not None:
        capture_charge(ctx, ch, {})

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "succeeded", "amount_received": o["amount"], "amount_capturable": 0})

    after, _ = modify(ctx, "payment_intents", seq, fn, None)
    ctx.emit("payment_intent.succeeded", after)
    return after


def cancel_payment_intent(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"cancellation_reason"})
    cur = ctx.render("payment_intents", seq)
    if cur["status"] in ("succeeded", "canceled"):
        raise invalid(f"You cannot cancel this PaymentIntent because it has a status of {cur['status']}.",
                      code="payment_intent_unexpected_state")

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "canceled", "canceled_at": ctx.now(),
                  "cancellation_reason": p.get("cancellation_reason") or "requested_by_customer"})

    after, _ = modify(ctx, "payment_intents", seq, fn, None)
    ctx.emit("payment_intent.canceled", after)
    return after


def update_payment_intent(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, PI_UPDATE | {"payment_method"})
    if p.get("customer"):
        _live(ctx, "customers", p["customer"], "customer")

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, PI_UPDATE)
        if p.get("payment_method"):
            o["payment_method"] = ctx.acc.tables["payment_methods"].id_of(
                resolve_pm(ctx, p["payment_method"], "payment_method", o.get("customer")))
            if o["status"] == "requires_payment_method":
                o["status"] = "requires_confirmation"

    return modify(ctx, "payment_intents", seq, fn, None)[0]  # Stripe has no payment_intent.updated


def _pay(ctx: Ctx, *, amount: int, currency: str, customer: str | None, pm_ident: Any,
         description: str | None) -> tuple[str, str]:
    """PaymentIntent + Charge that succeed (or raise 402): returns (pi_id, charge_id)."""
    pi = create_payment_intent(ctx, {"amount": amount, "currency": currency, "customer": customer,
                                     "payment_method": pm_ident or "pm_card_visa", "confirm": "true",
                                     "description": description})
    return pi["id"], pi["latest_charge"]


# ---- refunds -------------------------------------------------------------------------------------------

def create_refund(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"charge", "payment_intent", "amount", "reason", "metadata", "refund_application_fee",
              "reverse_transfer", "instructions_email", "origin", "currency", "customer"})
    acc = ctx.acc
    if p.get("charge"):
        ch = _live(ctx, "charges", p["charge"], "charge")
    elif p.get("payment_intent"):
        pi = ctx.render("payment_intents", _live(ctx, "payment_intents", p["payment_intent"], "payment_intent"))
        if not pi.get("latest_charge") or pi.get("status") != "succeeded":
            raise invalid("This PaymentIntent does not have a successful charge to refund.", param="payment_intent")
        ch = acc.live_seq_or_404("charges", pi["latest_charge"], "payment_intent")
    else:
        raise invalid("One of the following params should be provided for this request: payment_intent or charge.")
    charge = ctx.render("charges", ch)
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
    seq, obj = acc.new_object("refunds", ctx.now())
    obj.update({"amount": amount, "charge": charge["id"], "currency": charge["currency"],
                "payment_intent": charge.get("payment_intent"), "reason": reason, "status": "succeeded",
                "customer": charge.get("customer"), "payment_method": charge.get("payment_method"),
                "receipt_number": None, "source_transfer_reversal": None, "transfer_reversal": None})
    set_fields(obj, p, {"metadata"})
    obj["balance_transaction"] = _balance_transaction(ctx, "refund", obj["id"], -amount, 0, "REFUND FOR CHARGE")
    t = acc.tables["refunds"]
    t.put(seq, acc.dehydrate("refunds", obj))
    t.add_child(ch, seq)  # shows up in the charge's embedded refunds list
    out = ctx.render("refunds", seq)
    ctx.emit("refund.created", out)

    def fn(o: dict[str, Any]) -> None:
        o["amount_refunded"] = o.get("amount_refunded", 0) + amount
        o["refunded"] = o["amount_refunded"] >= o["amount"]

    after, prev = modify(ctx, "charges", ch, fn, None)
    ctx.emit("charge.refunded", after, prev)
    return out


def update_refund(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"metadata"})
    return modify(ctx, "refunds", seq, lambda o: set_fields(o, p, {"metadata"}), "refund.updated")[0]


# ---- setup intents ----------------------------------------------------------------------------------------

def create_setup_intent(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"customer", "payment_method", "confirm", "usage", "metadata", "payment_method_types", "description",
              "automatic_payment_methods", "return_url", "single_use", "on_behalf_of", "mandate_data",
              "attach_to_self", "flow_directions", "payment_method_options", "use_stripe_sdk",
              "payment_method_data", "payment_method_configuration", "excluded_payment_method_types"})
    acc = ctx.acc
    customer = None
    if p.get("customer"):
        customer = acc.tables["customers"].id_of(_live(ctx, "customers", p["customer"], "customer"))
    seq, obj = acc.new_object("setup_intents", ctx.now())
    pm = resolve_pm(ctx, p["payment_method"], "payment_method") if p.get("payment_method") else None
    obj.update({"customer": customer, "description": p.get("description"), "usage": p.get("usage") or "off_session",
                "payment_method": acc.tables["payment_methods"].id_of(pm) if pm is not None else None,
                "status": "requires_confirmation" if pm is not None else "requires_payment_method",
                "client_secret": f"{obj['id']}_secret_{_idem_suffix(ctx, 25)}",
                "payment_method_types": as_list(p.get("payment_method_types")) or ["card"],
                "automatic_payment_methods": None, "latest_attempt": None, "mandate": None})
    set_fields(obj, p, {"metadata"})
    insert(ctx, "setup_intents", seq, obj, "setup_intent.created")
    if bool_param(p, "confirm"):
        return confirm_setup_intent(ctx, seq, {})
    return ctx.render("setup_intents", seq)


def confirm_setup_intent(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"payment_method", "return_url", "mandate_data", "payment_method_options", "use_stripe_sdk",
              "payment_method_data"})
    cur = ctx.render("setup_intents", seq)
    if cur["status"] in ("succeeded", "canceled"):
        raise invalid(f"This SetupIntent's status is {cur['status']}, so it cannot be confirmed.",
                      code="setup_intent_unexpected_state")
    pm_ident = p.get("payment_method") or cur.get("payment_method") or "pm_card_visa"
    pm = resolve_pm(ctx, pm_ident, "payment_method")
    pm_id = ctx.acc.tables["payment_methods"].id_of(pm)
    if cur.get("customer") and ctx.render("payment_methods", pm).get("customer") != cur["customer"]:
        attach_payment_method(ctx, pm, {"customer": cur["customer"]})

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "succeeded", "payment_method": pm_id})

    after, _ = modify(ctx, "setup_intents", seq, fn, None)
    ctx.emit("setup_intent.succeeded", after)
    return after


def cancel_setup_intent(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"cancellation_reason"})
    cur = ctx.render("setup_intents", seq)
    if cur["status"] in ("succeeded", "canceled"):
        raise invalid(f"You cannot cancel this SetupIntent because it has a status of {cur['status']}.",
                      code="setup_intent_unexpected_state")

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "canceled", "cancellation_reason": p.get("cancellation_reason") or "requested_by_customer"})

    after, _ = modify(ctx, "setup_intents", seq, fn, None)
    ctx.emit("setup_intent.canceled", after)
    return after


def update_setup_intent(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"customer", "description", "metadata", "payment_method", "payment_method_types", "flow_directions"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, {"customer", "description", "metadata"})
        if p.get("payment_method"):
            o["payment_method"] = ctx.acc.tables["payment_methods"].id_of(
                resolve_pm(ctx, p["payment_method"], "payment_method"))

    return modify(ctx, "setup_intents", seq, fn, None)[0]  # no setup_intent.updated event at Stripe


# ---- subscriptions ----------------------------------------------------------------------------------------

SUB_UPDATE = frozenset({"metadata", "cancel_at_period_end", "cancel_at", "default_payment_method", "description",
                        "pause_collection", "collection_method", "days_until_due", "trial_end",
                        "cancellation_details", "default_tax_rates"})
SUB_IGNORED = frozenset({"payment_behavior", "proration_behavior", "billing_cycle_anchor", "coupon", "discounts",
                         "promotion_code", "off_session", "automatic_tax", "payment_settings", "trial_from_plan",
                         "backdate_start_date", "currency", "add_invoice_items", "application_fee_percent",
                         "transfer_data", "on_behalf_of", "billing_thresholds", "pending_invoice_item_interval",
                         "trial_settings", "billing_mode", "proration_date", "invoice_settings", "test_clock",
                         "billing_cycle_anchor_config", "expand"})


def _item_obj(ctx: Ctx, sub_id: str, price_seq: int, qty: int, metadata: Any, created: int) -> tuple[int, dict[str, Any]]:
    acc = ctx.acc
    seq, obj = acc.new_object("subscription_items", created)
    price = ctx.render("prices", price_seq)
    rec = price.get("recurring") or {}
    if not rec:
        raise invalid(f"The price specified ({price['id']}) is a one-time price; subscription items need a "
                      "recurring price.", param="items")
    unit_days = {"day": 1, "week": 7, "month": 30, "year": 365}.get(str(rec.get("interval")), 30)
    days = unit_days * int(rec.get("interval_count") or 1)
    obj.update({"price": price["id"], "plan": price["id"], "quantity": qty, "subscription": sub_id,
                "current_period_start": created, "current_period_end": created + days * DAY, "discounts": [],
                "tax_rates": [], "billing_thresholds": None})
    if metadata:
        set_metadata(obj, metadata)
    return seq, obj


def _price_for_item(ctx: Ctx, item: dict[str, Any], param: str) -> int:
    if item.get("price"):
        return _live(ctx, "prices", item["price"], f"{param}[price]")
    if item.get("plan"):
        return _live(ctx, "prices", item["plan"], f"{param}[plan]")
    if isinstance(item.get("price_data"), dict):
        pd = dict(item["price_data"])
        seq, obj = _build_price(ctx, pd)
        _insert_price(ctx, seq, obj)
        return seq
    raise missing_param(f"{param}[price]")


def create_subscription(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, SUB_UPDATE | SUB_IGNORED | {"customer", "items", "trial_period_days"}, ("customer",))
    acc = ctx.acc
    cust = _live(ctx, "customers", p["customer"], "customer")
    cid = acc.tables["customers"].id_of(cust)
    items = as_list(p.get("items"))
    if not items:
        raise missing_param("items")
    watch = EntitlementWatch(ctx, {cust})
    now = ctx.now()
    seq, obj = acc.new_object("subscriptions", now)
    sub_id = obj["id"]
    customer = ctx.render("customers", cust)
    dpm = p.get("default_payment_method") or None
    if dpm:
        dpm = acc.tables["payment_methods"].id_of(resolve_pm(ctx, dpm, "default_payment_method", cid))
    pay_pm = dpm or (customer.get("invoice_settings") or {}).get("default_payment_method")
    trial_days = int_param(p, "trial_period_days")
    trial_end = p.get("trial_end")
    trial_end_ts = None
    if trial_end == "now":
        trial_end_ts = None
    elif trial_end not in (None, ""):
        trial_end_ts = to_int(trial_end, "trial_end")
    elif trial_days:
        trial_end_ts = now + trial_days * DAY
    obj.update({"customer": cid, "status": "trialing" if trial_end_ts else "active", "start_date": now,
                "billing_cycle_anchor": trial_end_ts or now, "currency": "usd", "default_payment_method": dpm,
                "collection_method": p.get("collection_method") or "charge_automatically",
                "days_until_due": int_param(p, "days_until_due"), "description": p.get("description"),
                "trial_start": now if trial_end_ts else None, "trial_end": trial_end_ts, "latest_invoice": None,
                "cancel_at_period_end": bool_param(p, "cancel_at_period_end"),
                "cancel_at": int_param(p, "cancel_at"), "default_tax_rates": [], "discounts": []})
    set_fields(obj, p, {"metadata"})
    item_rows = []
    for k, it in enumerate(items):
        it = it if isinstance(it, dict) else {"price": it}
        price_seq = _price_for_item(ctx, it, f"items[{k}]")
        qty = int_param(it, "quantity", 1) or 1
        item_rows.append(_item_obj(ctx, sub_id, price_seq, qty, it.get("metadata"), now))
    # Invoice id first so the subscription.created event already carries latest_invoice, as at Stripe.
    inv_seq, inv_obj = acc.new_object("invoices", now)
    obj["latest_invoice"] = inv_obj["id"]
    acc.tables["subscriptions"].put(seq, acc.dehydrate("subscriptions", obj))
    for iseq, iobj in item_rows:
        acc.tables["subscription_items"].put(iseq, acc.dehydrate("subscription_items", iobj))
        acc.tables["subscription_items"].add_child(seq, iseq)
    ctx.emit("customer.subscription.created", ctx.render("subscriptions", seq))
    lines = []
    for _iseq, iobj in item_rows:
        price = ctx.render("prices", acc.tables["prices"].seq_of(iobj["price"]) or 0)
        unit = 0 if trial_end_ts else (price.get("unit_amount") or 0)
        lines.append({"price": price, "quantity": iobj["quantity"], "amount": unit * iobj["quantity"],
                      "subscription_item": iobj["id"], "description": f"{iobj['quantity']} × {price['product']}"})
    _build_invoice(ctx, inv_seq, inv_obj, cust, sub_id=sub_id, lines=lines, billing_reason="subscription_create",
                   collection_method=obj["collection_method"])
    if obj["collection_method"] == "charge_automatically":
        finalize_invoice(ctx, inv_seq, {})
        try:
            pay_invoice(ctx, inv_seq, {"payment_method": pay_pm} if pay_pm else {})
        except StripeError as exc:
            if exc.status != 402:
                raise
            modify(ctx, "subscriptions", seq, lambda o: o.update(status="incomplete"), "customer.subscription.updated")
    watch.done()
    return ctx.render("subscriptions", seq)


def _sub_customer(ctx: Ctx, seq: int) -> int | None:
    return _cust_seq(ctx, ctx.render("subscriptions", seq).get("customer"))


def update_subscription(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, SUB_UPDATE | SUB_IGNORED | {"items"})
    acc = ctx.acc
    cur = ctx.render("subscriptions", seq)
    if cur["status"] in ("canceled", "incomplete_expired"):
        raise invalid("A canceled subscription can only update its cancellation_details and metadata.",
                      param=next(iter(p), None))
    cust = _cust_seq(ctx, cur.get("customer"))
    watch = EntitlementWatch(ctx, {cust} if cust is not None else set())
    before = cur
    now = ctx.now()
    items_t = acc.tables["subscription_items"]
    for k, it in enumerate(as_list(p.get("items"))):
        if not isinstance(it, dict):
            raise invalid("Invalid array", param="items")
        if it.get("id"):
            si = _live(ctx, "subscription_items", it["id"], f"items[{k}][id]")
            if bool_param(it, "deleted"):
                items_t.delete(si)
                continue
            _apply_item_update(ctx, si, it, f"items[{k}]")
        else:
            price_seq = _price_for_item(ctx, it, f"items[{k}]")
            iseq, iobj = _item_obj(ctx, cur["id"], price_seq, int_param(it, "quantity", 1) or 1, it.get("metadata"), now)
            items_t.put(iseq, acc.dehydrate("subscription_items", iobj))
            items_t.add_child(seq, iseq)

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, SUB_UPDATE - {"trial_end", "default_payment_method"})
        if "default_payment_method" in p:
            dpm = p["default_payment_method"]
            o["default_payment_method"] = (acc.tables["payment_methods"].id_of(
                resolve_pm(ctx, dpm, "default_payment_method", o.get("customer"))) if dpm else None)
        if "trial_end" in p:
            te = p["trial_end"]
            if te == "now":
                o["trial_end"] = now
                if o["status"] == "trialing":
                    o["status"] = "active"
            else:
                o["trial_end"] = to_int(te, "trial_end")
        pc = p.get("pause_collection")
        if pc == "":
            o["pause_collection"] = None

    acc.tables["subscriptions"].put(seq, _fn_applied(acc, "subscriptions", seq, fn))
    after = ctx.render("subscriptions", seq)
    prev = previous_attributes(before, after)
    if prev:
        ctx.emit("customer.subscription.updated", after, prev)
    watch.done()
    return after


def _fn_applied(acc: AccountStore, name: str, seq: int, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = acc.stored(name, seq)
    fn(obj)
    return obj


def _apply_item_update(ctx: Ctx, si: int, it: dict[str, Any], param: str) -> None:
    acc = ctx.acc

    def fn(o: dict[str, Any]) -> None:
        if it.get("price") or it.get("plan") or it.get("price_data"):
            ps = _price_for_item(ctx, it, param)
            o["price"] = o["plan"] = acc.tables["prices"].id_of(ps)
        if "quantity" in it:
            o["quantity"] = to_int(it["quantity"], f"{param}[quantity]")
        if "metadata" in it:
            set_metadata(o, it["metadata"])

    acc.tables["subscription_items"].put(si, _fn_applied(acc, "subscription_items", si, fn))


def _cancel_subscription(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "canceled", "canceled_at": now, "ended_at": now})
        cd = p.get("cancellation_details")
        o["cancellation_details"] = {"comment": (cd or {}).get("comment") if isinstance(cd, dict) else None,
                                     "feedback": (cd or {}).get("feedback") if isinstance(cd, dict) else None,
                                     "reason": "cancellation_requested"}

    acc = ctx.acc
    acc.tables["subscriptions"].put(seq, _fn_applied(acc, "subscriptions", seq, fn))
    after = ctx.render("subscriptions", seq)
    ctx.emit("customer.subscription.deleted", after)
    return after


def cancel_subscription(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"invoice_now", "prorate", "cancellation_details"})
    cur = ctx.render("subscriptions", seq)
    if cur["status"] in ("canceled", "incomplete_expired"):
        raise StripeError(404, f"No such subscription: '{cur['id']}'", code="resource_missing", param="id")
    cust = _cust_seq(ctx, cur.get("customer"))
    watch = EntitlementWatch(ctx, {cust} if cust is not None else set())
    out = _cancel_subscription(ctx, seq, p)
    watch.done()
    return out


def _parent_sub_change(ctx: Ctx, sub_seq: int, change: Callable[[], Any]) -> Any:
    """Run ``change`` (an item edit) and emit ``customer.subscription.updated`` on the parent."""
    before = ctx.render("subscriptions", sub_seq)
    cust = _cust_seq(ctx, before.get("customer"))
    watch = EntitlementWatch(ctx, {cust} if cust is not None else set())
    result = change()
    after = ctx.render("subscriptions", sub_seq)
    prev = previous_attributes(before, after)
    if prev:
        ctx.emit("customer.subscription.updated", after, prev)
    watch.done()
    return result


def create_subscription_item(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"subscription", "price", "plan", "price_data", "quantity", "metadata", "proration_behavior",
              "payment_behavior", "tax_rates", "discounts", "proration_date", "billing_thresholds"}, ("subscription",))
    acc = ctx.acc
    sub = _live(ctx, "subscriptions", p["subscription"], "subscription")
    sub_id = acc.tables["subscriptions"].id_of(sub)

    def change() -> dict[str, Any]:
        price_seq = _price_for_item(ctx, p, "items")
        iseq, iobj = _item_obj(ctx, sub_id, price_seq, int_param(p, "quantity", 1) or 1, p.get("metadata"), ctx.now())
        t = acc.tables["subscription_items"]
        t.put(iseq, acc.dehydrate("subscription_items", iobj))
        t.add_child(sub, iseq)
        return ctx.render("subscription_items", iseq)

    return _parent_sub_change(ctx, sub, change)


def _item_parent(ctx: Ctx, si: int) -> int:
    item = ctx.render("subscription_items", si)
    return ctx.acc.live_seq_or_404("subscriptions", item["subscription"], "subscription")


def update_subscription_item(ctx: Ctx, si: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"price", "plan", "price_data", "quantity", "metadata", "proration_behavior", "payment_behavior",
              "tax_rates", "discounts", "proration_date", "off_session", "billing_thresholds"})

    def change() -> dict[str, Any]:
        _apply_item_update(ctx, si, p, "")
        return ctx.render("subscription_items", si)

    return _parent_sub_change(ctx, _item_parent(ctx, si), change)


def delete_subscription_item(ctx: Ctx, si: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"proration_behavior", "proration_date", "clear_usage"})
    sub = _item_parent(ctx, si)
    if len(ctx.acc.child_seqs("subscription_items", "subscriptions", sub)) <= 1:
        raise invalid("A subscription must have at least one active plan. To cancel a subscription, please use "
                      "the cancel API endpoint on /v1/subscriptions.", param="id")
    return _parent_sub_change(ctx, sub, lambda: remove(ctx, "subscription_items", si, None))


# ---- subscription schedules -----------------------------------------------------------------------------

def create_subscription_schedule(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"customer", "from_subscription", "start_date", "end_behavior", "phases", "metadata",
              "default_settings", "billing_mode"})
    acc = ctx.acc
    now = ctx.now()
    sub_id = None
    if p.get("from_subscription"):
        ss = _live(ctx, "subscriptions", p["from_subscription"], "from_subscription")
        sub = ctx.render("subscriptions", ss)
        sub_id = sub["id"]
        cid = sub["customer"]
        phases_in = [{"items": [{"price": i["price"]["id"], "quantity": i.get("quantity", 1)}
                                for i in sub["items"]["data"]]}]
    else:
        cid = acc.tables["customers"].id_of(_live(ctx, "customers", p.get("customer"), "customer"))
        phases_in = as_list(p.get("phases"))
        if not phases_in:
            raise missing_param("phases")
    start = p.get("start_date")
    start_ts = now if start in (None, "", "now") else to_int(start, "start_date")
    phases: list[dict[str, Any]] = []
    t0 = start_ts
    for k, ph in enumerate(phases_in):
        ph = ph if isinstance(ph, dict) else {}
        end = int_param(ph, "end_date") or t0 + 30 * DAY * (int_param(ph, "iterations", 1) or 1)
        items: list[dict[str, Any]] = []
        for j, it in enumerate(as_list(ph.get("items"))):
            ps = _price_for_item(ctx, it if isinstance(it, dict) else {"price": it}, f"phases[{k}][items][{j}]")
            pid = acc.tables["prices"].id_of(ps)
            items.append({"billing_thresholds": None, "discounts": [], "metadata": {}, "plan": pid, "price": pid,
                          "quantity": int_param(it, "quantity", 1) if isinstance(it, dict) else 1, "tax_rates": []})
        phases.append({"add_invoice_items": [], "application_fee_percent": None, "billing_cycle_anchor": None,
                       "billing_thresholds": None, "collection_method": None, "currency": "usd",
                       "default_payment_method": None, "default_tax_rates": [], "description": None,
                       "discounts": [], "end_date": end, "invoice_settings": None, "items": items, "metadata": {},
                       "on_behalf_of": None, "proration_behavior": "create_prorations", "start_date": t0,
                       "transfer_data": None, "trial_end": None})
        t0 = end
    seq, obj = acc.new_object("subscription_schedules", now)
    active = start_ts <= now
    obj.update({"customer": cid, "subscription": sub_id, "status": "active" if active else "not_started",
                "end_behavior": p.get("end_behavior") or "release", "phases": phases,
                "current_phase": {"start_date": phases[0]["start_date"], "end_date": phases[0]["end_date"]}
                if active and phases else None, "canceled_at": None, "completed_at": None, "released_at": None,
                "released_subscription": None})
    set_fields(obj, p, {"metadata"})
    return insert(ctx, "subscription_schedules", seq, obj, "subscription_schedule.created")


def update_subscription_schedule(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"metadata", "end_behavior", "phases", "default_settings", "proration_behavior"})
    return modify(ctx, "subscription_schedules", seq, lambda o: set_fields(o, p, {"metadata", "end_behavior"}),
                  "subscription_schedule.updated")[0]


def _schedule_transition(ctx: Ctx, seq: int, status: str, field: str, event: str) -> dict[str, Any]:
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


def cancel_subscription_schedule(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"invoice_now", "prorate"})
    return _schedule_transition(ctx, seq, "canceled", "canceled_at", "subscription_schedule.canceled")


def release_subscription_schedule(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"preserve_cancel_date"})
    return _schedule_transition(ctx, seq, "released", "released_at", "subscription_schedule.released")


# ---- invoices ------------------------------------------------------------------------------------------

INV_UPDATE = frozenset({"metadata", "description", "footer", "auto_advance", "collection_method", "days_until_due",
                        "due_date", "default_payment_method", "custom_fields", "statement_descriptor"})
INV_IGNORED = frozenset({"pending_invoice_items_behavior", "currency", "automatic_tax", "discounts", "issuer",
                         "on_behalf_of", "payment_settings", "rendering", "shipping_cost", "shipping_details",
                         "transfer_data", "account_tax_ids", "default_tax_rates", "from_invoice",
                         "number", "effective_at", "application_fee_amount", "default_source"})


def _line_obj(ctx: Ctx, inv_id: str, line: dict[str, Any], created: int, sub_id: str | None) -> tuple[int, dict[str, Any]]:
    acc = ctx.acc
    seq, obj = acc.new_object("invoice_lines", created)
    price = line.get("price")
    qty = int(line.get("quantity") or 1)
    amount = int(line["amount"])
    si = line.get("subscription_item")
    ii = line.get("invoice_item")
    obj.update({"invoice": inv_id, "amount": amount, "subtotal": amount, "currency": "usd", "quantity": qty,
                "description": line.get("description"), "period": {"start": created, "end": created},
                "subscription": sub_id, "metadata": {}, "discountable": True})
    obj["pricing"] = {"type": "price_details", "unit_amount_decimal": str(amount // max(1, qty)),
                      "price_details": {"price": price["id"] if price else None,
                                        "product": id_of(price.get("product")) if price else None}}
    if si:
        obj["parent"] = {"type": "subscription_item_details", "invoice_item_details": None,
                         "subscription_item_details": {"invoice_item": None, "proration": False,
                                                       "proration_details": {"credited_items": None},
                                                       "subscription": sub_id, "subscription_item": si}}
    else:
        obj["parent"] = {"type": "invoice_item_details", "subscription_item_details": None,
                         "invoice_item_details": {"invoice_item": ii, "proration": False,
                                                  "proration_details": {"credited_items": None},
                                                  "subscription": sub_id}}
    return seq, obj


def _recompute_totals(acc: AccountStore, inv_seq: int, o: dict[str, Any]) -> None:
    total = 0
    for ls in acc.child_seqs("invoice_lines", "invoices", inv_seq):
        line = acc.render("invoice_lines", ls, False) or {}
        total += int(line.get("amount") or 0)
    o.update({"subtotal": total, "subtotal_excluding_tax": total, "total": total, "total_excluding_tax": total,
              "amount_due": total, "amount_remaining": total - int(o.get("amount_paid") or 0)})


def _build_invoice(ctx: Ctx, seq: int, obj: dict[str, Any], cust: int, *, sub_id: str | None,
                   lines: list[dict[str, Any]], billing_reason: str, collection_method: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    acc = ctx.acc
    now = ctx.now()
    customer = ctx.render("customers", cust)
    obj.update({
        "customer": customer["id"], "customer_name": customer.get("name"), "customer_email": customer.get("email"),
        "customer_address": customer.get("address"), "customer_phone": customer.get("phone"),
        "currency": "usd", "status": "draft", "amount_paid": 0, "attempted": False, "attempt_count": 0,
        "auto_advance": True, "billing_reason": billing_reason, "collection_method": collection_method,
        "period_start": now, "period_end": now, "number": None, "hosted_invoice_url": None, "invoice_pdf": None,
        "ending_balance": None, "starting_balance": 0, "total_taxes": [], "total_pretax_credit_amounts": [],
        "total_discount_amounts": [], "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
        "parent": {"quote_details": None, "type": "subscription_details",
                   "subscription_details": {"metadata": {}, "subscription": sub_id}} if sub_id else None,
        "due_date": now + 30 * DAY if collection_method == "send_invoice" else None,
        "default_payment_method": None, "description": None, "footer": None, "effective_at": None,
    })
    if extra:
        obj.update(extra)
    t = acc.tables["invoices"]
    t.put(seq, acc.dehydrate("invoices", obj))
    lt = acc.tables["invoice_lines"]
    for line in lines:
        ls, lobj = _line_obj(ctx, obj["id"], line, now, sub_id)
        lt.put(ls, acc.dehydrate("invoice_lines", lobj))
        lt.add_child(seq, ls)
    stored = acc.stored("invoices", seq)
    _recompute_totals(acc, seq, stored)
    t.put(seq, stored)
    out = ctx.render("invoices", seq)
    ctx.emit("invoice.created", out)
    return out


def create_invoice(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, INV_UPDATE | INV_IGNORED | {"customer", "subscription"})
    acc = ctx.acc
    sub_id = None
    if p.get("subscription"):
        ss = _live(ctx, "subscriptions", p["subscription"], "subscription")
        sub = ctx.render("subscriptions", ss)
        sub_id = sub["id"]
        cust = _live(ctx, "customers", sub["customer"], "subscription")
    else:
        cust = _live(ctx, "customers", p.get("customer"), "customer")
    seq, obj = acc.new_object("invoices", ctx.now())
    include = p.get("pending_invoice_items_behavior") == "include"
    extra: dict[str, Any] = {}
    for k in ("description", "footer", "default_payment_method", "custom_fields", "statement_descriptor"):
        if p.get(k) not in (None, ""):
            extra[k] = p[k]
    if "auto_advance" in p:
        extra["auto_advance"] = to_bool(p["auto_advance"], "auto_advance")
    if p.get("days_until_due") not in (None, ""):
        extra["due_date"] = ctx.now() + to_int(p["days_until_due"], "days_until_due") * DAY
    if p.get("due_date") not in (None, ""):
        extra["due_date"] = to_int(p["due_date"], "due_date")
    if p.get("metadata"):
        extra["metadata"] = {str(k): str(v) for k, v in p["metadata"].items() if v != ""}
    out = _build_invoice(ctx, seq, obj, cust, sub_id=sub_id, lines=[], billing_reason="manual",
                         collection_method=p.get("collection_method") or "charge_automatically", extra=extra)
    if include:
        cid = acc.tables["customers"].id_of(cust)
        ms = [acc.build_filter("invoiceitems", "customer", cid), acc.build_filter("invoiceitems", "pending", "true")]
        for ii in reversed(acc.all_seqs("invoiceitems", ms)):
            _attach_item_to_invoice(ctx, ii, seq, emit=False)
        out, _ = modify(ctx, "invoices", seq, lambda o: _recompute_totals(acc, seq, o), "invoice.updated")
    return out


def update_invoice(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, INV_UPDATE | INV_IGNORED)
    cur = ctx.render("invoices", seq)
    if cur["status"] != "draft":
        for k in p:
            if k not in ("metadata", "description", "footer", "auto_advance", "custom_fields", "expand"):
                raise invalid(f"You can only modify {k} on draft invoices.", param=k)
    fields = INV_UPDATE - {"days_until_due"}

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, fields)
        if p.get("days_until_due") not in (None, ""):
            o["due_date"] = ctx.now() + to_int(p["days_until_due"], "days_until_due") * DAY

    return modify(ctx, "invoices", seq, fn, "invoice.updated")[0]


def delete_invoice(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    cur = ctx.render("invoices", seq)
    if cur["status"] != "draft":
        raise invalid("You can only delete draft invoices.", param="id")
    return remove(ctx, "invoices", seq, "invoice.deleted")


def finalize_invoice(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"auto_advance"})
    acc = ctx.acc
    cur = ctx.render("invoices", seq)
    if cur["status"] != "draft":
        raise invalid("This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                      code="invoice_not_editable")
    now = ctx.now()
    cust = ctx.render("customers", _live(ctx, "customers", cur["customer"], "customer"))

    def fn(o: dict[str, Any]) -> None:
        o["status"] = "open"
        o["number"] = f"{cust.get('invoice_prefix') or 'EMU'}-{seq % 10000:04d}"
        o["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{acc.id}/{o['id']}"
        o["invoice_pdf"] = f"https://pay.stripe.com/invoice/{acc.id}/{o['id']}/pdf"
        o["effective_at"] = now
        o["ending_balance"] = 0
        o["status_transitions"] = dict(o.get("status_transitions") or {}, finalized_at=now)
        if "auto_advance" in p:
            o["auto_advance"] = to_bool(p["auto_advance"], "auto_advance")
        if o["amount_due"] == 0:
            o["status"] = "paid"
            o["status_transitions"]["paid_at"] = now

    after, prev = modify(ctx, "invoices", seq, fn, None)
    ctx.emit("invoice.finalized", after)
    ctx.emit("invoice.updated", after, prev)
    if after["status"] == "paid":
        ctx.emit("invoice.paid", after)
        ctx.emit("invoice.payment_succeeded", after)
    return after


def pay_invoice(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"payment_method", "paid_out_of_band", "source", "off_session", "forgive", "mandate"})
    cur = ctx.render("invoices", seq)
    if cur["status"] == "draft":
        cur = finalize_invoice(ctx, seq, {})
    if cur["status"] == "paid":
        raise invalid("Invoice is already paid")
    if cur["status"] != "open":
        raise invalid(f"This invoice can't be paid because it has status {cur['status']}.",
                      code="invoice_not_editable")
    now = ctx.now()
    amount = cur["amount_remaining"]
    if amount > 0 and not bool_param(p, "paid_out_of_band"):
        pm = p.get("payment_method") or p.get("source") or cur.get("default_payment_method")
        if not pm:
            cus = ctx.render("customers", _live(ctx, "customers", cur["customer"], "customer"))
            pm = (cus.get("invoice_settings") or {}).get("default_payment_method")
        try:
            _pay(ctx, amount=amount, currency=cur["currency"], customer=cur["customer"], pm_ident=pm,
                 description=f"Payment for Invoice {cur.get('number')}")
        except StripeError as exc:
            if exc.status == 402:
                after, _ = modify(ctx, "invoices", seq, lambda o: o.update(attempted=True,
                                                                           attempt_count=o.get("attempt_count", 0) + 1),
                                  "invoice.updated")
                ctx.emit("invoice.payment_failed", after)
            raise

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "paid", "amount_paid": o["amount_due"], "amount_remaining": 0, "attempted": True,
                  "attempt_count": o.get("attempt_count", 0) + 1,
                  "status_transitions": dict(o.get("status_transitions") or {}, paid_at=now)})
        if bool_param(p, "paid_out_of_band"):
            o["paid_out_of_band"] = True

    after, prev = modify(ctx, "invoices", seq, fn, None)
    ctx.emit("invoice.paid", after)
    ctx.emit("invoice.payment_succeeded", after)
    ctx.emit("invoice.updated", after, prev)
    return after


def _invoice_transition(ctx: Ctx, seq: int, status: str, field: str, event: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    cur = ctx.render("invoices", seq)
    if cur["status"] not in allowed:
        raise invalid(f"You can only {event.split('.')[-1].replace('_', ' ')} invoices with status "
                      f"{' or '.join(allowed)}; this one is {cur['status']}.", code="invoice_not_editable")
    now = ctx.now()

    def fn(o: dict[str, Any]) -> None:
        o["status"] = status
        o["amount_remaining"] = 0 if status == "void" else o["amount_remaining"]
        o["status_transitions"] = dict(o.get("status_transitions") or {}, **{field: now})

    after, prev = modify(ctx, "invoices", seq, fn, None)
    ctx.emit(event, after)
    ctx.emit("invoice.updated", after, prev)
    return after


def void_invoice(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    return _invoice_transition(ctx, seq, "void", "voided_at", "invoice.voided", ("open", "uncollectible"))


def mark_uncollectible_invoice(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    return _invoice_transition(ctx, seq, "uncollectible", "marked_uncollectible_at", "invoice.marked_uncollectible",
                               ("open",))


def send_invoice(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    cur = ctx.render("invoices", seq)
    if cur["status"] != "open":
        raise invalid("You can only send open invoices.", code="invoice_not_editable")
    ctx.emit("invoice.sent", cur)
    return cur


# ---- invoice items ----------------------------------------------------------------------------------------

II_FIELDS = frozenset({"description", "metadata", "period", "discountable", "tax_rates", "discounts"})


def _ii_amount(ctx: Ctx, p: dict[str, Any]) -> tuple[int, int, dict[str, Any] | None]:
    qty = int_param(p, "quantity", 1) or 1
    price_ident = p.get("price") or ((p.get("pricing") or {}).get("price") if isinstance(p.get("pricing"), dict) else None)
    if price_ident:
        price = ctx.render("prices", _live(ctx, "prices", price_ident, "price"))
        return (price.get("unit_amount") or 0) * qty, qty, price
    if isinstance(p.get("price_data"), dict):
        pd = p["price_data"]
        return (int_param(pd, "unit_amount", 0) or 0) * qty, qty, None
    if p.get("unit_amount") not in (None, ""):
        return (int_param(p, "unit_amount", 0) or 0) * qty, qty, None
    if p.get("amount") not in (None, ""):
        return int_param(p, "amount", 0) or 0, 1, None
    raise missing_param("amount")


def create_invoiceitem(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, II_FIELDS | {"customer", "amount", "currency", "price", "pricing", "price_data", "quantity", "invoice",
                          "subscription", "unit_amount", "unit_amount_decimal", "quantity_decimal"}, ("customer",))
    acc = ctx.acc
    cust = _live(ctx, "customers", p["customer"], "customer")
    amount, qty, price = _ii_amount(ctx, p)
    inv_seq = None
    if p.get("invoice"):
        inv_seq = _live(ctx, "invoices", p["invoice"], "invoice")
        if ctx.render("invoices", inv_seq)["status"] != "draft":
            raise invalid("You can only add invoice items to draft invoices.", param="invoice",
                          code="invoice_not_editable")
    now = ctx.now()
    seq, obj = acc.new_object("invoiceitems", now)
    obj.update({"amount": amount, "net_amount": amount, "currency": str(p.get("currency") or "usd").lower(),
                "customer": acc.tables["customers"].id_of(cust), "date": now, "description": p.get("description"),
                "discountable": True, "invoice": None, "period": {"start": now, "end": now}, "proration": False,
                "quantity": qty, "quantity_decimal": str(qty), "subscription": p.get("subscription") or None,
                "parent": None, "tax_rates": [], "discounts": []})
    obj["pricing"] = {"type": "price_details", "unit_amount_decimal": str(amount // max(1, qty)),
                      "price_details": {"price": price["id"] if price else None,
                                        "product": id_of(price.get("product")) if price else None}}
    set_fields(obj, p, II_FIELDS - {"description"})
    out = insert(ctx, "invoiceitems", seq, obj, "invoiceitem.created")
    if inv_seq is not None:
        _attach_item_to_invoice(ctx, seq, inv_seq, emit=True)
        out = ctx.render("invoiceitems", seq)
    return out


def _attach_item_to_invoice(ctx: Ctx, ii: int, inv_seq: int, emit: bool) -> None:
    acc = ctx.acc
    item = ctx.render("invoiceitems", ii)
    inv = ctx.render("invoices", inv_seq)
    t = acc.tables["invoiceitems"]
    t.put(ii, dict(acc.stored("invoiceitems", ii), invoice=inv["id"]))
    price_id = ((item.get("pricing") or {}).get("price_details") or {}).get("price")
    price_seq = acc.tables["prices"].seq_of(price_id) if price_id else None
    price = ctx.render("prices", price_seq) if price_seq is not None else None
    ls, lobj = _line_obj(ctx, inv["id"], {"price": price, "quantity": item.get("quantity"), "amount": item["amount"],
                                          "invoice_item": item["id"], "description": item.get("description")},
                         ctx.now(), None)
    lt = acc.tables["invoice_lines"]
    lt.put(ls, acc.dehydrate("invoice_lines", lobj))
    lt.add_child(inv_seq, ls)
    acc.ii_line[ii] = ls
    if emit:
        modify(ctx, "invoices", inv_seq, lambda o: _recompute_totals(acc, inv_seq, o), "invoice.updated")


def update_invoiceitem(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, II_FIELDS | {"amount", "price", "pricing", "price_data", "quantity", "unit_amount", "unit_amount_decimal",
                          "quantity_decimal"})
    acc = ctx.acc
    cur = ctx.render("invoiceitems", seq)
    inv_seq = acc.tables["invoices"].seq_of(cur["invoice"]) if cur.get("invoice") else None
    if inv_seq is not None and ctx.render("invoices", inv_seq)["status"] != "draft":
        raise invalid("You can only edit invoice items on draft invoices.", code="invoice_not_editable")
    amount_keys = {"amount", "price", "pricing", "price_data", "quantity", "unit_amount"}

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, II_FIELDS)
        if amount_keys & set(p):
            merged = {k: p[k] for k in amount_keys if k in p}
            if "quantity" in p and not ({"amount", "price", "pricing", "price_data", "unit_amount"} & set(p)):
                unit = o["amount"] // max(1, o.get("quantity") or 1)
                merged = {"unit_amount": unit, "quantity": p["quantity"]}
            amount, qty, _ = _ii_amount(ctx, merged)
            o.update({"amount": amount, "net_amount": amount, "quantity": qty, "quantity_decimal": str(qty)})

    after, _ = modify(ctx, "invoiceitems", seq, fn, None)  # Stripe has no invoiceitem.updated event
    line = acc.ii_line.get(seq)
    if inv_seq is not None and line is not None:
        lt = acc.tables["invoice_lines"]
        lt.put(line, dict(acc.stored("invoice_lines", line), amount=after["amount"], subtotal=after["amount"],
                          quantity=after["quantity"], description=after.get("description")))
        modify(ctx, "invoices", inv_seq, lambda o: _recompute_totals(acc, inv_seq, o), "invoice.updated")
    return after


def delete_invoiceitem(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    acc = ctx.acc
    cur = ctx.render("invoiceitems", seq)
    inv_seq = acc.tables["invoices"].seq_of(cur["invoice"]) if cur.get("invoice") else None
    if inv_seq is not None and ctx.render("invoices", inv_seq)["status"] != "draft":
        raise invalid("You can only delete invoice items on draft invoices.", code="invoice_not_editable")
    out = remove(ctx, "invoiceitems", seq, "invoiceitem.deleted")
    line = acc.ii_line.pop(seq, None)
    if inv_seq is not None and line is not None:
        acc.tables["invoice_lines"].delete(line)
        modify(ctx, "invoices", inv_seq, lambda o: _recompute_totals(acc, inv_seq, o), "invoice.updated")
    return out


# ---- credit notes ----------------------------------------------------------------------------------------

def create_credit_note(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"invoice", "lines", "amount", "credit_amount", "refund_amount", "out_of_band_amount", "reason", "memo",
              "metadata", "shipping_cost", "effective_at", "email_type", "refunds"}, ("invoice",))
    acc = ctx.acc
    inv_seq = _live(ctx, "invoices", p["invoice"], "invoice")
    inv = ctx.render("invoices", inv_seq)
    if inv["status"] not in ("open", "paid"):
        raise invalid("You can only create credit notes on open or paid invoices.", param="invoice",
                      code="invoice_not_editable")
    reason = p.get("reason") or None
    if reason not in (None, "duplicate", "fraudulent", "order_change", "product_unsatisfactory"):
        raise invalid("Invalid reason", param="reason")
    line_specs: list[dict[str, Any]] = []
    for k, ln in enumerate(as_list(p.get("lines"))):
        ln = ln if isinstance(ln, dict) else {}
        if ln.get("type") == "custom_line_item":
            amt = (int_param(ln, "unit_amount", 0) or 0) * (int_param(ln, "quantity", 1) or 1)
            line_specs.append({"type": "custom_line_item", "amount": amt, "description": ln.get("description"),
                               "quantity": int_param(ln, "quantity", 1), "invoice_line_item": None})
        else:
            li = acc.seq_or_404("invoice_lines", str(ln.get("invoice_line_item") or ""), f"lines[{k}][invoice_line_item]")
            line = ctx.render("invoice_lines", li)
            amt = int_param(ln, "amount", line["amount"]) or 0
            line_specs.append({"type": "invoice_line_item", "amount": amt, "description": line.get("description"),
                               "quantity": line.get("quantity", 1), "invoice_line_item": line["id"]})
    if not line_specs:
        amt_or_none = int_param(p, "amount", None)
        if amt_or_none is not None:
            amt = amt_or_none
        else:
            amt = (int_param(p, "credit_amount", 0) or 0) + (int_param(p, "refund_amount", 0) or 0) + \
                (int_param(p, "out_of_band_amount", 0) or 0)
        if not amt:
            raise missing_param("lines")
        line_specs.append({"type": "custom_line_item", "amount": amt, "description": p.get("memo") or "Credit",
                           "quantity": 1, "invoice_line_item": None})
    total = sum(s["amount"] for s in line_specs)
    if total > inv["total"]:
        raise invalid(f"The sum of credit amount, refund amount and out of band amount (${total / 100:.2f}) must be less than "
                      "or equal to the invoice total.", param="amount")
    now = ctx.now()
    post = inv["status"] == "paid"
    seq, obj = acc.new_object("credit_notes", now)
    obj.update({"invoice": inv["id"], "customer": inv["customer"], "amount": total, "subtotal": total,
                "subtotal_excluding_tax": total, "total": total, "total_excluding_tax": total, "currency": "usd",
                "memo": p.get("memo"), "reason": reason, "status": "issued", "effective_at": now,
                "type": "post_payment" if post else "pre_payment", "voided_at": None,
                "number": f"{inv.get('number') or 'CN'}-CN-{seq % 100:02d}", "refunds": [], "discount_amount": 0,
                "post_payment_amount": total if post else 0, "pre_payment_amount": 0 if post else total,
                "pdf": f"https://pay.stripe.com/credit_notes/{acc.id}/{obj['id']}/pdf", "total_taxes": []})
    set_fields(obj, p, {"metadata"})
    acc.tables["credit_notes"].put(seq, acc.dehydrate("credit_notes", obj))
    lt = acc.tables["credit_note_lines"]
    for s in line_specs:
        ls, lobj = acc.new_object("credit_note_lines", now)
        q = s.get("quantity") or 1
        lobj.update({"amount": s["amount"], "description": s["description"], "discount_amount": 0,
                     "discount_amounts": [], "invoice_line_item": s["invoice_line_item"], "quantity": q,
                     "tax_rates": [], "type": s["type"], "unit_amount": s["amount"] // max(1, q),
                     "unit_amount_decimal": str(s["amount"] // max(1, q)), "metadata": {}})
        if s["type"] == "invoice_line_item":
            lobj["unit_amount"] = None
            lobj["unit_amount_decimal"] = None
        lt.put(ls, acc.dehydrate("credit_note_lines", lobj))
        lt.add_child(seq, ls)
    out = ctx.render("credit_notes", seq)
    ctx.emit("credit_note.created", out)
    key = "post_payment_credit_notes_amount" if post else "pre_payment_credit_notes_amount"

    def fn(o: dict[str, Any]) -> None:
        o[key] = int(o.get(key) or 0) + total
        if not post:
            o["amount_remaining"] = max(0, int(o.get("amount_remaining") or 0) - total)

    modify(ctx, "invoices", inv_seq, fn, "invoice.updated")
    return out


def update_credit_note(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"memo", "metadata"})
    return modify(ctx, "credit_notes", seq, lambda o: set_fields(o, p, {"memo", "metadata"}), "credit_note.updated")[0]


def void_credit_note(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    cur = ctx.render("credit_notes", seq)
    if cur["status"] == "void":
        raise invalid("This credit note has already been voided.")

    def fn(o: dict[str, Any]) -> None:
        o.update({"status": "void", "voided_at": ctx.now()})

    after, prev = modify(ctx, "credit_notes", seq, fn, None)
    ctx.emit("credit_note.voided", after)
    ctx.emit("credit_note.updated", after, prev)
    return after


# ---- payouts & transfers --------------------------------------------------------------------------------

def create_payout(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"amount", "currency", "description", "metadata", "method", "destination", "statement_descriptor",
              "source_type", "payout_method"}, ("amount", "currency"))
    acc = ctx.acc
    amount = to_int(p["amount"], "amount")
    now = ctx.now()
    seq, obj = acc.new_object("payouts", now)
    obj.update({"amount": amount, "currency": str(p["currency"]).lower(), "arrival_date": now + 2 * DAY,
                "automatic": False, "description": p.get("description"), "method": p.get("method") or "standard",
                "destination": p.get("destination") or f"ba_{b62_hash(h(acc.ns, 1), 24)}", "status": "pending",
                "reconciliation_status": "not_applicable", "failure_code": None, "failure_message": None,
                "source_type": p.get("source_type") or "card", "statement_descriptor": p.get("statement_descriptor"),
                "trace_id": {"status": "pending", "value": None}, "type": "bank_account"})
    set_fields(obj, p, {"metadata"})
    obj["balance_transaction"] = _balance_transaction(ctx, "payout", obj["id"], -amount, 0, "STRIPE PAYOUT")
    return insert(ctx, "payouts", seq, obj, "payout.created")


def update_payout(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"metadata"})
    return modify(ctx, "payouts", seq, lambda o: set_fields(o, p, {"metadata"}), "payout.updated")[0]


def cancel_payout(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    cur = ctx.render("payouts", seq)
    if cur["status"] != "pending":
        raise invalid("Payouts can only be canceled while they are pending.")
    after, prev = modify(ctx, "payouts", seq, lambda o: o.update(status="canceled"), None)
    ctx.emit("payout.canceled", after)
    ctx.emit("payout.updated", after, prev)
    return after


def pay_payout(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    """Control-only: a pending payout arrives."""
    after, prev = modify(ctx, "payouts", seq, lambda o: o.update(status="paid", reconciliation_status="completed"), None)
    ctx.emit("payout.paid", after)
    ctx.emit("payout.updated", after, prev)
    return after


def create_transfer(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"amount", "currency", "destination", "description", "metadata", "transfer_group",
              "source_transaction", "source_type"}, ("amount", "currency", "destination"))
    acc = ctx.acc
    dest = str(p["destination"])
    if not dest.startswith("acct_"):
        raise invalid(f"No such destination: '{dest}'", param="destination", code="resource_missing")
    amount = to_int(p["amount"], "amount")
    seq, obj = acc.new_object("transfers", ctx.now())
    obj.update({"amount": amount, "amount_reversed": 0, "currency": str(p["currency"]).lower(), "destination": dest,
                "destination_payment": f"py_{b62_hash(h(acc.ns, seq, 31), 24)}", "description": p.get("description"),
                "reversed": False, "source_transaction": p.get("source_transaction"),
                "source_type": p.get("source_type") or "card", "transfer_group": p.get("transfer_group")})
    obj["reversals"] = {"object": "list", "data": [], "has_more": False, "url": f"/v1/transfers/{obj['id']}/reversals"}
    set_fields(obj, p, {"metadata"})
    obj["balance_transaction"] = _balance_transaction(ctx, "transfer", obj["id"], -amount, 0, p.get("description"))
    return insert(ctx, "transfers", seq, obj, "transfer.created")


def update_transfer(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"metadata", "description"})
    return modify(ctx, "transfers", seq, lambda o: set_fields(o, p, {"metadata", "description"}), "transfer.updated")[0]


# ---- checkout ------------------------------------------------------------------------------------------

def create_checkout_session(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"mode", "line_items", "customer", "customer_email", "success_url", "cancel_url", "metadata",
              "payment_method_types", "client_reference_id", "customer_creation", "subscription_data",
              "payment_intent_data", "allow_promotion_codes", "expires_at", "ui_mode", "locale", "return_url",
              "billing_address_collection", "discounts", "automatic_tax", "tax_id_collection", "submit_type",
              "shipping_address_collection", "phone_number_collection", "consent_collection", "custom_fields",
              "custom_text", "invoice_creation", "setup_intent_data", "saved_payment_method_options",
              "payment_method_collection", "currency", "customer_update", "redirect_on_completion"}, ("mode",))
    acc = ctx.acc
    mode = p["mode"]
    if mode not in ("payment", "subscription", "setup"):
        raise invalid("Invalid mode: must be one of payment, setup, or subscription", param="mode")
    customer = None
    if p.get("customer"):
        customer = acc.tables["customers"].id_of(_live(ctx, "customers", p["customer"], "customer"))
    items = as_list(p.get("line_items"))
    if mode != "setup" and not items:
        raise missing_param("line_items")
    now = ctx.now()
    seq, obj = acc.new_object("checkout_sessions", now)
    li_rows = []
    total = 0
    for k, it in enumerate(items):
        it = it if isinstance(it, dict) else {}
        ps = _price_for_item(ctx, it, f"line_items[{k}]")
        price = ctx.render("prices", ps)
        qty = int_param(it, "quantity", 1) or 1
        amt = (price.get("unit_amount") or 0) * qty
        total += amt
        ls, lobj = acc.new_object("checkout_line_items", now)
        prod = ctx.render("products", _live(ctx, "products", id_of(price["product"]), "line_items"))
        lobj.update({"amount_discount": 0, "amount_subtotal": amt, "amount_tax": 0, "amount_total": amt,
                     "currency": price.get("currency", "usd"), "description": prod.get("name"), "price": price["id"],
                     "quantity": qty, "metadata": {}})
        li_rows.append((ls, lobj))
    email = p.get("customer_email")
    obj.update({"mode": mode, "status": "open", "payment_status": "unpaid" if mode != "setup" else "no_payment_required",
                "customer": customer, "customer_email": email, "amount_subtotal": total, "amount_total": total,
                "currency": "usd", "expires_at": int_param(p, "expires_at", now + DAY),
                "success_url": p.get("success_url"), "cancel_url": p.get("cancel_url"),
                "client_reference_id": p.get("client_reference_id"),
                "url": f"https://checkout.stripe.com/c/pay/{obj['id']}", "payment_intent": None,
                "subscription": None, "invoice": None, "setup_intent": None,
                "customer_details": None, "payment_method_types": as_list(p.get("payment_method_types")) or ["card"],
                "customer_creation": p.get("customer_creation") or ("if_required" if mode == "payment" else None),
                "invoice_creation": None})
    set_fields(obj, p, {"metadata"})
    acc.tables["checkout_sessions"].put(seq, acc.dehydrate("checkout_sessions", obj))
    lt = acc.tables["checkout_line_items"]
    for ls, lobj in li_rows:
        lt.put(ls, acc.dehydrate("checkout_line_items", lobj))
        lt.add_child(seq, ls)
    return ctx.render("checkout_sessions", seq)  # Stripe emits no event on creation


def update_checkout_session(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"metadata", "collected_information", "shipping_options"})
    return modify(ctx, "checkout_sessions", seq, lambda o: set_fields(o, p, {"metadata"}), None)[0]


def expire_checkout_session(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    cur = ctx.render("checkout_sessions", seq)
    if cur["status"] != "open":
        raise invalid(f"Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout "
                      f"Session has a status of \"{cur['status']}\".")
    after, _ = modify(ctx, "checkout_sessions", seq, lambda o: o.update(status="expired", url=None), None)
    ctx.emit("checkout.session.expired", after)
    return after


def complete_checkout_session(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    """Control-only (a customer paying on the hosted page): pays and emits checkout.session.completed."""
    acc = ctx.acc
    cur = ctx.render("checkout_sessions", seq)
    if cur["status"] != "open":
        raise invalid(f"Checkout Session {cur['id']} is {cur['status']}, not open.")
    customer = cur.get("customer")
    email = cur.get("customer_email") or f"buyer{seq}@example.com"
    if not customer and (cur["mode"] == "subscription" or cur.get("customer_creation") == "always"):
        customer = create_customer(ctx, {"email": email})["id"]
    pm = p.get("payment_method") or "pm_card_visa"
    updates: dict[str, Any] = {"status": "complete", "url": None,
                               "payment_status": "paid" if cur["mode"] != "setup" else "no_payment_required",
                               "customer": customer,
                               "customer_details": {"address": None, "email": email, "name": None, "phone": None,
                                                    "tax_exempt": "none", "tax_ids": [], "business_name": None,
                                                    "individual_name": None}}
    if cur["mode"] == "payment" and cur["amount_total"]:
        pi_id, _ = _pay(ctx, amount=cur["amount_total"], currency=cur["currency"], customer=customer, pm_ident=pm,
                        description=f"Checkout {cur['id']}")
        updates["payment_intent"] = pi_id
    elif cur["mode"] == "subscription":
        items = []
        for ls in acc.child_seqs("checkout_line_items", "checkout_sessions", seq):
            li = ctx.render("checkout_line_items", ls)
            items.append({"price": id_of(li["price"]), "quantity": li["quantity"]})
        cs = _cust_seq(ctx, customer)
        if cs is not None:
            cus = ctx.render("customers", cs)
            if not (cus.get("invoice_settings") or {}).get("default_payment_method"):
                pm_seq = resolve_pm(ctx, pm, "payment_method")
                attach_payment_method(ctx, pm_seq, {"customer": customer})
                update_customer(ctx, cs, {"invoice_settings": {"default_payment_method": acc.tables["payment_methods"].id_of(pm_seq)}})
        sub = create_subscription(ctx, {"customer": customer, "items": items})
        updates["subscription"] = sub["id"]
        updates["invoice"] = sub.get("latest_invoice")
    elif cur["mode"] == "setup":
        si = create_setup_intent(ctx, {"customer": customer, "payment_method": pm, "confirm": "true"} if customer
                                 else {"payment_method": pm, "confirm": "true"})
        updates["setup_intent"] = si["id"]
    after, _ = modify(ctx, "checkout_sessions", seq, lambda o: o.update(updates), None)
    ctx.emit("checkout.session.completed", after)
    return after


# ---- disputes, fraud warnings, reviews (created through the control API) ---------------------------------

def create_dispute(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"charge", "amount", "reason", "status", "metadata"}, ("charge",))
    acc = ctx.acc
    ch = _live(ctx, "charges", p["charge"], "charge")
    charge = ctx.render("charges", ch)
    now = ctx.now()
    seq, obj = acc.new_object("disputes", now)
    obj.update({"amount": int_param(p, "amount", charge["amount"]), "charge": charge["id"],
                "payment_intent": charge.get("payment_intent"), "currency": charge["currency"],
                "reason": p.get("reason") or "fraudulent", "status": p.get("status") or "needs_response",
                "balance_transactions": [], "is_charge_refundable": False})
    obj["evidence_details"] = {"due_by": now + 21 * DAY, "has_evidence": False, "past_due": False,
                               "submission_count": 0, "enhanced_eligibility": {}}
    set_fields(obj, p, {"metadata"})
    out = insert(ctx, "disputes", seq, obj, "charge.dispute.created")
    acc.tables["charges"].put(ch, dict(acc.stored("charges", ch), disputed=True))  # no event at Stripe either
    return out


def update_dispute(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"evidence", "metadata", "submit", "intended_submission_method"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, {"metadata"})
        if isinstance(p.get("evidence"), dict):
            o["evidence"] = _merge(o.get("evidence") or {}, p["evidence"])
            o["evidence_details"] = dict(o.get("evidence_details") or {}, has_evidence=True)
        if bool_param(p, "submit", True) and p.get("evidence"):
            o["status"] = "under_review"
            ed = dict(o.get("evidence_details") or {})
            ed["submission_count"] = int(ed.get("submission_count") or 0) + 1
            o["evidence_details"] = ed

    return modify(ctx, "disputes", seq, fn, "charge.dispute.updated")[0]


def close_dispute(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    after, prev = modify(ctx, "disputes", seq, lambda o: o.update(status="lost"), None)
    ctx.emit("charge.dispute.closed", after, prev)
    return after


def create_early_fraud_warning(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"charge", "fraud_type", "actionable"}, ("charge",))
    acc = ctx.acc
    charge = ctx.render("charges", _live(ctx, "charges", p["charge"], "charge"))
    seq, obj = acc.new_object("early_fraud_warnings", ctx.now())
    obj.update({"charge": charge["id"], "payment_intent": charge.get("payment_intent"),
                "fraud_type": p.get("fraud_type") or "made_with_stolen_card",
                "actionable": bool_param(p, "actionable", True)})
    return insert(ctx, "early_fraud_warnings", seq, obj, "radar.early_fraud_warning.created")


def update_early_fraud_warning(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"actionable", "fraud_type"})
    return modify(ctx, "early_fraud_warnings", seq, lambda o: set_fields(o, p, {"actionable", "fraud_type"}),
                  "radar.early_fraud_warning.updated")[0]


def create_review(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"charge", "reason"}, ("charge",))
    acc = ctx.acc
    ch = _live(ctx, "charges", p["charge"], "charge")
    charge = ctx.render("charges", ch)
    seq, obj = acc.new_object("reviews", ctx.now())
    obj.update({"charge": charge["id"], "payment_intent": charge.get("payment_intent"), "open": True,
                "opened_reason": "rule", "reason": p.get("reason") or "rule", "closed_reason": None})
    out = insert(ctx, "reviews", seq, obj, "review.opened")
    acc.tables["charges"].put(ch, dict(acc.stored("charges", ch), review=out["id"]))
    return out


def approve_review(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, set())
    cur = ctx.render("reviews", seq)
    if not cur.get("open"):
        raise invalid("This review is already closed.")
    after, _ = modify(ctx, "reviews", seq, lambda o: o.update(open=False, reason="approved", closed_reason="approved"), None)
    ctx.emit("review.closed", after)
    return after


# ---- accounts --------------------------------------------------------------------------------------

ACCOUNT_UPDATE = frozenset({"metadata", "email", "business_profile", "settings", "business_type", "company",
                            "individual", "tos_acceptance", "default_currency", "capabilities", "external_account"})


def update_account(ctx: Ctx, acct: AccountStore, p: dict[str, Any]) -> dict[str, Any]:
    check(p, ACCOUNT_UPDATE)
    core = ctx.core
    before = dict(acct.account_obj)
    new = dict(before)
    set_fields(new, p, {"metadata", "email", "business_profile", "settings", "business_type", "default_currency"})
    acct.account_obj = new
    if acct is not core.platform:
        t = core.platform.tables["accounts"]
        seq = t.seq_of(acct.id)
        if seq is not None:
            t.put(seq, new)
    prev = previous_attributes(before, new)
    if prev:
        # account.updated belongs to the connected account (Connect endpoints get it with ``account``).
        Ctx(core, acct, ctx.livemode, ctx.request_id, ctx.idempotency_key).emit("account.updated", new, prev)
    return new


def create_account(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, ACCOUNT_UPDATE | {"type", "country", "controller", "account_token"})
    if ctx.acc is not ctx.core.platform:
        raise StripeError(403, "Only platforms can create connected accounts.", type="invalid_request_error",
                          code="platform_account_required")
    acct = ctx.core.add_connected_account(ctx.now(), p)
    obj = dict(acct.account_obj)
    if p.get("type"):
        obj["type"] = p["type"]
    if p.get("country"):
        obj["country"] = p["country"]
    set_fields(obj, p, {"metadata", "email", "business_profile", "business_type", "default_currency"})
    acct.account_obj = obj
    t = ctx.core.platform.tables["accounts"]
    seq = t.seq_of(acct.id)
    if seq is not None:
        t.put(seq, obj)
    return obj


def delete_account(ctx: Ctx, acct_id: str) -> dict[str, Any]:
    core = ctx.core
    if acct_id not in core.accounts or acct_id == core.platform_id:
        raise StripeError(404, f"No such account: '{acct_id}'", code="resource_missing", param="account")
    t = core.platform.tables["accounts"]
    seq = t.seq_of(acct_id)
    if seq is not None:
        t.delete(seq)
    del core.accounts[acct_id]
    return {"id": acct_id, "object": "account", "deleted": True}


# ---- webhook endpoints ---------------------------------------------------------------------------------

def create_webhook_endpoint(ctx: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"url", "enabled_events", "description", "metadata", "api_version", "connect"}, ("url",))
    events = [str(e) for e in as_list(p.get("enabled_events"))]
    if not events:
        raise missing_param("enabled_events")
    acc = ctx.acc
    seq, obj = acc.new_object("webhook_endpoints", ctx.now())
    secret = "whsec_" + b62_hash(stable_hash(acc.ns, "whsec", seq, ctx.core.config.seed), 32)
    obj.update({"url": str(p["url"]), "enabled_events": events, "description": p.get("description"),
                "api_version": p.get("api_version"), "application": None, "status": "enabled"})
    set_fields(obj, p, {"metadata"})
    acc.tables["webhook_endpoints"].put(seq, obj)
    acc.webhook_secrets[seq] = secret
    acc.webhook_connect[seq] = bool_param(p, "connect")
    out = dict(ctx.render("webhook_endpoints", seq))
    out["secret"] = secret  # only ever shown here, as at Stripe
    return out


def update_webhook_endpoint(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    check(p, {"url", "enabled_events", "description", "metadata", "disabled"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, p, {"url", "description", "metadata"})
        if "enabled_events" in p:
            o["enabled_events"] = [str(e) for e in as_list(p["enabled_events"])]
        if "disabled" in p:
            o["status"] = "disabled" if to_bool(p["disabled"], "disabled") else "enabled"

    return modify(ctx, "webhook_endpoints", seq, fn, None)[0]


def delete_webhook_endpoint(ctx: Ctx, seq: int, p: dict[str, Any]) -> dict[str, Any]:
    ctx.acc.webhook_secrets.pop(seq, None)
    return remove(ctx, "webhook_endpoints", seq, None)


# ---- registry ---------------------------------------------------------------------------------------------

CREATE: dict[str, Callable[[Ctx, dict[str, Any]], dict[str, Any]]] = {
    "customers": create_customer, "products": create_product, "prices": create_price, "plans": create_plan,
    "coupons": create_coupon, "promotion_codes": create_promotion_code, "tax_rates": create_tax_rate,
    "features": create_feature, "payment_methods": create_payment_method, "tax_ids": create_tax_id,
    "subscriptions": create_subscription, "subscription_items": create_subscription_item,
    "subscription_schedules": create_subscription_schedule, "invoices": create_invoice,
    "invoiceitems": create_invoiceitem, "credit_notes": create_credit_note, "charges": create_charge,
    "payment_intents": create_payment_intent, "refunds": create_refund, "setup_intents": create_setup_intent,
    "payouts": create_payout, "transfers": create_transfer, "checkout_sessions": create_checkout_session,
    "webhook_endpoints": create_webhook_endpoint, "accounts": create_account,
    # Not creatable through Stripe's API; exposed by the control API (and used by mutate_random).
    "disputes": create_dispute, "early_fraud_warnings": create_early_fraud_warning, "reviews": create_review,
}
CONTROL_ONLY_CREATE = {"disputes", "early_fraud_warnings", "reviews"}

UPDATE: dict[str, Callable[[Ctx, int, dict[str, Any]], dict[str, Any]]] = {
    "customers": update_customer, "products": update_product, "prices": update_price, "plans": update_plan,
    "coupons": update_coupon, "promotion_codes": update_promotion_code, "tax_rates": update_tax_rate,
    "features": update_feature, "payment_methods": update_payment_method, "subscriptions": update_subscription,
    "subscription_items": update_subscription_item, "subscription_schedules": update_subscription_schedule,
    "invoices": update_invoice, "invoiceitems": update_invoiceitem, "credit_notes": update_credit_note,
    "charges": update_charge, "payment_intents": update_payment_intent, "refunds": update_refund,
    "setup_intents": update_setup_intent, "payouts": update_payout, "transfers": update_transfer,
    "checkout_sessions": update_checkout_session, "disputes": update_dispute,
    "early_fraud_warnings": update_early_fraud_warning, "webhook_endpoints": update_webhook_endpoint,
}

DELETE: dict[str, Callable[[Ctx, int, dict[str, Any]], dict[str, Any]]] = {
    "customers": delete_customer, "products": delete_product, "plans": delete_plan, "coupons": delete_coupon,
    "tax_ids": delete_tax_id, "subscriptions": cancel_subscription, "subscription_items": delete_subscription_item,
    "invoices": delete_invoice, "invoiceitems": delete_invoiceitem, "webhook_endpoints": delete_webhook_endpoint,
}

ACTIONS: dict[tuple[str, str], Callable[[Ctx, int, dict[str, Any]], dict[str, Any]]] = {
    ("invoices", "finalize"): finalize_invoice, ("invoices", "pay"): pay_invoice, ("invoices", "void"): void_invoice,
    ("invoices", "mark_uncollectible"): mark_uncollectible_invoice, ("invoices", "send"): send_invoice,
    ("payment_intents", "confirm"): confirm_payment_intent, ("payment_intents", "cancel"): cancel_payment_intent,
    ("payment_intents", "capture"): capture_payment_intent, ("charges", "capture"): capture_charge,
    ("payment_methods", "attach"): attach_payment_method, ("payment_methods", "detach"): detach_payment_method,
    ("setup_intents", "confirm"): confirm_setup_intent, ("setup_intents", "cancel"): cancel_setup_intent,
    ("checkout_sessions", "expire"): expire_checkout_session, ("credit_notes", "void"): void_credit_note,
    ("payouts", "cancel"): cancel_payout, ("disputes", "close"): close_dispute, ("reviews", "approve"): approve_review,
    ("subscription_schedules", "cancel"): cancel_subscription_schedule,
    ("subscription_schedules", "release"): release_subscription_schedule,
    ("subscriptions", "cancel"): cancel_subscription,
}
CONTROL_ACTIONS: dict[tuple[str, str], Callable[[Ctx, int, dict[str, Any]], dict[str, Any]]] = {
    ("checkout_sessions", "complete"): complete_checkout_session, ("payouts", "pay"): pay_payout,
}
