"""Helpers shared by the backfill tests: an engine on the emulator, ground-truth comparison, a fault proxy."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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
