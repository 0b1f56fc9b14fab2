"""Incremental runs: apply what /v1/events reports since the previous run.

Listing by `created` from the previous run's high-water mark finds new objects but misses updates to
old ones. Stripe keeps 30 days of events, so an incremental run also walks the event list forward in
time, from the newest event the previous run saw (`ending_before` pages), and routes each event's
object through the same path as a webhook delivery. The chunk's page cursor is the last applied event:
a resumed catch-up continues after it, and an event applied twice is recognised as a duplicate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from .listing import child_list_call, list_all
from .registry import (
    ENTITLEMENT_SUMMARY_EVENT,
    EVENT_TYPES,
    REGISTRY,
    ObjectType,
    expand_only_lists,
    ids_at,
    object_path,
    object_type_for_stripe_object,
    retrieve_expansions,
)
from .results import WebhookOutcome
from .stripe_api import ObjectNotFound, StripeApi

if TYPE_CHECKING:
    from .context import EngineContext

EVENTS_PATH = "/v1/events"
REFRESH_CONCURRENCY = 8
"""Rows re-fetched at once after an event that may have changed their silent fields (the request budget paces them)."""

ApplyEvent = Callable[[dict], Awaitable[WebhookOutcome]]
"""Applies one trusted event the way a webhook delivery is applied; returns its outcome."""


async def newest_event(api: StripeApi, account: str | None) -> dict | None:
    page = await api.get(EVENTS_PATH, {"limit": 1}, account=account)
    data = page.get("data") or []
    return data[0] if data else None


async def event_still_listed(api: StripeApi, event_id: str, account: str | None) -> bool:
    """False once Stripe has dropped the event (older than its 30-day retention)."""
    try:
        await api.get(f"{EVENTS_PATH}/{event_id}", account=account)
    except ObjectNotFound:
        return False
    return True


async def oldest_event(api: StripeApi, account: str | None) -> dict | None:
    """The oldest event Stripe still lists (one pass over the list; only for a first catch-up)."""
    oldest = None
    async for page in api.iterate(EVENTS_PATH, account=account):
        data = page.get("data") or []
        if data:
            oldest = data[-1]
    return oldest


def event_target(event: dict, tables: set[str]) -> ObjectType | None:
    """The registry type an event's object is stored as, when the run covers it."""
    entry = EVENT_TYPES.get(event.get("type", ""))
    if entry is None:
        return None
    obj = ((event.get("data") or {}).get("object")) or {}
    if event.get("type") != ENTITLEMENT_SUMMARY_EVENT:
        entry = object_type_for_stripe_object(obj.get("object", "")) or entry
        if not obj.get("id"):  # `invoice.upcoming` carries an invoice that does not exist yet
            return None
    return entry if entry.table in tables else None


class EventApplier:
    """Applies a page of events, oldest first, for the tables of one run, through `apply_event` (the
    webhook processor's path: it records each event, so a replay is a no-op there); then, with a
    `refresher`, re-fetches the rows whose silent fields those events may have changed."""

    def __init__(self, apply_event: ApplyEvent, tables: set[str],
                 refresher: StaleFieldRefresher | None = None) -> None:
        self.apply_event = apply_event
        self.tables = tables
        self.refresher = refresher

    async def apply(self, events: Sequence[dict]) -> int:
        """Route each covered event; returns how many were."""
        routed = [event for event in events if event_target(event, self.tables) is not None]
        await asyncio.gather(*(self.apply_event(event) for event in routed))
        if self.refresher is not None:
            await self.refresher.refresh(events)
        return len(routed)


def _ids_path(path: str) -> str:
    """The jsonpath of the ids of the objects at `path` in a row (`data` segments are lists):
    `items.data.price` -> `$."items"."data"[*]."price"."id"`."""
    return "$" + "".join(f".{json.dumps(name)}[*]" if name == "data" else f".{json.dumps(name)}"
                         for name in path.split(".")) + '."id"'


class StaleFieldRefresher:
    """Re-fetches rows of a run's tables whose `SilentField`s an event may have changed without an event
    of their own (a charge's `disputed` after its dispute, prices embedded in subscription items after a
    price update). Each is stored as of the time before its fetch, under the no-lost-update rule."""

    def __init__(self, ctx: EngineContext, account_id: str, header: str | None, tables: set[str]) -> None:
        self.ctx = ctx
        self.account_id = account_id
        self.header = header
        self.fields = [(REGISTRY[t], f) for t in REGISTRY if t in tables for f in REGISTRY[t].silent_fields]
        self.refreshed = 0

    async def targets(self, events: Sequence[dict]) -> dict[str, set[str]]:
        """Ids to refresh per table, from a page of events: the ids the events' objects name, and the rows
        embedding those objects, looked up with one statement per field for the whole page: a scan of the
        account's rows of that table (no index serves it), each row's ids at the path read once."""
        wanted: dict[str, set[str]] = {}
        embedded: dict[tuple[str, str], list[str]] = {}  # (table, path in the row) -> ids of the events' objects
        for event in events:
            obj = (event.get("data") or {}).get("object") or {}
            for entry, silent in self.fields:
                if event.get("type") not in silent.after:
                    continue
                for path in silent.named_by:
                    ids = ids_at(obj, path)
                    if ids:
                        wanted.setdefault(entry.table, set()).update(ids)
                if silent.holds_id_at and isinstance(obj.get("id"), str):
                    embedded.setdefault((entry.table, silent.holds_id_at), []).append(obj["id"])
        for (table, path), object_ids in embedded.items():
            rows = await self.ctx.database.fetch_all(
                f"SELECT id FROM stripe.{table} WHERE _account_id = %s "
                "AND jsonb_path_query_array(_raw_data, %s::jsonpath) ?| %s::text[]",
                (self.account_id, _ids_path(path), sorted(set(object_ids))))
            if rows:
                wanted.setdefault(table, set()).update(row["id"] for row in rows)
        return wanted

    async def refresh(self, events: Sequence[dict]) -> int:
        """Refresh what a page of events may have made stale; returns the rows written."""
        if not self.fields:
            return 0
        written = 0
        for table, ids in (await self.targets(events)).items():
            written += await self._refresh(REGISTRY[table], sorted(ids))
        self.refreshed += written
        return written

    async def _refresh(self, entry: ObjectType, ids: list[str]) -> int:
        api, store = self.ctx.stripe, self.ctx.store
        if entry.retrieve_path is None:  # checkout line items: list them again under their parent
            return await self._refresh_through_parent(entry, ids)
        expand = retrieve_expansions(entry, expand_only_lists(entry))
        gate = asyncio.Semaphore(REFRESH_CONCURRENCY)
        path = entry.retrieve_path

        async def one(object_id: str) -> int:
            async with gate:
                observed = self.ctx.now()
                try:
                    obj = await api.get(object_path(path, id=object_id), {"expand": expand} if expand else None,
                                        account=self.header)
                except ObjectNotFound:  # deleted: its own events say so
                    return 0
                if obj.get("id") != object_id or obj.get("deleted"):
                    return 0
                return (await store.store(entry, [obj], self.account_id, observed)).count

        return sum(await asyncio.gather(*(one(object_id) for object_id in ids)))

    async def _refresh_through_parent(self, entry: ObjectType, ids: list[str]) -> int:
        if entry.parent is None or entry.parent_column is None:
            return 0
        # IS NOT DISTINCT FROM: the primary key's index alone finds the rows (the account's, ANDed in by a
        # planner with stale statistics, reads every row of the account).
        rows = await self.ctx.database.fetch_all(
            f'SELECT DISTINCT "{entry.parent_column}" AS parent FROM stripe.{entry.table} '
            "WHERE id = ANY(%s) AND _account_id IS NOT DISTINCT FROM %s", (ids, self.account_id))
        written = 0
        for parent in sorted(r["parent"] for r in rows if r["parent"]):
            observed = self.ctx.now()
            path, params = child_list_call(entry, object_path(entry.parent.path, parent_id=parent))
            try:
                children = await list_all(self.ctx.stripe, path, params, account=self.header)
            except ObjectNotFound:
                continue
            written += (await self.ctx.store.store(entry, children, self.account_id, observed,
                                                   parent_id=parent)).count
        return written

