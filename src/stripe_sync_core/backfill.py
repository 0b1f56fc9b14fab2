"""Backfill: copy existing Stripe objects into PostgreSQL, resumably, concurrently, incrementally.

A run (`_sync_runs`) covers a set of object types; each type's `created` range is cut into chunks
(`_sync_obj_runs`, see chunking.py) that workers claim and fetch page by page (chunk_worker.py), all
sharing the Stripe client's request budget. A run killed at any moment resumes from each chunk's page
cursor; several processes can work one run (runs.py). A later run of the same objects is incremental:
it lists from the last complete run's high-water mark and applies /v1/events since (catchup.py),
or makes a full pass when that run is older than Stripe's event retention.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .catchup import ApplyEvent, event_still_listed, newest_event
from .chunk_worker import ChunkOutcome, ChunkWorker, RunContext
from .chunking import ChunkSpec, SplitLimits, fixed_windows, parse_chunk_spec
from .errors import Refused
from .listing import (
    Listing,
    children_that_cannot_exist,
    complete_embedded,
    gather_or_cancel,
    list_all,
    plan_listings,
    without_children,
)
from .registry import (
    REGISTRY,
    ObjectType,
    UnknownObjectType,
    check_object,
    object_path,
    object_type,
    object_type_for_id,
    retrieve_expansions,
)
from .request_budget import in_lane
from .results import BackfillResult, BackfillStep, ObjectBackfillResult, SingleSyncResult
from .runs import EVENTS_CHUNK, ObjectTotals, PlannedChunk, Run, RunLedger, WorkerLease
from .sigma.client import PollOptions
from .sigma.planning import plan_sigma_chunk, require_live_key
from .sigma.tables import SIGMA, is_sigma_object, sigma_objects, sigma_table
from .stripe_api import ObjectNotFound, StripeApiError

if TYPE_CHECKING:
    from .context import EngineContext

ALL = "all"
NOT_IN_ALL = frozenset({"accounts"})
"""Connected accounts are listed by platforms only; the key's own account is stored on every run."""
STRIPE_LAUNCH = 1_293_840_000  # 2011-01-01: no Stripe object is older (a floor when the account's is unknown)


@dataclass(frozen=True)
class BackfillOptions:
    concurrency: int = 8
    """Chunks fetched at once by one process (all share the request budget)."""
    target_chunk_objects: int = 1000
    """Automatic chunking splits a range when more objects than this are expected below its first page."""
    max_split: int = 16
    """Pieces one split makes at most (each piece splits again on its own first page if still dense)."""
    lease_seconds: float = 60.0
    """A claim whose worker has not been heard of for this long may be taken over."""
    heartbeat_seconds: float = 10.0
    idle_poll_seconds: float = 0.5
    """How often an idle worker looks for chunks another process split off or gave back."""
    rate_report_seconds: float = 1.0
    weigh_seconds: float = 0.5
    """How often the objects left per type are re-read (they order requests waiting for the budget)."""
    events_retention_days: int = 30
    trigger: str = "backfill"
    sigma_poll: PollOptions = PollOptions()
    """How Sigma query runs are polled (first wait, backoff, timeout)."""

    @property
    def split_limits(self) -> SplitLimits:
        return SplitLimits(self.target_chunk_objects, self.max_split)


EVENTS_RESULT = "events"
"""The key of an incremental run's result for the events it applied (its internal chunk is `_events`)."""


class BackfillInProgress(Refused, RuntimeError):
    """Another backfill of this account is open and being worked on, for other objects or bounds."""


class NoOpenRun(Refused, RuntimeError):
    """`join` found no open backfill to work on."""


def tables_for(names: str | Sequence[str], *, sigma: bool = False) -> list[str]:
    """`all`, one type or several (by table, Stripe object name or alias) as registry tables, in registry
    order, then Sigma tables (`sigma.<table>`, or `sigma` for every one; `all` includes them with `sigma`)."""
    given = [names] if isinstance(names, str) else list(names)
    wanted: set[str] = set()
    sigma_wanted: set[str] = set()
    for name in given:
        if name == ALL:
            wanted.update(t for t in REGISTRY if t not in NOT_IN_ALL)
            if sigma:
                sigma_wanted.update(sigma_objects())
        elif name == SIGMA:
            sigma_wanted.update(sigma_objects())
        elif is_sigma_object(name):
            sigma_wanted.add(sigma_table(name).object)
        else:
            wanted.add(object_type(name).table)
    return [t for t in REGISTRY if t in wanted] + [t for t in sigma_objects() if t in sigma_wanted]


def preview_chunks(objects: str | Sequence[str], created_gte: int | None, created_lte: int | None,
                   chunk: str | int | None, now: int, account_created: int | None = None) -> list[PlannedChunk]:
    """The chunks a run of `objects` starts with, planned as the backfill plans them but without asking
    Stripe: one listing per root type (children ride on their parents), one chunk for `auto` (split
    when dense) or an unlisted type, calendar windows for a fixed size. For a fixed size the run
    itself then drops the windows above the newest object and marks an empty type done, so it may
    hold fewer chunks than this preview."""
    spec = parse_chunk_spec(chunk)
    high = created_lte if created_lte is not None else now
    low = created_gte if created_gte is not None else (account_created or STRIPE_LAUNCH)
    planned: list[PlannedChunk] = []
    for listing in plan_listings(tables_for(objects)):
        root = listing.root
        riders = [e.child.table for e in listing.embedded] + [c.table for c in listing.per_parent]
        note = f"with {', '.join(sorted(set(riders)))}" if riders else ""
        if not root.listable_by_created:
            planned.append(PlannedChunk(root.table, note=note or "listed whole"))
        elif spec.automatic:
            planned.append(PlannedChunk(root.table, created_gte, created_lte, note=note or "splits when dense"))
        else:
            planned.extend(PlannedChunk(root.table, gte, lte, note=note)
                           for gte, lte in reversed(fixed_windows(spec, low, high)))
    planned.extend(PlannedChunk(name, note="Sigma: keyset pages of query runs")
                   for name in tables_for(objects) if is_sigma_object(name))
    return planned


@dataclass(frozen=True)
class RunPlan:
    params: dict[str, Any]
    events_cursor: int | None
    chunks: list[PlannedChunk]


class Backfill:
    """The engine's backfill; reach it as `StripeSync.backfill` (or through `process_until_done`).

    `apply_event` routes one event of an incremental run's catch-up (the webhook processor's
    `process_event`, without reporting it as a delivery).
    """

    def __init__(self, ctx: EngineContext, apply_event: ApplyEvent, options: BackfillOptions | None = None) -> None:
        self.ctx = ctx
        self.apply_event = apply_event
        self.options = options or BackfillOptions()
        self.ledger = RunLedger(ctx.database, self.options.lease_seconds)

    # -- public ------------------------------------------------------------------------------------

    @in_lane("bulk")
    async def process_until_done(self, object: str | Sequence[str] = ALL, created_gte: int | None = None,
                                 created_lte: int | None = None, chunk: str | int | None = None,
                                 concurrency: int | None = None, *, join: bool = False, full: bool = False,
                                 account_id: str | None = None) -> BackfillResult:
        """Backfill `object` (one type, several, or all) and return a summary per object.

        Resumes this account's open run when it asks for the same thing (or always, with `join`);
        without bounds, a run after a complete one is incremental unless `full` is set.
        """
        tables = tables_for(object, sigma=self.ctx.config.enable_sigma)
        spec = parse_chunk_spec(chunk)
        if created_gte is not None and created_lte is not None and created_gte > created_lte:
            raise ValueError("created_gte is after created_lte")
        account = account_id or await self.ctx.account.own_id()
        run = await self._open(account, tables, created_gte, created_lte, spec, full=full, join=join)
        return await self._work(run, concurrency)

    @in_lane("bulk")
    async def join_open_run(self, concurrency: int | None = None, *, account_id: str | None = None) -> BackfillResult:
        """Add this process as a worker to the account's open backfill; returns its summary when done."""
        account = account_id or await self.ctx.account.own_id()
        run = await self.ledger.find_open_run(account, self.options.trigger)
        if run is None:
            raise NoOpenRun(f"no open backfill for {account} to join")
        return await self._work(run, concurrency)

    @in_lane("bulk")
    async def process_next(self, object: str | Sequence[str], *, account_id: str | None = None) -> BackfillStep:
        """Process one page of `object`'s open backfill (opening one if needed), for callers that step.

        Returns what the page did; `done` is true once no chunk of `object` is left.
        """
        tables = tables_for(object, sigma=self.ctx.config.enable_sigma)
        account = account_id or await self.ctx.account.own_id()
        run = await self._open(account, tables, None, None, ChunkSpec(), full=False, join=False, step=True)
        objects = [EVENTS_CHUNK, *(listing.root.table for listing in plan_listings(tables)),
                   *(t for t in tables if is_sigma_object(t))]
        ledger = self.ledger
        worked: dict[str, Any] = {}
        async with WorkerLease(ledger, self.options.heartbeat_seconds, self.ctx.log) as lease:
            chunk = await ledger.claim(run.id, lease.key, lease.worker_id, objects)
            if chunk is not None:
                worker = ChunkWorker(self.ctx, ledger, self._run_context(run, lease), self.apply_event, self.options.split_limits)
                outcome: ChunkOutcome = await worker.work(chunk, max_pages=1)
                worked = {"object": chunk.object, "chunk_id": chunk.id, "stored": outcome.stored,
                          "status": outcome.status, "error": outcome.error}
        done = await ledger.remaining(run.id, objects) == 0
        if await ledger.remaining(run.id) == 0:
            await self._close(run)
        return BackfillStep(run_id=run.id, done=done, **worked)

    @in_lane("interactive")
    async def sync_single_entity(self, object_id: str, *, account_id: str | None = None) -> SingleSyncResult:
        """Fetch one object by id (its type from the id prefix) and store it, or record its deletion."""
        entry = object_type_for_id(object_id)
        account = account_id or await self.ctx.account.own_id()
        header = self.ctx.account.header(account)
        if entry.retrieve_path is None:
            return await self._sync_through_parent(entry, object_id, account, header)
        api, store, now = self.ctx.stripe, self.ctx.store, self.ctx.now()
        expand = retrieve_expansions(
            entry, [n.field for n in entry.nested_lists if n.child_table and _expanded_on(entry, n.field)])
        try:
            obj = await api.get(object_path(entry.retrieve_path, id=object_id),
                                {"expand": expand} if expand else None, account=header)
        except ObjectNotFound:
            row = await self.ctx.database.fetch_one(
                f"SELECT _raw_data FROM stripe.{entry.table} WHERE id = %s", (object_id,))
            if row is None:
                raise
            await store.store_deleted(entry, [row["_raw_data"]], account, now)
            return SingleSyncResult(object_id, entry.table, "deleted")
        check_object(entry, obj, object_id)
        if obj.get("deleted"):
            await store.store_deleted(entry, [obj], account, now)
            return SingleSyncResult(object_id, entry.table, "deleted")
        for listing in plan_listings([entry.table, *(n.child_table for n in entry.nested_lists if n.child_table)]):
            for embedded in listing.embedded:
                await complete_embedded(api, [obj], embedded, header)
        written = await store.store(entry, [obj], account, now)
        return SingleSyncResult(object_id, entry.table, "stored" if written.count else "unchanged")

    async def summary(self, run_id: int) -> BackfillResult:
        """Per requested object (plus `events` for an incremental run: those applied since the previous
        run, from `/v1/events`): stored, errors, duration..."""
        run = await self.ledger.get_run(run_id)
        totals = await self.ledger.totals(run_id)
        result: BackfillResult = {}
        if EVENTS_CHUNK in totals:
            result[EVENTS_RESULT] = _object_summary(run, totals[EVENTS_CHUNK], totals[EVENTS_CHUNK].processed)
        for listing in plan_listings(run.objects):
            chunks = totals.get(listing.root.table, ObjectTotals())
            if listing.root.table in run.objects:
                result[listing.root.table] = _object_summary(run, chunks, chunks.processed, chunks.estimated)
            for child in listing.child_tables:
                result[child] = _object_summary(run, chunks, chunks.children.get(child, 0))
        for name in run.objects:
            if is_sigma_object(name):
                chunks = totals.get(name, ObjectTotals())
                result[name] = _object_summary(run, chunks, chunks.processed, chunks.estimated)
        order = {table: i for i, table in enumerate(REGISTRY)}
        return dict(sorted(result.items(), key=lambda item: order.get(
            item[0], -1 if item[0] == EVENTS_RESULT else len(order))))

    # -- opening a run -----------------------------------------------------------------------------

    async def _open(self, account: str, tables: list[str], gte: int | None, lte: int | None, spec: ChunkSpec,
                    *, full: bool, join: bool, step: bool = False) -> Run:
        """The run to work on: the open one if it fits (or `join`), else a new one."""
        ledger, trigger = self.ledger, self.options.trigger
        request = {"objects": tables, "created_gte": gte, "created_lte": lte, "chunk": str(spec), "full": full}
        for _ in range(3):
            run = await ledger.find_open_run(account, trigger)
            if run is not None:
                if join or run.params.get("request") == request or (step and set(tables) <= set(run.objects)):
                    return run
                if await ledger.live_claims(run.id):
                    raise BackfillInProgress(
                        f"backfill run {run.id} of {account} ({', '.join(run.objects)}) is in progress: "
                        "wait for it, or join it")
                await ledger.supersede(run.id, f"superseded by a backfill of {', '.join(tables)}")
            plan = await self._plan(account, tables, gte, lte, spec, full)
            run = await ledger.open_run(account, trigger, tables, {**plan.params, "request": request},
                                        plan.events_cursor, plan.chunks)
            if run is not None:
                return run
        raise BackfillInProgress(f"another process keeps opening backfills of {account}")

    async def _plan(self, account: str, tables: list[str], gte: int | None, lte: int | None, spec: ChunkSpec,
                    full: bool) -> RunPlan:
        api, header = self.ctx.stripe, self.ctx.account.header(account)
        sigma = [t for t in tables if is_sigma_object(t)]
        if sigma:
            require_live_key(self.ctx.config)
        account_object = await self._fetch_account(account)
        created = account_object.get("created")
        floor = created if isinstance(created, int) else STRIPE_LAUNCH
        mode = "range" if gte is not None or lte is not None else "full"
        newest = None
        if mode == "full" and len(sigma) < len(tables):  # where the next run's catch-up starts; a range run is never a base
            try:
                newest = await newest_event(api, header)
            except StripeApiError as error:  # a restricted key without events access: full passes only
                self.ctx.log.warning("cannot list events (%s): later runs will be full passes", error)
        params: dict[str, Any] = {"mode": mode, "chunk": str(spec), "account_created": floor,
                                  "events_cursor_id": newest["id"] if newest else None}
        try:  # every worker of the run (other processes too) skips what cannot exist
            params["children_absent"] = await children_that_cannot_exist(api, plan_listings(tables), header)
        except StripeApiError as error:  # a restricted key: ask each parent, as before
            self.ctx.log.info("cannot tell which children exist (%s): every parent is asked", error)
        chunks: list[PlannedChunk] = []
        base = None
        if mode == "full" and not full and len(sigma) < len(tables):
            base = await self.ledger.base_run(account, self.options.trigger,
                                              [t for t in tables if t not in sigma],
                                              self.options.events_retention_days)
            cursor_id = base.params.get("events_cursor_id") if base else None
            if base is not None and cursor_id and not await event_still_listed(api, cursor_id, header):
                base = None
        if base is not None:
            params.update(mode="incremental", base_run=base.id, base_hwm=base.params.get("hwm") or {})
            chunks.append(PlannedChunk(EVENTS_CHUNK, base.events_cursor, None,
                                       page_cursor=base.params.get("events_cursor_id")))
        for listing in plan_listings(tables):
            root = listing.root
            low = params["base_hwm"].get(root.table) if base is not None else gte
            if not root.listable_by_created:
                chunks.append(PlannedChunk(root.table))
            elif spec.automatic:
                chunks.append(PlannedChunk(root.table, low, lte))
            else:
                chunks.extend(await self._fixed_chunks(listing, low, lte, spec, floor, header))
        for name in sigma:
            chunks.append(await plan_sigma_chunk(self.ctx.database, account, sigma_table(name),
                                                 full=full, window_hours=self.ctx.config.sigma_window_hours))
        return RunPlan(params, newest.get("created") if newest else None, chunks)

    async def _fixed_chunks(self, listing: Listing, low: int | None, high: int | None, spec: ChunkSpec,
                            floor: int, header: str | None) -> list[PlannedChunk]:
        """Calendar windows between the oldest plausible and the newest object; one probe skips an empty type."""
        root = listing.root
        assert root.list_path is not None
        params = {**listing.page_params(low, high, None), "limit": 1}
        params.pop("expand", None)
        probe = await self.ctx.stripe.get(root.list_path, params, account=header)
        data = probe.get("data") or []
        newest = root.created_of(data[0]) if data else None
        if newest is None:
            return [PlannedChunk(root.table, low, high, status="complete" if not data else "pending",
                                 estimated=0 if not data else None)]
        windows: list[tuple[int | None, int | None]] = list(fixed_windows(
            spec, low if low is not None else min(floor, newest), high if high is not None else newest))
        # The outer windows stay open where the range is: nothing older or newer can slip past.
        windows[0] = (low, windows[0][1])
        windows[-1] = (windows[-1][0], high)
        return [PlannedChunk(root.table, gte, lte) for gte, lte in reversed(windows)]

    async def _fetch_account(self, account: str) -> dict:
        """The account's object (stored too: runs reference it)."""
        if account == await self.ctx.account.own_id():
            return await self.ctx.current_account()
        obj = await self.ctx.stripe.get(f"/v1/accounts/{account}")
        await self.ctx.store.store(REGISTRY["accounts"], [obj], account, self.ctx.now())
        return obj

    # -- working a run -----------------------------------------------------------------------------

    def _run_context(self, run: Run, lease: WorkerLease) -> RunContext:
        return RunContext(
            run=run, account_id=run.account_id, header=self.ctx.account.header(run.account_id),
            listings={listing.root.table: without_children(listing, run.params.get("children_absent") or ())
                      for listing in plan_listings(run.objects)},
            tables=set(run.objects), automatic=run.params.get("chunk", "auto") == "auto",
            floor=run.params.get("account_created") or STRIPE_LAUNCH, lease=lease, priorities={},
            sigma_poll=self.options.sigma_poll)

    async def _work(self, run: Run, concurrency: int | None) -> BackfillResult:
        await self.ctx.account.own_id()  # the Stripe-Account header needs to know which account is ours
        ledger = self.ledger
        workers = max(1, concurrency or self.options.concurrency)
        totals = await ledger.totals(run.id)
        self.ctx.progress.run_started(run.id, run.objects, sum(t.chunks for t in totals.values()))
        new_work = asyncio.Event()

        def announce() -> None:  # wake idle workers: there are new chunks, or the run may be over
            new_work.set()
            new_work.clear()

        async with WorkerLease(ledger, self.options.heartbeat_seconds, self.ctx.log) as lease:
            run_ctx = self._run_context(run, lease)
            helpers = [asyncio.create_task(self._report_rate()),
                       asyncio.create_task(self._weigh_objects(run_ctx, ledger))]
            try:
                await gather_or_cancel([self._worker(run_ctx, ledger, new_work, announce)
                                        for _ in range(workers)])
            finally:
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
        await self._close(run)
        summary = await self.summary(run.id)
        self.ctx.progress.run_done(run.id, summary)
        return summary

    async def _worker(self, run_ctx: RunContext, ledger: RunLedger, new_work: asyncio.Event, announce: Any) -> None:
        worker = ChunkWorker(self.ctx, ledger, run_ctx, self.apply_event, self.options.split_limits, announce)
        while True:
            chunk = await ledger.claim(run_ctx.run.id, run_ctx.lease.key, run_ctx.lease.worker_id)
            if chunk is None:
                if await ledger.remaining(run_ctx.run.id) == 0:
                    announce()
                    return
                try:  # another worker may split its chunk or die: look again soon
                    await asyncio.wait_for(new_work.wait(), self.options.idle_poll_seconds)
                except TimeoutError:
                    pass
                continue
            await worker.work(chunk)
            announce()

    async def _report_rate(self) -> None:
        stats, period = self.ctx.stripe.stats, self.options.rate_report_seconds
        last_count, last_time = stats.requests, time.monotonic()
        while True:
            await asyncio.sleep(period)
            count, now = stats.requests, time.monotonic()
            self.ctx.progress.request_rate((count - last_count) / max(now - last_time, 1e-9))
            last_count, last_time = count, now

    async def _weigh_objects(self, run_ctx: RunContext, ledger: RunLedger) -> None:
        """Keep `run_ctx.priorities` (objects left per object type, all processes' chunks) current: when
        the request budget cannot serve every endpoint, the types with the most left go first, so
        each endpoint's own limit is used to the end instead of a few finishing alone."""
        while True:
            try:
                run_ctx.priorities.clear()
                run_ctx.priorities.update(await ledger.work_left(run_ctx.run.id))
            except Exception as error:  # a hint only: keep the last figures
                self.ctx.log.debug("cannot weigh backfill objects: %s", error)
            await asyncio.sleep(self.options.weigh_seconds)

    async def _close(self, run: Run) -> None:
        """Close a finished run: its high-water marks (for the next incremental run) and its errors."""
        totals = await self.ledger.totals(run.id)
        failures = [(name, message) for name, t in totals.items() for message in t.error_messages]
        error = None
        if failures:
            error = f"{len(failures)} chunk(s) failed; first: {failures[0][0]}: {failures[0][1]}"
        marks: dict[str, int | None] = {}
        base = run.params.get("base_hwm") or {}
        for listing in plan_listings(run.objects):
            table = listing.root.table
            seen = [m for m in (base.get(table), totals.get(table, ObjectTotals()).max_created) if m is not None]
            marks[table] = max(seen) if seen else None
        known = [m for m in marks.values() if m is not None]
        update = {"hwm": marks} if run.params.get("mode") in ("full", "incremental") else {}
        await self.ledger.close_run(run, update, max(known) if known else None, error)

    async def _sync_through_parent(self, entry: ObjectType, object_id: str, account: str,
                                   header: str | None) -> SingleSyncResult:
        """A type Stripe cannot retrieve alone (checkout line items): list its parent's children."""
        if entry.parent is None or entry.parent_column is None:
            raise UnknownObjectType(f"{entry.table} cannot be fetched by id")
        row = await self.ctx.database.fetch_one(
            f'SELECT "{entry.parent_column}" AS parent FROM stripe.{entry.table} WHERE id = %s', (object_id,))
        if row is None or row["parent"] is None:
            raise ObjectNotFound(f"{object_id}: Stripe has no endpoint for one {entry.stripe_object}; "
                                 f"sync its {entry.parent.parent_table} instead", http_status=404)
        path = object_path(entry.parent.path, parent_id=row["parent"])
        children = await list_all(self.ctx.stripe, path, account=header)
        now = self.ctx.now()
        await self.ctx.store.store(entry, children, account, now, parent_id=row["parent"])
        if any(child["id"] == object_id for child in children):
            return SingleSyncResult(object_id, entry.table, "stored")
        await self.ctx.store.store_deleted(entry, [{"id": object_id}], account, now)
        return SingleSyncResult(object_id, entry.table, "deleted")


def _expanded_on(parent: ObjectType, field_name: str) -> bool:
    """A nested list Stripe includes only when asked to expand it (`line_items` of a checkout session)."""
    return any(e.parent is not None and e.parent.parent_table == parent.table
               and e.parent.expand_on_parent == field_name for e in REGISTRY.values())


def _object_summary(run: Run, t: ObjectTotals, stored: int, estimated: int | None = None) -> ObjectBackfillResult:
    if t.running or t.pending:
        status = "running" if run.closed_at is None else "interrupted"
    elif t.errors:
        status = "error"
    elif t.notes and not t.processed:  # a Sigma table the account cannot read
        status = "skipped"
    else:
        status = "complete"
    end = t.completed_at if status in ("complete", "error") else None
    return ObjectBackfillResult(
        stored=stored, errors=t.errors, error_messages=t.error_messages + t.notes, duration=_seconds(t.started_at, end),
        chunks=t.chunks, status=status, estimated_total=estimated if estimated is not None else stored,
        run_id=run.id)


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None:
        return 0.0
    if end is None:
        end = datetime.now(UTC)
    return round(max(0.0, (end - start).total_seconds()), 3)

