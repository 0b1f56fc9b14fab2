"""Screen 1 shows the last `verify` of each type, once one ran: clean, or how many rows differ."""

from __future__ import annotations

import json

import psycopg
from textual.widgets import Static

from .conftest import SIZE, loaded
from .seed import at, seed_account, seed_runs


def _verified(url: str, account_id: str, object_name: str, *, changed: int = 0, repaired: int = 0) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stripe._verify_results (account_id, object, checked_at, checked, missing, deleted, "
            "changed, stale, repaired, repair, differences) VALUES (%s, %s, %s, 12, 0, 0, %s, 0, %s, %s, %s)",
            (account_id, object_name, at(5), changed, repaired, repaired > 0, json.dumps([])))


async def test_screen_1_shows_the_last_verify_per_type_only_once_one_ran(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        line = app.screen.query_one("#verify-line", Static)
        assert not line.display  # no verify yet: the screen is as it was
        _verified(clean_db, stripe_server.account_id, "customers")
        _verified(clean_db, stripe_server.account_id, "charges", changed=2)
        loads = app.screen.loads
        await pilot.press("r")
        await loaded(pilot, loads + 1)
        text = str(line.render())
        assert line.display and "Last verify" in text
        assert "charges 2 changed" in text and "customers clean" in text and "Last verify 5m00s ago: charges 2 changed · customers clean" == text
