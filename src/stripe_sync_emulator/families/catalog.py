"""Products, prices (and plans, their older view), entitlement features and product features."""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from ..errors import invalid, missing_param
from ..filters import accepted_not_applied, field_filter, ids_filter, relation_filter
from ..forms import as_list, to_int
from ..generation import GenerationContext
from ..ids import h
from ..objects import id_of
from ..operations import (
    EntitlementWatch,
    check_params,
    insert,
    int_param,
    live_seq,
    modify,
    remove,
    set_fields,
)
from ..registry import creates, deletes, generation_step, list_filters, renders, updates
from ..rendering import from_template
from ..store import Matcher, Table
from . import subscriptions

if TYPE_CHECKING:  # pragma: no cover
    from ..account import AccountStore
    from ..core import Ctx


PRICE_KINDS = ("one_time", "month", "year")  # generated price kind codes


ADJECTIVES = ["Basic", "Pro", "Team", "Enterprise", "Starter", "Growth", "Premium", "Ultra", "Lite", "Plus", "Max", "Core"]


NOUNS = ["Plan", "Seats", "Storage", "Support", "Analytics", "API Access", "Add-on", "Bundle", "License",
         "Credits", "Hosting", "Backup"]


FEATURES = ["SSO", "Audit log", "Priority support", "Custom domains", "API access", "Advanced analytics",
            "Unlimited projects", "Webhooks", "Data export", "Team roles", "SLA", "Sandbox"]


def price_amount(account: AccountStore, params: int) -> int:
    """Unit amount of a generated price (precomputed per account: prices are few and hot)."""
    amounts = account.extra.get("price_amounts")
    if amounts is None:
        table = account.tables["prices"]
        kinds = table.cols["kind"]
        amounts = account.extra["price_amounts"] = [
            (5, 9, 10, 12, 15, 19, 20, 25, 29, 49, 99, 199)[h(table.ns, q, 1) % 12] * 100 * (10 if kinds[q] == 2 else 1)
            for q in range(table.n_gen)]
    return amounts[params]


@renders("products")
def render_product(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["products"]
    obj = from_template("product")
    row_hash = h(table.ns, row)
    created = table.created[row]
    obj["id"] = table.codec.encode(row)
    obj["created"] = created
    obj["updated"] = created
    obj["livemode"] = livemode
    obj["name"] = f"{ADJECTIVES[row_hash % len(ADJECTIVES)]} {NOUNS[(row_hash >> 8) % len(NOUNS)]} {row}"
    obj["description"] = f"{obj['name']} (generated)" if row_hash % 3 else None
    obj["active"] = (row_hash >> 20) % 20 != 0
    offs = table.offsets["prices"]
    obj["default_price"] = account.tables["prices"].codec.encode(offs[row]) if offs[row + 1] > offs[row] else None
    obj["metadata"] = {"tier": ADJECTIVES[row_hash % len(ADJECTIVES)].lower()} if row_hash % 2 else {}
    return obj


@renders("prices")
def render_price(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["prices"]
    obj = from_template("price")
    row_hash = h(table.ns, row)
    kind = table.cols["kind"][row]
    amt = price_amount(account, row)
    obj["id"] = table.codec.encode(row)
    obj["created"] = table.created[row]
    obj["livemode"] = livemode
    obj["product"] = account.tables["products"].codec.encode(table.cols["product"][row])
    obj["unit_amount"] = amt
    obj["unit_amount_decimal"] = str(amt)
    obj["active"] = (row_hash >> 20) % 25 != 0 or account.tables["products"].offsets["prices"][table.cols["product"][row]] == row
    if kind:
        obj["type"] = "recurring"
        obj["recurring"] = {"interval": PRICE_KINDS[kind], "interval_count": 1, "meter": None,
                            "trial_period_days": None, "usage_type": "licensed"}
    else:
        obj["type"] = "one_time"
        obj["recurring"] = None
    obj["nickname"] = ("Monthly", "Yearly")[kind - 1] if kind and row_hash % 2 else None
    obj["lookup_key"] = f"price_{row}_{PRICE_KINDS[kind]}" if row_hash % 5 == 0 else None
    return obj


def plan_from_price(price: dict[str, Any]) -> dict[str, Any]:
    """The ``plan`` view of a recurring price (Stripe serves both under the same id)."""
    obj = from_template("plan")
    recurring = price.get("recurring") or {}
    amt = price.get("unit_amount")
    obj.update({
        "id": price["id"], "active": price.get("active", True), "amount": amt,
        "amount_decimal": None if amt is None else str(amt), "billing_scheme": price.get("billing_scheme", "per_unit"),
        "created": price["created"], "currency": price.get("currency", "usd"), "interval": recurring.get("interval", "month"),
        "interval_count": recurring.get("interval_count", 1), "livemode": price.get("livemode", False),
        "metadata": price.get("metadata") or {}, "meter": recurring.get("meter"), "nickname": price.get("nickname"),
        "product": price.get("product"), "tiers_mode": price.get("tiers_mode"),
        "trial_period_days": recurring.get("trial_period_days"), "usage_type": recurring.get("usage_type", "licensed"),
    })
    if isinstance(obj["product"], dict):
        obj["product"] = obj["product"]["id"]
    return obj


@renders("features")
def render_feature(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["features"]
    obj = from_template("entitlements.feature")
    name = FEATURES[row % len(FEATURES)]
    suffix = f" {row // len(FEATURES) + 1}" if row >= len(FEATURES) else ""
    obj.update({"id": table.codec.encode(row), "livemode": livemode, "name": name + suffix,
                "lookup_key": (name + suffix).lower().replace(" ", "_").replace("-", "_"), "active": True,
                "metadata": {}})
    return obj


@renders("product_features")
def render_product_feature(account: AccountStore, row: int, livemode: bool) -> dict[str, Any]:
    table = account.tables["product_features"]
    obj = from_template("product_feature")
    obj["id"] = table.codec.encode(row)
    obj["livemode"] = livemode
    obj["entitlement_feature"] = account.render("features", table.cols["feature"][row], livemode)
    return obj


PRODUCT_FIELDS = frozenset({"name", "active", "description", "metadata", "images", "url", "unit_label", "shippable",
                            "statement_descriptor", "tax_code", "marketing_features", "package_dimensions", "type"})


@creates("products")
def create_product(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, PRODUCT_FIELDS | {"id", "default_price_data", "tax_details"}, ("name",))
    account = ctx.account
    now = ctx.now()
    seq, obj = account.new_object("products", now, params.get("id") or None)
    obj.update({"active": True, "description": None, "images": [], "marketing_features": [],
                "package_dimensions": None, "shippable": None, "statement_descriptor": None, "tax_code": None,
                "unit_label": None, "updated": now, "url": None, "type": "service", "default_price": None})
    set_fields(obj, params, PRODUCT_FIELDS)
    dpd = params.get("default_price_data")
    price_seq = price_obj = None
    if isinstance(dpd, dict):
        price_seq, price_obj = build_price(ctx, {**dpd, "product": obj["id"]}, product_known=True)
        obj["default_price"] = price_obj["id"]
    out = insert(ctx, "products", seq, obj, "product.created")
    if price_seq is not None and price_obj is not None:
        insert_price(ctx, price_seq, price_obj)
        out = ctx.render("products", seq)
    return out


@updates("products")
def update_product(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, PRODUCT_FIELDS | {"default_price", "tax_details"})
    if params.get("default_price"):
        price_seq = live_seq(ctx, "prices", params["default_price"], "default_price")
        price = ctx.render("prices", price_seq)
        if id_of(price.get("product")) != ctx.account.tables["products"].id_of(seq):
            raise invalid("The price must belong to this product.", param="default_price")

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, PRODUCT_FIELDS)
        if "default_price" in params:
            o["default_price"] = params["default_price"] or None
        o["updated"] = ctx.now()

    after, _ = modify(ctx, "products", seq, fn, "product.updated")
    return after


@deletes("products")
def delete_product(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    account = ctx.account
    pid = account.tables["products"].id_of(seq)
    if account.all_seqs("prices", [account.build_filter("prices", "product", pid)]):
        raise invalid("This product cannot be deleted because it has one or more user-created prices.",
                      param="id")
    return remove(ctx, "products", seq, "product.deleted")


PRICE_FIELDS = frozenset({"nickname", "lookup_key", "metadata", "active", "tax_behavior", "billing_scheme",
                          "custom_unit_amount", "tiers", "tiers_mode", "transform_quantity", "currency_options"})


def _tiers_param(value: Any, param: str) -> list[dict[str, Any]]:
    """``tiers[n][...]`` as Stripe renders them (``up_to=inf``: null; amounts with their decimals)."""
    out = []
    for k, tier in enumerate(as_list(value)):
        tier = tier if isinstance(tier, dict) else {}
        up_to = tier.get("up_to")
        if up_to in (None, ""):
            raise missing_param(f"{param}[{k}][up_to]")
        unit = int_param(tier, "unit_amount")
        flat = int_param(tier, "flat_amount")
        out.append({"flat_amount": flat, "flat_amount_decimal": None if flat is None else str(flat),
                    "unit_amount": unit, "unit_amount_decimal": None if unit is None else str(unit),
                    "up_to": None if up_to == "inf" else to_int(up_to, f"{param}[{k}][up_to]")})
    return out


def _currency_options_param(value: Any) -> dict[str, Any]:
    out = {}
    for currency, opt in (value if isinstance(value, dict) else {}).items():
        opt = opt if isinstance(opt, dict) else {}
        unit = int_param(opt, "unit_amount")
        entry: dict[str, Any] = {"custom_unit_amount": None, "tax_behavior": opt.get("tax_behavior") or "unspecified",
                                 "unit_amount": unit, "unit_amount_decimal": None if unit is None else str(unit)}
        if "tiers" in opt:
            entry["tiers"] = _tiers_param(opt["tiers"], f"currency_options[{currency}][tiers]")
        out[str(currency).lower()] = entry
    return out


def build_price(ctx: Ctx, params: dict[str, Any], *, product_known: bool = False, custom_id: str | None = None,
                 ) -> tuple[int, dict[str, Any]]:
    account = ctx.account
    if not params.get("currency"):
        raise missing_param("currency")
    prod = params.get("product")
    if not prod and isinstance(params.get("product_data"), dict):
        prod = create_product(ctx, params["product_data"])["id"]
    if not prod:
        raise missing_param("product")
    if not product_known:
        live_seq(ctx, "products", prod, "product")
    amount = int_param(params, "unit_amount")
    if amount is None and params.get("unit_amount_decimal") not in (None, ""):
        amount = int(float(params["unit_amount_decimal"]))
    if amount is None and not params.get("custom_unit_amount") and not params.get("tiers"):
        raise missing_param("unit_amount")
    seq, obj = account.new_object("prices", ctx.now(), custom_id)
    recurring = params.get("recurring")
    obj.update({"active": True, "billing_scheme": "per_unit", "currency": str(params["currency"]).lower(),
                "custom_unit_amount": None, "lookup_key": None, "nickname": None, "product": str(id_of(prod)),
                "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
                "unit_amount": amount, "unit_amount_decimal": None if amount is None else str(amount)})
    if isinstance(recurring, dict):
        interval = recurring.get("interval")
        if interval not in ("day", "week", "month", "year"):
            raise invalid("Invalid recurring[interval]: must be one of day, week, month, or year",
                          param="recurring[interval]")
        obj["type"] = "recurring"
        obj["recurring"] = {"interval": interval, "interval_count": int_param(recurring, "interval_count", 1),
                            "meter": recurring.get("meter"), "trial_period_days": int_param(recurring, "trial_period_days"),
                            "usage_type": recurring.get("usage_type") or "licensed"}
    else:
        obj["type"] = "one_time"
        obj["recurring"] = None
    set_fields(obj, params, PRICE_FIELDS - {"tiers", "currency_options"})
    if params.get("tiers"):
        if obj.get("billing_scheme") != "tiered" or obj.get("tiers_mode") not in ("graduated", "volume"):
            raise invalid("Tiers require billing_scheme=tiered and tiers_mode graduated or volume.", param="tiers")
        obj["tiers"] = _tiers_param(params["tiers"], "tiers")
    elif obj.get("billing_scheme") == "tiered":
        raise missing_param("tiers")
    if "currency_options" in params:
        obj["currency_options"] = _currency_options_param(params["currency_options"])
    return seq, obj


def insert_price(ctx: Ctx, seq: int, obj: dict[str, Any]) -> dict[str, Any]:
    out = insert(ctx, "prices", seq, obj, "price.created")
    if out.get("recurring"):
        ctx.emit("plan.created", plan_from_price(out))
    return out


@creates("prices")
def create_price(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, PRICE_FIELDS | {"currency", "unit_amount", "unit_amount_decimal", "product", "product_data",
                                         "recurring", "transfer_lookup_key"}, ("currency",))
    seq, obj = build_price(ctx, params)
    return insert_price(ctx, seq, obj)


@updates("prices")
def update_price(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"active", "nickname", "lookup_key", "metadata", "tax_behavior", "transfer_lookup_key",
                          "currency_options"})
    def change(o: dict[str, Any]) -> None:
        set_fields(o, params, PRICE_FIELDS - {"currency_options"})
        if "currency_options" in params:
            o["currency_options"] = {**(o.get("currency_options") or {}),
                                     **_currency_options_param(params["currency_options"])}

    after, prev = modify(ctx, "prices", seq, change, "price.updated")
    if prev and after.get("recurring"):
        ctx.emit("plan.updated", plan_from_price(after), prev)
    return after


@creates("plans")
def create_plan(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"id", "amount", "amount_decimal", "currency", "interval", "interval_count", "product", "nickname",
                          "metadata", "active", "usage_type", "trial_period_days", "billing_scheme", "meter", "tiers",
                          "tiers_mode", "transform_usage"}, ("currency", "interval"))
    prod = params.get("product")
    if isinstance(prod, dict):
        prod = create_product(ctx, prod)["id"]
    if not prod:
        raise missing_param("product")
    price_params = {"currency": params["currency"], "product": prod, "nickname": params.get("nickname"),
                    "recurring": {"interval": params["interval"], "interval_count": params.get("interval_count") or 1,
                                  "usage_type": params.get("usage_type") or "licensed",
                                  "trial_period_days": params.get("trial_period_days")}}
    if params.get("amount") not in (None, ""):
        price_params["unit_amount"] = params["amount"]
    elif params.get("amount_decimal") not in (None, ""):
        price_params["unit_amount_decimal"] = params["amount_decimal"]
    if "metadata" in params:
        price_params["metadata"] = params["metadata"]
    if "active" in params:
        price_params["active"] = params["active"]
    for key in ("billing_scheme", "tiers", "tiers_mode"):
        if params.get(key) not in (None, ""):
            price_params[key] = params[key]
    seq, obj = build_price(ctx, {k: v for k, v in price_params.items() if v is not None},
                           custom_id=params.get("id") or None)
    out = insert(ctx, "prices", seq, obj, None)
    plan = plan_from_price(out)
    ctx.emit("plan.created", plan)
    ctx.emit("price.created", out)
    return plan


@updates("plans")
def update_plan(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"active", "nickname", "metadata", "trial_period_days", "product"})

    def fn(o: dict[str, Any]) -> None:
        set_fields(o, params, PRICE_FIELDS)
        if "trial_period_days" in params and o.get("recurring"):
            o["recurring"] = dict(o["recurring"], trial_period_days=int_param(params, "trial_period_days"))
        if params.get("product"):
            o["product"] = str(params["product"])

    after, prev = modify(ctx, "prices", seq, fn, None)
    plan = plan_from_price(after)
    if prev:
        ctx.emit("plan.updated", plan, prev)
        ctx.emit("price.updated", after, prev)
    return plan


@deletes("plans")
def delete_plan(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    plan = plan_from_price(ctx.render("prices", seq))
    table = ctx.account.tables["prices"]
    table.delete(seq)
    ctx.emit("plan.deleted", plan)
    return {"id": table.id_of(seq), "object": "plan", "deleted": True}


@creates("features")
def create_feature(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"name", "lookup_key", "metadata"}, ("name", "lookup_key"))
    seq, obj = ctx.account.new_object("features", ctx.now())
    obj.update({"active": True, "name": params["name"], "lookup_key": params["lookup_key"]})
    set_fields(obj, params, {"metadata"})
    return insert(ctx, "features", seq, obj, None)


@updates("features")
def update_feature(ctx: Ctx, seq: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"name", "active", "metadata"})
    return modify(ctx, "features", seq, lambda o: set_fields(o, params, {"name", "active", "metadata"}), None)[0]


def create_product_feature(ctx: Ctx, prod: int, params: dict[str, Any]) -> dict[str, Any]:
    check_params(params, {"entitlement_feature"}, ("entitlement_feature",))
    account = ctx.account
    f = live_seq(ctx, "features", params["entitlement_feature"], "entitlement_feature")
    if f in account.features_of_product(prod):
        raise invalid("A feature with this id is already attached to the product.", param="entitlement_feature")
    watch = EntitlementWatch(ctx, customers_with_product(account, prod))
    seq, obj = account.new_object("product_features", ctx.now())
    obj["entitlement_feature"] = account.tables["features"].id_of(f)
    out = insert(ctx, "product_features", seq, obj, None, parent=prod)
    watch.done()
    return out


def delete_product_feature(ctx: Ctx, prod: int, seq: int) -> dict[str, Any]:
    account = ctx.account
    watch = EntitlementWatch(ctx, customers_with_product(account, prod))
    out = remove(ctx, "product_features", seq, None)
    watch.done()
    return out


def customers_with_product(account: AccountStore, prod: int) -> set[int]:
    prices = account.tables["prices"]
    pid = account.tables["products"].id_of(prod)
    pseqs: set[int] = set()
    if prod < account.tables["products"].n_gen and "product" in prices.cols:
        pseqs.update(prices.index("product").get(prod, ()))
    for s, row in prices.rows.items():
        if id_of(row.get("product")) == pid:
            pseqs.add(s)
    subs: set[int] = set()
    for p in pseqs:
        pid_ = prices.id_of(p)
        for m in [account.build_filter("subscriptions", "price", pid_)]:
            subs.update(account.all_seqs("subscriptions", [m]))
    out: set[int] = set()
    for s in subs:
        sub = account.render("subscriptions", s, False) or {}
        if sub.get("status") in subscriptions.ACTIVE_SUB_STATUSES:
            c = account.tables["customers"].seq_of(id_of(sub.get("customer")) or "")
            if c is not None:
                out.add(c)
    return out


def price_type_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    v = str(value)
    if v not in ("one_time", "recurring"):
        raise invalid("Invalid type: must be one of one_time or recurring", param="type")
    kinds = t.cols["kind"]
    if v == "recurring":
        return Matcher(lambda i: kinds[i] > 0, lambda s, o: o.get("type") == "recurring")
    return Matcher(lambda i: kinds[i] == 0, lambda s, o: o.get("type") == "one_time")


def archived_filter(account: AccountStore, t: Table, value: Any) -> Matcher:
    want_active = str(value) != "true"
    return Matcher(lambda i: want_active, lambda s, o: bool(o.get("active", True)) == want_active)


list_filters("products", {"active": field_filter(("active",)), "ids": ids_filter,
                          "shippable": field_filter(("shippable",)), "url": field_filter(("url",)),
                          "type": field_filter(("type",))})
list_filters("prices", {"active": field_filter(("active",)), "currency": field_filter(("currency",)),
                        "product": relation_filter("product", "products", ("product",)), "type": price_type_filter,
                        "lookup_keys": field_filter(("lookup_key",), multi=True), "recurring": accepted_not_applied})
list_filters("features", {"archived": archived_filter, "lookup_key": field_filter(("lookup_key",))})


@generation_step(10)
def generate_products_and_prices(gen: GenerationContext) -> None:
    """Products (1-3 prices each, the first is the default price), then their features."""
    sizes = gen.sizes
    random = gen.random
    has_catalog = sizes["customers"] or (gen.overrides and "products" in gen.overrides)
    product_count = sizes["products"] if has_catalog else 0
    product_created = gen.timeline.sample(product_count, gen.rng, bursts=False, first_at_start=True, hi=gen.early_hi)
    gen.created["products"] = product_created
    price_product = array("i")
    price_kind = array("b")
    price_created = array("q")
    prices_of_product = array("i", [0])
    for product in range(product_count):
        count = 1 + (random() < 0.45) + (random() < 0.15)
        for position in range(count):
            if position == 0:
                kind = 1 if (product == 0 or random() < 0.75) else 0
            else:
                draw = random()
                kind = 2 if draw < 0.5 else (1 if draw < 0.8 else 0)
            price_product.append(product)
            price_kind.append(kind)
            price_created.append(product_created[product])
        prices_of_product.append(len(price_product))
    gen.created["prices"] = price_created
    gen.cols["prices"] = {"product": price_product, "kind": price_kind}
    gen.offsets["products"] = {"prices": prices_of_product}
    recurring = array("i", (i for i, kind in enumerate(price_kind) if kind > 0))
    gen.shared["recurring_prices"] = recurring
    gen.shared["recurring_created"] = array("q", (price_created[i] for i in recurring))
    _generate_features(gen, product_count)


def _generate_features(gen: GenerationContext, product_count: int) -> None:
    random = gen.random
    product_created = gen.created["products"]
    feature_count = gen.sizes["features"] if product_count else 0
    gen.created["features"] = gen.timeline.sample(feature_count, gen.rng, bursts=False, first_at_start=True,
                                                  hi=gen.early_hi)
    link_product = array("i")
    link_feature = array("i")
    link_created = array("q")
    features_of_product = array("i", [0])
    for product in range(product_count):
        count = min(feature_count, int(random() * 4))
        if count:
            first = int(random() * feature_count)
            for k in range(count):
                link_product.append(product)
                link_feature.append((first + k) % feature_count)
                link_created.append(product_created[product])
        features_of_product.append(len(link_product))
    gen.created["product_features"] = link_created
    gen.cols["product_features"] = {"product": link_product, "feature": link_feature}
    gen.offsets["products"]["product_features"] = features_of_product
