"""Incremental runs: apply what /v1/events reports since the previous run.

Listing by `created` from the previous run's high-water mark finds new objects but misses updates to
old ones. Stripe keeps 30 days of events, so an incremental run also walks the event list forward in
time, from the newest event the previous run saw (`ending_before` pages), and routes each event's
object through the same path as a webhook delivery. The chunk's page cursor is the last applied event:
a resumed catch-up continues after it, and an event applied twice is recognised as a duplicate.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg

from .registry import (
    ENTITLEMENT_SUMMARY_EVENT,
    EVENT_TYPES,
    REGISTRY,
    ObjectType,
    object_type_for_stripe_object,
)
from .stripe_api import ObjectNotFound, StripeApi

if TYPE_CHECKING:
    from .sync import StripeSync

EVENTS_PATH = "/v1/events"


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


def webhooks_available() -> bool:
    return importlib.util.find_spec("stripe_sync_core.webhooks") is not None


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
    """Applies a page of events, oldest first, for the tables of one run."""

    def __init__(self, sync: StripeSync, tables: set[str], account_id: str) -> None:
        self.sync = sync
        self.tables = tables
        self.account_id = account_id
        self.through_webhooks = webhooks_available()

    async def apply(self, events: Sequence[dict], conn: psycopg.AsyncConnection) -> int:
        """Route each covered event; returns how many were. Writes go through `conn` unless the
        webhook processor handles them (it records each event, so a replay is a no-op there)."""
        routed = [(event, target) for event in events
                  if (target := event_target(event, self.tables)) is not None]
        if not routed:
            return 0
        if self.through_webhooks:
            # Not reported as received: these are not deliveries, and the run reports its own progress.
            await asyncio.gather(*(self.sync.webhooks.process_event(event, report=False) for event, _ in routed))
            return len(routed)
        await self._store(routed, conn)
        return len(routed)

    async def _store(self, routed: list[tuple[dict, ObjectType]], conn: psycopg.AsyncConnection) -> None:
        """Without the webhook processor: newest state per object, by event time, into the store."""
        store = self.sync.store
        latest: dict[tuple[str, str], tuple[dict, dict, bool]] = {}
        for event, target in routed:
            obj = event["data"]["object"]
            if event["type"] == ENTITLEMENT_SUMMARY_EVENT:
                await self._replace_entitlements(obj, _event_time(event), conn)
                continue
            deleted = event["type"] in target.deleted_event_types or obj.get("deleted") is True
            latest[(target.table, obj["id"])] = (event, obj, deleted)
        for (table, _), (event, obj, deleted) in latest.items():
            entry = REGISTRY[table]
            if deleted:
                await store.store_deleted(entry, [obj], self.account_id, _event_time(event), conn=conn)
            else:
                await store.store(entry, [obj], self.account_id, _event_time(event), conn=conn)

    async def _replace_entitlements(self, summary: dict, synced_at: datetime,
                                    conn: psycopg.AsyncConnection) -> None:
        """The summary lists a customer's whole set of active entitlements: store it, drop the rest."""
        entry = REGISTRY["active_entitlements"]
        customer = summary.get("customer")
        current = [e for e in ((summary.get("entitlements") or {}).get("data") or []) if e.get("id")]
        await self.sync.store.store(entry, current, self.account_id, synced_at, parent_id=customer, conn=conn)
        cursor = await conn.execute(
            "SELECT _raw_data FROM stripe.active_entitlements WHERE customer = %s AND _account_id = %s "
            "AND NOT (id = ANY(%s))", (customer, self.account_id, [e["id"] for e in current]))
        gone = [row[0] for row in await cursor.fetchall()]
        if gone:
            await self.sync.store.store_deleted(entry, gone, self.account_id, synced_at, conn=conn)


def _event_time(event: dict) -> datetime:
    return datetime.fromtimestamp(event.get("created") or 0, UTC)
