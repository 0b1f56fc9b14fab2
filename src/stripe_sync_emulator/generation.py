"""Deterministic data generation: compact columns for every generated type of one account.

Everything here is driven by one ``random.Random`` seeded from (seed, account), consumed in a
fixed order: each family registers its part with ``@generation_step(order)`` and the steps run by
that order, so the same seed and sizes give byte-identical objects and ids. Only numbers are
produced (timestamps, row links, small enum codes); the renderers turn a row into a Stripe object
on demand, deriving names, amounts etc. from a hash of the row number.

Sizes: ``customers=N`` scales everything through ``RATIOS`` (per customer), the catalog through
``CATALOG``; any type in ``OVERRIDABLE`` can be pinned with ``sizes={"invoices": 10}``.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DAY = 86400
MONTH = 30 * DAY

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


def pick_earlier(parent_created: array, created: int, fraction: float) -> int:
    """A parent row created no later than ``created`` (the ``fraction`` of the way through them)."""
    k = bisect_right(parent_created, created)
    if k == 0:
        return 0
    return int(fraction * k)


@dataclass
class GenerationContext:
    """What the generation steps share: the random stream, the sizes, the time model, the columns
    built so far and ``shared``, values later steps need that no renderer does."""

    rng: random.Random
    sizes: dict[str, int]
    overrides: dict[str, int] | None
    timeline: TimeModel
    start: int
    end: int
    transfer_destinations: int
    created: dict[str, array] = field(default_factory=dict)
    cols: dict[str, dict[str, array]] = field(default_factory=dict)
    offsets: dict[str, dict[str, array]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.random: Callable[[], float] = self.rng.random
        self.child_lo = self.start + 1  # children never share the account's first second with it
        self.early_hi = self.start + (self.end - self.start) // 2  # the catalog exists before most sales


def generate(seed_key: int, customers: int, start: int, end: int, *,
             sizes: dict[str, int] | None = None, transfer_destinations: int = 0) -> Generated:
    """Generate all columns for one account. ``seed_key`` already mixes seed and account."""
    from . import families  # noqa: F401  (importing the families registers their steps)
    from .registry import generation_steps

    rng = random.Random(seed_key)
    planned = plan_sizes(customers, sizes)
    timeline = TimeModel(start, end, rng)
    gen = GenerationContext(rng=rng, sizes=planned, overrides=sizes, timeline=timeline, start=start, end=end,
                            transfer_destinations=transfer_destinations)
    gen.extra.update({"bursts": timeline.bursts, "gap": timeline.gap})
    for step in generation_steps():
        step(gen)
    return Generated(created=gen.created, cols=gen.cols, offsets=gen.offsets, extra=gen.extra, sizes=planned)
