"""Catch-up over a realistic event history: the emulator holds Stripe's 30 days of events for data
created up to today, and a listener that last heard of one of them applies everything after it."""

from __future__ import annotations

from webhook_support import engine_config, mismatches

from stripe_sync_core import StripeSync
from stripe_sync_emulator import StripeEmulator


async def test_catch_up_applies_the_history_after_the_last_event_heard(clean_db: str) -> None:
    with StripeEmulator(seed=9, customers=40) as emu:
        history = emu.events()  # oldest first
        assert len(history) > 30
        heard = history[len(history) // 2]
        later = [e for e in history if e["created"] >= heard["created"] and e["id"] != heard["id"]]
        async with StripeSync(engine_config(clean_db, emu)) as sync:
            await sync.process_event(heard)  # delivered while the listener ran
            listener = sync.listener(port=0)
            state = await listener.start()
            await listener.stop()
        catch_up = state.catch_up
        assert catch_up.state == "done" and not catch_up.backfill_recommended, catch_up.message
        assert catch_up.applied + catch_up.duplicates == len(later) + 1  # `created >= last`: the heard one again
        assert catch_up.duplicates == 1
        async with StripeSync(engine_config(clean_db, emu)) as sync:
            assert await mismatches(sync, emu, later) == []
