"""The engine's home inside the console: its own asyncio loop in its own thread.

The `StripeSync` (its pool, its Stripe client) lives on that loop, so engine work never competes with
key handling on the UI loop except for the GIL. Bulk work does not run here at all: a backfill runs in
a worker process (`backfill_process.py`) and the webhook listener in a child process
(`listener_process.py`), both followed from here, so neither a backfill nor a burst of deliveries even
shares the GIL with key handling. Screens reach it
only through the named, typed methods below (awaited inside their workers): each runs on the engine's
loop and returns plain data (the core's result dataclasses, or a view copied there), so a renamed
engine method is a type error here and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from stripe_sync_core import status
from stripe_sync_core.config import SyncConfig
from stripe_sync_core.errors import Refused
from stripe_sync_core.estimate import BackfillEstimate
from stripe_sync_core.loop_thread import LoopThread
from stripe_sync_core.managed_webhooks import ManagedWebhook
from stripe_sync_core.masking import mask_database_url, mask_secrets_in
from stripe_sync_core.progress import ProgressSink
from stripe_sync_core.results import BackfillResult, DeletionReport, OpenRun
from stripe_sync_core.status import (
    ChunkRow,
    EventRow,
    ManagedWebhookRow,
    ObjectProgress,
    RunSummary,
    SchemaMissing,
    WebhookEndpointRow,
)
from stripe_sync_core.sync import StripeSync

from .backfill_process import BackfillCommand, BackfillProcess
from .listener_process import ListenerProcess

T = TypeVar("T")

LISTENER_CHECK_SECONDS = 15.0
"""How long a deletion waits for the listener process to say what it did about its deleted webhook."""

STRIPE_PROBE_TIMEOUT = 5.0


# -- what the screens are given (copied on the engine's loop) ------------------------------------


@dataclass(frozen=True)
class RunsView:
    current: RunSummary | None
    progress: list[ObjectProgress]
    history: list[RunSummary]
    verify: list[dict] = field(default_factory=list)
    """The last `verify` of each object type (`stripe._verify_results`), when one ran."""
    accounts: int = 1
    """Accounts with sync runs (a Connect platform's connected accounts have theirs): more than one, and
    screen 1 offers to show one alone."""


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
    notice: str | None = None
    """What happened to its managed webhook (re-registered after a deletion), or why it stopped by itself."""


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
        error=listener.failure, notice=state.notice,
    )

class WorkerBusy(Refused):
    """A backfill worker this console started still runs."""


class ConsoleEngine:
    """One `StripeSync` for the console's lifetime, and the listener when it runs."""

    def __init__(self, config: SyncConfig, sink: ProgressSink) -> None:
        self.config = config
        self.sink = sink
        self.thread = LoopThread(name="stripe-sync-console-engine")
        self.sync = StripeSync(config, progress=sink)
        self.worker: BackfillProcess | None = None
        """The last backfill worker process started from this console."""
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

    async def runs_view(self, now: datetime, account_id: str | None = None) -> RunsView:
        """The current run and the history, of every account or of `account_id` alone."""

        async def read(sync: StripeSync) -> RunsView:
            from stripe_sync_core.verify import last_results

            run, progress = await status.current_run_rows(sync.database, now=now, account_id=account_id)
            return RunsView(run, progress, await status.run_history(sync.database, account_id=account_id),
                            await last_results(sync.database), await status.accounts_with_runs(sync.database))

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

    async def backfill_estimate(self, objects: Sequence[str]) -> BackfillEstimate | None:
        """How long a full backfill of `objects` takes at the key's Stripe limits, from the rows already
        stored (None before any is): the plan's duration, without asking Stripe."""
        from stripe_sync_core.backfill import tables_for
        from stripe_sync_core.estimate import estimate_from_stored

        tables = tables_for(list(objects))
        return await self._on_engine_loop(
            lambda sync: estimate_from_stored(sync.database, tables, livemode=self.config.livemode))

    async def account_choices(self) -> list[status.AccountChoice]:
        """The accounts screen 1 can show alone (the key's own first), with their runs and rows."""

        async def read(sync: StripeSync) -> list[status.AccountChoice]:
            own = await sync.own_account_id() if sync.context.stripe_client is not None else None
            return await status.account_choices(sync.database, own)

        return await self._on_engine_loop(read)

    async def synced_accounts(self) -> list[dict]:
        return await self._on_engine_loop(lambda sync: sync.get_all_synced_accounts())

    # -- actions ------------------------------------------------------------------------------------

    async def set_request_budget(self, requests_per_second: float) -> None:
        """Change the engine's request budget (0 is unlimited) for the calls that follow; the same
        budget the CLI builds (the account's, shared through the database), per-endpoint limit included."""

        async def change(sync: StripeSync) -> None:
            sync.stripe.set_request_rate(requests_per_second)

        await self._on_engine_loop(change)

    # -- backfills: in a worker process (backfill_process.py), followed from the engine loop ---------

    async def backfill(self, objects: Sequence[str], *, created_gte: int | None = None,
                       created_lte: int | None = None, chunk: str | int | None = None,
                       concurrency: int | None = None, requests_per_second: float | None = None) -> BackfillResult:
        """Backfill `objects` (one run covers them all) in a worker process; its summary once done.
        `requests_per_second` is the worker's request budget (None: the settings', 0: unlimited)."""
        command = BackfillCommand(tuple(objects), created_gte, created_lte, chunk, concurrency)
        return await self._backfill_in_worker(command, requests_per_second)

    async def join_open_run(self, concurrency: int | None = None, *,
                            requests_per_second: float | None = None) -> BackfillResult:
        """A worker process joins the open run (`backfill --join`): a resume, at `concurrency` chunks at once."""
        return await self._backfill_in_worker(BackfillCommand(None, concurrency=concurrency), requests_per_second)

    async def _backfill_in_worker(self, command: BackfillCommand, requests_per_second: float | None) -> BackfillResult:
        async def run(sync: StripeSync) -> BackfillResult:
            if self.backfill_worker is not None:
                raise WorkerBusy(f"The backfill worker (pid {self.backfill_worker.pid}) still runs: c cancels it first")
            database_url = sync.database.url if sync.is_open else self.config.database_url  # embedded: resolved
            worker = BackfillProcess(command, self.config.with_overrides(
                database_url=database_url, max_requests_per_second=requests_per_second))
            self.worker = worker
            worker.start()
            return await worker.follow(self.sink)

        return await self._on_engine_loop(run)

    @property
    def backfill_worker(self) -> BackfillProcess | None:
        """The worker process this console started, while it runs."""
        worker = self.worker
        return worker if worker is not None and worker.running else None

    def stop_backfill(self) -> bool:
        """Ask the running worker to stop cleanly (its follower then ends with `WorkerStopped`); False if none runs."""
        worker = self.backfill_worker
        return worker.stop() if worker is not None else False

    async def backfill_stopped(self, timeout: float | None = None) -> bool:
        """Until the worker has ended (True), or `timeout` seconds have passed (False)."""
        worker = self.worker
        return True if worker is None else await self.thread.run(worker.wait(timeout))

    def detach_backfill(self) -> BackfillProcess | None:
        """Leave the running worker running when the console exits; the worker, or None if none runs."""
        worker = self.backfill_worker
        if worker is not None:
            worker.detach()
        return worker

    async def create_managed_webhook(self, url: str, enabled_events: list[str] | None) -> ManagedWebhook:
        return await self._on_engine_loop(lambda sync: sync.create_managed_webhook(url, enabled_events))

    async def delete_managed_webhook(self, webhook_id: str) -> None:
        await self._on_engine_loop(lambda sync: sync.delete_managed_webhook(webhook_id))

    async def open_runs(self, account_id: str) -> list[OpenRun]:
        return await self._on_engine_loop(lambda sync: sync.open_runs(account_id))

    async def abandon_open_runs(self, account_id: str, *, force: bool = False) -> list[OpenRun]:
        return await self._on_engine_loop(lambda sync: sync.abandon_open_runs(account_id, force=force))

    async def preview_account_deletion(self, account_id: str) -> DeletionReport:
        return await self._on_engine_loop(
            lambda sync: sync.dangerously_delete_synced_account_data(account_id, dry_run=True))

    async def delete_account_data(self, account_id: str) -> DeletionReport:
        """Delete the account's data; if that removed the listener's managed webhook from Stripe, the
        listener process checks at once (it re-registers or stops, and screen 5 shows which)."""
        report = await self._on_engine_loop(
            lambda sync: sync.dangerously_delete_synced_account_data(account_id, dry_run=False))
        listener = self.listener
        old = listener.state.webhook_id if listener is not None else None
        if listener is not None and old in report.webhooks_removed_from_stripe:
            listener.check_webhook()
            # Its answer (a new webhook, or stopped) comes on its stream: wait for it, so the summary
            # says what happened rather than "asked".
            deadline = asyncio.get_running_loop().time() + LISTENER_CHECK_SECONDS
            while asyncio.get_running_loop().time() < deadline:
                state = listener.state
                if not state.running or (state.webhook_id not in (None, old)):
                    break
                await asyncio.sleep(0.05)
        return report

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

    @property
    def listener_running(self) -> bool:
        """Started and not stopped (by the operator, or by itself when its webhook went and could not come back)."""
        return self.listener is not None and self.listener.state.running

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
                # The interactive lane: a backfill saturating the budget does not hold the probe up, and
                # only Stripe's answer is timed (waiting for our own budget says nothing about Stripe).
                try:
                    await sync.stripe.probe("/v1/account", timeout=STRIPE_PROBE_TIMEOUT)
                    stripe_ok = True
                except Exception as error:  # noqa: BLE001 - Stripe's error, or no answer in time
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
