"""Schema migrations (Alembic). The scripts live in the repository's top-level `alembic/` (where the
`alembic` command finds them, through `alembic.ini`); the wheel ships the same directory inside the
package as `stripe_sync_core/_alembic/`, so an installed copy migrates on its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import urlencode

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from .config import ConfigError
from .database import CONNECTION_OPTIONS, DatabaseUnavailable
from .embedded import resolve_database_url
from .errors import StripeSyncError
from .masking import mask_database_url, mask_secrets_in
from .schema_version import MIGRATIONS_DIR

# Any constant shared by every process of every deployment: two `migrate` at once serialise on it.
MIGRATION_LOCK_KEY = 0x5354_5253_594E  # "STRSYN"

# Alembic's `context` and `op` are module globals: one migration at a time per process. Across
# processes the advisory lock (taken here and again in alembic/env.py) serialises them.
_process_lock = threading.Lock()


def sqlalchemy_url(database_url: str) -> str:
    """SQLAlchemy needs the driver named: `postgresql+psycopg://`. A key=value connection string
    (`host=db user=app password=... dbname=app`, or `service=name`) becomes that URL's parameters,
    which SQLAlchemy hands to psycopg as they are."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    if "://" not in database_url and "=" in database_url:
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict

        try:
            parameters = conninfo_to_dict(database_url)
        except ProgrammingError as error:
            raise ConfigError(f"not a PostgreSQL connection string ({mask_database_url(database_url)}): "
                              f"{mask_secrets_in(str(error))}") from None
        return "postgresql+psycopg:///?" + urlencode({k: str(v) for k, v in parameters.items()})
    raise ConfigError(f"not a PostgreSQL URL or key=value connection string: {mask_database_url(database_url)} "
                      "(expected postgresql://user@host:5432/db or host=... dbname=...)")


class MigrationError(StripeSyncError, RuntimeError):
    """A migration failed; its transaction was rolled back, so the schema is as it was."""


def _alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def _engine(url: str) -> Engine:
    """One connection per use (no pool), without server-side prepared statements (a pooler in
    transaction mode would lose them; see `database.CONNECTION_OPTIONS`)."""
    return create_engine(sqlalchemy_url(url), poolclass=pool.NullPool, connect_args=dict(CONNECTION_OPTIONS))


def current_revision(database_url: str) -> str | None:
    engine = _engine(database_url)
    try:
        with engine.connect() as connection:
            return _revision(connection)
    finally:
        engine.dispose()


def _revision(connection: Connection) -> str | None:
    if connection.execute(text("SELECT to_regclass('stripe._migrations')")).scalar() is None:
        return None
    return connection.execute(text("SELECT version_num FROM stripe._migrations")).scalar()


def _migrate(url: str, step: Callable[[Config], None]) -> tuple[str | None, str | None]:
    """Run an Alembic command in one transaction holding the migration lock for the whole time, so
    that `before` and `after` are what this process saw and did.

    The lock is transaction-scoped and nothing here needs a session, so migrations run the same
    through a pooler in transaction mode (PgBouncer, Supabase's port 6543) as on a direct connection.
    """
    engine = _engine(url)
    try:
        with _process_lock, engine.connect() as connection:
            try:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                before = _revision(connection)
                config = _alembic_config(url)
                config.attributes["connection"] = connection  # Alembic runs in our transaction
                step(config)
                after = _revision(connection)
                connection.commit()
                return before, after
            finally:
                connection.rollback()  # after a failure: nothing half-done, and the lock released
    finally:
        engine.dispose()


def run_migrations(database_url: str | None = None, *, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the `stripe` schema to `revision`; returns (revision before, revision after).

    Safe to run concurrently from several processes (an advisory lock serialises them), through a
    connection pooler in transaction mode too, and idempotent: at head, it changes nothing.
    """
    url = resolve_database_url(database_url)
    try:
        return _migrate(url, lambda config: command.upgrade(config, revision))
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DatabaseUnavailable(f"cannot reach PostgreSQL at {mask_database_url(url)}: {reason}") from None
    except SQLAlchemyError as error:
        raise MigrationError(f"migration failed on {mask_database_url(url)}: {error}") from None


def downgrade_migrations(database_url: str | None = None, *, revision: str = "base") -> None:
    """Undo migrations down to `revision` (`base` removes the whole schema's tables: data is lost)."""
    _migrate(resolve_database_url(database_url), lambda config: command.downgrade(config, revision))
