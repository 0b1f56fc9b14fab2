"""Alembic environment for the `stripe` schema: version table `stripe._migrations`, one advisory lock
around every migration run.

Two ways in, one behaviour:
- the engine (`stripe_sync_core.migrate.run_migrations`, the `migrate` command) passes its own
  connection, already holding the lock;
- the `alembic` command run from a checkout (`alembic upgrade head`, `alembic downgrade -1`, ...) reads
  the database URL from the project's settings, as every other command does: `-x url=...`, else
  `DATABASE_URL` / the config file, else the embedded server.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import OperationalError

from stripe_sync_core.database import CONNECTION_OPTIONS
from stripe_sync_core.embedded import resolve_database_url
from stripe_sync_core.masking import mask_database_url
from stripe_sync_core.migrate import MIGRATION_LOCK_KEY, sqlalchemy_url

config = context.config


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    if config.config_file_name:  # the alembic command: its ini file sets up logging
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    url = resolve_database_url(url)
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool, connect_args=dict(CONNECTION_OPTIONS))
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise SystemExit(f"cannot reach PostgreSQL at {mask_database_url(url)}: {reason}") from None
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        version_table="_migrations",
        version_table_schema="stripe",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        # Held until commit (transaction-scoped, so a pooler in transaction mode cannot leave it behind;
        # taken again when the engine's transaction already holds it): a second migrator waits here,
        # then finds nothing left to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.execute(text("CREATE SCHEMA IF NOT EXISTS stripe"))
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run `stripe-sync-tui --headless migrate`")
run_migrations_online()
