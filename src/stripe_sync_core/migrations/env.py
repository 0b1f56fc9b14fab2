"""Alembic environment: one advisory lock around every migration run, version table `stripe._migrations`."""

from alembic import context
from sqlalchemy import create_engine, pool, text

# Any constant shared by every process of every deployment: two `migrate` at once serialise on it.
MIGRATION_LOCK_KEY = 0x5354_5253_594E  # "STRSYN"

config = context.config


def run_migrations_online() -> None:
    # The engine passes its own connection (already holding the lock); the alembic CLI gives a URL.
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    url = config.get_main_option("sqlalchemy.url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("no database URL: pass -x url=postgresql+psycopg://...")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
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
        # Held until commit (re-entrant for a session that already holds it): a second migrator
        # waits here, then finds nothing left to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.execute(text("CREATE SCHEMA IF NOT EXISTS stripe"))
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run `stripe-sync-tui --headless migrate`")
run_migrations_online()
