"""The console on a Connect platform: screen 1 shows one account's runs (the account picker, `a`), and
screen 2 marks the managed Connect endpoint."""

from __future__ import annotations

import psycopg
from textual.widgets import Static

from stripe_sync_tui.screens.account_picker import AccountPicker
from stripe_sync_tui.screens.runs import RunsScreen
from stripe_sync_tui.widgets.table import FilterableTable

from .conftest import SIZE, loaded, start_listener, until
from .seed import seed_account, seed_managed_webhook, seed_runs

CONNECTED = "acct_1ConnectedShop01"


def _history_runs(app) -> list[str]:
    table = app.screen.query_one("#history", FilterableTable)
    return list(table.shown_keys)


async def test_screen_one_shows_one_connected_accounts_runs(make_app, clean_db, stripe_server):
    own = stripe_server.account_id
    seed_account(clean_db, own)
    seed_account(clean_db, CONNECTED, name="Connected Shop", email="shop@example.com")
    seed_runs(clean_db, own, open_run=False)
    connected_run = seed_runs(clean_db, CONNECTED)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        everyone = _history_runs(app)
        assert str(connected_run) in everyone and len(everyone) == 5
        await until(pilot, lambda: screen.accounts == 2)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AccountPicker))
        picker = app.screen.query_one(FilterableTable)
        # Every account, the key's own first (the table fills on the picker's first refresh).
        await until(pilot, lambda: list(picker.shown_keys) == ["*", own, CONNECTED])
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and screen.account_id == CONNECTED)
        await until(pilot, lambda: len(_history_runs(app)) == 3)
        title = str(screen.query_one("#run-title", Static).render())
        assert CONNECTED in title and f"Run #{connected_run}" in title
        with psycopg.connect(clean_db) as conn:
            ids = {str(r[0]) for r in conn.execute("SELECT id FROM stripe._sync_runs WHERE account_id = %s",
                                                   (CONNECTED,))}
        assert set(_history_runs(app)) == ids
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, AccountPicker))
        await pilot.press("enter")  # every account again
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and len(_history_runs(app)) == 5)


async def test_one_account_offers_no_picker(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    seed_runs(clean_db, stripe_server.account_id)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert any("only one account has sync runs" in text for text in app.notified)  # type: ignore[attr-defined]


async def test_screen_two_marks_the_connect_endpoint(make_app, clean_db, stripe_server):
    seed_account(clean_db, stripe_server.account_id)
    seed_managed_webhook(clean_db, stripe_server.account_id, webhook_id="we_1ConnectEndpoint")
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute("UPDATE stripe._managed_webhooks SET connect = true WHERE id = 'we_1ConnectEndpoint'")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        await loaded(pilot)
        table = app.screen.query_one(FilterableTable)
        await until(pilot, lambda: "we_1ConnectEndpoint" in table.shown_keys)
        assert str(table.table.get_cell("we_1ConnectEndpoint", "owner")) == "Connect"
        assert "(1 Connect)" in str(app.screen.query_one("#webhooks-title", Static).render())


async def test_the_wizard_warns_that_the_listeners_connect_endpoint_goes_too(make_app, clean_db, stripe_server):
    """On a platform the listener feeds from two managed webhooks (its own account's and the Connect
    endpoint, one URL): deleting the platform's data removes both, and the dry run says so for each."""
    from .test_deletion_flow import open_wizard, text_of

    own = stripe_server.account_id
    seed_account(clean_db, own)
    seed_account(clean_db, CONNECTED, name="Connected Shop", email="shop@example.com")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        listener = await start_listener(pilot)
        screen = await open_wizard(pilot)
        accounts = screen.query_one("#accounts", FilterableTable)
        await until(pilot, lambda: own in accounts.shown_keys)
        await pilot.press(*["down"] * list(accounts.shown_keys).index(own), "enter")
        await until(pilot, lambda: screen.preview is not None)
        assert screen.account_id == own
        hooks = screen.preview.managed_webhooks
        assert len(hooks) == 2 and {hook.url for hook in hooks} == {listener.state.webhook_url}
        extra = text_of(screen, "#preview-extra")
        for hook in hooks:
            assert f"{hook.id} feeds the running listener (screen 5)" in extra
