"""`StripeSync`: the engine's public face. It owns the pool and the Stripe client and delegates each
capability to the module responsible for it (webhooks, managed webhooks, backfill, accounts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .config import SyncConfig
from .database import Database
from .embedded import resolve_database_url
from .progress import ProgressSink
from .store import ObjectStore
from .stripe_api import StripeApi, StripeApiError

if TYPE_CHECKING:
    from .backfill import Backfill
    from .managed_webhooks import ManagedWebhooks
    from .webhooks import WebhookProcessor


class AccountUnavailable(StripeApiError):
    """The key's own account cannot be read (a restricted key without that permission)."""


class StripeSync:
    """Keeps the `stripe` schema of a PostgreSQL database in sync with a Stripe account.

    Use as an async context manager::

        async with StripeSync(SyncConfig(stripe_secret_key="sk_test_...")) as sync:
            await sync.process_until_done(object="all")
    """

    def __init__(self, config: SyncConfig | None = None, *, progress: ProgressSink | None = None,
                 **settings: Any) -> None:
        self.config = (config or SyncConfig()).with_overrides(**settings)
        self.progress = progress or ProgressSink()
        self.log = self.config.log
        self.db: Database | None = None
        self.api: StripeApi | None = StripeApi(self.config) if self.config.stripe_secret_key else None
        self._own_account_id: str | None = self.config.stripe_account_id
        self._store: ObjectStore | None = None
        self._webhooks: WebhookProcessor | None = None
        self._managed: ManagedWebhooks | None = None
        self._backfill: Backfill | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> StripeSync:
        """Connect the pool (starting the embedded PostgreSQL when no URL is configured)."""
        if self.db is None:
            db = Database(resolve_database_url(self.config.database_url), max_size=self.config.pool_max_size)
            await db.open()
            self.db = db
        return self

    async def close(self) -> None:
        """Close the pool. Safe to call twice."""
        if self._webhooks is not None:
            await self._webhooks.close()  # pending event writes and log pruning finish first
        if self.api is not None:
            await self.api.close()
        if self.db is not None:
            await self.db.close()
            self.db = None

    async def __aenter__(self) -> StripeSync:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def database(self) -> Database:
        if self.db is None:
            raise RuntimeError("StripeSync is not open: use `async with StripeSync(...)` or `await sync.open()`")
        return self.db

    @property
    def stripe(self) -> StripeApi:
        if self.api is None:
            raise StripeApiError("no Stripe secret key: set STRIPE_API_KEY or pass --stripe-key")
        return self.api

    @property
    def store(self) -> ObjectStore:
        if self._store is None or self._store.db is not self.database:
            self._store = ObjectStore(self.database, self.config, self.api, self._own_account_id)
        return self._store

    def now(self) -> datetime:
        return datetime.now(UTC)

    # -- accounts --------------------------------------------------------------------------------

    async def own_account_id(self) -> str:
        """The id of the account the secret key belongs to (fetched once)."""
        if self._own_account_id is None:
            account = await self.get_current_account()
            self._own_account_id = account["id"]
        return self._own_account_id

    def account_header(self, account_id: str | None) -> str | None:
        """The `Stripe-Account` header for `account_id`: None for the key's own account."""
        if account_id is None or account_id == self._own_account_id:
            return None
        return account_id

    async def get_current_account(self) -> dict:
        """Retrieve the key's account from Stripe and upsert it into `stripe.accounts`."""
        try:
            account = await self.stripe.get("/v1/account")
        except StripeApiError as error:
            if error.http_status in (401, 403) and self.config.stripe_account_id:
                account = {"id": self.config.stripe_account_id, "object": "account"}
            elif error.http_status == 403:
                raise AccountUnavailable(
                    "this key may not read the account (a restricted key without the account read "
                    "permission): set stripe_account_id in the config file, or grant that permission",
                    http_status=403,
                ) from None
            else:
                raise
        self._own_account_id = account["id"]
        self._store = None
        from .registry import REGISTRY

        await self.store.store(REGISTRY["accounts"], [account], account["id"], self.now())
        return account

    async def get_all_synced_accounts(self) -> list[dict]:
        """Every account with data in the database (the key's own and connected ones), as stored."""
        rows = await self.database.fetch_all(
            "SELECT _raw_data FROM stripe.accounts ORDER BY id"
        )
        return [row["_raw_data"] for row in rows]

    async def dangerously_delete_synced_account_data(self, account_id: str, *, dry_run: bool = True,
                                                     force: bool = False) -> dict[str, Any]:
        """Delete every row synced for `account_id` (a dry run unless `dry_run=False`).

        Returns `deleted_record_counts` per table, the `managed_webhooks` and number of `sync_runs`
        concerned, and `warnings`. The deletion is one transaction: it all happens or nothing does.
        Managed webhooks are then removed from Stripe too (a warning says when one could not be).
        Refused (`AccountDeletionRefused`) while a sync run of the account is open, unless `force`.
        """
        from .accounts import delete_synced_account_data

        return await delete_synced_account_data(self, account_id, dry_run=dry_run, force=force)

    # -- webhooks (webhooks.py, managed_webhooks.py) --------------------------------------------

    @property
    def webhooks(self) -> WebhookProcessor:
        if self._webhooks is None:
            from .webhooks import WebhookProcessor

            self._webhooks = WebhookProcessor(self)
        return self._webhooks

    @property
    def managed_webhooks(self) -> ManagedWebhooks:
        if self._managed is None:
            from .managed_webhooks import ManagedWebhooks

            self._managed = ManagedWebhooks(self)
        return self._managed

    async def process_webhook(self, payload: bytes | str, signature: str) -> dict:
        """Verify a webhook delivery's signature, then process its event. Returns the outcome."""
        return await self.webhooks.process_webhook(payload, signature)

    async def process_event(self, event: dict) -> dict:
        """Route one Stripe event into its table (no signature check). Returns the outcome."""
        return await self.webhooks.process_event(event)

    async def find_or_create_managed_webhook(self, url: str, enabled_events: list[str] | None = None) -> dict:
        return await self.managed_webhooks.find_or_create(url, enabled_events)

    async def create_managed_webhook(self, url: str, enabled_events: list[str] | None = None) -> dict:
        return await self.managed_webhooks.create(url, enabled_events)

    async def list_managed_webhooks(self) -> Sequence[dict]:
        return await self.managed_webhooks.list()

    async def get_managed_webhook(self, webhook_id: str) -> dict | None:
        return await self.managed_webhooks.get(webhook_id)

    async def delete_managed_webhook(self, webhook_id: str) -> None:
        await self.managed_webhooks.delete(webhook_id)

    # -- backfill (backfill.py) ------------------------------------------------------------------

    @property
    def backfill(self) -> Backfill:
        if self._backfill is None:
            from .backfill import Backfill

            self._backfill = Backfill(self)
        return self._backfill

    async def process_until_done(self, object: str = "all", created_gte: int | None = None,
                                 created_lte: int | None = None, chunk: str | int | None = None,
                                 concurrency: int | None = None, *, join: bool = False, full: bool = False,
                                 account_id: str | None = None) -> dict[str, dict]:
        """Backfill `object` (or all types) and return a summary per object (stored, errors, duration).

        `join` adds this process as a worker to the open run; `full` skips the incremental shortcut;
        `account_id` backfills a connected account.
        """
        return await self.backfill.process_until_done(
            object, created_gte=created_gte, created_lte=created_lte, chunk=chunk, concurrency=concurrency,
            join=join, full=full, account_id=account_id)

    async def process_next(self, object: str, *, account_id: str | None = None) -> dict:
        """Process one page of `object`'s open backfill, for callers that step."""
        return await self.backfill.process_next(object, account_id=account_id)

    async def sync_single_entity(self, object_id: str, *, account_id: str | None = None) -> dict:
        """Fetch one object by id (its type from the id prefix) and store it."""
        return await self.backfill.sync_single_entity(object_id, account_id=account_id)
