"""Coupons, promotion codes and tax rates: what changes the amount a price bills."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from ..errors import invalid, missing_param
from ..filters import created_rows_only_filter, field_filter, relation_filter
from ..forms import to_int
from ..generation import GenerationContext, pick_earlier
from ..ids import b62_hash, h
from ..operations import check_params, hash_param, insert, live_seq, modify, remove, set_fields
from ..registry import creates, deletes, generation_step, list_filters, renders, updates
from ..rendering import from_template
from . import catalog

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


TAX_RATES = [("VAT", "DE", 19.0, "vat", "VAT Germany"), ("VAT", "FR", 20.0, "vat", "VAT France"),
             ("VAT", "GB", 20.0, "vat", "VAT United Kingdom"), ("Sales Tax", "US", 7.25, "sales_tax", "California"),
             ("GST", "AU", 10.0, "gst", "GST Australia")]


@renders("coupons")
def render_coupon(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["coupons"]
    obj = from_template("coupon")
    row_hash = h(table.ns, row)
    obj["id"] = table.codec.encode(row)
    obj["created"] = table.created[row]
    obj["livemode"] = livemode
    if row_hash % 3:
        pct = (5, 10, 15, 20, 25, 30, 50)[row_hash % 7]
        obj["percent_off"] = float(pct)
        obj["name"] = f"{pct}% off"
    else:
        amt = (500, 1000, 2000)[(row_hash >> 4) % 3]
        obj["amount_off"] = amt
        obj["currency"] = "usd"
        obj["name"] = f"${amt // 100} off"
    dur = ("once", "repeating", "forever")[(row_hash >> 8) % 3]
    obj["duration"] = dur
    obj["duration_in_months"] = 3 if dur == "repeating" else None
    obj["times_redeemed"] = (row_hash >> 12) % 40
    obj["max_redemptions"] = 100 if (row_hash >> 20) % 4 == 0 else None
    return obj


@renders("promotion_codes")
def render_promotion_code(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["promotion_codes"]
    obj = from_template("promotion_code")
    row_hash = h(table.ns, row)
    obj["id"] = table.codec.encode(row)
    obj["created"] = table.created[row]
    obj["livemode"] = livemode
    obj["code"] = f"{catalog.ADJECTIVES[row_hash % len(catalog.ADJECTIVES)].upper()}{10 + row}"
    obj["promotion"] = {"coupon": account.tables["coupons"].codec.encode(table.cols["coupon"][row]), "type": "coupon"}
    obj["active"] = row_hash % 6 != 0
    obj["times_redeemed"] = (row_hash >> 8) % 20
    return obj


@renders("tax_rates")
def render_tax_rate(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["tax_rates"]
    obj = from_template("tax_rate")
    name, country, pct, ttype, desc = TAX_RATES[row % len(TAX_RATES)]
    obj.update({"id": table.codec.encode(row), "created": table.created[row], "livemode": livemode, "display_name": name,
                "country": country, "jurisdiction": country, "percentage": pct + (row // len(TAX_RATES)),
                "effective_percentage": pct + (row // len(TAX_RATES)), "tax_type": ttype, "description": desc,
                "inclusive": row % 2 == 1, "state": "CA" if country == "US" else None})
    return obj


COUPON_FIELDS = frozenset({"percent_off", "amount_off", "currency", "duration", "duration_in_months",
                           "max_redemptions", "redeem_by", "name", "metadata", "applies_to", "currency_options"})


@creates("coupons")
def create_coupon(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, COUPON_FIELDS | {"id"})
    if params.get("percent_off") in (None, "") and params.get("amount_off") in (None, ""):
        raise invalid("You must pass either percent_off or amount_off.", param="percent_off")
    if params.get("amount_off") not in (None, "") and not params.get("currency"):
        raise missing_param("currency")
    seq, obj = ctx.account.new_object("coupons", ctx.now(), params.get("id") or None)
    obj.update({"amount_off": None, "currency": None, "duration": "once", "duration_in_months": None,
                "max_redemptions": None, "name": None, "percent_off": None, "redeem_by": None,
                "times_redeemed": 0, "valid": True})
    set_fields(obj, params, COUPON_FIELDS - {"currency_options"})
    if "currency_options" in params:
        obj["currency_options"] = coupon_currency_options(params["currency_options"])
    return insert(ctx, "coupons", seq, obj, "coupon.created")


def coupon_currency_options(value: Any) -> dict[str, Any]:
    """``currency_options[eur][amount_off]=...`` as Stripe renders it (an includable field)."""
    options = value if isinstance(value, dict) else {}
    return {str(cur).lower(): {"amount_off": to_int((opt if isinstance(opt, dict) else {}).get("amount_off"),
                                                    f"currency_options[{cur}][amount_off]")}
            for cur, opt in options.items()}


@updates("coupons")
def update_coupon(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"name", "metadata", "currency_options"})
    def change(o: dict[str, Any]) -> None:
        set_fields(o, params, {"name", "metadata"})
        if "currency_options" in params:
            o["currency_options"] = {**(o.get("currency_options") or {}),
                                     **coupon_currency_options(params["currency_options"])}

    return modify(ctx, "coupons", seq, change, "coupon.updated")[0]


@deletes("coupons")
def delete_coupon(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    return remove(ctx, "coupons", seq, "coupon.deleted")


PROMOTION_CODE_FIELDS = frozenset({"code", "customer", "expires_at", "max_redemptions", "restrictions", "active", "metadata"})


@creates("promotion_codes")
def create_promotion_code(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, PROMOTION_CODE_FIELDS | {"promotion", "coupon"})
    promo = hash_param(params.get("promotion"))
    coupon = promo.get("coupon") or params.get("coupon")
    if not coupon:
        raise missing_param("promotion[coupon]")
    live_seq(ctx, "coupons", coupon, "promotion[coupon]")
    seq, obj = ctx.account.new_object("promotion_codes", ctx.now())
    obj.update({"active": True, "code": b62_hash(h(ctx.account.ns, seq, 5), 8).upper(), "customer": None,
                "expires_at": None, "max_redemptions": None, "times_redeemed": 0,
                "promotion": {"coupon": coupon, "type": "coupon"}})
    set_fields(obj, params, PROMOTION_CODE_FIELDS)
    return insert(ctx, "promotion_codes", seq, obj, "promotion_code.created")


@updates("promotion_codes")
def update_promotion_code(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"active", "metadata", "restrictions"})
    fields = {"active", "metadata", "restrictions"}
    return modify(ctx, "promotion_codes", seq, lambda o: set_fields(o, params, fields), "promotion_code.updated")[0]


TAX_RATE_FIELDS = frozenset({"display_name", "percentage", "inclusive", "active", "country", "state",
                             "jurisdiction", "description", "tax_type", "metadata"})


@creates("tax_rates")
def create_tax_rate(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, TAX_RATE_FIELDS, ("display_name", "percentage", "inclusive"))
    seq, obj = ctx.account.new_object("tax_rates", ctx.now())
    obj.update({"active": True, "country": None, "description": None, "jurisdiction": None, "state": None,
                "tax_type": None, "jurisdiction_level": None})
    set_fields(obj, params, TAX_RATE_FIELDS)
    obj["effective_percentage"] = obj.get("percentage")
    return insert(ctx, "tax_rates", seq, obj, "tax_rate.created")


@updates("tax_rates")
def update_tax_rate(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    fields = TAX_RATE_FIELDS - {"percentage", "inclusive"}
    check_params(params, fields)
    return modify(ctx, "tax_rates", seq, lambda o: set_fields(o, params, fields), "tax_rate.updated")[0]


list_filters("coupons", {})
list_filters("promotion_codes", {"active": field_filter(("active",)), "code": field_filter(("code",)),
                                 "coupon": relation_filter("coupon", "coupons", ("promotion", "coupon")),
                                 "customer": created_rows_only_filter(("customer",))})
list_filters("tax_rates", {"active": field_filter(("active",)), "inclusive": field_filter(("inclusive",))})


@generation_step(20)
def generate_coupons_and_tax_rates(gen: GenerationContext) -> None:
    sizes = gen.sizes
    random = gen.random
    gen.created["coupons"] = gen.timeline.sample(sizes["coupons"], gen.rng, bursts=False, first_at_start=True)
    promotion_created = gen.timeline.sample(sizes["promotion_codes"], gen.rng, bursts=False, lo=gen.start + 1)
    gen.created["promotion_codes"] = promotion_created
    gen.cols["promotion_codes"] = {
        "coupon": array("i", (pick_earlier(gen.created["coupons"], t, random()) for t in promotion_created))}
    gen.created["tax_rates"] = gen.timeline.sample(sizes["tax_rates"], gen.rng, bursts=False, first_at_start=True,
                                                   hi=gen.early_hi)
