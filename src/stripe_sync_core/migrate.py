"""Schema migrations (Alembic), runnable from an installed package: the scripts ship inside it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from .embedded import resolve_database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def sqlalchemy_url(database_url: str) -> str:
    """SQLAlchemy needs the driver named: `postgresql+psycopg://`."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    raise ValueError(f"not a PostgreSQL URL: {database_url.split('://')[0]}://...")


def _alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def current_revision(database_url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            exists = connection.execute(text("SELECT to_regclass('stripe._migrations')")).scalar()
            if exists is None:
                return None
            return connection.execute(text("SELECT version_num FROM stripe._migrations")).scalar()
    finally:
        engine.dispose()


def run_migrations(database_url: str | None = None, *, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the `stripe` schema to `revision`; returns (revision before, revision after).

    Safe to run concurrently from several processes (an advisory lock serialises them) and
    idempotent: at head, it changes nothing.
    """
    url = resolve_database_url(database_url)
    before = current_revision(url)
    command.upgrade(_alembic_config(url), revision)
    return before, current_revision(url)


def downgrade_migrations(database_url: str | None = None, *, revision: str = "base") -> None:
    """Undo migrations down to `revision` (`base` removes the whole schema's tables: data is lost)."""
    command.downgrade(_alembic_config(resolve_database_url(database_url)), revision)
