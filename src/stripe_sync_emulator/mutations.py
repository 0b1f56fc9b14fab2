"""``mutate_random``: realistic random changes, made through the same API dispatch as HTTP
requests (control-only ones through the same operations as the control API), so they emit
exactly the events real requests would. Used by tests and by the demo's "live trickle"."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from .account import AccountStore
from .api import dispatch
from .core import Ctx, EmulatorCore
from .errors import StripeError
from .families import balance, checkout, disputes


def _pick(account: AccountStore, name: str, rng: random.Random, ok: Callable[[dict[str, Any]], bool] | None = None,
          tries: int = 25) -> dict[str, Any] | None:
    """A random live object of a type (generated or created), optionally satisfying ``ok``."""
    t = account.tables[name]
    dyn = [s for s in t.rows if s >= t.n_gen]
    total = t.n_gen + len(dyn)
    if total == 0:
        return None
    for _ in range(tries):
        k = rng.randrange(total)
        seq = k if k < t.n_gen else dyn[k - t.n_gen]
        if seq in t.deleted:
            continue
        obj = account.render(name, seq, False)
        if obj is None or obj.get("deleted"):
            continue
        if ok is None or ok(obj):
            return obj
    return None


def _recurring_price(account: AccountStore, rng: random.Random) -> dict[str, Any] | None:
    return _pick(account, "prices", rng, lambda p: bool(p.get("recurring")) and bool(p.get("active")))


class Mutator:
    def __init__(self, core: EmulatorCore, account: AccountStore, rng: random.Random, livemode: bool = False) -> None:
        self.core = core
        self.account = account
        self.rng = rng
        self.ctx = Ctx(core, account, livemode)
        self.counter = 0

    def call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        self.counter += 1
        self.ctx.request_id = f"req_mut{self.core.stats.events_created:09d}{self.counter}"
        return dispatch(self.ctx, method, path, params or {})[1]

    # ---- operations (each returns nothing; failures are Stripe errors and are skipped) ----------
    def create_customer(self) -> None:
        n = self.rng.randrange(1_000_000)
        self.call("POST", "/v1/customers", {"name": f"Trickle Customer {n}", "email": f"trickle{n}@example.com",
                                             "metadata": {"source": "mutate_random"}})

    def update_customer(self) -> None:
        c = _pick(self.account, "customers", self.rng)
        if c:
            self.call("POST", f"/v1/customers/{c['id']}", {"metadata": {"touched": str(self.core.now())},
                                                           "description": f"Updated {self.rng.randrange(1000)}"})

    def delete_customer(self) -> None:
        c = _pick(self.account, "customers", self.rng)
        if c:
            self.call("DELETE", f"/v1/customers/{c['id']}")

    def create_subscription(self) -> None:
        c = _pick(self.account, "customers", self.rng)
        p = _recurring_price(self.account, self.rng)
        if c and p:
            self.call("POST", "/v1/subscriptions", {"customer": c["id"], "default_payment_method": "pm_card_visa",
                                                    "items": [{"price": p["id"], "quantity": str(1 + self.rng.randrange(3))}]})

    def update_subscription(self) -> None:
        s = _pick(self.account, "subscriptions", self.rng, lambda o: o["status"] in ("active", "trialing", "past_due"))
        if not s:
            return
        items = s["items"]["data"]
        if items and self.rng.random() < 0.6:
            self.call("POST", f"/v1/subscriptions/{s['id']}",
                      {"items": [{"id": items[0]["id"], "quantity": str(1 + self.rng.randrange(9))}]})
        else:
            self.call("POST", f"/v1/subscriptions/{s['id']}", {"metadata": {"touched": str(self.core.now())}})

    def cancel_subscription(self) -> None:
        s = _pick(self.account, "subscriptions", self.rng, lambda o: o["status"] in ("active", "trialing", "past_due"))
        if s:
            self.call("DELETE", f"/v1/subscriptions/{s['id']}")

    def invoice_flow(self) -> None:
        c = _pick(self.account, "customers", self.rng)
        if not c:
            return
        self.call("POST", "/v1/invoiceitems", {"customer": c["id"], "amount": str(500 + self.rng.randrange(20) * 250),
                                               "currency": "usd", "description": "Trickle one-off"})
        inv = self.call("POST", "/v1/invoices", {"customer": c["id"], "pending_invoice_items_behavior": "include"})
        self.call("POST", f"/v1/invoices/{inv['id']}/finalize")
        if self.rng.random() < 0.85:
            self.call("POST", f"/v1/invoices/{inv['id']}/pay", {"payment_method": "pm_card_visa"})
        else:
            self.call("POST", f"/v1/invoices/{inv['id']}/void")

    def payment(self) -> None:
        c = _pick(self.account, "customers", self.rng)
        params: dict[str, Any] = {"amount": str(1000 + self.rng.randrange(100) * 100), "currency": "usd",
                                  "payment_method": "pm_card_visa", "confirm": "true"}
        if c:
            params["customer"] = c["id"]
        self.call("POST", "/v1/payment_intents", params)

    def refund(self) -> None:
        ch = _pick(self.account, "charges", self.rng,
                   lambda o: bool(o["status"] == "succeeded" and o.get("captured")
                                  and o["amount_refunded"] < o["amount"]))
        if ch:
            remaining = ch["amount"] - ch["amount_refunded"]
            amount = remaining if self.rng.random() < 0.6 else max(1, remaining // 2)
            self.call("POST", "/v1/refunds", {"charge": ch["id"], "amount": str(amount),
                                              "reason": "requested_by_customer"})

    def catalog(self) -> None:
        r = self.rng.random()
        if r < 0.4:
            n = self.rng.randrange(100_000)
            self.call("POST", "/v1/products", {"name": f"Trickle Product {n}", "default_price_data": {
                "currency": "usd", "unit_amount": str(500 + self.rng.randrange(50) * 100),
                "recurring": {"interval": "month"}}})
        elif r < 0.7:
            prod = _pick(self.account, "products", self.rng)
            if prod:
                self.call("POST", f"/v1/products/{prod['id']}", {"description": f"Revised {self.rng.randrange(1000)}"})
        else:
            price = _pick(self.account, "prices", self.rng)
            if price:
                self.call("POST", f"/v1/prices/{price['id']}", {"metadata": {"touched": str(self.core.now())}})

    def payment_methods(self) -> None:
        if self.rng.random() < 0.7:
            c = _pick(self.account, "customers", self.rng)
            if c:
                self.call("POST", "/v1/payment_methods/pm_card_mastercard/attach", {"customer": c["id"]})
        else:
            pm = _pick(self.account, "payment_methods", self.rng, lambda o: bool(o.get("customer")))
            if pm:
                self.call("POST", f"/v1/payment_methods/{pm['id']}/detach")

    def tax_ids(self) -> None:
        if self.rng.random() < 0.7:
            c = _pick(self.account, "customers", self.rng)
            if c:
                self.call("POST", f"/v1/customers/{c['id']}/tax_ids",
                          {"type": "eu_vat", "value": f"DE{self.rng.randrange(10**9):09d}"})
        else:
            ti = _pick(self.account, "tax_ids", self.rng)
            if ti:
                self.call("DELETE", f"/v1/customers/{ti['customer']}/tax_ids/{ti['id']}")

    def coupons(self) -> None:
        cp = self.call("POST", "/v1/coupons", {"percent_off": str(5 * (1 + self.rng.randrange(10))),
                                              "duration": "once"})
        self.call("POST", "/v1/promotion_codes", {"promotion": {"type": "coupon", "coupon": cp["id"]}})

    def checkout(self) -> None:
        price = _pick(self.account, "prices", self.rng, lambda p: bool(p.get("active")))
        if not price:
            return
        c = _pick(self.account, "customers", self.rng)
        mode = "subscription" if price.get("recurring") else "payment"
        params: dict[str, Any] = {"mode": mode, "success_url": "https://example.com/ok",
                                  "line_items": [{"price": price["id"], "quantity": "1"}]}
        if c:
            params["customer"] = c["id"]
        cs = self.call("POST", "/v1/checkout/sessions", params)
        seq = self.account.tables["checkout_sessions"].seq_of(cs["id"])
        assert seq is not None
        if self.rng.random() < 0.8:
            checkout.complete_checkout_session(self.ctx, seq, {})
        else:
            self.call("POST", f"/v1/checkout/sessions/{cs['id']}/expire")

    def risk(self) -> None:
        ch = _pick(self.account, "charges", self.rng, lambda o: o["status"] == "succeeded" and not o.get("disputed"))
        if not ch:
            return
        r = self.rng.random()
        if r < 0.4:
            disputes.create_dispute(self.ctx, {"charge": ch["id"]})
        elif r < 0.7:
            disputes.create_early_fraud_warning(self.ctx, {"charge": ch["id"]})
        else:
            disputes.create_review(self.ctx, {"charge": ch["id"]})

    def money_out(self) -> None:
        r = self.rng.random()
        if r < 0.5:
            self.call("POST", "/v1/payouts", {"amount": str(10_000 + self.rng.randrange(1000) * 100), "currency": "usd"})
        elif r < 0.8:
            po = _pick(self.account, "payouts", self.rng, lambda o: o["status"] == "pending")
            if po:
                seq = self.account.tables["payouts"].seq_of(po["id"])
                if seq is not None:
                    balance.pay_payout(self.ctx, seq, {})
        elif self.account.transfer_destinations:
            dest = self.rng.choice(self.account.transfer_destinations)
            self.call("POST", "/v1/transfers", {"amount": str(1000 + self.rng.randrange(100) * 100), "currency": "usd",
                                                "destination": dest})

    def credit_note(self) -> None:
        inv = _pick(self.account, "invoices", self.rng, lambda o: o["status"] == "paid" and o["total"] > 100)
        if inv:
            self.call("POST", "/v1/credit_notes", {"invoice": inv["id"], "amount": str(max(1, inv["total"] // 4)),
                                                   "reason": "order_change"})

    def setup_intent(self) -> None:
        c = _pick(self.account, "customers", self.rng)
        if c:
            self.call("POST", "/v1/setup_intents", {"customer": c["id"], "payment_method": "pm_card_visa",
                                                    "confirm": "true"})

    def entitlements(self) -> None:
        prod = _pick(self.account, "products", self.rng)
        feat = _pick(self.account, "features", self.rng)
        if prod and feat:
            self.call("POST", f"/v1/products/{prod['id']}/features", {"entitlement_feature": feat["id"]})

    WEIGHTS: list[tuple[str, int]] = [
        ("create_customer", 10), ("update_customer", 12), ("delete_customer", 1), ("create_subscription", 8),
        ("update_subscription", 8), ("cancel_subscription", 3), ("invoice_flow", 6), ("payment", 10),
        ("refund", 4), ("catalog", 4), ("payment_methods", 5), ("tax_ids", 3), ("coupons", 2), ("checkout", 5),
        ("risk", 2), ("money_out", 3), ("credit_note", 2), ("setup_intent", 3), ("entitlements", 2),
    ]

    def run(self, n: int) -> list[dict[str, Any]]:
        names = [w[0] for w in self.WEIGHTS]
        weights = [w[1] for w in self.WEIGHTS]
        done = 0
        attempts = 0
        while done < n and attempts < n * 5:
            attempts += 1
            op = self.rng.choices(names, weights)[0]
            before = len(self.ctx.events)
            try:
                getattr(self, op)()
            except StripeError:
                pass  # a declined card or an invalid state: as in real life, nothing else happened
            if len(self.ctx.events) > before:
                done += 1
        return self.ctx.events
