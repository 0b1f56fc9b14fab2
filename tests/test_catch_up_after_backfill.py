"""A listener started right after a backfill catches up from the backfill's start (issue 12): it said
"no events processed yet: run a backfill" although one had just run."""

from __future__ import annotations

from stripe_sync_core import StripeSync


async def test_catch_up_starts_from_the_backfills_start(engine: StripeSync) -> None:
    await engine.process_until_done("customers")
    listener = engine.listener(port=0)
    state = await listener.start()
    await listener.stop()
    catch_up = state.catch_up
    assert catch_up.state == "done", catch_up.message
    assert not catch_up.backfill_recommended
    assert "no events processed yet" not in catch_up.message
    assert "(the start of backfill run #1)" in catch_up.message


async def test_catch_up_without_events_or_backfill_says_so(engine: StripeSync) -> None:
    listener = engine.listener(port=0)
    state = await listener.start()
    await listener.stop()
    assert state.catch_up.state == "skipped" and state.catch_up.backfill_recommended
    assert state.catch_up.message.startswith("nothing to catch up from: no event logged and no backfill run yet")
