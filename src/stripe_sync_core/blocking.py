"""A blocking facade over `StripeSync` for synchronous callers (Django, Flask, scripts).

The engine runs on an event loop in a background thread it owns; each call is handed to that loop and
waited for, so any number of the caller's threads can use one facade at once.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from .config import SyncConfig
from .loop_thread import LoopThread
from .managed_webhooks import ManagedWebhook
from .progress import ProgressSink
from .results import BackfillResult, DeletionReport, SingleSyncResult, WebhookOutcome
from .sync import StripeSync

T = TypeVar("T")


class BlockingStripeSync:
    """`StripeSync` with plain (blocking) methods. Use as a context manager or call `close()`::

        with BlockingStripeSync(SyncConfig(stripe_secret_key=..., database_url=...)) as sync:
            sync.process_webhook(request.body, request.headers["Stripe-Signature"])
    """

    def __init__(self, config: SyncConfig | None = None, *, progress: ProgressSink | None = None,
                 **settings: Any) -> None:
        self._thread = LoopThread()
        self.sync = StripeSync(config, progress=progress, **settings)
        try:
            self._call(self.sync.open())
        except BaseException:
            self._thread.stop()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._thread.run_blocking(coroutine, timeout)  # refuses a call from its own thread

    def close(self) -> None:
        """Close the pool and stop the engine thread. Safe to call twice."""
        if self._thread.closed:
            return
        try:
            self._call(self.sync.close())
        finally:
            self._thread.stop()

    def __enter__(self) -> BlockingStripeSync:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def process_webhook(self, payload: bytes | str, signature: str) -> WebhookOutcome:
        """Verify a webhook delivery's signature and store its event; see `StripeSync.process_webhook`."""
        return self._call(self.sync.process_webhook(payload, signature))

    def process_event(self, event: dict) -> WebhookOutcome:
        """Store one event without a signature check; see `StripeSync.process_event`."""
        return self._call(self.sync.process_event(event))

    def sync_single_entity(self, object_id: str) -> SingleSyncResult:
        """Fetch one object by id and store it; see `StripeSync.sync_single_entity`."""
        return self._call(self.sync.sync_single_entity(object_id))

    def process_until_done(self, object: str = "all", created_gte: int | None = None,
                           created_lte: int | None = None, chunk: str | int | None = None,
                           concurrency: int | None = None) -> BackfillResult:
        """Backfill until done; see `StripeSync.process_until_done`."""
        return self._call(self.sync.process_until_done(object, created_gte, created_lte, chunk, concurrency))

    def process_connected(self, object: str = "all", *, accounts: Sequence[str] | None = None,
                          join: bool = False, concurrency: int | None = None) -> dict[str, BackfillResult]:
        """Backfill connected accounts, one run each; see `StripeSync.process_connected`."""
        return self._call(self.sync.process_connected(object, concurrency=concurrency, accounts=accounts, join=join))

    def list_connected_accounts(self) -> list[dict]:
        """The platform's connected accounts (`/v1/accounts`), stored."""
        return self._call(self.sync.list_connected_accounts())

    def find_or_create_managed_webhook(self, url: str, enabled_events: list[str] | None = None, *,
                                       connect: bool = False) -> ManagedWebhook:
        """Reuse or create the managed webhook endpoint for `url` (`connect`: a Connect endpoint)."""
        return self._call(self.sync.find_or_create_managed_webhook(url, enabled_events, connect=connect))

    def create_managed_webhook(self, url: str, enabled_events: list[str] | None = None) -> ManagedWebhook:
        """Create a managed webhook endpoint for `url`."""
        return self._call(self.sync.create_managed_webhook(url, enabled_events))

    def list_managed_webhooks(self) -> Sequence[ManagedWebhook]:
        """The managed webhook endpoints stored in `stripe._managed_webhooks`."""
        return self._call(self.sync.list_managed_webhooks())

    def get_managed_webhook(self, webhook_id: str) -> ManagedWebhook | None:
        """One managed webhook endpoint, or None."""
        return self._call(self.sync.get_managed_webhook(webhook_id))

    def delete_managed_webhook(self, webhook_id: str) -> None:
        """Delete a managed webhook endpoint in Stripe and in the table."""
        self._call(self.sync.delete_managed_webhook(webhook_id))

    def get_current_account(self) -> dict:
        """Retrieve the key's account and store it."""
        return self._call(self.sync.get_current_account())

    def get_all_synced_accounts(self) -> list[dict]:
        """Every account with data in the database."""
        return self._call(self.sync.get_all_synced_accounts())

    def dangerously_delete_synced_account_data(self, account_id: str, *, dry_run: bool = True,
                                               force: bool = False) -> DeletionReport:
        """Delete (or with `dry_run`, count) an account's synced data; see the async method."""
        return self._call(self.sync.dangerously_delete_synced_account_data(
            account_id, dry_run=dry_run, force=force))
