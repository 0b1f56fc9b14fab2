"""The console's plan says how long a full backfill takes at the key's Stripe limits, from the rows
it sees stored (no request to Stripe); before anything is stored it says nothing of a duration."""

from __future__ import annotations

from backfill_support import engine_config

from stripe_sync_core import StripeSync

from .conftest import SIZE, backfill_screen, until


async def test_plan_estimates_the_duration_from_the_rows_stored(make_app, clean_db, stripe_server):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await backfill_screen(pilot, ["customers", "payment_methods"])
        await pilot.press("p")
        await pilot.pause(0.3)
        assert screen.plan and screen.plan_estimate == ""  # nothing stored yet: no figure to give

        config = engine_config(clean_db, stripe_server.api_base, stripe_server.secret_key)
        async with StripeSync(config) as sync:
            stored = (await sync.process_until_done("customers"))["customers"].stored
        await pilot.press("p")
        await until(pilot, lambda: screen.plan_estimate)
        # one page of customers, then one list of payment methods per customer, at the test key's 25/s
        assert f"{1 + stored:,} requests" in screen.plan_estimate and "test key" in screen.plan_estimate
        assert screen.plan_estimate in str(screen.query_one("#plan-note").render())
