"""Turn any failure into a Problem: what is wrong and what to do, in words, never a traceback."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stripe_sync_core.config import ConfigError
from stripe_sync_core.database import DatabaseUnavailable
from stripe_sync_core.embedded import EmbeddedDatabaseError
from stripe_sync_core.errors import StripeSyncError
from stripe_sync_core.masking import mask_secrets_in
from stripe_sync_core.status import SchemaMissing
from stripe_sync_core.stripe_api import StripeApiError, StripeKeyMissing


@dataclass(frozen=True)
class Problem:
    kind: str
    """database, schema, stripe, stripe-key, stripe-call, config, a branch of the error tree (refused,
    unavailable, invalid_input, not_configured, failed), or unexpected."""
    title: str
    detail: str
    advice: tuple[str, ...] = field(default=())

    @property
    def blocks_console(self) -> bool:
        """Problems that leave no screen usable (the error screen shows them)."""
        return self.kind in ("database", "schema", "stripe", "stripe-key", "config")


def problem_from(error: BaseException, database: str = "the database") -> Problem:
    """The problem screen for `error`, chosen by its branch of the error tree (and, for Stripe's
    answers, by what Stripe said), never by its message."""
    text = mask_secrets_in(str(error)) or type(error).__name__
    if not isinstance(error, StripeSyncError):
        return Problem("unexpected", f"Unexpected {type(error).__name__}", text)
    if isinstance(error, StripeApiError):
        return _stripe_problem(error, text)
    if isinstance(error, SchemaMissing):
        return Problem("schema", "The database has no stripe schema yet", text, (
            "Run `stripe-sync-tui --headless migrate` to create the tables, then press r.",
        ))
    if isinstance(error, DatabaseUnavailable | EmbeddedDatabaseError):
        return Problem("database", "Cannot reach the database", text, (
            f"Check that PostgreSQL is running and accepts connections at {database}.",
            "Check --database-url or DATABASE_URL (user, password, host, port, database name).",
            "Press r to try again once it is up.",
        ))
    if isinstance(error, ConfigError):
        return Problem("config", "The settings are not valid", text, (
            "Fix the flag, environment variable or config file named above, then start again.",
        ))
    titles = {"refused": "Refused", "unavailable": "Not answering", "invalid_input": "Not valid",
              "not_configured": "Not set up", "failed": "Failed"}
    return Problem(error.kind, titles[error.kind], text)


def _stripe_problem(error: StripeApiError, text: str) -> Problem:
    if isinstance(error, StripeKeyMissing):
        return Problem("stripe-key", "No Stripe secret key", text, (
            "Pass --stripe-key sk_test_... or set STRIPE_API_KEY, then start again.",
            "Or start with --demo to try the console on generated data.",
        ))
    if error.kind == "not_configured":
        return Problem("stripe-key", "Stripe refused the secret key", text, (
            "Check the key in the Stripe dashboard (Developers > API keys); it may be revoked or rolled.",
            "A restricted key needs read access to the account, or set stripe_account_id in the config.",
        ))
    if error.http_status is None:
        # The SDK names its HTTP library's exception class, which says nothing to an operator.
        text = re.sub(r"\(Network error: An? \w+ was raised\)", "(network error)", text)
        return Problem("stripe", "Cannot reach Stripe", text, (
            "Check the network connection and any proxy or firewall between here and Stripe.",
            "Check --stripe-api-base / STRIPE_API_BASE if you point the console at another address.",
            "Press r to try again.",
        ))
    return Problem("stripe-call", f"Stripe answered {error.http_status}", text)
