"""Interactive calls never wait behind a backfill's requests: the header's Stripe health says what Stripe
does, not what our own request budget does, and a webhook is created at once while a backfill runs."""

from __future__ import annotations

from backfill_support import RecordingProxy
from textual.widgets import Input

from stripe_sync_tui.screens.backfill import BackfillScreen
from stripe_sync_tui.screens.webhooks import WebhooksScreen

from .conftest import SIZE, loaded, until

PROBE = "GET /v1/account"
WEBHOOKS = "/v1/webhook_endpoints"


async def _start_a_backfill_at_one_request_a_second(pilot, proxy: RecordingProxy) -> BackfillScreen:
    app = pilot.app
    await loaded(pilot)
    await pilot.press("3")
    screen = app.screen
    assert isinstance(screen, BackfillScreen)
    screen.query_one("#budget", Input).value = "1"
    await pilot.press("s")
    await until(pilot, lambda: screen.run_id is not None)
    await until(pilot, lambda: sum(seen.startswith("GET /v1/") and seen != PROBE
                                   for seen in proxy.seen) >= 2)  # the chunks are at work
    return screen


async def test_the_header_stays_stripe_ok_while_a_budget_limited_backfill_runs(make_app, stripe_server):
    """The defect: a backfill held to 1 request/s kept eight calls waiting for the budget, the health probe
    queued behind them past its 5 s timeout, and the header said "Stripe ● down" while Stripe was fine.
    The probe now goes in the interactive lane and only Stripe's own answer is timed."""
    async with RecordingProxy(stripe_server.api_base) as proxy:
        app = make_app(api_base=proxy.url, stripe_health_interval=0.0)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _start_a_backfill_at_one_request_a_second(pilot, proxy)
            probes = proxy.seen.count(PROBE)
            for _ in range(3):
                await app.health_check().wait()
                await pilot.pause()
                assert app.connection.stripe_ok is True
                assert "Stripe ● ok" in str(app.screen.query_one("ConsoleHeader").render())
            assert proxy.seen.count(PROBE) == probes + 3  # each check asked Stripe
            assert screen.running  # ... while the backfill was still going at its 1 request/s
            await pilot.press("c")
            await until(pilot, lambda: not screen.running)


async def test_a_webhook_is_created_at_once_while_a_budget_limited_backfill_runs(make_app, stripe_server):
    """The defect: creating a webhook hung ~25 s behind a budget-limited backfill's queued calls and went
    through only once the backfill was cancelled. Counted, not timed: how many of the backfill's requests
    reach Stripe between pressing enter and the webhook's creation (eight chunk workers are waiting)."""
    async with RecordingProxy(stripe_server.api_base) as proxy:
        app = make_app(api_base=proxy.url)
        async with app.run_test(size=SIZE) as pilot:
            backfill = await _start_a_backfill_at_one_request_a_second(pilot, proxy)
            await pilot.press("2")
            await loaded(pilot)
            screen = app.screen
            assert isinstance(screen, WebhooksScreen)
            await pilot.press("n", *"https://hooks.console.test/stripe")
            asked = len(proxy.seen)
            await pilot.press("enter")
            await until(pilot, lambda: f"POST {WEBHOOKS}" in proxy.seen[asked:])
            created = proxy.seen.index(f"POST {WEBHOOKS}", asked)
            await until(pilot, lambda: any(h.url == "https://hooks.console.test/stripe"
                                           for h in (screen.view.managed if screen.view else [])))
            assert backfill.running
            ahead = [seen for seen in proxy.seen[asked:created] if WEBHOOKS not in seen and seen != PROBE]
            assert len(ahead) <= 2, proxy.seen[asked:created]
            await pilot.press("3", "c")
            await until(pilot, lambda: not backfill.running)
