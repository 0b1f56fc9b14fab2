"""stripe_sync_core: keep a PostgreSQL copy of a Stripe account exact and current.

    from stripe_sync_core import StripeSync, SyncConfig, run_migrations
"""

from typing import TYPE_CHECKING, Any

from .accounts import AccountDeletionRefused
from .backfill import BackfillInProgress, BackfillOptions, NoOpenRun
from .config import ConfigError, SyncConfig, load_config
from .context import AccountUnavailable, EngineContext
from .database import DatabaseUnavailable
from .errors import InvalidInput, NotConfigured, Refused, StripeSyncError, Unavailable
from .listener import WebhookListener
from .managed_webhooks import ManagedWebhook, ManagedWebhookError
from .masking import mask_secret
from .progress import ProgressSink
from .registry import REGISTRY, ObjectType
from .results import (
    BackfillResult,
    BackfillStep,
    DeletionReport,
    ManagedWebhookRef,
    ObjectBackfillResult,
    OpenRun,
    SingleSyncResult,
    VerifyDifference,
    VerifyResult,
    WebhookOutcome,
)
from .runs import RunHeld
from .stripe_api import ObjectNotFound, StripeApiError, StripeKeyMissing
from .sync import EngineNotOpen, StripeSync
from .webhooks import InvalidSignature, MalformedEvent, WebhookError, WebhookOptions

if TYPE_CHECKING:
    from .migrate import run_migrations


def __getattr__(name: str) -> Any:
    # Alembic and SQLAlchemy cost ~0.3 s to import: load them only when migrations are asked for.
    if name == "run_migrations":
        from .migrate import run_migrations

        return run_migrations
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "REGISTRY",
    "AccountDeletionRefused",
    "AccountUnavailable",
    "BackfillInProgress",
    "BackfillResult",
    "BackfillStep",
    "BackfillOptions",
    "ConfigError",
    "DatabaseUnavailable",
    "DeletionReport",
    "EngineContext",
    "EngineNotOpen",
    "InvalidInput",
    "InvalidSignature",
    "MalformedEvent",
    "ManagedWebhook",
    "ManagedWebhookError",
    "ManagedWebhookRef",
    "NoOpenRun",
    "NotConfigured",
    "ObjectBackfillResult",
    "OpenRun",
    "ObjectNotFound",
    "ObjectType",
    "ProgressSink",
    "Refused",
    "RunHeld",
    "SingleSyncResult",
    "StripeApiError",
    "StripeKeyMissing",
    "StripeSync",
    "StripeSyncError",
    "SyncConfig",
    "Unavailable",
    "VerifyDifference",
    "VerifyResult",
    "WebhookError",
    "WebhookListener",
    "WebhookOutcome",
    "WebhookOptions",
    "load_config",
    "mask_secret",
    "run_migrations",
]
