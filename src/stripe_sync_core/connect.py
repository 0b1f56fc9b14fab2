"""Connect platforms: a platform's connected accounts backfilled like its own, one run per account.

Each connected account gets a run of its own (`_sync_runs.account_id`), planned and fetched under its
`Stripe-Account` header, so everything per account (resuming, incremental runs, deletion, open runs)
works as for the key's own account. A worker of `process_connected` works many accounts' runs at once:
its tasks take turns over the open runs, claiming each chunk with the run's own `FOR UPDATE SKIP
LOCKED` claim, so any process (`join`, on any machine) can take any account's chunks and PostgreSQL
alone coordinates them. Requests under an account's header draw on that account's request budget
(`StripeApi.budget_for`), as Stripe counts them.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .backfill import Backfill, BackfillInProgress, NoOpenRun, tables_for
from .chunk_worker import ChunkWorker, RunContext
from .chunking import ChunkSpec, parse_chunk_spec
from .database import UpsertRow
from .errors import InvalidInput
from .listing import gather_or_cancel
from .registry import REGISTRY
from .request_budget import in_lane
from .results import BackfillResult, ObjectBackfillResult
from .runs import Run, WorkerLease
from .stripe_api import StripeApiError

ACCOUNTS_PATH = "/v1/accounts"
OPENING_CONCURRENCY = 8
"""Accounts whose runs are planned at once (two requests each: the account and its newest event)."""


class NotAConnectedAccount(InvalidInput, ValueError):
    """An account id that is not one of the platform's connected accounts (or not an account id)."""


@dataclass
class _Turns:
    """One process's view of the runs it works: those that may hold a chunk to claim, in turn."""

    ready: deque[Run]
    waiting: dict[int, Run]
    """Runs with no chunk to claim now but some still running elsewhere (they may split, end or die)."""
    closed: set[int]


def check_account_id(account_id: str) -> str:
    if not (isinstance(account_id, str) and account_id.startswith("acct_") and len(account_id) > 5
            and account_id[5:].isalnum()):
        raise NotAConnectedAccount(f"{account_id!r} is not a Stripe account id (acct_...)")
    return account_id


class ConnectBackfill(Backfill):
    """The backfill of a platform's connected accounts; reach it as `StripeSync.connect`."""

    @in_lane("interactive")
    async def list_connected_accounts(self) -> list[dict]:
        """Every connected account of the platform (`/v1/accounts`), stored in `stripe.accounts`."""
        accounts: list[dict] = []
        async for page in self.ctx.stripe.iterate(ACCOUNTS_PATH):
            accounts.extend(page.get("data") or [])
        if accounts:
            now = self.ctx.now()
            ids = [account["id"] for account in accounts]
            await self.ctx.database.ensure_accounts(ids)
            await self.ctx.database.upsert(REGISTRY["accounts"],
                                           [UpsertRow(account, account["id"], now, None) for account in accounts])
        return accounts

    @in_lane("bulk")
    async def process_connected(self, object: str | Sequence[str] = "all", created_gte: int | None = None,
                                created_lte: int | None = None, chunk: str | int | None = None,
                                concurrency: int | None = None, *, accounts: Sequence[str] | None = None,
                                join: bool = False, full: bool = False) -> dict[str, BackfillResult]:
        """Backfill connected accounts, one run each, and return each account's summary.

        `accounts` (default: every connected account, listed through `/v1/accounts`) get a run of
        `object` each (an open one that asks the same is resumed). With `join`, no run is opened: this
        process works the connected accounts' open runs (of `accounts`, or all of them). An account
        Stripe refuses to plan (access revoked, deleted) does not stop the others: its summary is
        `{"accounts": <an error result, run_id 0>}` with Stripe's answer.
        """
        own = await self.ctx.account.own_id()
        if accounts is not None:
            accounts = [check_account_id(account) for account in accounts]
            if own in accounts:
                raise NotAConnectedAccount(f"{own} is the key's own account: backfill it without --account")
        refused: dict[str, str] = {}
        if join:
            runs = await self._open_connected_runs(own, accounts)
            if not runs:
                raise NoOpenRun("no open backfill of a connected account to join")
        else:
            if accounts is None:
                accounts = [account["id"] for account in await self.list_connected_accounts()]
            runs = await self._open_runs(list(accounts), object, created_gte, created_lte, chunk, full, refused)
        await self._work_runs(runs, concurrency)
        summaries: dict[str, BackfillResult] = {}
        for run in runs:
            summaries[run.account_id] = await self.summary(run.id)
        for account, message in refused.items():
            summaries[account] = {"accounts": ObjectBackfillResult(
                stored=0, errors=1, error_messages=[message], duration=0.0, chunks=0, status="error",
                estimated_total=0, run_id=0)}
        return dict(sorted(summaries.items()))

    # -- opening -----------------------------------------------------------------------------------

    async def _open_runs(self, accounts: list[str], object: str | Sequence[str], gte: int | None,
                         lte: int | None, chunk: str | int | None, full: bool, refused: dict[str, str]) -> list[Run]:
        tables = tables_for(object)
        spec: ChunkSpec = parse_chunk_spec(chunk)
        if gte is not None and lte is not None and gte > lte:
            raise ValueError("created_gte is after created_lte")
        # Processes started together plan different accounts first (the others find their runs open).
        start = random.randrange(len(accounts)) if accounts else 0
        order = accounts[start:] + accounts[:start]
        runs: dict[str, Run] = {}
        gate = asyncio.Semaphore(OPENING_CONCURRENCY)

        async def open_one(account: str) -> None:
            async with gate:
                try:
                    runs[account] = await self._open(account, tables, gte, lte, spec, full=full, join=False)
                except StripeApiError as error:
                    if error.kind == "unavailable":  # Stripe down or rate limiting: not this account's fault
                        raise
                    refused[account] = str(error)
                    self.ctx.log.warning("cannot backfill connected account %s: %s", account, error)

        await gather_or_cancel([open_one(account) for account in order])
        return [runs[account] for account in order if account in runs]

    async def _open_connected_runs(self, own: str, accounts: Sequence[str] | None) -> list[Run]:
        rows = await self.ctx.database.fetch_all(
            "SELECT * FROM stripe._sync_runs WHERE closed_at IS NULL AND trigger = %(trigger)s "
            "AND account_id <> %(own)s AND (%(accounts)s::text[] IS NULL OR account_id = ANY(%(accounts)s::text[])) "
            "ORDER BY id", {"trigger": self.options.trigger, "own": own,
                            "accounts": list(accounts) if accounts is not None else None})
        runs = [Run.from_row(row) for row in rows]
        random.shuffle(runs)  # joiners start at different accounts
        return runs

    # -- working -----------------------------------------------------------------------------------

    async def _work_runs(self, runs: list[Run], concurrency: int | None) -> None:
        """Work every run until none of them has a chunk left (claimed by this process or another)."""
        ledger = self.ledger
        workers = max(1, concurrency or self.options.concurrency)
        turns = _Turns(deque(runs), {}, set())
        contexts: dict[int, RunContext] = {}
        new_work = asyncio.Event()

        def announce() -> None:
            new_work.set()
            new_work.clear()

        async with WorkerLease(ledger, self.options.heartbeat_seconds, self.ctx.log) as lease:
            def context_of(run: Run) -> RunContext:
                run_ctx = contexts.get(run.id)
                if run_ctx is None:
                    run_ctx = contexts[run.id] = self._run_context(run, lease)
                return run_ctx

            async def worker() -> None:
                while True:
                    if not turns.ready:
                        if not turns.waiting:
                            announce()
                            return
                        try:  # chunks held by other workers: they may split, finish or die
                            await asyncio.wait_for(new_work.wait(), self.options.idle_poll_seconds)
                        except TimeoutError:
                            pass
                        turns.ready.extend(turns.waiting.values())
                        turns.waiting.clear()
                        continue
                    run = turns.ready.popleft()
                    chunk = await ledger.claim(run.id, lease.key, lease.worker_id)
                    if chunk is None:
                        if await ledger.remaining(run.id) == 0:
                            if run.id not in turns.closed:
                                turns.closed.add(run.id)
                                await self._close(run)
                        else:
                            turns.waiting[run.id] = run
                        continue
                    turns.ready.append(run)  # the next task takes the next account: work spreads out
                    run_ctx = context_of(run)
                    await ChunkWorker(self.ctx, ledger, run_ctx, self.apply_event, self.options.split_limits,
                                      announce).work(chunk)
                    announce()

            helper = asyncio.create_task(self._report_rate())
            try:
                await gather_or_cancel([worker() for _ in range(workers)])
            finally:
                helper.cancel()
                await asyncio.gather(helper, return_exceptions=True)
        for run in runs:  # closed by whichever process saw it finish; closing twice changes nothing
            if run.id not in turns.closed:
                await self._close(run)


__all__ = ["BackfillInProgress", "ConnectBackfill", "NotAConnectedAccount", "check_account_id"]
