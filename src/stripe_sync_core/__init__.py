"""stripe_sync_core: keep a PostgreSQL copy of a Stripe account exact and current.

    from stripe_sync_core import StripeSync, SyncConfig, run_migrations
"""

from typing import TYPE_CHECKING, Any

from .config import ConfigError, SyncConfig, load_config, mask_secret
from .progress import ProgressSink
from .registry import REGISTRY, ObjectType
from .sync import StripeSync

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
    "ConfigError",
    "ObjectType",
    "ProgressSink",
    "StripeSync",
    "SyncConfig",
    "load_config",
    "mask_secret",
    "run_migrations",
]
