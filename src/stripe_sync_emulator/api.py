"""The ``/v1`` API independent of HTTP: a route table and generic list / retrieve / create /
update / delete handlers over the type table. ``dispatch`` is called by the aiohttp app and by
``mutate_random`` so both take exactly the same code path."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import registry
from .account import AccountStore
from .core import Ctx
from .errors import StripeError, invalid, missing, missing_param, unknown_param
from .expand import expand
from .families import catalog, connect, customers
from .filters import parse_created, parse_limit
from .forms import as_list
from .operations import check_params, modify, set_fields
from .resources import RESOURCES
from .versions import render_at

LIST_KEYS = {"limit", "starting_after", "ending_before", "expand", "created"}


@dataclass
class Request:
    ctx: Ctx
    method: str
    path: str
    params: dict[str, Any]

    @property
    def account(self) -> AccountStore:
        return self.ctx.account

    @property
    def lm(self) -> bool:
        return self.ctx.livemode

    @property
    def expand(self) -> list[str]:
        return [str(x) for x in as_list(self.params.get("expand"))]


Handler = Callable[..., Any]


@dataclass
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler


ROUTES: list[Route] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        add_route(method, template, fn)
        return fn

    return deco


def add_route(method: str, template: str, fn: Handler) -> None:
    pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
    ROUTES.append(Route(method, template, re.compile(pattern), fn))


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for r in ROUTES:
        if r.method == method:
            m = r.regex.match(path)
            if m:
                return r, m.groupdict()
    return None


def route_template(method: str, path: str) -> str:
    """``GET /v1/customers/{id}`` for stats and per-endpoint rate limits (raw path if unknown)."""
    found = match(method, path)
    return f"{method} {found[0].template}" if found else f"{method} {path}"


def dispatch(ctx: Ctx, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
    """Run one API call; returns (status, body). Raises StripeError for API errors."""
    found = match(method, path)
    if found is None:
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                          "or we can help at https://support.stripe.com/.")
    r, groups = found
    rq = Request(ctx, method, path, params)
    with ctx.core.lock:
        body = render_at(ctx.account, r.handler(rq, **groups), ctx.api_version, ctx.livemode)
    return 200, body


# ---- generic handlers --------------------------------------------------------------------------------

def _check_list_params(rq: Request, name: str, extra: set[str] | None = None) -> None:
    rt = RESOURCES.get(name)
    allowed = LIST_KEYS | set(registry.FILTERS.get(name, {})) | (extra or set())
    if rt is not None and not rt.has_created:
        allowed.discard("created")
    for k in rq.params:
        if k not in allowed:
            raise unknown_param(k)
    if rq.params.get("starting_after") and rq.params.get("ending_before"):
        raise invalid("You may only specify one of these parameters: ending_before, starting_after.",
                      param="ending_before")


def _expanded(rq: Request, obj: Any, *, is_list: bool = False) -> Any:
    """``obj`` with the request's expansions, done on the object as rendered at the request's version
    (an older version's fields can be expanded: ``total_tax_amounts.tax_rate``)."""
    obj = render_at(rq.account, obj, rq.ctx.api_version, rq.lm)
    return expand(rq.account, obj, rq.expand, rq.lm, is_list=is_list)


def _list_body(rq: Request, data: list[Any], more: bool, url: str) -> dict[str, Any]:
    body = {"object": "list", "data": data, "has_more": more, "url": url}
    if rq.expand:
        body = _expanded(rq, body, is_list=True)
    return body


def list_of(name: str, url: str, *, fixed: dict[str, Any] | None = None, created_floor: int | None = None,
            render: Callable[[AccountStore, int, bool], Any] | None = None,
            base_filters: dict[str, Any] | None = None) -> Callable[[Request], Any]:
    def handler(rq: Request) -> Any:
        _check_list_params(rq, name)
        p = rq.params
        limit = parse_limit(p)
        lo, hi = parse_created(p.get("created"))
        if created_floor is not None or name == "events":
            floor = rq.ctx.core.retention_floor()
            lo = floor if lo is None else max(lo, floor)
        filt = dict(base_filters or {})
        filt.update({k: v for k, v in p.items() if k not in LIST_KEYS})
        if fixed:
            filt.update(fixed)
        matchers = rq.account.filters_from(name, filt, set())
        seqs, more = rq.account.page(name, matchers, (lo, hi), p.get("starting_after") or None,
                                 p.get("ending_before") or None, limit)
        rnd = render or (lambda a, s, lm: a.render(name, s, lm))
        return _list_body(rq, [rnd(rq.account, s, rq.lm) for s in seqs], more, url)

    return handler


def child_list(rq: Request, child: str, parent: str, pseq: int, url: str,
               render: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Lists nested under a parent (lines, items...): creation order, cursor by id."""
    _check_list_params(rq, child, {"subscription"} if child == "subscription_items" else set())
    p = rq.params
    limit = parse_limit(p)
    account = rq.account
    seqs = account.child_seqs(child, parent, pseq)
    t = account.tables[child]
    ids = [t.id_of(s) for s in seqs]
    sa, eb = p.get("starting_after"), p.get("ending_before")
    if sa:
        if sa not in ids:
            raise missing(t.rt.kind, sa, "starting_after")
        i = ids.index(sa) + 1
        chosen = seqs[i:i + limit]
        more = i + limit < len(seqs)
    elif eb:
        if eb not in ids:
            raise missing(t.rt.kind, eb, "ending_before")
        j = ids.index(eb)
        chosen = seqs[max(0, j - limit):j]
        more = j - limit > 0
    else:
        chosen = seqs[:limit]
        more = len(seqs) > limit
    rnd = render or (lambda s: account.render(child, s, rq.lm))
    return _list_body(rq, [rnd(s) for s in chosen], more, url)


def retrieve(rq: Request, name: str, ident: str) -> Any:
    for k in rq.params:
        if k != "expand":
            raise unknown_param(k)
    seq = rq.account.seq_or_404(name, ident)
    obj = rq.account.render(name, seq, rq.lm)
    if obj is None:
        raise missing(RESOURCES[name].kind, ident)
    if rq.expand and not obj.get("deleted"):
        obj = _expanded(rq, obj)
    return obj


def _with_expand(rq: Request, obj: Any) -> Any:
    if rq.expand and isinstance(obj, dict) and not obj.get("deleted"):
        return _expanded(rq, obj)
    return obj


def _params_without_expand(rq: Request) -> dict[str, Any]:
    return {k: v for k, v in rq.params.items() if k != "expand"}


def register_resource(name: str) -> None:
    rt = RESOURCES[name]
    path = rt.path
    assert path is not None

    if name not in ("events",):
        add_route("GET", path, list_of(name, path))

    def get_one(rq: Request, id: str) -> Any:
        return retrieve(rq, name, id)

    add_route("GET", path + "/{id}", get_one)
    if name in registry.CREATE and name not in registry.CONTROL_ONLY_CREATE:
        create = registry.CREATE[name]

        def post_new(rq: Request) -> Any:
            return _with_expand(rq, create(rq.ctx, _params_without_expand(rq)))

        add_route("POST", path, post_new)
    if name in registry.UPDATE:
        update = registry.UPDATE[name]

        def post_one(rq: Request, id: str) -> Any:
            seq = rq.account.live_seq_or_404(name, id)
            return _with_expand(rq, update(rq.ctx, seq, _params_without_expand(rq)))

        add_route("POST", path + "/{id}", post_one)
    if name in registry.DELETE:
        delete = registry.DELETE[name]

        def del_one(rq: Request, id: str) -> Any:
            seq = rq.account.live_seq_or_404(name, id)
            return _with_expand(rq, delete(rq.ctx, seq, _params_without_expand(rq)))

        add_route("DELETE", path + "/{id}", del_one)
    for (tname, action), fn in registry.ACTIONS.items():
        if tname != name:
            continue

        def post_action(rq: Request, id: str, _fn: Any = fn) -> Any:
            seq = rq.account.live_seq_or_404(name, id)
            return _with_expand(rq, _fn(rq.ctx, seq, _params_without_expand(rq)))

        add_route("POST", f"{path}/{{id}}/{action}", post_action)


# ---- special routes (registered before the generic ones: first match wins) ---------------------------

@route("GET", "/v1/account")
def get_account(rq: Request) -> Any:
    return _with_expand(rq, rq.account.account_obj)


@route("GET", "/v1/balance")
def get_balance(rq: Request) -> Any:
    return {"object": "balance", "livemode": rq.lm,
            "available": [{"amount": 1_000_000, "currency": "usd", "source_types": {"card": 1_000_000}}],
            "pending": [{"amount": 250_000, "currency": "usd", "source_types": {"card": 250_000}}],
            "connect_reserved": [{"amount": 0, "currency": "usd"}], "refund_and_dispute_prefunding": None}


@route("GET", "/v1/accounts")
def list_accounts(rq: Request) -> Any:
    if rq.account is not rq.ctx.core.platform:
        return _list_body(rq, [], False, "/v1/accounts")
    return list_of("accounts", "/v1/accounts", render=lambda a, s, lm: a.tables["accounts"].rows[s])(rq)


@route("GET", "/v1/accounts/{id}")
def get_account_by_id(rq: Request, id: str) -> Any:
    core = rq.ctx.core
    if id == rq.account.id:
        return _with_expand(rq, rq.account.account_obj)
    if rq.account is core.platform and id in core.accounts:
        return _with_expand(rq, core.accounts[id].account_obj)
    raise StripeError(404, f"No such account: '{id}'", code="resource_missing", param="account")


@route("POST", "/v1/accounts")
def post_account(rq: Request) -> Any:
    return connect.create_account(rq.ctx, _params_without_expand(rq))


@route("POST", "/v1/accounts/{id}")
def post_account_by_id(rq: Request, id: str) -> Any:
    core = rq.ctx.core
    if id != rq.account.id and not (rq.account is core.platform and id in core.accounts):
        raise StripeError(404, f"No such account: '{id}'", code="resource_missing", param="account")
    return connect.update_account(rq.ctx, core.accounts[id], _params_without_expand(rq))


@route("DELETE", "/v1/accounts/{id}")
def delete_account(rq: Request, id: str) -> Any:
    if rq.account is not rq.ctx.core.platform:
        raise StripeError(403, "Only platforms can delete connected accounts.", code="platform_account_required")
    return connect.delete_account(rq.ctx, id)


@route("GET", "/v1/events")
def list_events(rq: Request) -> Any:
    return list_of("events", "/v1/events")(rq)


@route("GET", "/v1/events/{id}")
def get_event(rq: Request, id: str) -> Any:
    account = rq.account
    t = account.tables["events"]
    seq = t.seq_of(id)
    if seq is None or not t.exists(seq) or t.created_of(seq) < rq.ctx.core.retention_floor():
        raise missing("event", id)
    return retrieve(rq, "events", id)


@route("GET", "/v1/subscription_items")
def list_subscription_items(rq: Request) -> Any:
    sub = rq.params.get("subscription")
    if not sub:
        raise missing_param("subscription")
    seq = rq.account.seq_or_404("subscriptions", str(sub), "subscription")
    return child_list(rq, "subscription_items", "subscriptions", seq, f"/v1/subscription_items?subscription={sub}")


def _nested(parent: str, child: str, url: str) -> Handler:
    def handler(rq: Request, id: str) -> Any:
        seq = rq.account.seq_or_404(parent, id)
        return child_list(rq, child, parent, seq, url.format(id=id))

    return handler


add_route("GET", "/v1/invoices/{id}/lines", _nested("invoices", "invoice_lines", "/v1/invoices/{id}/lines"))
add_route("GET", "/v1/credit_notes/{id}/lines", _nested("credit_notes", "credit_note_lines", "/v1/credit_notes/{id}/lines"))
add_route("GET", "/v1/checkout/sessions/{id}/line_items",
          _nested("checkout_sessions", "checkout_line_items", "/v1/checkout/sessions/{id}/line_items"))
add_route("GET", "/v1/products/{id}/features", _nested("products", "product_features", "/v1/products/{id}/features"))
add_route("GET", "/v1/charges/{id}/refunds", _nested("charges", "refunds", "/v1/charges/{id}/refunds"))


@route("GET", "/v1/charges/{id}/refunds/{rid}")
def get_charge_refund(rq: Request, id: str, rid: str) -> Any:
    rq.account.seq_or_404("charges", id)
    return retrieve(rq, "refunds", rid)


@route("POST", "/v1/products/{id}/features")
def post_product_feature(rq: Request, id: str) -> Any:
    prod = rq.account.live_seq_or_404("products", id)
    return catalog.create_product_feature(rq.ctx, prod, _params_without_expand(rq))


@route("GET", "/v1/products/{id}/features/{fid}")
def get_product_feature(rq: Request, id: str, fid: str) -> Any:
    prod = rq.account.seq_or_404("products", id)
    seq = rq.account.seq_or_404("product_features", fid)
    if seq not in rq.account.child_seqs("product_features", "products", prod) and seq not in rq.account.tables[
            "product_features"].deleted:
        raise missing("product feature", fid)
    return retrieve(rq, "product_features", fid)


@route("DELETE", "/v1/products/{id}/features/{fid}")
def delete_product_feature(rq: Request, id: str, fid: str) -> Any:
    prod = rq.account.live_seq_or_404("products", id)
    seq = rq.account.live_seq_or_404("product_features", fid)
    if seq not in rq.account.child_seqs("product_features", "products", prod):
        raise missing("product feature", fid)
    return catalog.delete_product_feature(rq.ctx, prod, seq)


@route("GET", "/v1/customers/{id}/tax_ids")
def list_customer_tax_ids(rq: Request, id: str) -> Any:
    rq.account.seq_or_404("customers", id)
    return list_of("tax_ids", f"/v1/customers/{id}/tax_ids", fixed={"customer": id})(rq)


@route("POST", "/v1/customers/{id}/tax_ids")
def post_customer_tax_id(rq: Request, id: str) -> Any:
    cust = rq.account.live_seq_or_404("customers", id)
    return customers.create_tax_id(rq.ctx, _params_without_expand(rq), cust)


def _customer_child(rq: Request, id: str, name: str, child_id: str) -> int:
    rq.account.seq_or_404("customers", id)
    seq = rq.account.seq_or_404(name, child_id)
    obj = rq.account.render(name, seq, rq.lm) or {}
    if not obj.get("deleted") and obj.get("customer") != id:
        raise missing(RESOURCES[name].kind, child_id)
    return seq


@route("GET", "/v1/customers/{id}/tax_ids/{tid}")
def get_customer_tax_id(rq: Request, id: str, tid: str) -> Any:
    _customer_child(rq, id, "tax_ids", tid)
    return retrieve(rq, "tax_ids", tid)


@route("DELETE", "/v1/customers/{id}/tax_ids/{tid}")
def delete_customer_tax_id(rq: Request, id: str, tid: str) -> Any:
    seq = _customer_child(rq, id, "tax_ids", tid)
    if seq in rq.account.tables["tax_ids"].deleted:
        raise missing("tax_id", tid)
    return customers.delete_tax_id(rq.ctx, seq, {})


@route("GET", "/v1/customers/{id}/payment_methods")
def list_customer_payment_methods(rq: Request, id: str) -> Any:
    rq.account.seq_or_404("customers", id)
    return list_of("payment_methods", f"/v1/customers/{id}/payment_methods", fixed={"customer": id})(rq)


@route("GET", "/v1/customers/{id}/payment_methods/{pm}")
def get_customer_payment_method(rq: Request, id: str, pm: str) -> Any:
    _customer_child(rq, id, "payment_methods", pm)
    return retrieve(rq, "payment_methods", pm)


@route("POST", "/v1/payment_methods/{id}/attach")
def attach_payment_method(rq: Request, id: str) -> Any:
    # Stripe's test ids (pm_card_visa...) make a new payment method when attached.
    seq = customers.resolve_pm(rq.ctx, id, "payment_method")
    return _with_expand(rq, customers.attach_payment_method(rq.ctx, seq, _params_without_expand(rq)))


@route("POST", "/v1/invoices/{id}/lines/{lid}")
def post_invoice_line(rq: Request, id: str, lid: str) -> Any:
    inv = rq.account.live_seq_or_404("invoices", id)
    seq = rq.account.live_seq_or_404("invoice_lines", lid)
    if seq not in rq.account.child_seqs("invoice_lines", "invoices", inv):
        raise missing("invoice line item", lid)
    p = _params_without_expand(rq)
    check_params(p, {"metadata", "description"})
    return modify(rq.ctx, "invoice_lines", seq, lambda o: set_fields(o, p, {"metadata", "description"}))[0]


# Plans: a view over recurring prices.

def _plan_render(account: AccountStore, seq: int, lm: bool) -> Any:
    return account.render_plan(seq, lm)


@route("GET", "/v1/plans")
def list_plans(rq: Request) -> Any:
    _check_list_params(rq, "plans", {"active", "product"})
    return list_of("prices", "/v1/plans", fixed={"type": "recurring"}, render=_plan_render)(rq)


def _plan_seq(rq: Request, id: str, live: bool = False) -> int:
    account = rq.account
    t = account.tables["prices"]
    seq = t.seq_of(id)
    if seq is None or not (seq in t.rows or seq in t.deleted or seq < t.n_gen):
        raise missing("plan", id)
    if seq in t.deleted:
        if live:
            raise missing("plan", id)
        return seq
    if not (account.render("prices", seq, False) or {}).get("recurring"):
        raise missing("plan", id)
    return seq


@route("GET", "/v1/plans/{id}")
def get_plan(rq: Request, id: str) -> Any:
    seq = _plan_seq(rq, id)
    return _with_expand(rq, rq.account.render_plan(seq, rq.lm))


@route("POST", "/v1/plans")
def post_plan(rq: Request) -> Any:
    return _with_expand(rq, catalog.create_plan(rq.ctx, _params_without_expand(rq)))


@route("POST", "/v1/plans/{id}")
def post_plan_by_id(rq: Request, id: str) -> Any:
    return _with_expand(rq, catalog.update_plan(rq.ctx, _plan_seq(rq, id, True), _params_without_expand(rq)))


@route("DELETE", "/v1/plans/{id}")
def delete_plan(rq: Request, id: str) -> Any:
    return catalog.delete_plan(rq.ctx, _plan_seq(rq, id, True), {})


# Active entitlements: derived from the customer's subscriptions.

@route("GET", "/v1/entitlements/active_entitlements")
def list_active_entitlements(rq: Request) -> Any:
    p = rq.params
    for k in p:
        if k not in {"customer", "limit", "starting_after", "ending_before", "expand"}:
            raise unknown_param(k)
    if not p.get("customer"):
        raise missing_param("customer")
    account = rq.account
    # Like other customer filters, an unknown or deleted customer simply has nothing.
    cust = account.tables["customers"].seq_of(str(p["customer"]))
    live = cust is not None and account.tables["customers"].exists(cust)
    feats = account.entitlement_features(cust) if live and cust is not None else []
    cust = cust if cust is not None else 0
    limit = parse_limit(p)
    ids = [account.entitlement_id(cust, f) for f in feats]
    sa, eb = p.get("starting_after"), p.get("ending_before")
    if sa:
        i = ids.index(sa) + 1 if sa in ids else 0
        chosen, more = feats[i:i + limit], i + limit < len(feats)
    elif eb:
        j = ids.index(eb) if eb in ids else 0
        chosen, more = feats[max(0, j - limit):j], j - limit > 0
    else:
        chosen, more = feats[:limit], len(feats) > limit
    data = [account.render_entitlement(cust, f, rq.lm) for f in chosen]
    return _list_body(rq, data, more, "/v1/entitlements/active_entitlements")


@route("GET", "/v1/entitlements/active_entitlements/{id}")
def get_active_entitlement(rq: Request, id: str) -> Any:
    account = rq.account
    parsed = account.parse_entitlement_id(id)
    if parsed is None or parsed[1] not in account.entitlement_features(parsed[0]):
        raise missing("active entitlement", id)
    return _with_expand(rq, account.render_entitlement(parsed[0], parsed[1], rq.lm))


for _name, _rt in RESOURCES.items():
    if _rt.path and _name != "accounts":
        register_resource(_name)

__all__ = ["dispatch", "route_template", "Request"]
