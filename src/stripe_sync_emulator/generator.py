"""Deterministic data generation: compact columns for every generated type of one account.

Everything here is driven by one ``random.Random`` seeded from (seed, account), consumed in a
fixed order, so the same seed and sizes give byte-identical objects and ids. Only numbers are
produced (timestamps, row links, small enum codes); the renderers turn a row into a Stripe object
on demand, deriving names, amounts etc. from a hash of the row number.

Sizes: ``customers=N`` scales everything through ``RATIOS`` (per customer), the catalog through
``CATALOG``; any type in ``OVERRIDABLE`` can be pinned with ``sizes={"invoices": 10}``.
"""

from __future__ import annotations

import heapq
import random
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

DAY = 86400

# Rows per customer.
RATIOS: dict[str, float] = {
    "payment_methods": 1.2,
    "tax_ids": 0.3,
    "subscriptions": 0.8,  # 1-3 items each (some 4-9, 0.5% have 11-25)
    "subscription_schedules": 0.05,
    "invoices": 3.0,  # one per subscription at creation, then 60% renewals (a line per item), 40% one-off
    # (1-3 lines, 1% have 11-30)
    "invoiceitems": 0.5,
    "credit_notes": 0.1,  # 1-2 lines
    "charges": 2.5,  # each with its payment intent; 96% succeeded, each with a balance transaction
    "refunds": 0.25,
    "disputes": 0.02,
    "early_fraud_warnings": 0.01,
    "reviews": 0.02,
    "setup_intents": 0.4,
    "checkout_sessions": 0.4,  # 1-3 line items (one session has 12)
    "payouts": 0.05,
    "transfers": 0.02,
}
# Catalog: (per customer, minimum, maximum).
CATALOG: dict[str, tuple[float, int, int]] = {
    "products": (0.01, 3, 5000),  # 1-3 prices each (first is the default_price), 0-3 features each
    "coupons": (0.002, 3, 2000),
    "promotion_codes": (0.004, 4, 4000),
    "tax_rates": (0.0001, 5, 50),
    "features": (0.005, 4, 2000),
}
OVERRIDABLE = ("customers", *RATIOS, *CATALOG)

PRICE_KIND = ("one_time", "month", "year")
SUB_STATUS = ("active", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "trialing", "paused")
INV_STATUS = ("draft", "open", "paid", "uncollectible", "void")
CHARGE_STATUS = ("succeeded", "failed", "pending")
SETI_STATUS = ("succeeded", "requires_payment_method", "canceled")
CS_STATUS = ("complete", "expired", "open")
CS_MODE = ("payment", "subscription")
SCHED_STATUS = ("not_started", "active", "completed", "released", "canceled")
BT_KIND = ("charge", "refund", "payout", "transfer")


def plan_sizes(customers: int, overrides: dict[str, int] | None = None) -> dict[str, int]:
    """Row counts per generated type for ``customers`` customers (see module docstring)."""
    n = max(0, int(customers))
    sizes: dict[str, int] = {"customers": n}
    for name, ratio in RATIOS.items():
        sizes[name] = int(round(n * ratio))
    for name, (ratio, lo, hi) in CATALOG.items():
        sizes[name] = max(lo, min(hi, int(n * ratio)))
    if n:
        # Keep every relation exercised even on tiny data sets.
        for name in ("payment_methods", "subscriptions", "invoices", "charges", "refunds", "checkout_sessions",
                     "payouts", "tax_ids", "credit_notes", "disputes", "setup_intents"):
            sizes[name] = max(sizes[name], 1)
    for k, v in (overrides or {}).items():
        if k not in OVERRIDABLE:
            raise ValueError(f"size of {k!r} cannot be set (derived or unknown); settable: {', '.join(OVERRIDABLE)}")
        sizes[k] = max(0, int(v))
    if sizes["customers"] == 0:
        for name in RATIOS:
            if name not in (overrides or {}):
                sizes[name] = 0
    return sizes


class TimeModel:
    """``created`` timestamps over [start, end] that grow denser towards ``end``, with a 31-day
    stretch with nothing (ranges of 120 days or more) and two burst seconds shared by all types
    (each takes 4% of a type's rows, at most 5000: thousands of objects in one second)."""

    def __init__(self, start: int, end: int, rng: random.Random) -> None:
        if end < start:
            raise ValueError("end must not be before start")
        self.start = start
        self.end = end
        span = end - start
        self.gap: tuple[int, int] | None = None
        if span >= 120 * DAY:
            g0 = start + int(span * (0.3 + 0.3 * rng.random()))
            self.gap = (g0, g0 + 31 * DAY)
        self.bursts: list[int] = []
        if span >= 2 * DAY:
            for frac in (0.45, 0.8):
                b = start + int(span * (frac + 0.05 * rng.random()))
                if self.gap and self.gap[0] <= b < self.gap[1]:
                    b = self.gap[1] + DAY
                self.bursts.append(min(b, end))

    def _one(self, rng: random.Random, lo: int, hi: int) -> int:
        span = hi - lo
        gap = self.gap
        for _ in range(50):
            t = lo + int((rng.random() ** 0.75) * span)
            if gap is None or not (gap[0] <= t < gap[1]):
                return t
        return hi

    def sample(self, n: int, rng: random.Random, *, lo: int | None = None, bursts: bool = True,
               first_at_start: bool = False, hi: int | None = None) -> array:
        lo = self.start if lo is None else lo
        hi = self.end if hi is None else hi
        lo = min(lo, hi)
        out: list[int] = []
        if bursts and n >= 200:
            per = min(5000, int(n * 0.04))
            for b in self.bursts:
                if lo <= b <= hi:
                    out.extend([b] * per)
        if first_at_start and n:
            out.append(lo)
        one = self._one
        while len(out) < n:
            out.append(one(rng, lo, hi))
        out.sort()
        return array("q", out)


@dataclass
class Generated:
    """Columns of every generated type: ``created`` plus named columns, child offsets, extras."""

    created: dict[str, array]
    cols: dict[str, dict[str, array]]
    offsets: dict[str, dict[str, array]]  # parent type -> child type -> offsets
    extra: dict[str, Any]
    sizes: dict[str, int]


def _pick(parent_created: array, t: int, r: float) -> int:
    k = bisect_right(parent_created, t)
    if k == 0:
        return 0
    return int(r * k)


def generate(seed_key: int, customers: int, start: int, end: int, *,
             sizes: dict[str, int] | None = None, transfer_destinations: int = 0) -> Generated:
    """Generate all columns for one account. ``seed_key`` already mixes seed and account."""
    rng = random.Random(seed_key)
    rnd = rng.random
    S = plan_sizes(customers, sizes)
    tm = TimeModel(start, end, rng)
    created: dict[str, array] = {}
    cols: dict[str, dict[str, array]] = {}
    offsets: dict[str, dict[str, array]] = {}
    extra: dict[str, Any] = {"bursts": tm.bursts, "gap": tm.gap}
    early_hi = start + (end - start) // 2

    # ---- catalog ------------------------------------------------------------------------
    n_prod = S["products"] if S["customers"] or (sizes and "products" in sizes) else 0
    prod_created = tm.sample(n_prod, rng, bursts=False, first_at_start=True, hi=early_hi)
    created["products"] = prod_created
    p_product = array("i")
    p_kind = array("b")
    p_created = array("q")
    prod_price_off = array("i", [0])
    for p in range(n_prod):
        k = 1 + (rnd() < 0.45) + (rnd() < 0.15)
        for j in range(k):
            if j == 0:
                kind = 1 if (p == 0 or rnd() < 0.75) else 0
            else:
                r = rnd()
                kind = 2 if r < 0.5 else (1 if r < 0.8 else 0)
            p_product.append(p)
            p_kind.append(kind)
            p_created.append(prod_created[p])
        prod_price_off.append(len(p_product))
    created["prices"] = p_created
    cols["prices"] = {"product": p_product, "kind": p_kind}
    offsets["products"] = {"prices": prod_price_off}
    rec_prices = array("i", (i for i, k in enumerate(p_kind) if k > 0))
    rec_created = array("q", (p_created[i] for i in rec_prices))

    n_feat = S["features"] if n_prod else 0
    created["features"] = tm.sample(n_feat, rng, bursts=False, first_at_start=True, hi=early_hi)
    pf_product = array("i")
    pf_feature = array("i")
    pf_created = array("q")
    pf_off = array("i", [0])
    for p in range(n_prod):
        k = min(n_feat, int(rnd() * 4))
        if k:
            first = int(rnd() * n_feat)
            for j in range(k):
                pf_product.append(p)
                pf_feature.append((first + j) % n_feat)
                pf_created.append(prod_created[p])
        pf_off.append(len(pf_product))
    created["product_features"] = pf_created
    cols["product_features"] = {"product": pf_product, "feature": pf_feature}
    offsets["products"]["product_features"] = pf_off

    created["coupons"] = tm.sample(S["coupons"], rng, bursts=False, first_at_start=True)
    pc_created = tm.sample(S["promotion_codes"], rng, bursts=False, lo=start + 1)
    created["promotion_codes"] = pc_created
    cols["promotion_codes"] = {"coupon": array("i", (_pick(created["coupons"], t, rnd()) for t in pc_created))}
    created["tax_rates"] = tm.sample(S["tax_rates"], rng, bursts=False, first_at_start=True, hi=early_hi)

    # ---- customers and what hangs off them ------------------------------------------------
    n_cus = S["customers"]
    cus_created = tm.sample(n_cus, rng, first_at_start=True)
    created["customers"] = cus_created
    child_lo = start + 1

    pm_created = tm.sample(S["payment_methods"], rng, lo=child_lo)
    pm_customer = array("i", (_pick(cus_created, t, rnd()) if (n_cus and rnd() >= 0.1) else -1 for t in pm_created))
    created["payment_methods"] = pm_created
    cols["payment_methods"] = {"customer": pm_customer}
    default_pm = array("i", [-1]) * n_cus
    for i, c in enumerate(pm_customer):
        if c >= 0 and default_pm[c] < 0:
            default_pm[c] = i
    cols["customers"] = {"default_pm": default_pm}

    ti_created = tm.sample(S["tax_ids"], rng, lo=child_lo)
    created["tax_ids"] = ti_created
    cols["tax_ids"] = {"customer": array("i", (_pick(cus_created, t, rnd()) for t in ti_created))}

    # Subscriptions with contiguous items (item created == subscription created).
    n_sub = S["subscriptions"] if rec_prices else 0
    sub_created = tm.sample(n_sub, rng, lo=child_lo)
    sub_customer = array("i")
    sub_status = array("b")
    sub_items_off = array("i", [0])
    si_sub = array("i")
    si_price = array("i")
    si_qty = array("H")
    si_created = array("q")
    recent = end - 7 * DAY
    big_sub = n_sub // 2 if n_sub >= 3 else -1
    for s, t in enumerate(sub_created):
        sub_customer.append(_pick(cus_created, t, rnd()))
        r = rnd()
        if t >= recent:
            st = 6 if r < 0.25 else (4 if r < 0.3 else 0)
        else:
            st = 3 if r < 0.15 else 1 if r < 0.18 else 2 if r < 0.19 else 5 if r < 0.2 else 0
        sub_status.append(st)
        r = rnd()
        if s == big_sub or r < 0.005:
            k = 11 + int(rnd() * 15)
        elif r < 0.05:
            k = 4 + int(rnd() * 6)
        elif r < 0.15:
            k = 3
        elif r < 0.4:
            k = 2
        else:
            k = 1
        avail = bisect_right(rec_created, t) or 1
        first = int(rnd() * avail)
        for j in range(k):
            si_sub.append(s)
            si_price.append(rec_prices[(first + j) % avail])
            si_qty.append(1 if rnd() < 0.8 else 1 + int(rnd() * 9))
            si_created.append(t)
        sub_items_off.append(len(si_sub))
    created["subscriptions"] = sub_created
    created["subscription_items"] = si_created
    sub_latest_inv = array("i", [-1]) * n_sub
    cols["subscriptions"] = {"customer": sub_customer, "status": sub_status, "latest_invoice": sub_latest_inv}
    cols["subscription_items"] = {"subscription": si_sub, "price": si_price, "qty": si_qty}
    offsets["subscriptions"] = {"subscription_items": sub_items_off}

    sc_created = tm.sample(S["subscription_schedules"], rng, lo=child_lo, bursts=False)
    sc_customer = array("i")
    sc_sub = array("i")
    sc_status = array("b")
    for t in sc_created:
        if n_sub and rnd() < 0.5:
            s = _pick(sub_created, t, rnd())
            sc_sub.append(s)
            sc_customer.append(sub_customer[s])
            sc_status.append(1 if sub_status[s] != 3 else 3)
        else:
            sc_sub.append(-1)
            sc_customer.append(_pick(cus_created, t, rnd()))
            sc_status.append(0 if rnd() < 0.5 else 4)
    created["subscription_schedules"] = sc_created
    cols["subscription_schedules"] = {"customer": sc_customer, "subscription": sc_sub, "status": sc_status}

    # Invoices: subscription invoices bill the subscription's items; one-off invoices 1-3 lines.
    n_price = len(p_product)
    # Every subscription gets its creation invoice (as at Stripe); the rest are renewals or one-offs.
    n_create = min(n_sub, S["invoices"])
    rest_created = tm.sample(S["invoices"] - n_create, rng, lo=child_lo)
    entries = sorted([(sub_created[s], 0, s) for s in range(n_create)] + [(t, 1, -1) for t in rest_created])
    inv_created = array("q", (e[0] for e in entries))
    inv_customer = array("i")
    inv_sub = array("i")
    inv_status = array("b")
    inv_reason = array("b")  # 0 subscription_create, 1 subscription_cycle, 2 manual
    inv_lines_off = array("i", [0])
    il_price = array("i")
    il_qty = array("H")
    il_si = array("i")
    il_created = array("q")
    very_recent = end - 2 * DAY
    big_inv = len(inv_created) // 3 if len(inv_created) >= 3 else -1
    for v, (t, kind, s) in enumerate(entries):
        if kind == 0 or (n_sub and rnd() < 0.6 and v != big_inv):
            if kind == 1:
                s = _pick(sub_created, t, rnd())
            inv_reason.append(kind)
            inv_sub.append(s)
            inv_customer.append(sub_customer[s])
            sub_latest_inv[s] = v
            for si in range(sub_items_off[s], sub_items_off[s + 1]):
                il_price.append(si_price[si])
                il_qty.append(si_qty[si])
                il_si.append(si)
                il_created.append(t)
        else:
            inv_reason.append(2)
            inv_sub.append(-1)
            inv_customer.append(_pick(cus_created, t, rnd()))
            k = 11 + int(rnd() * 20) if (v == big_inv or rnd() < 0.01) else 1 + int(rnd() * 3)
            avail = bisect_right(p_created, t) or 1
            for _ in range(k):
                il_price.append(int(rnd() * avail) if n_price else -1)
                il_qty.append(1 + int(rnd() * 3))
                il_si.append(-1)
                il_created.append(t)
        inv_lines_off.append(len(il_price))
        r = rnd()
        if t >= very_recent:
            inv_status.append(0 if r < 0.4 else 1 if r < 0.8 else 2)
        else:
            inv_status.append(4 if r < 0.03 else 3 if r < 0.05 else 1 if r < 0.08 else 2)
    created["invoices"] = inv_created
    created["invoice_lines"] = il_created
    cols["invoices"] = {"customer": inv_customer, "subscription": inv_sub, "status": inv_status,
                        "reason": inv_reason}
    cols["invoice_lines"] = {"price": il_price, "qty": il_qty, "subscription_item": il_si}
    offsets["invoices"] = {"invoice_lines": inv_lines_off}

    ii_created = tm.sample(S["invoiceitems"], rng, lo=child_lo)
    created["invoiceitems"] = ii_created
    cols["invoiceitems"] = {
        "customer": array("i", (_pick(cus_created, t, rnd()) for t in ii_created)),
        "price": array("i", (_pick(p_created, t, rnd()) if n_price else -1 for t in ii_created)),
    }

    n_inv = len(inv_created)
    cn_created = tm.sample(S["credit_notes"] if n_inv else 0, rng, lo=child_lo, bursts=False)
    cn_invoice = array("i")
    cn_lines_off = array("i", [0])
    cnl_line = array("i")
    cnl_created = array("q")
    for t in cn_created:
        v = _pick(inv_created, t, rnd())
        for _ in range(4):  # prefer paid invoices
            if inv_status[v] == 2:
                break
            v = _pick(inv_created, t, rnd())
        cn_invoice.append(v)
        first, last = inv_lines_off[v], inv_lines_off[v + 1]
        for line in range(first, min(last, first + (1 if rnd() < 0.5 else 2))):
            cnl_line.append(line)
            cnl_created.append(t)
        cn_lines_off.append(len(cnl_line))
    created["credit_notes"] = cn_created
    created["credit_note_lines"] = cnl_created
    cols["credit_notes"] = {"invoice": cn_invoice}
    cols["credit_note_lines"] = {"line": cnl_line}
    offsets["credit_notes"] = {"credit_note_lines": cn_lines_off}

    # Charges and their payment intents share row numbers.
    n_pm = len(pm_created)
    ch_created = tm.sample(S["charges"] if n_pm else 0, rng, lo=child_lo)
    ch_pm = array("i")
    ch_customer = array("i")
    ch_status = array("b")
    for t in ch_created:
        pm = _pick(pm_created, t, rnd())
        ch_pm.append(pm)
        ch_customer.append(pm_customer[pm])
        ch_status.append(1 if rnd() < 0.04 else 0)
    created["charges"] = ch_created
    created["payment_intents"] = ch_created
    n_ch = len(ch_created)
    ch_bt = array("i", [-1]) * n_ch
    cols["charges"] = {"customer": ch_customer, "payment_method": ch_pm, "status": ch_status, "bt": ch_bt}
    cols["payment_intents"] = {"customer": ch_customer}

    def pick_ok_charge(t: int) -> int:
        c = _pick(ch_created, t, rnd())
        for _ in range(6):
            if ch_status[c] == 0:
                break
            c = _pick(ch_created, t, rnd())
        return c

    rf_created = tm.sample(S["refunds"] if n_ch else 0, rng, lo=child_lo + 1)
    rf_charge = array("i", (pick_ok_charge(t) for t in rf_created))
    created["refunds"] = rf_created
    rf_bt = array("i", [-1]) * len(rf_created)
    cols["refunds"] = {"charge": rf_charge, "bt": rf_bt}
    refunds_by_charge: dict[int, list[int]] = {}
    for r_i, c in enumerate(rf_charge):
        refunds_by_charge.setdefault(c, []).append(r_i)
    extra["refunds_by_charge"] = refunds_by_charge
    extra["partial_refund"] = {c: rnd() < 0.4 for c in refunds_by_charge}

    for name in ("disputes", "early_fraud_warnings", "reviews"):
        tc = tm.sample(S[name] if n_ch else 0, rng, lo=child_lo + 1, bursts=False)
        created[name] = tc
        cols[name] = {"charge": array("i", (pick_ok_charge(t) for t in tc))}
    extra["dispute_by_charge"] = {c: d for d, c in enumerate(cols["disputes"]["charge"])}
    extra["review_by_charge"] = {c: d for d, c in enumerate(cols["reviews"]["charge"])}

    st_created = tm.sample(S["setup_intents"] if n_pm else 0, rng, lo=child_lo)
    st_pm = array("i", (_pick(pm_created, t, rnd()) for t in st_created))
    created["setup_intents"] = st_created
    cols["setup_intents"] = {
        "payment_method": st_pm,
        "customer": array("i", (pm_customer[p] for p in st_pm)),
        "status": array("b", (0 if r < 0.85 else 1 if r < 0.95 else 2 for r in (rnd() for _ in st_created))),
    }

    cs_created = tm.sample(S["checkout_sessions"] if n_price else 0, rng, lo=child_lo)
    cs_customer = array("i")
    cs_status = array("b")
    cs_mode = array("b")
    cs_li_off = array("i", [0])
    li_price = array("i")
    li_qty = array("H")
    li_created = array("q")
    big_cs = len(cs_created) // 2 if len(cs_created) >= 2 else -1
    day_ago = end - DAY
    for k_cs, t in enumerate(cs_created):
        cs_customer.append(_pick(cus_created, t, rnd()) if (n_cus and rnd() >= 0.2) else -1)
        r = rnd()
        cs_status.append((2 if r < 0.5 else 0) if t >= day_ago else (0 if r < 0.8 else 1))
        mode = 1 if (rec_prices and rnd() < 0.3) else 0
        cs_mode.append(mode)
        k = 12 if k_cs == big_cs else 1 + int(rnd() * 3)
        if mode == 1:
            avail = bisect_right(rec_created, t) or 1
            for _ in range(k):
                li_price.append(rec_prices[int(rnd() * avail)])
                li_qty.append(1)
                li_created.append(t)
        else:
            avail = bisect_right(p_created, t) or 1
            for _ in range(k):
                li_price.append(int(rnd() * avail))
                li_qty.append(1 + int(rnd() * 2))
                li_created.append(t)
        cs_li_off.append(len(li_price))
    created["checkout_sessions"] = cs_created
    created["checkout_line_items"] = li_created
    cols["checkout_sessions"] = {"customer": cs_customer, "status": cs_status, "mode": cs_mode}
    cols["checkout_line_items"] = {"price": li_price, "qty": li_qty}
    offsets["checkout_sessions"] = {"checkout_line_items": cs_li_off}

    po_created = tm.sample(S["payouts"], rng, lo=child_lo, bursts=False)
    created["payouts"] = po_created
    po_bt = array("i", [-1]) * len(po_created)
    cols["payouts"] = {"bt": po_bt}
    tr_created = tm.sample(S["transfers"], rng, lo=child_lo, bursts=False)
    created["transfers"] = tr_created
    tr_bt = array("i", [-1]) * len(tr_created)
    cols["transfers"] = {
        "bt": tr_bt,
        "destination": array("i", (int(rnd() * transfer_destinations) if transfer_destinations else -1
                                   for _ in tr_created)),
    }

    # Balance transactions: one per succeeded charge, refund, payout and transfer, merged by time.
    streams = [
        ((t, 0, i) for i, t in enumerate(ch_created) if ch_status[i] == 0),
        ((t, 1, i) for i, t in enumerate(rf_created)),
        ((t, 2, i) for i, t in enumerate(po_created)),
        ((t, 3, i) for i, t in enumerate(tr_created)),
    ]
    bt_created = array("q")
    bt_kind = array("b")
    bt_src = array("i")
    back = (ch_bt, rf_bt, po_bt, tr_bt)
    for t, kind, i in heapq.merge(*streams):
        back[kind][i] = len(bt_created)
        bt_created.append(t)
        bt_kind.append(kind)
        bt_src.append(i)
    created["balance_transactions"] = bt_created
    cols["balance_transactions"] = {"kind": bt_kind, "source": bt_src}

    return Generated(created=created, cols=cols, offsets=offsets, extra=extra, sizes=S)
