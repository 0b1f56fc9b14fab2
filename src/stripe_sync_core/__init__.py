"""stripe_sync_core: keep a PostgreSQL copy of a Stripe account exact and current.

    from stripe_sync_core import StripeSync, SyncConfig, run_migrations
"""

from .config import ConfigError, SyncConfig, load_config, mask_secret
from .migrate import run_migrations
from .progress import ProgressSink
from .registry import REGISTRY, ObjectType
from .sync import StripeSync

__all__ = [
    "REGISTRY",
    "ConfigError",
    "ObjectType",
    "ProgressSink",
    "StripeSync",
    "SyncConfig",
    "load_config",
    "mask_secret",
    "run_migrations",
]
