"""The engine's home inside the console: its own asyncio loop in its own thread.

The `StripeSync` (its pool, its Stripe client, a backfill) lives on that loop, so engine work never
competes with key handling on the UI loop except for the GIL. The webhook listener runs in a child
process (`listener_process.py`), so a burst of deliveries does not even share the GIL. Screens reach it
only through the named, typed methods below (awaited inside their workers): each runs on the engine's
loop and returns plain data (the core's result dataclasses, or a view copied there), so a renamed
engine method is a type error here and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from stripe_sync_core import status
from stripe_sync_core.config import SyncConfig
from stripe_sync_core.loop_thread import LoopThread
from stripe_sync_core.managed_webhooks import ManagedWebhook
from stripe_sync_core.masking import mask_database_url, mask_secrets_in
from stripe_sync_core.progress import ProgressSink
from stripe_sync_core.results import BackfillResult, DeletionReport
from stripe_sync_core.status import (
    ChunkRow,
    EventRow,
    ManagedWebhookRow,
    ObjectProgress,
    RunSummary,
    SchemaMissing,
    WebhookEndpointRow,
)
from stripe_sync_core.stripe_api import stripe_request_budget
from stripe_sync_core.sync import StripeSync

from .listener_process import ListenerProcess

T = TypeVar("T")

STRIPE_PROBE_TIMEOUT = 5.0


# -- what the screens are given (copied on the engine's loop) ------------------------------------


@dataclass(frozen=True)
class RunsView:
    current: RunSummary | None
    progress: list[ObjectProgress]
    history: list[RunSummary]


@dataclass(frozen=True)
class BackfillView:
    run: RunSummary | None
    progress: list[ObjectProgress] = field(default_factory=list)
    chunks: list[ChunkRow] = field(default_factory=list)


@dataclass(frozen=True)
class WebhookView:
    managed: list[ManagedWebhookRow]
    endpoints: list[WebhookEndpointRow]
    stripe_error: str | None


@dataclass(frozen=True)
class ListenerView:
    """What the screen shows of the listener."""

    state: str = "stopped"
    local_url: str | None = None
    public_url: str | None = None
    webhook_url: str | None = None
    webhook_id: str | None = None
    catch_up: str | None = None
    counters: tuple[tuple[str, int], ...] = ()
    error: str | None = None


def listener_view(listener: ListenerProcess | None) -> ListenerView:
    """Read the listener process's last reported state (the core's `ListenerState`) into a view."""
    if listener is None:
        return ListenerView()
    state = listener.state
    catch_up = state.catch_up
    catch_text = catch_up.state
    if catch_up.state in ("running", "done"):
        catch_text += f": {catch_up.applied:,} of {catch_up.events:,} events applied"
        if catch_up.duplicates:
            catch_text += f", {catch_up.duplicates:,} already had"
    if catch_up.message:
        catch_text += f" ({catch_up.message})"
    if catch_up.backfill_recommended:
        catch_text += "; a backfill is advised"
    return ListenerView(
        state="ready" if state.running else "stopped",
        local_url=state.local_url, public_url=state.public_url, webhook_url=state.webhook_url,
        webhook_id=state.webhook_id, catch_up=catch_text,
        counters=(("received", state.received), ("2xx", state.ok), ("4xx", state.client_errors),
                  ("5xx", state.server_errors)),
        error=listener.failure,
    )

class ConsoleEngine:
    """One `StripeSync` for the console's lifetime, and the listener when it runs."""

    def __init__(self, config: SyncConfig, sink: ProgressSink) -> None:
        self.config = config
        self.sink = sink
        self.thread = LoopThread(name="stripe-sync-console-engine")
        self.sync = StripeSync(config, progress=sink)
        self._listener: ListenerProcess | None = None

    @property
    def listener(self) -> ListenerProcess | None:
        """The listener process while it runs (None once it exited: its view says why)."""
        listener = self._listener
        return listener if listener is not None and listener.alive else None

    @property
    def database_display(self) -> str:
        return mask_database_url(self.config.database_url) if self.config.database_url else "embedded PostgreSQL"

    @property
    def livemode(self) -> bool | None:
        return self.config.livemode

    async def _on_engine_loop(self, fn: Callable[[StripeSync], Awaitable[T]]) -> T:
        """Run `fn(sync)` on the engine loop and return its result to the awaiting worker."""

        async def on_engine_loop() -> T:
            return await fn(self.sync)

        return await self.thread.run(on_engine_loop())

    # -- reads (the same `status` functions the headless CLI uses) --------------------------------

    async def runs_view(self, now: datetime) -> RunsView:
        async def read(sync: StripeSync) -> RunsView:
            run, progress = await status.current_run_rows(sync.database, now=now)
            return RunsView(run, progress, await status.run_history(sync.database))

        return await self._on_engine_loop(read)

    async def run_chunks(self, run_id: int) -> list[ChunkRow]:
        return await self._on_engine_loop(lambda sync: status.run_chunks(sync.database, run_id))

    async def backfill_view(self, now: datetime, run_id: int | None) -> BackfillView:
        """The given run, else the open one (none when no run is open)."""

        async def read(sync: StripeSync) -> BackfillView:
            if run_id is None:
                run, progress = await status.current_run_rows(sync.database, now=now)
                if run is None or not run.is_open:
                    return BackfillView(None)
            else:
                run, progress = await status.current_run_rows(sync.database, now=now, run_id=run_id)
            chunks = await status.run_chunks(sync.database, run.run_id) if run else []
            return BackfillView(run, progress, chunks)

        return await self._on_engine_loop(read)

    async def webhook_view(self) -> WebhookView:
        async def read(sync: StripeSync) -> WebhookView:
            managed = await status.managed_webhook_rows(sync.database)
            try:
                endpoints = await status.webhook_endpoints(sync.stripe)
                error = None
            except Exception as failure:  # noqa: BLE001 - the table still shows what we manage
                endpoints, error = [], mask_secrets_in(str(failure))
            return WebhookView(managed, endpoints, error)

        return await self._on_engine_loop(read)

    async def listener_view(self, *, with_history: bool) -> tuple[ListenerView, list[EventRow] | None]:
        """The listener's state, and the last 200 stored events when asked (the feed's first fill)."""

        async def read(sync: StripeSync) -> tuple[ListenerView, list[EventRow] | None]:
            history = await status.recent_events(sync.database, limit=200) if with_history else None
            return listener_view(self._listener), history

        return await self._on_engine_loop(read)

    async def synced_accounts(self) -> list[dict]:
        return await self._on_engine_loop(lambda sync: sync.get_all_synced_accounts())

    # -- actions ------------------------------------------------------------------------------------

    async def set_request_budget(self, requests_per_second: float) -> None:
        """Change the engine's shared request budget (0 is unlimited) for the calls that follow; the same
        budget the CLI builds, per-endpoint limit included."""

        async def change(sync: StripeSync) -> None:
            sync.stripe.budget = stripe_request_budget(requests_per_second)

        await self._on_engine_loop(change)

    async def backfill(self, objects: Sequence[str], **arguments: Any) -> BackfillResult:
        """`process_until_done` for each of `objects` in turn (one run each); the results merged."""

        async def run(sync: StripeSync) -> BackfillResult:
            results: BackfillResult = {}
            for name in objects:
                results.update(await sync.process_until_done(name, **arguments))
            return results

        return await self._on_engine_loop(run)

    async def join_open_run(self) -> BackfillResult:
        return await self._on_engine_loop(lambda sync: sync.join_open_run())

    async def create_managed_webhook(self, url: str, enabled_events: list[str] | None) -> ManagedWebhook:
        return await self._on_engine_loop(lambda sync: sync.create_managed_webhook(url, enabled_events))

    async def delete_managed_webhook(self, webhook_id: str) -> None:
        await self._on_engine_loop(lambda sync: sync.delete_managed_webhook(webhook_id))

    async def preview_account_deletion(self, account_id: str) -> DeletionReport:
        return await self._on_engine_loop(
            lambda sync: sync.dangerously_delete_synced_account_data(account_id, dry_run=True))

    async def delete_account_data(self, account_id: str) -> DeletionReport:
        return await self._on_engine_loop(
            lambda sync: sync.dangerously_delete_synced_account_data(account_id, dry_run=False))

    async def start_listener(self, host: str, port: int | None) -> ListenerView:
        """Start the listener process (its tunnel and managed webhook); it catches up in the background.
        `port` None is the configured `listener_port`, 0 a port the OS picks."""
        if self.listener is not None:
            return listener_view(self.listener)
        listener = ListenerProcess(self.config, self.sink, host,
                                   self.config.listener_port if port is None else port)
        self._listener = listener
        try:
            await asyncio.to_thread(listener.start)
        except BaseException:
            self._listener = None
            await asyncio.to_thread(listener.stop)
            raise
        return listener_view(listener)

    async def stop_listener(self) -> ListenerView:
        listener, self._listener = self._listener, None
        if listener is not None:  # stopped meanwhile (the console closing)
            await asyncio.to_thread(listener.stop)
        return ListenerView()

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

        return await self._on_engine_loop(connect)

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

        return await self._on_engine_loop(check)

    def close(self) -> None:
        """Stop the listener, close the pool and the loop (from the UI thread, at exit)."""

        async def shutdown() -> None:
            # Cancel what is still running (a refresh, a backfill: its chunks are released for a resume).
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self.sync.close()

        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.stop()
            except Exception:  # noqa: BLE001 - leaving anyway
                pass
        try:
            self.thread.run_blocking(shutdown(), timeout=10)
        except Exception:  # noqa: BLE001 - leaving anyway
            pass
        self.thread.stop()
