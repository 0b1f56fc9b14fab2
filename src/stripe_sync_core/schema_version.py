"""Where the migration scripts are and which revision is the newest, read without Alembic.

Every command migrates before it works; importing Alembic and SQLAlchemy to learn that a database is
already current costs ~0.3 s, more than the command itself (`status`). `schema_is_current` answers
with one query, and only a database behind the scripts pays for Alembic (`migrate.run_migrations`).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path


def find_migrations_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_alembic", here.parents[1] / "alembic"):  # installed wheel, checkout
        if (candidate / "env.py").is_file():
            return candidate
    raise ImportError(f"stripe_sync_core: migration scripts not found next to {here} (a broken install?)")


MIGRATIONS_DIR = find_migrations_dir()

_REVISION = re.compile(r'^revision\s*(?::\s*str\s*)?=\s*["\']([^"\']+)["\']', re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


@cache
def head_revision() -> str | None:
    """The newest revision of the scripts, or None when they do not name exactly one (a branch, a
    script written in another form): then only Alembic can say, and the caller migrates."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def schema_is_current(database_url: str) -> bool:
    """True when the database's `stripe` schema is at the scripts' head (one query, no Alembic).
    Any doubt (no schema yet, an unreadable head, a failed connection) is False: the caller then
    runs the migrations, which report a failure properly."""
    head = head_revision()
    if head is None:
        return False
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=10, autocommit=True) as conn:
            row = conn.execute("SELECT CASE WHEN to_regclass('stripe._migrations') IS NULL THEN NULL "
                               "ELSE (SELECT max(version_num) FROM stripe._migrations) END").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] == head
