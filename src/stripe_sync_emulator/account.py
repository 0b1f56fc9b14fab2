"""One Stripe account's data: tables, rendering (generated or stored rows), lookups, list
filters, embedded lists and derived entitlements."""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

from . import families  # noqa: F401  (importing the families fills the registry)
from .errors import StripeError, invalid, missing
from .families.catalog import plan_from_price
from .families.subscriptions import ACTIVE_SUB_STATUSES, subscription_status_in
from .filters import NOOP
from .generation import Generated, generate
from .ids import IdCodec, b62, b62_decode, b62_hash, h, stable_hash
from .objects import id_of
from .registry import DEFAULT_FILTERS, FILTERS, RENDERERS
from .resources import RESOURCES, Embed, type_for_id
from .store import Matcher, Table, iterate, page
from .templates import make
from .versions import DEFAULT_API_VERSION

CACHED_TYPES = ("prices", "products", "features", "tax_rates", "coupons")  # small and hot: rendered once


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
        self.api_version = DEFAULT_API_VERSION  # the account's default version (events are rendered at it)

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
            if name != "events" and t.rt.livemode:  # an event keeps the mode it was created in
                out["livemode"] = lm
            for f, typ in t.rt.hydrate.items():
                v = out.get(f)
                if isinstance(v, str):
                    out[f] = self.render_ref(typ, v, lm)
            for f in t.rt.includable:
                out.pop(f, None)
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
        if t.rt.livemode:
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
        for param, value in params.items():
            if param in skip:
                continue
            matcher = self.build_filter(name, param, value)
            if matcher is not NOOP:
                out.append(matcher)
        for param in DEFAULT_FILTERS.get(name, ()):
            if param not in params:
                out.append(self.build_filter(name, param, None))
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
              subscription_status_in(self, self.tables["subscriptions"], ACTIVE_SUB_STATUSES)]
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
