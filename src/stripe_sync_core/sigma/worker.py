"""A Sigma table's chunk: keyset pages through query runs, each page and its cursor in one transaction.

The chunk (`_sync_obj_runs`, object `sigma.<table>`) carries the keyset cursor in `page_cursor`, the
incremental pass's start in `created_gte` (epoch seconds; None: a full pass) and the time column's
high-water mark in `max_created`, so a process killed at any moment resumes after the last page it
committed and lands each row once. The next page's query runs while a page is written.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from ..runs import Chunk, RunLedger
from .client import PollOptions, SigmaClient, SigmaTableInaccessible
from .page import Page, read_page
from .query import decode_cursor, encode_cursor, page_query
from .tables import SigmaTable, sigma_table
from .writer import send_page

if TYPE_CHECKING:
    from ..chunk_worker import ChunkOutcome, RunContext
    from ..context import EngineContext

SKIPPED = "skipped: "
"""The start of the message of a Sigma chunk skipped because the account cannot read its table."""


class SigmaPages:
    def __init__(self, ctx: EngineContext, ledger: RunLedger, run_ctx: RunContext,
                 poll: PollOptions | None = None) -> None:
        self.ctx = ctx
        self.ledger = ledger
        self.run_ctx = run_ctx
        config = ctx.config
        self.page_size = config.sigma_page_size
        self.client = SigmaClient(ctx.stripe, files_base=config.sigma_files_base, poll=poll)

    async def land(self, chunk: Chunk, outcome: ChunkOutcome, max_pages: int | None) -> None:
        table = sigma_table(chunk.object)
        try:
            await self._pages(table, chunk, outcome, max_pages)
        except SigmaTableInaccessible as error:  # this account cannot read it: the other tables go on
            reason = f"{SKIPPED}{error}"
            self.ctx.log.warning("Sigma table %s %s", table.table, reason)
            await self.ledger.skip(chunk, self.run_ctx.lease.key, reason)
            outcome.status, outcome.error = "complete", reason

    async def _fetch(self, table: SigmaTable, chunk: Chunk, after: list[str] | None) -> Page:
        sql = page_query(table, after=after, since=chunk.created_gte, page_size=self.page_size)
        body = await self.client.run(sql, account=self.run_ctx.header)
        return read_page(table, body, incremental=chunk.created_gte is not None)

    async def _pages(self, table: SigmaTable, chunk: Chunk, outcome: ChunkOutcome, max_pages: int | None) -> None:
        after = decode_cursor(chunk.page_cursor)
        next_page: asyncio.Future[Page] | None = asyncio.ensure_future(self._fetch(table, chunk, after))
        pages = 0
        try:
            while next_page is not None:
                page = await next_page
                next_page = None
                observed_at = self.ctx.now()
                more = bool(table.cursor) and len(page.rows) >= self.page_size
                if page.cursor is not None:
                    after = page.cursor
                    chunk.page_cursor = encode_cursor(after)
                pages += 1
                if more and (max_pages is None or pages < max_pages):
                    next_page = asyncio.ensure_future(self._fetch(table, chunk, after))
                chunk.processed += len(page.rows)
                if page.newest is not None:
                    chunk.max_created = max(chunk.max_created or page.newest, page.newest)
                chunk.estimated = chunk.processed + (self.page_size if more else 0)
                await self._commit(replace(chunk), table, page, observed_at, done=not more)
                self.ctx.progress.objects_stored(self.run_ctx.run.id, chunk.object, chunk.id, len(page.rows))
                outcome.stored += len(page.rows)
                if not more:
                    outcome.status = "complete"
        finally:
            if next_page is not None:
                next_page.cancel()
                await asyncio.gather(next_page, return_exceptions=True)

    async def _commit(self, chunk: Chunk, table: SigmaTable, page: Page, observed_at, *, done: bool) -> None:
        account, key = self.run_ctx.account_id, self.run_ctx.lease.key
        async with self.ctx.database.pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")  # a lost commit loses its cursor too
            await self.ledger.advance(conn, chunk, key, done=done)
            await send_page(conn, table, page.rows, account, observed_at, whole=not table.cursor)
