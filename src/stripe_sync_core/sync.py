"""`StripeSync`: the engine's public face.

Opening it builds the `EngineContext` (settings, pool, Stripe client, store, account identity,
progress sink, clock) and the parts over it (webhooks, managed webhooks, backfill); each method
delegates to the part responsible. The facade depends on its parts, never the reverse.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from . import accounts
from .backfill import Backfill, BackfillOptions
from .config import SyncConfig, load_config
from .connect import ConnectBackfill
from .context import EngineContext, utc_now
from .database import Database
from .embedded import resolve_database_url
from .errors import NotConfigured
from .listener import WebhookListener
from .log_filters import STRIPE_SDK_SECRETS
from .managed_webhooks import ManagedWebhook, ManagedWebhooks
from .progress import ProgressSink
from .results import (
    BackfillResult,
    BackfillStep,
    DeletionReport,
    OpenRun,
    SingleSyncResult,
    VerifyResult,
    WebhookOutcome,
)
from .stripe_api import StripeApi
from .webhooks import WebhookOptions, WebhookProcessor

T = TypeVar("T")


class EngineNotOpen(NotConfigured, RuntimeError):
    """A call that needs the database was made before `open()` (or after `close()`)."""


class StripeSync:
    """Keeps the `stripe` schema of a PostgreSQL database in sync with a Stripe account.

    Use as an async context manager::

        async with StripeSync(SyncConfig(stripe_secret_key="sk_test_...")) as sync:
            await sync.process_until_done(object="all")

    Without a `config`, settings come from `load_config()` (environment, then the config file).
    """

    def __init__(self, config: SyncConfig | None = None, *, progress: ProgressSink | None = None,
                 backfill_options: BackfillOptions | None = None, webhook_options: WebhookOptions | None = None,
                 clock: Callable[[], datetime] = utc_now, **settings: Any) -> None:
        self.config = (config or load_config()).with_overrides(**settings)
        self.progress = progress or ProgressSink()
        self.backfill_options = backfill_options or BackfillOptions()
        self.webhook_options = webhook_options or WebhookOptions()
        self.clock = clock
        self._context: EngineContext | None = None
        self._webhooks: WebhookProcessor | None = None
        self._managed_webhooks: ManagedWebhooks | None = None
        self._backfill: Backfill | None = None
        self._connect: ConnectBackfill | None = None
        self._listeners: weakref.WeakSet[WebhookListener] = weakref.WeakSet()

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> StripeSync:
        """Connect the pool (starting the embedded PostgreSQL when no URL is configured) and build the
        engine's parts. Opening an open engine does nothing."""
        if self._context is not None:
            return self
        database = Database(resolve_database_url(self.config.database_url), max_size=self.config.pool_max_size,
                            prepare=self.config.prepared_statements)
        await database.open()
        # The request budget is the account's, in the database, shared with every process that syncs it.
        stripe = StripeApi(self.config, database=database) if self.config.stripe_secret_key else None
        ctx = EngineContext.build(self.config, database, stripe, self.progress, self.clock)
        webhooks = WebhookProcessor(ctx, self.webhook_options)
        self._webhooks = webhooks
        self._managed_webhooks = ManagedWebhooks(ctx, on_secrets_changed=webhooks.forget_secrets)
        self._backfill = Backfill(ctx, lambda event: webhooks.process_event(event, report=False),
                                  self.backfill_options)
        self._connect = ConnectBackfill(ctx, lambda event: webhooks.process_event(event, report=False),
                                        self.backfill_options)
        self._context = ctx
        STRIPE_SDK_SECRETS.acquire()
        return self

    async def close(self) -> None:
        """Finish pending event writes, close the Stripe client and the pool. Safe to call twice."""
        ctx, self._context = self._context, None
        if ctx is None:
            return
        try:
            if self._webhooks is not None:
                await self._webhooks.close()  # pending event writes and log pruning finish first
            if ctx.stripe_client is not None:
                await ctx.stripe_client.close()
            await ctx.database.close()
        finally:
            self._webhooks = self._managed_webhooks = self._backfill = self._connect = None
            STRIPE_SDK_SECRETS.release()

    async def __aenter__(self) -> StripeSync:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._context is not None

    @property
    def context(self) -> EngineContext:
        """The shared parts of the open engine."""
        return _opened(self._context)

    @property
    def database(self) -> Database:
        return self.context.database

    @property
    def stripe(self) -> StripeApi:
        """The Stripe client (a clear error when no secret key is configured)."""
        return self.context.stripe

    @property
    def webhooks(self) -> WebhookProcessor:
        return _opened(self._webhooks)

    @property
    def managed_webhooks(self) -> ManagedWebhooks:
        return _opened(self._managed_webhooks)

    @property
    def backfill(self) -> Backfill:
        return _opened(self._backfill)

    @property
    def connect(self) -> ConnectBackfill:
        """The backfill of the platform's connected accounts (connect.py)."""
        return _opened(self._connect)

    # -- accounts --------------------------------------------------------------------------------

    async def own_account_id(self) -> str:
        """The id of the account the secret key belongs to (fetched once)."""
        return await self.context.account.own_id()

    async def get_current_account(self) -> dict:
        """Retrieve the key's account from Stripe and upsert it into `stripe.accounts`."""
        return await self.context.current_account()

    async def get_all_synced_accounts(self) -> list[dict]:
        """Every account with data in the database (the key's own and connected ones), as stored."""
        rows = await self.database.fetch_all("SELECT _raw_data FROM stripe.accounts ORDER BY id")
        return [row["_raw_data"] for row in rows]

    async def dangerously_delete_synced_account_data(self, account_id: str, *, dry_run: bool = True,
                                                     force: bool = False) -> DeletionReport:
        """Delete every row synced for `account_id` (a dry run unless `dry_run=False`).

        Returns a `DeletionReport`: `deleted_record_counts` per table, the `managed_webhooks` and number
        of `sync_runs` concerned, and `warnings`. The deletion is one transaction: it all happens or nothing does.
        Managed webhooks are then removed from Stripe too (a warning says when one could not be); a
        running listener of this engine fed by one of them re-registers or stops (`check_webhook`).
        Refused (`AccountDeletionRefused`) while a sync run of the account is open, unless `force`:
        `open_runs` lists them and `abandon_open_runs` closes them.
        """
        report = await accounts.delete_synced_account_data(self.context, account_id, dry_run=dry_run, force=force)
        deleted = {hook.id for hook in report.managed_webhooks}
        for listener in list(self._listeners) if not dry_run else []:
            if listener.state.webhook_id in deleted:
                await listener.check_webhook()
        return report

    async def open_runs(self, account_id: str | None = None) -> list[OpenRun]:
        """The account's runs not closed yet (default: the key's own account), each `running` while a live
        worker holds one of its chunks and `interrupted` otherwise, with its chunks done and left."""
        account = account_id or await self.own_account_id()
        return await self.backfill.ledger.open_runs(account)

    async def abandon_open_runs(self, account_id: str | None = None, *, force: bool = False) -> list[OpenRun]:
        """Close the account's open runs as abandoned (one transaction) and return them as they were.

        The rows they stored stay (until a deletion removes them); nothing resumes them: a later backfill
        opens a new run. Refused (`RunHeld`, nothing changed) while a live worker holds a chunk of one,
        unless `force` (that worker then stops at its next page).
        """
        account = account_id or await self.own_account_id()
        runs = await self.backfill.ledger.abandon_open_runs(account, force=force)
        for run in runs:
            self.context.log.warning("abandoned sync run %s of %s (%s chunk(s) left%s)", run.run_id, account,
                                     run.chunks_left, f", held by {', '.join(run.workers)}" if run.held else "")
        return runs

    # -- webhooks (webhooks.py, managed_webhooks.py, listener.py) -------------------------------

    async def process_webhook(self, payload: bytes | str, signature: str) -> WebhookOutcome:
        """Verify a webhook delivery's signature, then process its event. Returns the outcome."""
        return await self.webhooks.process_webhook(payload, signature)

    async def process_event(self, event: dict) -> WebhookOutcome:
        """Route one Stripe event into its table (no signature check). Returns the outcome."""
        return await self.webhooks.process_event(event)

    async def find_or_create_managed_webhook(self, url: str, enabled_events: list[str] | None = None, *,
                                             connect: bool = False) -> ManagedWebhook:
        """`connect=True`: a Connect endpoint, fed the connected accounts' events (stored under `event.account`)."""
        return await self.managed_webhooks.find_or_create(url, enabled_events, connect=connect)

    async def create_managed_webhook(self, url: str, enabled_events: list[str] | None = None, *,
                                     connect: bool = False) -> ManagedWebhook:
        return await self.managed_webhooks.create(url, enabled_events, connect=connect)

    async def list_managed_webhooks(self) -> Sequence[ManagedWebhook]:
        return await self.managed_webhooks.list()

    async def get_managed_webhook(self, webhook_id: str) -> ManagedWebhook | None:
        return await self.managed_webhooks.get(webhook_id)

    async def delete_managed_webhook(self, webhook_id: str) -> None:
        await self.managed_webhooks.delete(webhook_id)

    def listener(self, host: str = "127.0.0.1", port: int | None = None, **options: Any) -> WebhookListener:
        """A webhook listener over this engine (not started: `await listener.start()` or `async with`).

        `port` defaults to the configured `listener_port`; see `WebhookListener` for the options.
        """
        listener = WebhookListener(self.context, self.webhooks, self.managed_webhooks, host,
                                   self.config.listener_port if port is None else port, **options)
        self._listeners.add(listener)  # told when a deletion removes the webhook that feeds it
        return listener

    # -- backfill (backfill.py) ------------------------------------------------------------------

    async def process_until_done(self, object: str | Sequence[str] = "all", created_gte: int | None = None,
                                 created_lte: int | None = None, chunk: str | int | None = None,
                                 concurrency: int | None = None, *, join: bool = False, full: bool = False,
                                 account_id: str | None = None) -> BackfillResult:
        """Backfill `object` (or all types) and return a summary per object (stored, errors, duration).

        `join` adds this process as a worker to the open run; `full` skips the incremental shortcut;
        `account_id` backfills a connected account.
        """
        return await self.backfill.process_until_done(
            object, created_gte=created_gte, created_lte=created_lte, chunk=chunk, concurrency=concurrency,
            join=join, full=full, account_id=account_id)

    async def join_open_run(self, concurrency: int | None = None, *, account_id: str | None = None) -> BackfillResult:
        """Add this process as a worker to the account's open backfill; returns its summary when done."""
        return await self.backfill.join_open_run(concurrency, account_id=account_id)

    async def process_next(self, object: str, *, account_id: str | None = None) -> BackfillStep:
        """Process one page of `object`'s open backfill, for callers that step."""
        return await self.backfill.process_next(object, account_id=account_id)

    async def sync_single_entity(self, object_id: str, *, account_id: str | None = None) -> SingleSyncResult:
        """Fetch one object by id (its type from the id prefix) and store it."""
        return await self.backfill.sync_single_entity(object_id, account_id=account_id)

    # -- drift check (verify.py) -----------------------------------------------------------------

    async def verify(self, object: str | Sequence[str] = "all", *, account_id: str | None = None,
                     since: int | None = None, sample: int | None = None, repair: bool = False) -> list[VerifyResult]:
        """Compare the database with Stripe for `object` (or all types): rows missing, deleted, changed or
        stale, per type; `repair` stores Stripe's state (never over a row observed later). `since` limits
        it to objects created since (epoch seconds), `sample` to the newest N and N random stored rows."""
        from . import verify
        from .backfill import tables_for

        return await verify.verify(self.context, tables_for(object), account_id=account_id, since=since,
                                   sample=sample, repair=repair)

    async def last_verify_results(self, account_id: str | None = None) -> list[dict]:
        """The last verify of each type (of one account, or every account), as stored."""
        from .verify import last_results

        return await last_results(self.database, account_id)


    # -- Connect platforms (connect.py) ----------------------------------------------------------

    async def list_connected_accounts(self) -> list[dict]:
        """Every connected account of the platform (`/v1/accounts`), stored in `stripe.accounts`."""
        return await self.connect.list_connected_accounts()

    async def process_connected(self, object: str | Sequence[str] = "all", created_gte: int | None = None,
                                created_lte: int | None = None, chunk: str | int | None = None,
                                concurrency: int | None = None, *, accounts: Sequence[str] | None = None,
                                join: bool = False, full: bool = False) -> dict[str, BackfillResult]:
        """Backfill connected accounts (default: all of them), one run each under its `Stripe-Account`
        header; returns each account's summary. `join` works their open runs alongside other workers."""
        return await self.connect.process_connected(
            object, created_gte=created_gte, created_lte=created_lte, chunk=chunk, concurrency=concurrency,
            accounts=accounts, join=join, full=full)


def _opened(part: T | None) -> T:
    """A part of the open engine; a clear error before `open()` or after `close()`."""
    if part is None:
        raise EngineNotOpen("StripeSync is not open: use `async with StripeSync(...)` or `await sync.open()`")
    return part
