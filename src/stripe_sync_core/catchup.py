"""Incremental runs: apply what /v1/events reports since the previous run.

Listing by `created` from the previous run's high-water mark finds new objects but misses updates to
old ones. Stripe keeps 30 days of events, so an incremental run also walks the event list forward in
time, from the newest event the previous run saw (`ending_before` pages), and routes each event's
object through the same path as a webhook delivery. The chunk's page cursor is the last applied event:
a resumed catch-up continues after it, and an event applied twice is recognised as a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from .registry import ENTITLEMENT_SUMMARY_EVENT, EVENT_TYPES, ObjectType, object_type_for_stripe_object
from .results import WebhookOutcome
from .stripe_api import ObjectNotFound, StripeApi

EVENTS_PATH = "/v1/events"

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
    webhook processor's path: it records each event, so a replay is a no-op there)."""

    def __init__(self, apply_event: ApplyEvent, tables: set[str]) -> None:
        self.apply_event = apply_event
        self.tables = tables

    async def apply(self, events: Sequence[dict]) -> int:
        """Route each covered event; returns how many were."""
        routed = [event for event in events if event_target(event, self.tables) is not None]
        await asyncio.gather(*(self.apply_event(event) for event in routed))
        return len(routed)
