"""A database of its own for a benchmark run (migrated unless asked not to), on a given server, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def database_on(server_url: str, name: str) -> str:
    """`server_url` (any form libpq takes) naming the database `name` instead."""
    params = conninfo_to_dict(server_url)
    params["dbname"] = name
    return make_conninfo("", **params)


@contextmanager
def fresh_database(server_url: str, prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """A new database named `prefix_<pid>_<random>` at our schema's latest revision; `migrate=False`: empty
    (for a command that migrates it itself, or another engine's schema)."""
    from stripe_sync_core.migrate import run_migrations

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_on(server_url, name)
    try:
        if migrate:
            run_migrations(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
