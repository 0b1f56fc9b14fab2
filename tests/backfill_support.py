"""Helpers shared by the backfill tests: an engine on the emulator, ground-truth comparison, a fault proxy."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiohttp import ClientSession, web

from stripe_sync_core import StripeSync, SyncConfig
from stripe_sync_core.backfill import BackfillOptions
from stripe_sync_core.progress import ProgressSink

# Registry table -> the emulator's type name, where they differ.
EMULATOR_TYPE = {"invoice_items": "invoiceitems", "checkout_session_line_items": "checkout_line_items"}

FAST = BackfillOptions(idle_poll_seconds=0.05, heartbeat_seconds=0.5, lease_seconds=30.0)


def engine_config(url: str, api_base: str, secret_key: str, **overrides: Any) -> SyncConfig:
    settings: dict[str, Any] = {"database_url": url, "stripe_secret_key": secret_key, "stripe_api_base": api_base,
                                "max_requests_per_second": 0, "initial_retry_delay_ms": 1,
                                "max_retry_delay_ms": 20, "pool_max_size": 12}
    settings.update(overrides)
    return SyncConfig(**settings)


HOLD_KEY = 4_000_017
"""The advisory lock a test holds while the writes it stops wait for it."""


@contextmanager
def writes_held_after(url: str, table: str, rows: int) -> Iterator[psycopg.Connection]:
    """From the first statement that leaves `table` (e.g. `stripe.customers`) with more than `rows` rows, the
    writes to it wait until the block ends: work in another process stops at a known point, whatever the
    machine's speed, and can be killed there (`held_writers` says when a writer waits)."""
    with _held(url, f"AFTER INSERT ON {table} FOR EACH STATEMENT", f"(SELECT count(*) FROM {table}) > {rows}") \
            as holder:
        yield holder


@contextmanager
def pages_held_after(url: str, objects: int) -> Iterator[psycopg.Connection]:
    """A backfill's pages (any object) wait once its chunks have counted more than `objects` objects: the
    transaction of the page that goes past it waits, and every later one; the run cannot end meanwhile."""
    with _held(url, "AFTER UPDATE ON stripe._sync_obj_runs FOR EACH ROW "
                    "WHEN (NEW.processed_count > OLD.processed_count)",
               f"(SELECT sum(processed_count) FROM stripe._sync_obj_runs) > {objects}") as holder:
        yield holder


@contextmanager
def _held(url: str, trigger: str, condition: str) -> Iterator[psycopg.Connection]:
    """A trigger (`trigger`: when it fires, on what) that, while `condition` holds, waits for an advisory lock
    the yielded connection holds. On leaving, a writer still waiting ends with its transaction, as it would if
    its machine went down (it holds the table, so the trigger could not be dropped under it); then the
    trigger goes and the lock is released."""
    on = trigger.split(" ON ", 1)[1].split()[0]
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        holder.execute(f"""
            CREATE OR REPLACE FUNCTION public.hold_writes() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF {condition} THEN PERFORM pg_advisory_xact_lock({HOLD_KEY}); END IF;
                RETURN NULL;
            END $$""")
        holder.execute(f"CREATE TRIGGER hold_writes {trigger} EXECUTE FUNCTION public.hold_writes()")
        try:
            yield holder
        finally:
            waiting = held_writers(holder)
            for pid in waiting:
                holder.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 30
            while holder.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (waiting,)).fetchone():
                assert time.monotonic() < deadline, f"server processes {waiting} did not end"
                time.sleep(0.01)
            holder.execute(f"DROP TRIGGER IF EXISTS hold_writes ON {on}")
            holder.execute("DROP FUNCTION IF EXISTS public.hold_writes()")


def held_writers(conn: psycopg.Connection) -> list[int]:
    """Server processes of `conn`'s database waiting for the lock of a hold (`writes_held_after`,
    `pages_held_after`)."""
    return [pid for pid, in conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 0 AND objid = %s "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", (HOLD_KEY,))]


def kill_when_held(holder: psycopg.Connection, proc: subprocess.Popen, *, then_wait: float = 0.0,
                   timeout: float = 120) -> None:
    """Kill `proc` (SIGKILL) once one of its writes waits on `holder`'s hold, `then_wait` seconds later."""
    try:
        deadline = time.monotonic() + timeout
        while not held_writers(holder):
            if proc.poll() is not None:
                raise AssertionError(f"ended early: {proc.stderr.read().decode() if proc.stderr else proc.returncode}")
            assert time.monotonic() < deadline, "no write reached the hold"
            time.sleep(0.02)
        time.sleep(then_wait)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()


@asynccontextmanager
async def engine(url: str, emu: Any, *, api_base: str | None = None, progress: ProgressSink | None = None,
                 options: BackfillOptions = FAST, **overrides: Any) -> AsyncIterator[StripeSync]:
    """A StripeSync on the emulator (or on `api_base`, e.g. a fault proxy in front of it)."""
    config = engine_config(url, api_base or emu.api_base, emu.secret_key, **overrides)
    async with StripeSync(config, progress=progress, backfill_options=options) as sync:
        yield sync


def emulator_objects(emu: Any, table: str) -> list[dict]:
    objects = emu.objects(EMULATOR_TYPE.get(table, table))
    if table == "payment_methods":  # Stripe lists payment methods per customer: detached ones are unreachable
        objects = [o for o in objects if o.get("customer")]
    return objects


def stored_ids(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM stripe.{table} WHERE NOT deleted")]


def stored_rows(url: str, table: str) -> dict[str, dict]:
    with psycopg.connect(url) as conn:
        return {r[0]: r[1] for r in conn.execute(f"SELECT id, _raw_data FROM stripe.{table}")}


def stored_counts(url: str, table: str, column: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(f'SELECT "{column}", count(*) FROM stripe.{table} GROUP BY 1').fetchall())


def assert_same_ids(url: str, emu: Any, tables: list[str]) -> None:
    for table in tables:
        expected = sorted(o["id"] for o in emulator_objects(emu, table))
        got = sorted(stored_ids(url, table))
        assert got == expected, f"{table}: {len(got)} stored, {len(expected)} in the emulator"


def chunk_rows(url: str, run_id: int | None = None) -> list[dict]:
    with psycopg.connect(url) as conn:
        cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
        cursor.execute("SELECT * FROM stripe._sync_obj_runs WHERE (%(run)s::bigint IS NULL OR run_id = %(run)s) "
                       "ORDER BY id", {"run": run_id})
        return cursor.fetchall()


def run_rows(url: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
        cursor.execute("SELECT r.*, v.status FROM stripe._sync_runs r JOIN stripe.sync_runs v ON v.run_id = r.id "
                       "ORDER BY r.id")
        return cursor.fetchall()


def list_requests(emu: Any, route: str) -> int:
    """Requests the emulator answered on one route (`GET /v1/customers`), whatever the status."""
    return sum(emu.stats()["by_route"].get(route, {}).values())


@dataclass
class FaultProxy:
    """An HTTP proxy in front of the emulator that answers some requests itself.

    `rate_limited`: share of requests answered 429 (with `Stripe-Should-Retry: true`);
    `fail`: a predicate on (method, path, query) for requests answered 500 every time;
    `rewrite`: the path asked upstream instead of the request's (a Stripe that answers with another object);
    `limited`: a predicate on (method, path, query) for requests answered 429 (it may count its calls).
    """

    target: str
    rate_limited: float = 0.0
    fail: Callable[[str, str, str], bool] | None = None
    rewrite: Callable[[str], str] | None = None
    limited: Callable[[str, str, str], bool] | None = None
    seed: int = 7
    answered: dict[int, int] = field(default_factory=dict)
    url: str = ""

    async def __aenter__(self) -> FaultProxy:
        self._rng = random.Random(self.seed)
        self._session = ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()
        await self._runner.cleanup()

    def _count(self, status: int) -> None:
        self.answered[status] = self.answered.get(status, 0) + 1

    async def _handle(self, request: web.Request) -> web.Response:
        if self.fail and self.fail(request.method, request.path, request.query_string):
            self._count(500)
            return web.json_response({"error": {"type": "api_error", "message": "injected failure"}}, status=500,
                                     headers={"Stripe-Should-Retry": "true"})
        if (self.rate_limited and self._rng.random() < self.rate_limited) or \
                (self.limited is not None and self.limited(request.method, request.path, request.query_string)):
            self._count(429)
            return web.json_response({"error": {"type": "invalid_request_error", "code": "rate_limit",
                                                "message": "Request rate limit exceeded."}}, status=429,
                                     headers={"Stripe-Should-Retry": "true"})
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        path_qs = request.path_qs
        if self.rewrite is not None:
            path_qs = self.rewrite(request.raw_path.split("?")[0]) + path_qs[len(request.raw_path.split("?")[0]):]
        async with self._session.request(request.method, self.target + path_qs, data=body or None,
                                         headers=headers) as upstream:
            payload = await upstream.read()
            self._count(upstream.status)
            return web.Response(body=payload, status=upstream.status, content_type="application/json",
                                headers={k: v for k, v in upstream.headers.items()
                                         if k.lower() in ("request-id", "stripe-should-retry", "retry-after")})

    @property
    def share_rate_limited(self) -> float:
        total = sum(self.answered.values())
        return self.answered.get(429, 0) / total if total else 0.0


@dataclass
class RecordingProxy(FaultProxy):
    """The fault proxy noting each request's method and path (`GET /v1/customers`) in arrival order."""

    seen: list[str] = field(default_factory=list)

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(f"{request.method} {request.path}")
        return await super()._handle(request)
