"""One Stripe account's data: tables, rendering (generated or stored rows), lookups, list
filters, embedded lists and derived entitlements."""

from __future__ import annotations

import copy
import fnmatch
import re
from array import array
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .errors import StripeError, invalid, missing
from .forms import as_list, form_text, to_int
from .generator import Generated, generate
from .ids import IdCodec, b62, b62_decode, b62_hash, h, stable_hash
from .render import RENDERERS, plan_from_price
from .resources import RESOURCES, Embed, type_for_id
from .store import Matcher, Table, iterate, page
from .templates import make

_EMPTY = array("i")
ACTIVE_SUB_STATUSES = ("active", "trialing", "past_due")
CACHED_TYPES = ("prices", "products", "features", "tax_rates", "coupons")


def get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


def id_of(v: Any) -> Any:
    return v.get("id") if isinstance(v, dict) else v


def norm(v: Any) -> str:
    """A field value as a filter compares it: form text, an expanded object by its id."""
    if isinstance(v, dict) and "id" in v:
        return str(v["id"])
    return form_text(v)


def _true(_: int) -> bool:
    return True


class AccountStore:
    """All objects of one account (the platform or a connected account)."""

    def __init__(
        self,
        *,
        seed: int,
        account_id: str,
        customers: int,
        start: int,
        end: int,
        sizes: dict[str, int] | None = None,
        platform_id: str | None = None,
        transfer_destinations: list[str] | None = None,
    ) -> None:
        self.id = account_id
        self.platform_id = platform_id  # None for the platform itself
        self.tag = account_id[6:16]
        self.ns = stable_hash("account", seed, account_id)
        self.gen_start = start
        self.gen_end = end
        self.transfer_destinations = transfer_destinations or []
        gen: Generated = generate(self.ns & 0xFFFFFFFFFFFF, customers, start, end, sizes=sizes,
                                  transfer_destinations=len(self.transfer_destinations))
        self.sizes = gen.sizes
        self.extra: dict[str, Any] = gen.extra
        self.tables: dict[str, Table] = {}
        for name, rt in RESOURCES.items():
            codec = IdCodec(rt.prefix, rt.id_style, stable_hash(self.ns, name), self.tag)
            t = Table(rt, codec, gen.created.get(name), gen.cols.get(name))
            t.offsets = gen.offsets.get(name, {})
            if name in CACHED_TYPES:
                t.cache = {}
            self.tables[name] = t
        self.ent_ns = stable_hash(self.ns, "entitlements")
        self.idempotency: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.account_obj: dict[str, Any] = {}
        self.webhook_secrets: dict[int, str] = {}  # endpoint seq -> whsec_ (never rendered after create)
        self.webhook_connect: dict[int, bool] = {}  # endpoint seq -> receives connected accounts' events
        self.ii_line: dict[int, int] = {}  # invoice item seq -> its line on a draft invoice

    # ---- lookups -----------------------------------------------------------------------------
    def table(self, name: str) -> Table:
        return self.tables[name]

    def locate(self, ident: str) -> tuple[str, int] | None:
        """(type, seq) of any id in this account, by prefix (coupons: no prefix)."""
        if not isinstance(ident, str) or not ident:
            return None
        name = type_for_id(ident)
        if name is None or name not in self.tables:
            name = "coupons"
        t = self.tables[name]
        seq = t.seq_of(ident)
        if seq is None and name != "coupons":
            # Custom ids (products/coupons created with an ``id``) can look like anything.
            for alt in ("products", "coupons"):
                s2 = self.tables[alt].custom_ids.get(ident)
                if s2 is not None:
                    return alt, s2
            return None
        return (name, seq) if seq is not None else None

    def seq_or_404(self, name: str, ident: str, param: str = "id") -> int:
        t = self.tables[name]
        seq = t.seq_of(ident) if isinstance(ident, str) else None
        if seq is None or not (seq in t.rows or seq in t.deleted or seq < t.n_gen):
            raise missing(t.rt.kind, str(ident), param)
        return seq

    def live_seq_or_404(self, name: str, ident: str, param: str = "id") -> int:
        seq = self.seq_or_404(name, ident, param)
        if seq in self.tables[name].deleted:
            raise missing(self.tables[name].rt.kind, ident, param)
        return seq

    # ---- rendering ---------------------------------------------------------------------------
    def render(self, name: str, seq: int, lm: bool) -> dict[str, Any] | None:
        """Current object (read-only: shared with caches), deleted stub, or None."""
        t = self.tables[name]
        cache = t.cache
        if cache is not None:
            hit = cache.get((seq, lm))
            if hit is not None:
                return hit
        if seq in t.deleted:
            return {"id": t.id_of(seq), "object": t.rt.object, "deleted": True}
        obj = t.rows.get(seq)
        if obj is not None:
            out = dict(obj)
            if name != "events":  # an event keeps the mode it was created in
                out["livemode"] = lm
            for f, typ in t.rt.hydrate.items():
                v = out.get(f)
                if isinstance(v, str):
                    out[f] = self.render_ref(typ, v, lm)
        elif seq < t.n_gen:
            out = RENDERERS[name](self, seq, lm)
        else:
            return None
        for f, emb in t.rt.embeds.items():
            out[f] = self.embedded_list(t, seq, out["id"], emb, lm)
        if cache is not None:
            cache[(seq, lm)] = out
        return out

    def render_ref(self, typ: str, ident: str, lm: bool) -> Any:
        if typ == "plans":
            t = self.tables["prices"]
            seq = t.seq_of(ident)
            return self.render_plan(seq, lm) if seq is not None else ident
        seq = self.tables[typ].seq_of(ident)
        if seq is None:
            return ident
        return self.render(typ, seq, lm) or ident

    def render_plan(self, price_seq: int, lm: bool) -> dict[str, Any] | None:
        t = self.tables["prices"]
        if price_seq in t.deleted:
            return {"id": t.id_of(price_seq), "object": "plan", "deleted": True}
        price = self.render("prices", price_seq, lm)
        if price is None or price.get("deleted") or not price.get("recurring"):
            return None
        return plan_from_price(price)

    def render_by_id(self, ident: str, lm: bool, field: str | None = None) -> dict[str, Any] | None:
        """Any object by id (for expansion); plans when the field is called ``plan``."""
        if ident.startswith("acct_"):
            return self.render_account(ident, lm)
        loc = self.locate(ident)
        if loc is None:
            return None
        name, seq = loc
        if name == "prices" and field == "plan":
            return self.render_plan(seq, lm)
        return self.render(name, seq, lm)

    def render_account(self, ident: str, lm: bool) -> dict[str, Any] | None:
        if ident == self.id:
            return self.account_obj
        t = self.tables["accounts"]
        seq = t.seq_of(ident)
        if seq is None:
            return None
        return self.render("accounts", seq, lm)

    def embedded_list(self, parent: Table, seq: int, pid: str, emb: Embed, lm: bool) -> dict[str, Any]:
        seqs = self.child_seqs(emb.child, parent.name, seq)
        data = [self.render(emb.child, s, lm) for s in seqs[: emb.limit]]
        return {"object": "list", "data": data, "has_more": len(seqs) > emb.limit,
                "url": emb.url.format(id=pid)}

    def child_seqs(self, child: str, parent: str, seq: int) -> list[int]:
        ct = self.tables[child]
        pt = self.tables[parent]
        if child == "refunds":
            gen = self.extra["refunds_by_charge"].get(seq, []) if seq < pt.n_gen else []
            out = list(gen) + ct.children.get(seq, [])
            return [s for s in out if s not in ct.deleted]
        return ct.child_seqs(pt, seq)

    def dehydrate(self, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Storable form: a deep copy with embedded lists dropped and embedded objects as ids."""
        rt = RESOURCES[name]
        out = copy.deepcopy(obj)
        for f in rt.embeds:
            out.pop(f, None)
        for f in rt.hydrate:
            v = out.get(f)
            if isinstance(v, dict):
                out[f] = v.get("id")
        return out

    def stored(self, name: str, seq: int) -> dict[str, Any]:
        """Dehydrated current form of a live row (a fresh copy, safe to modify)."""
        t = self.tables[name]
        obj = t.rows.get(seq)
        if obj is not None:
            return copy.deepcopy(obj)
        rendered = RENDERERS[name](self, seq, False)
        return self.dehydrate(name, rendered)

    def new_object(self, name: str, created: int, custom_id: str | None = None) -> tuple[int, dict[str, Any]]:
        """Allocate a row and a template-based object with id/created set (not stored yet)."""
        t = self.tables[name]
        if custom_id is not None and (custom_id in t.custom_ids or t.codec.decode(custom_id) is not None):
            raise StripeError(400, f"{t.rt.kind.capitalize()} already exists.", code="resource_already_exists",
                              param="id")
        seq = t.new_seq(created, custom_id)
        obj = make(t.rt.fixture)
        obj["id"] = t.id_of(seq)
        if t.rt.has_created:
            obj["created"] = created
        elif "created" in obj:
            del obj["created"]
        obj["livemode"] = False
        for f in t.rt.embeds:
            obj.pop(f, None)
        if "metadata" in obj:
            obj["metadata"] = {}
        return seq, obj

    # ---- counting / iteration ---------------------------------------------------------------
    def all_seqs(self, name: str, matchers: list[Matcher] | None = None) -> list[int]:
        return [k[1] for k in iterate(self.tables[name], matchers or [], None, None, None, True)]

    def count(self, name: str) -> int:
        if name == "plans":
            return len(self.all_seqs("prices", [self.build_filter("prices", "type", "recurring")]))
        if name == "active_entitlements":
            return sum(len(self.entitlement_features(c)) for c in self.all_seqs("customers"))
        return self.tables[name].count()

    def page(self, name: str, matchers: list[Matcher], created: tuple[int | None, int | None],
             starting_after: str | None, ending_before: str | None, limit: int) -> tuple[list[int], bool]:
        t = self.tables[name]
        sa = eb = None
        if starting_after:
            sa = t.key(self.seq_or_404(name, starting_after, "starting_after"))
        if ending_before:
            eb = t.key(self.seq_or_404(name, ending_before, "ending_before"))
        return page(t, matchers, created[0], created[1], sa, eb, limit)

    # ---- list filters -------------------------------------------------------------------------
    def build_filter(self, name: str, param: str, value: Any) -> Matcher:
        spec = FILTERS.get(name, {}).get(param)
        if spec is None:
            raise invalid(f"Received unknown parameter: {param}", param=param, code="parameter_unknown")
        return spec(self, self.tables[name], value)

    def filters_from(self, name: str, params: dict[str, Any], skip: set[str]) -> list[Matcher]:
        out = []
        for k, v in params.items():
            if k in skip:
                continue
            m = self.build_filter(name, k, v)
            if m is not _NOOP:
                out.append(m)
        if name == "subscriptions" and "status" not in params:
            out.append(_sub_status(self, self.tables[name], None))
        return out

    # ---- entitlements (derived from subscriptions -> prices -> products -> features) -------------
    def price_seq_of_item(self, si: int) -> int | None:
        t = self.tables["subscription_items"]
        row = t.rows.get(si)
        if row is not None:
            return self.tables["prices"].seq_of(id_of(row.get("price")) or "")
        return t.cols["price"][si]

    def product_seq_of_price(self, p: int) -> int | None:
        t = self.tables["prices"]
        row = t.rows.get(p)
        if row is not None:
            return self.tables["products"].seq_of(id_of(row.get("product")) or "")
        return t.cols["product"][p] if p < t.n_gen else None

    def features_of_product(self, prod: int) -> list[int]:
        pf = self.tables["product_features"]
        out = []
        for s in pf.child_seqs(self.tables["products"], prod):
            row = pf.rows.get(s)
            if row is not None:
                f = self.tables["features"].seq_of(id_of(row.get("entitlement_feature")) or "")
            else:
                f = pf.cols["feature"][s]
            if f is not None:
                out.append(f)
        return out

    def active_subscriptions(self, cust: int) -> list[int]:
        cid = self.tables["customers"].id_of(cust)
        ms = [self.build_filter("subscriptions", "customer", cid),
              _sub_status_in(self, self.tables["subscriptions"], ACTIVE_SUB_STATUSES)]
        return self.all_seqs("subscriptions", ms)

    def entitlement_features(self, cust: int) -> list[int]:
        """Feature rows the customer is entitled to right now (sorted)."""
        feats: set[int] = set()
        ft = self.tables["features"]
        for s in self.active_subscriptions(cust):
            for si in self.child_seqs("subscription_items", "subscriptions", s):
                p = self.price_seq_of_item(si)
                if p is None:
                    continue
                prod = self.product_seq_of_price(p)
                if prod is None:
                    continue
                for f in self.features_of_product(prod):
                    if f not in ft.deleted:
                        feat = self.render("features", f, False)
                        if feat and feat.get("active", True):
                            feats.add(f)
        return sorted(feats)

    def entitlement_id(self, cust: int, feat: int) -> str:
        check = b62_hash(h(self.ent_ns, cust, feat), 7)
        return f"ent_test_61{b62(cust, 7)}{b62(feat, 7)}{check}"

    def parse_entitlement_id(self, ident: str) -> tuple[int, int] | None:
        if not ident.startswith("ent_test_61") or len(ident) != 11 + 21:
            return None
        cust = b62_decode(ident[11:18])
        feat = b62_decode(ident[18:25])
        if cust is None or feat is None or self.entitlement_id(cust, feat) != ident:
            return None
        return cust, feat

    def render_entitlement(self, cust: int, feat: int, lm: bool, expand_feature: bool = False) -> dict[str, Any]:
        o = make("entitlements.active_entitlement")
        f = self.render("features", feat, lm) or {}
        o.update({"id": self.entitlement_id(cust, feat), "livemode": lm, "lookup_key": f.get("lookup_key"),
                  "feature": f if expand_feature else f.get("id")})
        return o

    def entitlement_summary(self, cust: int, lm: bool) -> dict[str, Any]:
        cid = self.tables["customers"].id_of(cust)
        data = [self.render_entitlement(cust, f, lm, expand_feature=True) for f in self.entitlement_features(cust)]
        return {"object": "entitlements.active_entitlement_summary", "customer": cid, "livemode": lm,
                "entitlements": {"object": "list", "data": data, "has_more": False,
                                 "url": f"/v1/customer/{cid}/entitlements"}}


# ---- filter builders ------------------------------------------------------------------------------

FilterBuilder = Callable[[AccountStore, Table, Any], Matcher]
_NOOP = Matcher(_true, lambda s, o: True)


def _noop(acc: AccountStore, t: Table, value: Any) -> Matcher:
    """Accepted for compatibility but not applied (documented in the report)."""
    return _NOOP


def f_rel(col: str | None, target: str, path: tuple[str, ...]) -> FilterBuilder:
    """Equality on a relation (an id), using the inverted index of a generated column."""

    def build(acc: AccountStore, t: Table, value: Any) -> Matcher:
        want = str(value)
        tt = acc.tables[target]
        tseq = tt.seq_of(want) if want else None
        gen: Callable[[int], bool] | None = None
        cands = None
        if col is not None and col in t.cols and tseq is not None and tseq < tt.n_gen:
            gen = _true
            cands = t.index(col).get(tseq, _EMPTY)
        return Matcher(gen, lambda s, o: id_of(get_path(o, path)) == want, cands)

    return build


def f_same_row(target: str, path: tuple[str, ...]) -> FilterBuilder:
    """Charges' payment_intent: generated charges and intents share row numbers."""

    def build(acc: AccountStore, t: Table, value: Any) -> Matcher:
        want = str(value)
        tseq = acc.tables[target].seq_of(want)
        if tseq is None or tseq >= t.n_gen:
            return Matcher(None, lambda s, o: id_of(get_path(o, path)) == want)
        return Matcher(_true, lambda s, o: id_of(get_path(o, path)) == want, array("i", [tseq]))

    return build


def f_path(path: tuple[str, ...], multi: bool = False) -> FilterBuilder:
    """Equality on any field; generated rows are rendered to check (fine for small tables)."""

    def build(acc: AccountStore, t: Table, value: Any) -> Matcher:
        wants = {str(v) for v in as_list(value)} if multi else {norm(value)}

        def dyn(s: int, o: dict[str, Any]) -> bool:
            return norm(get_path(o, path)) in wants

        def gen(i: int) -> bool:
            obj = acc.render(t.name, i, False)
            return obj is not None and norm(get_path(obj, path)) in wants

        return Matcher(gen, dyn)

    return build


def f_dyn_only(path: tuple[str, ...]) -> FilterBuilder:
    """Equality on a field that generated rows always leave empty (only API-made rows can match)."""

    def build(acc: AccountStore, t: Table, value: Any) -> Matcher:
        want = norm(value)
        gen: Callable[[int], bool] | None = _true if want == "" else None
        return Matcher(gen, lambda s, o: norm(get_path(o, path)) == want)

    return build


_EMAIL_ROW = re.compile(r"\.(\d+)@example\.com$")


def _customer_email(acc: AccountStore, t: Table, value: Any) -> Matcher:
    """Generated emails end in ``.<row>@example.com``: check that one row instead of rendering all."""
    want = str(value)
    m = _EMAIL_ROW.search(want)
    cands = array("i")
    if m and int(m.group(1)) < t.n_gen:
        i = int(m.group(1))
        obj = acc.render("customers", i, False)
        if obj is not None and obj.get("email") == want:
            cands.append(i)
    return Matcher(_true, lambda s, o: o.get("email") == want, cands)


def f_enum(col: str, values: tuple[str, ...], path: tuple[str, ...], allowed: tuple[str, ...] | None = None) -> FilterBuilder:
    def build(acc: AccountStore, t: Table, value: Any) -> Matcher:
        v = str(value)
        ok = allowed or values
        if v not in ok:
            raise invalid(f"Invalid {path[-1]}: must be one of {', '.join(ok)}", param=path[-1])
        arr = t.cols.get(col)
        gen: Callable[[int], bool] | None = None
        if v in values and arr is not None:
            code = values.index(v)
            gen = lambda i: arr[i] == code  # noqa: E731
        return Matcher(gen, lambda s, o: get_path(o, path) == v)

    return build


def _sub_status_in(acc: AccountStore, t: Table, statuses: tuple[str, ...]) -> Matcher:
    from .generator import SUB_STATUS

    codes = {SUB_STATUS.index(s) for s in statuses if s in SUB_STATUS}
    arr = t.cols.get("status")
    if arr is None:
        return Matcher(None, lambda s, o: o.get("status") in statuses)
    return Matcher(lambda i: arr[i] in codes, lambda s, o: o.get("status") in statuses)


def _sub_status(acc: AccountStore, t: Table, value: Any) -> Matcher:
    from .generator import SUB_STATUS

    if value is None:  # Stripe's default: everything but canceled subscriptions
        return _sub_status_in(acc, t, tuple(s for s in SUB_STATUS if s != "canceled"))
    v = str(value)
    if v == "all":
        return _NOOP
    if v == "ended":
        return _sub_status_in(acc, t, ("canceled", "incomplete_expired"))
    if v not in SUB_STATUS:
        raise invalid("Invalid status: must be one of active, past_due, unpaid, canceled, incomplete, "
                      "incomplete_expired, trialing, paused, all, or ended", param="status")
    return _sub_status_in(acc, t, (v,))


def _sub_price(acc: AccountStore, t: Table, value: Any) -> Matcher:
    want = str(value)
    items = acc.tables["subscription_items"]
    pseq = acc.tables["prices"].seq_of(want)
    subs: set[int] = set()
    if pseq is not None and pseq < acc.tables["prices"].n_gen:
        for si in items.index("price").get(pseq, _EMPTY):
            subs.add(items.cols["subscription"][si])
    for si, row in items.rows.items():
        if id_of(row.get("price")) == want:
            parent = items.parent_of.get(si)
            if parent is None and si < items.n_gen:
                parent = items.cols["subscription"][si]
            if parent is not None:
                subs.add(parent)
    cands = array("i", sorted(s for s in subs if s < t.n_gen))
    return Matcher(_true, lambda s, o: s in subs, cands)


def _price_type(acc: AccountStore, t: Table, value: Any) -> Matcher:
    v = str(value)
    if v not in ("one_time", "recurring"):
        raise invalid("Invalid type: must be one of one_time or recurring", param="type")
    kinds = t.cols["kind"]
    if v == "recurring":
        return Matcher(lambda i: kinds[i] > 0, lambda s, o: o.get("type") == "recurring")
    return Matcher(lambda i: kinds[i] == 0, lambda s, o: o.get("type") == "one_time")


def _bt_type(acc: AccountStore, t: Table, value: Any) -> Matcher:
    from .generator import BT_KIND

    v = str(value)
    kinds = t.cols["kind"]
    gen = None
    if v in BT_KIND:
        code = BT_KIND.index(v)
        gen = lambda i: kinds[i] == code  # noqa: E731
    return Matcher(gen, lambda s, o: o.get("type") == v)


def _pending(acc: AccountStore, t: Table, value: Any) -> Matcher:
    want = str(value) == "true"
    return Matcher(_true if want else None, lambda s, o: (o.get("invoice") is None) == want)


def _ids(acc: AccountStore, t: Table, value: Any) -> Matcher:
    wanted = {str(v) for v in as_list(value)}
    seqs = sorted(s for s in (t.seq_of(w) for w in wanted) if s is not None and s < t.n_gen)
    return Matcher(_true, lambda s, o: o.get("id") in wanted, array("i", seqs))


def _archived(acc: AccountStore, t: Table, value: Any) -> Matcher:
    want_active = str(value) != "true"
    return Matcher(lambda i: want_active, lambda s, o: bool(o.get("active", True)) == want_active)


def _tax_owner(acc: AccountStore, t: Table, value: Any) -> Matcher:
    if not isinstance(value, dict):
        raise invalid("Invalid hash", param="owner")
    typ = value.get("type")
    if typ and typ != "customer":
        return Matcher(None, lambda s, o: get_path(o, ("owner", "type")) == typ)
    cus = value.get("customer")
    if cus:
        return f_rel("customer", "customers", ("customer",))(acc, t, cus)
    return _NOOP


def _event_type(acc: AccountStore, t: Table, value: Any) -> Matcher:
    pats = [str(v) for v in as_list(value)]
    if len(pats) > 20:
        raise invalid("You may specify at most 20 types.", param="types")

    def dyn(s: int, o: dict[str, Any]) -> bool:
        typ = o.get("type", "")
        return any(fnmatch.fnmatchcase(typ, p) if "*" in p else typ == p for p in pats)

    return Matcher(None, dyn)


def _customer_email_details(acc: AccountStore, t: Table, value: Any) -> Matcher:
    email = value.get("email") if isinstance(value, dict) else None
    if email is None:
        return _NOOP
    return f_path(("customer_details", "email"))(acc, t, email)


_CUS = f_rel("customer", "customers", ("customer",))
FILTERS: dict[str, dict[str, FilterBuilder]] = {
    "customers": {"email": _customer_email, "test_clock": _noop},
    "products": {"active": f_path(("active",)), "ids": _ids, "shippable": f_path(("shippable",)),
                 "url": f_path(("url",)), "type": f_path(("type",))},
    "prices": {"active": f_path(("active",)), "currency": f_path(("currency",)),
               "product": f_rel("product", "products", ("product",)), "type": _price_type,
               "lookup_keys": f_path(("lookup_key",), multi=True), "recurring": _noop},
    "coupons": {},
    "promotion_codes": {"active": f_path(("active",)), "code": f_path(("code",)),
                        "coupon": f_rel("coupon", "coupons", ("promotion", "coupon")),
                        "customer": f_dyn_only(("customer",))},
    "tax_rates": {"active": f_path(("active",)), "inclusive": f_path(("inclusive",))},
    "features": {"archived": _archived, "lookup_key": f_path(("lookup_key",))},
    "payment_methods": {"customer": _CUS, "type": f_path(("type",))},
    "tax_ids": {"owner": _tax_owner, "customer": _CUS},
    "subscriptions": {"customer": _CUS, "price": _sub_price, "status": _sub_status,
                      "collection_method": f_path(("collection_method",)), "test_clock": _noop,
                      "automatic_tax": _noop, "current_period_end": _noop, "current_period_start": _noop},
    "subscription_schedules": {"customer": _CUS, "scheduled": _noop, "canceled_at": _noop,
                               "completed_at": _noop, "released_at": _noop},
    "invoices": {"customer": _CUS, "status": f_enum("status", ("draft", "open", "paid", "uncollectible", "void"), ("status",)),
                 "subscription": f_rel("subscription", "subscriptions", ("parent", "subscription_details", "subscription")),
                 "collection_method": f_path(("collection_method",)), "due_date": _noop},
    "invoiceitems": {"customer": _CUS, "invoice": f_dyn_only(("invoice",)), "pending": _pending},
    "credit_notes": {"customer": f_path(("customer",)), "invoice": f_rel("invoice", "invoices", ("invoice",))},
    "charges": {"customer": _CUS, "payment_intent": f_same_row("payment_intents", ("payment_intent",)),
                "transfer_group": f_dyn_only(("transfer_group",))},
    "payment_intents": {"customer": _CUS},
    "refunds": {"charge": f_rel("charge", "charges", ("charge",)),
                "payment_intent": f_rel("charge", "payment_intents", ("payment_intent",))},
    "disputes": {"charge": f_rel("charge", "charges", ("charge",)),
                 "payment_intent": f_rel("charge", "payment_intents", ("payment_intent",))},
    "early_fraud_warnings": {"charge": f_rel("charge", "charges", ("charge",)),
                             "payment_intent": f_rel("charge", "payment_intents", ("payment_intent",))},
    "reviews": {},
    "setup_intents": {"customer": _CUS, "payment_method": f_rel("payment_method", "payment_methods", ("payment_method",)),
                      "attach_to_self": _noop},
    "checkout_sessions": {"customer": _CUS, "customer_details": _customer_email_details,
                          "payment_intent": f_dyn_only(("payment_intent",)),
                          "payment_link": f_dyn_only(("payment_link",)),
                          "status": f_enum("status", ("complete", "expired", "open"), ("status",)),
                          "subscription": f_dyn_only(("subscription",))},
    "payouts": {"status": f_path(("status",)), "arrival_date": _noop, "destination": f_path(("destination",))},
    "transfers": {"destination": f_path(("destination",)), "transfer_group": f_path(("transfer_group",))},
    "balance_transactions": {"payout": f_path(("source",)), "source": f_path(("source",)), "type": _bt_type,
                             "currency": f_path(("currency",))},
    "events": {"type": _event_type, "types": _event_type, "delivery_success": _noop},
    "webhook_endpoints": {},
    "accounts": {},
}


def parse_limit(params: dict[str, Any]) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return 10
    n = to_int(raw, "limit")
    if n < 1:
        raise invalid("This value must be greater than or equal to 1.", param="limit")
    if n > 100:
        raise invalid("This value must be less than or equal to 100.", param="limit")
    return n


def parse_created(value: Any, param: str = "created") -> tuple[int | None, int | None]:
    """``created=N`` or ``created[gt|gte|lt|lte]=N`` -> inclusive (lo, hi)."""
    if value is None or value == "":
        return None, None
    if not isinstance(value, dict):
        n = to_int(value, param)
        return n, n
    lo: int | None = None
    hi: int | None = None
    for op, raw in value.items():
        n = to_int(raw, f"{param}[{op}]")
        if op == "gt":
            lo = n + 1 if lo is None else max(lo, n + 1)
        elif op == "gte":
            lo = n if lo is None else max(lo, n)
        elif op == "lt":
            hi = n - 1 if hi is None else min(hi, n - 1)
        elif op == "lte":
            hi = n if hi is None else min(hi, n)
        else:
            raise invalid(f"Received unknown parameter: {param}[{op}]", param=f"{param}[{op}]",
                          code="parameter_unknown")
    return lo, hi
