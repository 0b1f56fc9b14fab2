"""What every part of the engine shares, built once when a `StripeSync` opens.

Parts (webhooks, managed webhooks, backfill, accounts, listener) take this context, or the fields of it
they use, plus their own options; they never see the facade. Signals between parts (a managed webhook
created, so the known signing secrets changed; an event to apply during a catch-up) are callbacks
given to their constructors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .config import SyncConfig
from .database import Database
from .progress import ProgressSink
from .registry import REGISTRY
from .store import ObjectStore
from .stripe_api import StripeApi, StripeApiError, StripeKeyMissing


def utc_now() -> datetime:
    return datetime.now(UTC)


class AccountUnavailable(StripeApiError):
    """The key's own account cannot be read (a restricted key without that permission): 403, so
    `not_configured`."""


class AccountIdentity:
    """Which account the secret key belongs to (asked of Stripe once), and the `Stripe-Account`
    header that addresses any other account."""

    def __init__(self, stripe: StripeApi | None, configured_id: str | None = None) -> None:
        self._stripe = stripe
        self._configured_id = configured_id
        self._own_id = configured_id

    async def own_id(self) -> str:
        """The id of the key's own account (fetched once)."""
        if self._own_id is None:
            await self.fetch_own_account()
        assert self._own_id is not None
        return self._own_id

    def header(self, account_id: str | None) -> str | None:
        """The `Stripe-Account` header for `account_id`: None for the key's own account."""
        if account_id is None or account_id == self._own_id:
            return None
        return account_id

    async def fetch_own_account(self) -> dict:
        """The key's account object from `/v1/account` (a stand-in with the configured id when the
        key may not read it)."""
        if self._stripe is None:
            raise StripeKeyMissing()
        try:
            account = await self._stripe.get("/v1/account")
        except StripeApiError as error:
            if error.http_status in (401, 403) and self._configured_id:
                account = {"id": self._configured_id, "object": "account"}
            elif error.http_status == 403:
                raise AccountUnavailable(
                    "this key may not read the account (a restricted key without the account read "
                    "permission): set stripe_account_id in the config file, or grant that permission",
                    http_status=403,
                ) from None
            else:
                raise
        self._own_id = account["id"]
        self._stripe.account_known(account["id"])  # the request budget is the account's from now on
        return account


@dataclass(frozen=True)
class EngineContext:
    """The engine's shared parts: settings, database, Stripe client, store, account identity, progress
    sink and clock."""

    config: SyncConfig
    database: Database
    stripe_client: StripeApi | None
    """None without a secret key: database-only work (webhooks with a configured secret, deletion)."""
    store: ObjectStore
    account: AccountIdentity
    progress: ProgressSink
    clock: Callable[[], datetime] = utc_now

    @classmethod
    def build(cls, config: SyncConfig, database: Database, stripe: StripeApi | None,
              progress: ProgressSink, clock: Callable[[], datetime] = utc_now) -> EngineContext:
        account = AccountIdentity(stripe, config.stripe_account_id)
        store = ObjectStore(database, config, stripe, account_header=account.header)
        return cls(config, database, stripe, store, account, progress, clock)

    @property
    def stripe(self) -> StripeApi:
        """The Stripe client; a clear error when no secret key is configured."""
        if self.stripe_client is None:
            raise StripeKeyMissing()
        return self.stripe_client

    @property
    def log(self) -> logging.Logger:
        return self.config.log

    def now(self) -> datetime:
        return self.clock()

    async def current_account(self) -> dict:
        """Retrieve the key's account from Stripe and store it in `stripe.accounts`."""
        account = await self.account.fetch_own_account()
        await self.store.store(REGISTRY["accounts"], [account], account["id"], self.now())
        return account
