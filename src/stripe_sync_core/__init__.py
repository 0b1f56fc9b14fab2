"""stripe_sync_core: keep a PostgreSQL copy of a Stripe account exact and current.

    from stripe_sync_core import StripeSync, SyncConfig, run_migrations
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Importing the package loads nothing else: each name below is loaded from its module on first use
# (PEP 562), so `stripe-sync-tui --help` or `status` pays only for what it touches. Alembic and
# SQLAlchemy (`run_migrations`) alone cost ~0.3 s, the Stripe SDK and aiohttp as much again.
_EXPORTS: dict[str, str] = {
    "AccountDeletionRefused": "accounts",
    "BackfillInProgress": "backfill", "BackfillOptions": "backfill", "NoOpenRun": "backfill",
    "ConfigError": "config", "SyncConfig": "config", "load_config": "config",
    "AccountUnavailable": "context", "EngineContext": "context",
    "DatabaseUnavailable": "database",
    "InvalidInput": "errors", "NotConfigured": "errors", "Refused": "errors", "StripeSyncError": "errors",
    "Unavailable": "errors",
    "WebhookListener": "listener",
    "ManagedWebhook": "managed_webhooks", "ManagedWebhookError": "managed_webhooks",
    "mask_secret": "masking",
    "run_migrations": "migrate",
    "ProgressSink": "progress",
    "REGISTRY": "registry", "ObjectType": "registry",
    "BackfillResult": "results", "BackfillStep": "results", "DeletionReport": "results",
    "ManagedWebhookRef": "results", "ObjectBackfillResult": "results", "OpenRun": "results",
    "SingleSyncResult": "results", "VerifyDifference": "results", "VerifyResult": "results",
    "WebhookOutcome": "results",
    "RunHeld": "runs",
    "ObjectNotFound": "stripe_api", "StripeApiError": "stripe_api", "StripeKeyMissing": "stripe_api",
    "EngineNotOpen": "sync", "StripeSync": "sync",
    "InvalidSignature": "webhooks", "MalformedEvent": "webhooks", "WebhookError": "webhooks",
    "WebhookOptions": "webhooks",
}

if TYPE_CHECKING:
    from .accounts import AccountDeletionRefused
    from .backfill import BackfillInProgress, BackfillOptions, NoOpenRun
    from .config import ConfigError, SyncConfig, load_config
    from .context import AccountUnavailable, EngineContext
    from .database import DatabaseUnavailable
    from .errors import InvalidInput, NotConfigured, Refused, StripeSyncError, Unavailable
    from .listener import WebhookListener
    from .managed_webhooks import ManagedWebhook, ManagedWebhookError
    from .masking import mask_secret
    from .migrate import run_migrations
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
