"""How long a full backfill takes at Stripe's rate limits, from the objects it will list.

Against real Stripe the request budget sets the pace (100 requests/s live, 25 test, 25 per endpoint),
not the engine: a list page brings 100 objects, but a type Stripe lists only per parent (payment
methods, active entitlements) costs one request per parent, all on one endpoint, so in a large
account those lists dominate. `estimate_backfill` counts the requests per endpoint and takes the
slower of the global and the busiest endpoint's limit. `count_objects` finds the counts: the rows
already stored where there are some, else one list page per type, extrapolated by its density of
`created` over the account's life. Truncated embedded lists completed per parent are rare and left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from .chunking import estimate_remaining
from .listing import PAGE_SIZE, children_that_cannot_exist, plan_listings, without_children

if TYPE_CHECKING:
    from .database import Database
    from .stripe_api import StripeApi

CountSource = Literal["stored", "listed", "sampled", "at least"]


@dataclass(frozen=True)
class EndpointLoad:
    """The requests a backfill sends to one Stripe endpoint."""

    endpoint: str
    """As Stripe limits it: `GET /v1/customers/{id}/payment_methods`."""
    requests: int
    why: str


@dataclass(frozen=True)
class ObjectCount:
    table: str
    objects: int
    source: CountSource
    """stored (rows in PostgreSQL), listed (one page held them all), sampled (a page's density
    extrapolated), at least (a type Stripe cannot list by date: one page, more exist)."""


@dataclass(frozen=True)
class BackfillEstimate:
    counts: tuple[ObjectCount, ...]
    endpoints: tuple[EndpointLoad, ...]
    requests: int
    requests_per_second: float
    endpoint_requests_per_second: float
    seconds: float
    bottleneck: str
    """`all endpoints` when the global limit sets the pace, else the endpoint that does."""
    children_absent: tuple[str, ...] = ()
    """Per-parent child types that cannot exist (no source), so no parent is asked for them."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_limits(livemode: bool | None) -> tuple[float, float]:
    """Stripe's limits for a key (global, per endpoint), whatever budget the engine is configured with."""
    from .stripe_api import ENDPOINT_REQUESTS_PER_SECOND, LIVE_REQUESTS_PER_SECOND, TEST_REQUESTS_PER_SECOND

    return (LIVE_REQUESTS_PER_SECOND if livemode else TEST_REQUESTS_PER_SECOND), ENDPOINT_REQUESTS_PER_SECOND


def estimate_backfill(tables: Iterable[str], counts: Mapping[str, int], *, requests_per_second: float,
                      endpoint_requests_per_second: float, children_absent: Iterable[str] = (),
                      sources: Mapping[str, CountSource] | None = None) -> BackfillEstimate:
    """The requests and the time a full backfill of `tables` takes, given the objects of each root type."""
    absent = tuple(children_absent)
    loads: list[EndpointLoad] = []
    for listing in plan_listings(tables):
        listing = without_children(listing, absent)
        root = listing.root
        n = counts.get(root.table, 0)
        if root.list_path is not None:
            loads.append(EndpointLoad(f"GET {root.list_path}", max(1, math.ceil(n / PAGE_SIZE)),
                                      f"{n:,} {root.table} in pages of {PAGE_SIZE}"))
        for child in listing.per_parent:
            assert child.parent is not None
            path = child.parent.path.replace("{parent_id}", "{id}")
            loads.append(EndpointLoad(f"GET {path}", n, f"one list per {root.stripe_object} ({child.table})"))
    total = sum(load.requests for load in loads)
    busiest = max(loads, key=lambda load: load.requests, default=None)
    global_seconds = total / requests_per_second
    endpoint_seconds = busiest.requests / endpoint_requests_per_second if busiest else 0.0
    bottleneck = busiest.endpoint if busiest and endpoint_seconds > global_seconds else "all endpoints"
    known = sources or {}
    return BackfillEstimate(
        counts=tuple(ObjectCount(t, n, known.get(t, "stored")) for t, n in counts.items()),
        endpoints=tuple(sorted(loads, key=lambda load: -load.requests)), requests=total,
        requests_per_second=requests_per_second, endpoint_requests_per_second=endpoint_requests_per_second,
        seconds=round(max(global_seconds, endpoint_seconds), 1), bottleneck=bottleneck, children_absent=absent)


async def count_objects(api: StripeApi, database: Database | None, tables: Iterable[str], *,
                        floor: int | None, account: str | None = None) -> dict[str, ObjectCount]:
    """Objects of each root type a backfill of `tables` lists: the stored rows when there are some,
    else one list page (no expansion) and its density of `created` down to `floor` (the account's
    creation). One request per type without stored rows."""
    stored: dict[str, int] = {}
    if database is not None:
        from .status import table_row_counts

        stored = await table_row_counts(database)
    out: dict[str, ObjectCount] = {}
    for listing in plan_listings(tables):
        root = listing.root
        if stored.get(root.table):
            out[root.table] = ObjectCount(root.table, stored[root.table], "stored")
            continue
        if root.list_path is None:
            continue
        page = await api.get(root.list_path, {"limit": PAGE_SIZE, **dict(root.list_params)}, account=account)
        data = [item for item in page.get("data") or [] if isinstance(item, dict)]
        if not page.get("has_more"):
            out[root.table] = ObjectCount(root.table, len(data), "listed")
            continue
        newest, oldest = root.created_of(data[0]), root.created_of(data[-1])
        if newest is None or oldest is None or not root.listable_by_created:
            out[root.table] = ObjectCount(root.table, len(data), "at least")
            continue
        more = estimate_remaining(len(data), newest, oldest, floor)
        out[root.table] = ObjectCount(root.table, len(data) + max(more, 1), "sampled")
    return out


async def estimate_from_stripe(api: StripeApi, database: Database | None, tables: Iterable[str], *,
                               livemode: bool | None, floor: int | None,
                               account: str | None = None) -> BackfillEstimate:
    """`estimate_backfill` at the key's real limits, from the counts `count_objects` finds, skipping
    the children that cannot exist as the backfill itself does."""
    wanted = list(tables)
    counts = await count_objects(api, database, wanted, floor=floor, account=account)
    absent = await children_that_cannot_exist(api, plan_listings(wanted), account)
    rate, endpoint_rate = key_limits(livemode)
    return estimate_backfill(wanted, {t: c.objects for t, c in counts.items()}, requests_per_second=rate,
                             endpoint_requests_per_second=endpoint_rate, children_absent=absent,
                             sources={t: c.source for t, c in counts.items()})


async def estimate_from_stored(database: Database, tables: Iterable[str], *,
                               livemode: bool | None) -> BackfillEstimate | None:
    """`estimate_backfill` at the key's real limits from the rows already stored (what a console sees
    without asking Stripe); None while none of the listed types has a stored row."""
    from .status import table_row_counts

    wanted = list(tables)
    stored = await table_row_counts(database)
    roots = {listing.root.table for listing in plan_listings(wanted)}
    counts = {table: n for table, n in stored.items() if table in roots and n}
    if not counts:
        return None
    rate, endpoint_rate = key_limits(livemode)
    return estimate_backfill(wanted, counts, requests_per_second=rate, endpoint_requests_per_second=endpoint_rate)


def describe(estimate: BackfillEstimate, mode: str) -> str:
    """One sentence: requests, duration and what sets the pace."""
    absent = (f"; no parent asked for {', '.join(estimate.children_absent)} (nothing to list)"
              if estimate.children_absent else "")
    return (f"full backfill: {estimate.requests:,} requests, about {duration_text(estimate.seconds)} at "
            f"{estimate.requests_per_second:g} req/s ({mode} key) and {estimate.endpoint_requests_per_second:g} "
            f"req/s per endpoint; pace set by {estimate.bottleneck}{absent}")


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
