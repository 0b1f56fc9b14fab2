"""One worker's handling of a claimed chunk.

It fetches the chunk's pages (the next page is requested while the current one is written), completes
the children each page serves, and writes the page together with the chunk's new cursor and counters
in one transaction. On a dense first page it splits the range below (automatic chunking). A failure
that outlasts the API client's retries marks the chunk `error` with its reason; a cancellation hands
the chunk back as `pending` with its cursor, for this or another process to resume.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg import errors as pg_errors

from .catchup import EVENTS_PATH, ApplyEvent, EventApplier, StaleFieldRefresher, oldest_event
from .chunking import SplitLimits, estimate_remaining, plan_split
from .listing import PAGE_SIZE, ListedChildren, Listing, complete_page
from .masking import mask_secrets_in
from .request_budget import request_lane, request_priority
from .runs import EVENTS_CHUNK, Chunk, ClaimLost, PlannedChunk, Run, RunLedger, WorkerLease
from .sigma.client import PollOptions
from .sigma.tables import is_sigma_object

if TYPE_CHECKING:
    from .context import EngineContext


@dataclass
class RunContext:
    """What every chunk of one run shares."""

    run: Run
    account_id: str
    header: str | None
    """`Stripe-Account` header: None for the key's own account."""
    listings: dict[str, Listing]
    tables: set[str]
    automatic: bool
    floor: int
    """Lowest `created` assumed when estimating an open range (the account's creation)."""
    lease: WorkerLease
    priorities: dict[str, float] = field(default_factory=dict)
    """Objects left per chunk object, kept current by the backfill: its requests' `request_priority`."""
    sigma_poll: PollOptions | None = None
    """How Sigma query runs are polled (None: the defaults)."""


@dataclass
class ChunkOutcome:
    status: str = "pending"
    """complete, error, pending (handed back after `max_pages`, or lost to another worker)."""
    stored: int = 0
    error: str | None = None


@dataclass
class PageBatch:
    """One page and the children it brings, ready to write."""

    roots: list[dict]
    listed: list[ListedChildren] = field(default_factory=list)

    @property
    def children(self) -> dict[str, int]:
        """Children per table."""
        return {listed.child.table: len(listed.items) for listed in self.listed}


WRITE_ATTEMPTS = 5
RETRIED_WRITE_ERRORS = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


class ChunkWorker:
    def __init__(self, ctx: EngineContext, ledger: RunLedger, run_ctx: RunContext, apply_event: ApplyEvent,
                 split_limits: SplitLimits, on_new_chunks: Callable[[], None] = lambda: None) -> None:
        self.ctx = ctx
        self.ledger = ledger
        self.run_ctx = run_ctx
        self.split_limits = split_limits
        self.apply_event = apply_event
        self.on_new_chunks = on_new_chunks

    async def work(self, chunk: Chunk, max_pages: int | None = None) -> ChunkOutcome:
        """Process a claimed chunk to its end (or `max_pages` pages), leaving it complete, error or pending."""
        run_id, key = self.run_ctx.run.id, self.run_ctx.lease.key
        progress = self.ctx.progress
        progress.chunk_started(run_id, chunk.object, chunk.id, chunk.created_gte, chunk.created_lte)
        outcome = ChunkOutcome()
        priorities = self.run_ctx.priorities
        weighed = request_priority.set(lambda: priorities.get(chunk.object, math.inf))
        bulk = request_lane.set("bulk")  # its calls leave the interactive reserve alone
        try:
            if chunk.object == EVENTS_CHUNK:
                await self._catch_up(chunk, outcome, max_pages)
            elif is_sigma_object(chunk.object):
                from .sigma.worker import SigmaPages

                await SigmaPages(self.ctx, self.ledger, self.run_ctx, self.run_ctx.sigma_poll).land(
                    chunk, outcome, max_pages)
            else:
                await self._list(chunk, outcome, max_pages)
        except asyncio.CancelledError:
            await asyncio.shield(self.ledger.release(chunk, key))
            raise
        except ClaimLost as lost:  # not ours to release any more: its new holder resumes it
            self.ctx.log.warning("%s", lost)
        except Exception as error:
            outcome.status, outcome.error = "error", describe(error)
            self.ctx.log.warning("backfill chunk %s (%s) failed: %s", chunk.id, chunk.object, outcome.error)
            await self.ledger.fail(chunk, key, outcome.error)
        else:
            if outcome.status == "pending":
                await self.ledger.release(chunk, key)
        finally:
            request_lane.reset(bulk)
            request_priority.reset(weighed)
        progress.chunk_done(run_id, chunk.object, chunk.id, outcome.status, chunk.processed, outcome.error)
        return outcome

    # -- listing -----------------------------------------------------------------------------------

    async def _list(self, chunk: Chunk, outcome: ChunkOutcome, max_pages: int | None) -> None:
        """Page through the chunk. While page N is written, page N+1 and its children are fetched;
        writes stay in page order, so the cursor only ever moves forward."""
        listing = self.run_ctx.listings[chunk.object]
        may_split = (self.run_ctx.automatic and listing.root.listable_by_created
                     and chunk.page_cursor is None and chunk.processed == 0)
        next_page: asyncio.Future[dict] | None = asyncio.ensure_future(self._fetch(listing, chunk))
        writing: asyncio.Future[int] | None = None
        pages = 0
        complete = False
        try:
            while next_page is not None:
                page = await next_page
                next_page = None
                fetched_at = self.ctx.now()
                data = [o for o in page.get("data") or [] if isinstance(o, dict) and o.get("id")]
                has_more = bool(page.get("has_more")) and bool(data)
                pieces = self._split(chunk, listing, data, has_more) if may_split else []
                may_split = False
                if data:
                    chunk.page_cursor = data[-1]["id"]
                pages += 1
                if has_more and (max_pages is None or pages < max_pages):
                    next_page = asyncio.ensure_future(self._fetch(listing, chunk))
                batch = await self._children(listing, data)
                _count(chunk, listing, batch)
                state = replace(chunk, children=dict(chunk.children))  # what this page's transaction writes
                if writing is not None:
                    outcome.stored += await writing
                writing = asyncio.ensure_future(
                    self._commit(state, listing, batch, fetched_at, not has_more, pieces))
                complete = not has_more
                if pages == 1:  # the first page may split the chunk: let the other workers see it now
                    outcome.stored += await writing
                    writing = None
                    if pieces:
                        self.on_new_chunks()
                    if chunk.estimated is not None:
                        total = await self.ledger.estimate(self.run_ctx.run.id, chunk.object)
                        self.ctx.progress.objects_estimated(self.run_ctx.run.id, chunk.object, total)
            if writing is not None:
                outcome.stored += await writing
                writing = None
            if complete:
                outcome.status = "complete"
        finally:
            if next_page is not None:
                next_page.cancel()
                await asyncio.gather(next_page, return_exceptions=True)
            if writing is not None:  # a failure elsewhere: let the page already handed over land
                await asyncio.gather(writing, return_exceptions=True)

    async def _fetch(self, listing: Listing, chunk: Chunk) -> dict:
        assert listing.root.list_path is not None
        params = listing.page_params(chunk.created_gte, chunk.created_lte, chunk.page_cursor)
        return await self.ctx.stripe.get(listing.root.list_path, params, account=self.run_ctx.header)

    def _split(self, chunk: Chunk, listing: Listing, data: list[dict], has_more: bool) -> list[PlannedChunk]:
        """On a chunk's first page: estimate its size and split the range below a dense page."""
        if not has_more:
            chunk.estimated = len(data)
            return []
        newest, oldest = listing.root.created_of(data[0]), listing.root.created_of(data[-1])
        if newest is None or oldest is None:
            return []
        # The page's own span measures the density near the range below it (a chunk's upper bound
        # may sit far above its data).
        low = chunk.created_gte if chunk.created_gte is not None else self.run_ctx.floor
        split = plan_split(gte=chunk.created_gte, newest=newest, oldest=oldest, page_count=len(data),
                           floor=self.run_ctx.floor, target=self.split_limits.target_objects,
                           max_pieces=self.split_limits.max_pieces)
        if split is None:
            chunk.estimated = len(data) + estimate_remaining(len(data), newest, oldest, low)
            return []
        chunk.created_gte = split.keep_gte
        chunk.estimated = len(data)
        each = split.estimated_remaining // len(split.pieces)
        return [PlannedChunk(chunk.object, gte, lte, estimated=each) for gte, lte in split.pieces]

    async def _children(self, listing: Listing, roots: list[dict]) -> PageBatch:
        """Complete the children a page serves: truncated embedded lists, then per-parent lists."""
        if not roots:
            return PageBatch(roots)
        stored_roots, listed = await complete_page(self.ctx.stripe, listing, roots, self.run_ctx.header)
        return PageBatch(stored_roots, listed)

    async def _commit(self, chunk: Chunk, listing: Listing, batch: PageBatch, fetched_at: datetime,
                      done: bool, pieces: list[PlannedChunk]) -> int:
        """Write the page, its children, the chunk's state after it (cursor, counters) and any split
        pieces in one transaction; then report what it stored."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await self._write_page(chunk, listing, batch, fetched_at, done, pieces)
                break
            except RETRIED_WRITE_ERRORS as error:
                # Another worker's page touched the same rows in another order (children that two
                # parent types embed): the loser's transaction rolled back whole, so it is written again.
                if attempt == WRITE_ATTEMPTS:
                    raise
                self.ctx.log.info("backfill chunk %s (%s): page written again after %s", chunk.id,
                                  chunk.object, type(error).__name__)
                await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
        run_ctx = self.run_ctx
        progress = self.ctx.progress
        stored = 0
        if listing.root.table in run_ctx.tables:
            stored += len(batch.roots)
            progress.objects_stored(run_ctx.run.id, listing.root.table, chunk.id, len(batch.roots))
        for table, count in batch.children.items():
            stored += count
            progress.objects_stored(run_ctx.run.id, table, chunk.id, count)
        return stored

    async def _write_page(self, chunk: Chunk, listing: Listing, batch: PageBatch, fetched_at: datetime,
                          done: bool, pieces: list[PlannedChunk]) -> None:
        run_ctx, store, ledger = self.run_ctx, self.ctx.store, self.ledger
        account = run_ctx.account_id  # the run's account: its row exists (the run references it)
        # Pipelined: the statements go out together and the page costs two round trips (the upserts'
        # answers, the commit) instead of one per statement. The claim check needs the UPDATE's row
        # count, which is in by the time a later result is; it runs before the commit.
        async with self.ctx.database.pool.connection() as conn, conn.pipeline() as pipeline, \
                conn.transaction():
            # The commit may return before its WAL reaches the disk: a server crash may then lose the
            # last pages, but with their cursor (same transaction), so they are fetched again.
            await conn.execute("SET LOCAL synchronous_commit = off")
            advanced = await ledger.send_advance(conn, chunk, run_ctx.lease.key, done=done)
            if batch.roots:
                await store.store(listing.root, batch.roots, account, fetched_at, conn=conn, account_exists=True)
            for listed in batch.listed:
                if listed.items and not listed.stored_with_parent:
                    await store.store(listed.child, [item for item, _ in listed.items], account, fetched_at,
                                      parent_ids=[parent_id for _, parent_id in listed.items], conn=conn,
                                      account_exists=True)
            if pieces:
                await ledger.add_chunks(conn, run_ctx.run.id, pieces)
            if advanced.rowcount < 0:  # no statement with an answer followed it
                await pipeline.sync()
            ledger.check_advanced(advanced, chunk)

    # -- events ------------------------------------------------------------------------------------

    async def _catch_up(self, chunk: Chunk, outcome: ChunkOutcome, max_pages: int | None) -> None:
        """Apply events newer than the chunk's cursor, oldest first, a page at a time."""
        run_ctx = self.run_ctx
        applier = EventApplier(self.apply_event, run_ctx.tables,
                               StaleFieldRefresher(self.ctx, run_ctx.account_id, run_ctx.header, run_ctx.tables))
        api, header = self.ctx.stripe, self.run_ctx.header
        pages = 0
        while max_pages is None or pages < max_pages:
            if chunk.page_cursor is None:  # no event existed when the previous run started
                first = await oldest_event(api, header)
                events, has_more = ([first], True) if first else ([], False)
            else:
                page = await api.get(EVENTS_PATH, {"limit": PAGE_SIZE, "ending_before": chunk.page_cursor},
                                     account=header)
                events = list(reversed(page.get("data") or []))  # Stripe lists newest first
                has_more = bool(page.get("has_more")) and bool(events)
            if events:
                chunk.page_cursor = events[-1]["id"]
            pages += 1
            # Applied before the cursor moves (each event in its own transaction, logged there): a crash
            # in between replays the page, and a replayed event is a duplicate.
            applied = await applier.apply(events)
            chunk.processed += applied
            async with self.ctx.database.pool.connection() as conn, conn.transaction():
                await self.ledger.advance(conn, chunk, self.run_ctx.lease.key, done=not has_more)
            outcome.stored += applied
            if applied:
                self.ctx.progress.objects_stored(self.run_ctx.run.id, EVENTS_CHUNK, chunk.id, applied)
            if not has_more:
                outcome.status = "complete"
                return


def _count(chunk: Chunk, listing: Listing, batch: PageBatch) -> None:
    """Add a page to the chunk's counters and high-water mark."""
    chunk.processed += len(batch.roots)
    for table, count in batch.children.items():
        chunk.children[table] = chunk.children.get(table, 0) + count
    created = [c for c in map(listing.root.created_of, batch.roots) if c is not None]
    if created:
        chunk.max_created = max(chunk.max_created or created[0], *created)


def describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return mask_secrets_in(text if isinstance(error, RuntimeError) else f"{type(error).__name__}: {text}")
