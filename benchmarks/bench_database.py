"""A database of its own for a benchmark run (migrated unless asked not to), on a given server, dropped afterwards;
and the CPU readers the benchmarks share."""

from __future__ import annotations

import os
import resource
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

if TYPE_CHECKING:
    from stripe_sync_core.database import Database


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


def own_cpu_seconds() -> float:
    """CPU used so far by this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """CPU used so far by process `pid`, its threads included (Linux), else NaN."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


async def postgres_cpu_seconds(database: Database) -> float:
    """CPU used so far by the server processes of `database` and the WAL writer (server on this machine),
    else NaN. A difference of two readings is what the work between them cost PostgreSQL, as long as no
    connection of the database closed in between."""
    rows = await database.fetch_all(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR backend_type = 'walwriter'")
    return sum(process_cpu_seconds(row["pid"]) for row in rows)
