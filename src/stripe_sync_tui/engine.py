"""The engine's home inside the console: its own asyncio loop in its own thread.

The `StripeSync` (its pool, its Stripe client, a backfill or the listener) lives on that loop, so
engine work never competes with key handling on the UI loop except for the GIL. Screens reach it
only through `ConsoleEngine.call`, awaited inside their workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stripe_sync_core import status
from stripe_sync_core.config import SyncConfig
from stripe_sync_core.listener import WebhookListener
from stripe_sync_core.loop_thread import LoopThread
from stripe_sync_core.masking import mask_database_url
from stripe_sync_core.progress import ProgressSink
from stripe_sync_core.status import SchemaMissing
from stripe_sync_core.sync import StripeSync

T = TypeVar("T")

STRIPE_PROBE_TIMEOUT = 5.0

class ConsoleEngine:
    """One `StripeSync` for the console's lifetime, and the listener when it runs."""

    def __init__(self, config: SyncConfig, sink: ProgressSink) -> None:
        self.config = config
        self.sink = sink
        self.thread = LoopThread(name="stripe-sync-console-engine")
        self.sync = StripeSync(config, progress=sink)
        self.listener: WebhookListener | None = None

    @property
    def database_display(self) -> str:
        return mask_database_url(self.config.database_url) if self.config.database_url else "embedded PostgreSQL"

    @property
    def livemode(self) -> bool | None:
        return self.config.livemode

    async def call(self, fn: Callable[[StripeSync], Awaitable[T]]) -> T:
        """Run `fn(sync)` on the engine loop and return its result to the awaiting worker."""

        async def on_engine_loop() -> T:
            return await fn(self.sync)

        return await self.thread.run(on_engine_loop())

    @staticmethod
    async def set_request_budget(sync: StripeSync, requests_per_second: float) -> None:
        """Change the engine's shared request budget (0 is unlimited) for the calls that follow."""
        from stripe_sync_core.stripe_api import stripe_request_budget

        sync.stripe.budget = stripe_request_budget(requests_per_second)

    async def connect(self) -> dict:
        """Open the pool, check the schema, read the key's account. Raises on the first problem."""

        async def connect(sync: StripeSync) -> dict:
            await sync.close()  # a retry starts from scratch
            if self.config.database_url:
                await status.probe_database(self.config.database_url)
            await sync.open()
            health = await status.database_health(sync.database)
            if not health.ok:
                from stripe_sync_core.database import DatabaseUnavailable

                raise DatabaseUnavailable(health.error or "the database does not answer")
            if not health.schema_ready:
                raise SchemaMissing(f"{self.database_display} has no stripe._sync_runs table")
            return await sync.get_current_account()

        return await self.call(connect)

    async def check_health(self, *, stripe: bool) -> tuple[bool, bool | None, str]:
        """(database answers, Stripe answers or None when not asked, detail of the first failure)."""

        async def check(sync: StripeSync) -> tuple[bool, bool | None, str]:
            if not sync.is_open:
                return False, None, "not connected"
            health = await status.database_health(sync.database)
            stripe_ok: bool | None = None
            detail = health.error or ""
            if stripe and sync.config.stripe_secret_key:
                try:
                    await asyncio.wait_for(sync.stripe.get("/v1/account"), STRIPE_PROBE_TIMEOUT)
                    stripe_ok = True
                except Exception as error:  # noqa: BLE001 - any failure means "not answering"
                    stripe_ok = False
                    detail = detail or str(error) or "Stripe did not answer in time"
            return health.ok, stripe_ok, detail

        return await self.call(check)

    def close(self) -> None:
        """Stop the listener, close the pool and the loop (from the UI thread, at exit)."""

        async def shutdown() -> None:
            # Cancel what is still running (a refresh, a backfill: its chunks are released for a resume).
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            if self.listener is not None:
                try:
                    await self.listener.stop()
                except Exception:  # noqa: BLE001 - leaving anyway
                    pass
            await self.sync.close()

        try:
            self.thread.run_blocking(shutdown(), timeout=10)
        except Exception:  # noqa: BLE001 - leaving anyway
            pass
        self.thread.stop()
