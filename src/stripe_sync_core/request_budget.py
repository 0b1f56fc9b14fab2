"""The request budget: how many Stripe calls may go out, and in which order waiting calls go.

Stripe limits an account (25 requests/s with a test key, 100 live) and each endpoint of it (25/s), however
many processes call it, so the budget is one per account: `SharedRequestBudget` keeps its token buckets in
PostgreSQL (`stripe._request_budget`, one statement per grant, see migration 0005) and every engine of the
account draws on them. `RequestBudget` is the same budget inside one process, for a client without a
database (and while the database does not answer).

Calls go in one of two lanes (`request_lane`): `interactive` (the default: webhooks, managed webhook
changes, single-object sync, the health probe, the listener's catch-up) and `bulk` (backfill chunks).
Bulk calls take a token only when a reserve stays in the bucket, which interactive calls may use, so a
saturating backfill leaves the next interactive call a token at once; and an interactive call never
queues behind bulk waiters in its process. Among bulk waiters, the highest `request_priority` goes first.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar

import psycopg
import psycopg.errors
import psycopg_pool

from .errors import Unavailable

if TYPE_CHECKING:
    from .database import Database

Lane = Literal["interactive", "bulk"]

request_lane: ContextVar[Lane] = ContextVar("request_lane", default="interactive")
"""The lane of the calls made in this context (tasks inherit it); unmarked calls are interactive."""

request_priority: ContextVar[Callable[[], float] | None] = ContextVar("request_priority", default=None)
"""Who is asking, among bulk calls a budget cannot serve at once: the higher, the sooner. The backfill
sets it to how much work is left behind the requesting endpoint; tasks inherit it."""

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("stripe_sync_core.request_budget")


@contextmanager
def lane(name: Lane) -> Iterator[None]:
    """Make the calls inside the block (and the tasks it starts) go in lane `name`."""
    token = request_lane.set(name)
    try:
        yield
    finally:
        request_lane.reset(token)


Coroutinish = Callable[P, Coroutine[Any, Any, T]]


def in_lane(name: Lane) -> Callable[[Coroutinish[P, T]], Coroutinish[P, T]]:
    """Decorate a coroutine function whose Stripe calls go in lane `name`."""

    def decorate(function: Coroutinish[P, T]) -> Coroutinish[P, T]:
        @functools.wraps(function)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            with lane(name):
                return await function(*args, **kwargs)

        return call

    return decorate


ENDPOINT_LIMITS: dict[str, float] = {"GET /v1/files/": 20.0}
"""Endpoints (by prefix) that Stripe limits below its usual per-endpoint rate: the Files API, 20 reads/s."""


def own_endpoint_rate(endpoint: str | None) -> float | None:
    """The rate of an endpoint that has a limit of its own (`ENDPOINT_LIMITS`), else None."""
    if endpoint is None:
        return None
    return next((rate for prefix, rate in ENDPOINT_LIMITS.items() if endpoint.startswith(prefix)), None)


def interactive_reserve(rate: float) -> float:
    """Tokens bulk calls leave in a bucket of `rate` per second: a tenth of a second's worth, at least one."""
    return max(1.0, rate / 10)


def bucket_capacity(rate: float, burst: float | None = None) -> float:
    """A bucket holds a quarter second's worth for bulk calls (at least one) plus the interactive reserve."""
    return (burst if burst is not None else max(1.0, rate / 4)) + interactive_reserve(rate)


class Budget(Protocol):
    """What `StripeApi` needs of a budget."""

    rate: float
    endpoint_rate: float | None
    granted: int

    @property
    def unlimited(self) -> bool: ...

    async def acquire(self, endpoint: str | None = None) -> None: ...

    async def close(self) -> None: ...


class RequestBudget:
    """A token bucket of one process: `rate` requests per second, bursts of `burst` (plus the reserve).

    With `endpoint_rate` below `rate`, each endpoint also gets a bucket of its own, so that many
    requests to one endpoint wait their turn here instead of being answered 429 by Stripe.
    Waiting interactive calls go first; waiting bulk calls then go highest `request_priority` first
    (then in arrival order): while endpoints compete for the global limit, the ones with the most
    work left keep their own limit's pace and no endpoint is left working alone at the end.
    """

    def __init__(self, rate: float, burst: float | None = None, *, endpoint_rate: float | None = None) -> None:
        self.rate = rate
        self.reserve = interactive_reserve(rate)
        self.capacity = bucket_capacity(rate, burst)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        # (0 interactive / 1 bulk, -priority, arrival, turn)
        self._waiting: list[tuple[int, float, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.granted = 0
        self.endpoint_rate = endpoint_rate if endpoint_rate and 0 < endpoint_rate < rate else None
        self._endpoints: dict[str, RequestBudget] = {}

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    async def close(self) -> None:
        """Nothing to release: the state lives in this object."""

    async def acquire(self, endpoint: str | None = None) -> None:
        if self.unlimited:
            self.granted += 1
            return
        own_rate = own_endpoint_rate(endpoint)
        if endpoint is not None and (self.endpoint_rate is not None or own_rate is not None):
            bucket = self._endpoints.get(endpoint)
            if bucket is None:
                rate = min(r for r in (own_rate, self.endpoint_rate, self.rate) if r is not None)
                bucket = self._endpoints[endpoint] = RequestBudget(rate)
            await bucket.acquire()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (the old one's waiters and timer died with it)
            self._loop, self._waiting, self._timer = loop, [], None
        self._refill()
        rank = 1 if request_lane.get() == "bulk" else 0
        nobody_before = not self._waiting or (rank == 0 and self._waiting[0][0] == 1)
        if nobody_before and self._tokens >= self._needed(rank):
            self._tokens -= 1
            self.granted += 1
            return
        priority = request_priority.get() if rank else None
        turn: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (rank, -(priority() if priority else 0.0), next(self._arrivals), turn))
        self._reschedule()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted as it was cancelled: give the token back
                self._tokens += 1
                self.granted -= 1
                self._reschedule()
            raise

    def _needed(self, rank: int) -> float:
        """Tokens the bucket must hold to grant one: bulk calls leave the interactive reserve."""
        return 1 + self.reserve if rank else 1.0

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def _reschedule(self) -> None:
        """Time the next grant for whoever is first now (an interactive arrival moves it forward)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting and self._waiting[0][3].done():
            heapq.heappop(self._waiting)
        if self._waiting:
            delay = max(0.0, (self._needed(self._waiting[0][0]) - self._tokens) / self.rate)
            assert self._loop is not None
            self._timer = self._loop.call_later(delay, self._grant)

    def _grant(self) -> None:
        self._timer = None
        self._refill()
        while self._waiting:
            rank, _, _, turn = self._waiting[0]
            if turn.done():  # its request was cancelled while waiting
                heapq.heappop(self._waiting)
                continue
            if self._tokens < self._needed(rank):
                break
            heapq.heappop(self._waiting)
            self._tokens -= 1
            self.granted += 1
            turn.set_result(None)
        self._reschedule()


def key_scope(secret_key: str) -> str:
    """The budget's scope before the key's account is known: the key's fingerprint (never the key)."""
    return f"key {hashlib.sha256(secret_key.encode()).hexdigest()[:16]}"


def account_scope(account_id: str, livemode: bool | None) -> str:
    """One budget per account and mode (Stripe limits test and live requests separately)."""
    return f"{account_id} {'live' if livemode else 'test'}"


TAKE_SQL = ("SELECT granted, wait_seconds FROM stripe._take_request_tokens("
            "%s, %s, %s, %s, %s, %s, %s, %s, %s::text[], %s::integer[])")

BULK_BATCH = 8
"""Bulk waiters one grant statement serves at most (the bucket usually holds fewer tokens than that)."""
MIN_PAUSE, MAX_PAUSE = 0.002, 1.0
DEGRADED_SECONDS = 5.0
"""After the database failed a grant, this process paces itself alone for so long before asking again."""


class BudgetUnavailable(Unavailable):
    """The shared budget could not be asked (database down, schema not migrated): pace alone for a while."""


class SharedRequestBudget:
    """One request budget for every process of a Stripe account, kept in PostgreSQL.

    `scope` names the account (it moves from the key's fingerprint to the account's id once the engine
    has learnt it). Each grant is one statement (`stripe._take_request_tokens`) that refills the
    account's global bucket and the endpoint's by the server's clock and takes what it may. An
    interactive call asks for its own token and, if none is left, waits just as long as the statement
    says; bulk calls queue here by priority and one task (the pump) asks for a batch of tokens for the
    first of them at a time, taking only what lies above the interactive reserve. When the database
    cannot be asked, the process paces itself with `fallback` (its own `RequestBudget`).

    Each grant refills by the asking process's own rate and capacity: processes of an account normally
    share one rate (Stripe's preset); one given a lower rate (an operator's budget for a backfill) waits
    by its own rate and caps the bucket to its own burst, so it takes about that rate and no more.
    """

    def __init__(self, database: Database, scope: str, rate: float, *, endpoint_rate: float | None = None,
                 fallback: RequestBudget | None = None) -> None:
        self.database = database
        self.scope = scope
        self.rate = rate
        self.reserve = interactive_reserve(rate)
        self.capacity = bucket_capacity(rate)
        self.endpoint_rate = endpoint_rate if endpoint_rate and 0 < endpoint_rate < rate else None
        self.fallback = fallback or RequestBudget(rate, endpoint_rate=endpoint_rate)
        self.granted = 0
        self.statements = 0
        self._waiting: list[tuple[float, int, str | None, asyncio.Future[bool]]] = []
        self._arrivals = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._degraded_until = 0.0

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    async def acquire(self, endpoint: str | None = None) -> None:
        if self.unlimited:
            self.granted += 1
            return
        if self._degraded():
            await self.fallback.acquire(endpoint)
            return
        own_rate = own_endpoint_rate(endpoint)
        if own_rate is not None and own_rate < self.rate:  # rare calls (file downloads): one grant each
            if await self._take_own(endpoint, own_rate):
                self.granted += 1
            else:
                await self.fallback.acquire(endpoint)
            return
        bucket = endpoint if self.endpoint_rate is not None else None
        if request_lane.get() == "bulk":
            alone = await self._queue_bulk(bucket)
        else:
            alone = not await self._take_interactive(bucket)
        if alone:
            await self.fallback.acquire(endpoint)
        else:
            self.granted += 1

    async def close(self) -> None:
        """Stop the pump; bulk calls still waiting go through the fallback."""
        pump, self._pump = self._pump, None
        if pump is not None and not pump.done() and pump.get_loop() is asyncio.get_running_loop():
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        self._release_waiters()

    # -- asking the database -------------------------------------------------------------------------

    async def take(self, bulk: bool, buckets: list[str | None], wanted: list[int],
                   endpoint_rate: float | None = None) -> tuple[list[int], float]:
        """One grant statement: tokens granted per bucket, and seconds until the next may be."""
        endpoint_rate = endpoint_rate or self.endpoint_rate
        endpoint_capacity = bucket_capacity(endpoint_rate) if endpoint_rate else None
        endpoint_reserve = interactive_reserve(endpoint_rate) if endpoint_rate else None
        try:
            async with self.database.pool.connection(timeout=DEGRADED_SECONDS) as conn:
                cursor = await conn.execute(TAKE_SQL, (
                    self.scope, bulk, self.rate, self.capacity, self.reserve,
                    endpoint_rate, endpoint_capacity, endpoint_reserve, buckets, wanted))
                row = await cursor.fetchone()
        except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed, OSError) as error:
            self._degraded_until = time.monotonic() + DEGRADED_SECONDS
            if isinstance(error, (psycopg.errors.UndefinedFunction, psycopg.errors.UndefinedTable)):
                reason = "the schema predates it: run `stripe-sync-tui --headless migrate`"
            else:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("the shared request budget cannot be asked (%s); this process paces itself alone for "
                        "%g s", reason, DEGRADED_SECONDS)
            raise BudgetUnavailable(reason) from None
        self.statements += 1
        assert row is not None
        return list(row[0]), float(row[1])

    def _degraded(self) -> bool:
        return time.monotonic() < self._degraded_until

    async def _take_interactive(self, bucket: str | None) -> bool:
        """Take one token for an interactive call; False when the database could not be asked."""
        while True:
            try:
                granted, wait = await self.take(False, [bucket], [1])
            except BudgetUnavailable:
                return False
            if granted[0]:
                return True
            await asyncio.sleep(min(max(wait, MIN_PAUSE), MAX_PAUSE))

    async def _take_own(self, endpoint: str | None, rate: float) -> bool:
        """One token of an endpoint with a limit of its own, in this call's lane; False when the
        database could not be asked."""
        bulk = request_lane.get() == "bulk"
        while True:
            try:
                granted, wait = await self.take(bulk, [endpoint], [1], endpoint_rate=rate)
            except BudgetUnavailable:
                return False
            if granted[0]:
                return True
            await asyncio.sleep(min(max(wait, MIN_PAUSE), MAX_PAUSE))

    async def _queue_bulk(self, bucket: str | None) -> bool:
        """Wait for the pump to grant this bulk call a token; True when it must pace itself alone."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop: the old one's waiters and pump died with it
            self._loop, self._waiting, self._pump = loop, [], None
        priority = request_priority.get()
        turn: asyncio.Future[bool] = loop.create_future()
        heapq.heappush(self._waiting, (-(priority() if priority else 0.0), next(self._arrivals), bucket, turn))
        if self._pump is None or self._pump.done():
            self._pump = loop.create_task(self._serve_bulk())
        return await turn  # a token granted and then cancelled is spent: at most one per cancelled call

    async def _serve_bulk(self) -> None:
        """The pump: grant the first bulk waiters (by priority) a batch at a time, until none waits."""
        try:
            while True:
                self._waiting = [w for w in self._waiting if not w[3].done()]
                heapq.heapify(self._waiting)
                if not self._waiting:
                    return
                batch: dict[str | None, list[asyncio.Future[bool]]] = {}
                for _, _, bucket, turn in heapq.nsmallest(BULK_BATCH, self._waiting):
                    batch.setdefault(bucket, []).append(turn)
                buckets = list(batch)
                try:
                    granted, wait = await self.take(True, buckets, [len(batch[b]) for b in buckets])
                except BudgetUnavailable:
                    self._release_waiters()
                    return
                for bucket, count in zip(buckets, granted, strict=True):
                    for turn in batch[bucket][:count]:
                        if not turn.done():
                            turn.set_result(False)
                if sum(granted) < sum(len(turns) for turns in batch.values()):
                    # Not before two tokens' worth (fewer statements, each granting more; at most 50 ms:
                    # a slow budget's bucket may not hold two for bulk), jittered so that the pumps of
                    # several processes do not all ask at the same instant.
                    pause = max(wait, MIN_PAUSE, min(2 / self.rate, 0.05)) * random.uniform(1.0, 1.25)
                    await asyncio.sleep(min(pause, MAX_PAUSE))
        except asyncio.CancelledError:
            raise
        except Exception:  # never leave a waiter hanging
            log.exception("the shared request budget's pump failed; waiting calls pace themselves alone")
            self._degraded_until = time.monotonic() + DEGRADED_SECONDS
            self._release_waiters()

    def _release_waiters(self) -> None:
        waiting, self._waiting = self._waiting, []
        for _, _, _, turn in waiting:
            if not turn.done():
                turn.set_result(True)
