"""An engine pinned to an older API version (`stripe_api_version`) gets and stores objects at that
version; a version the emulator does not model is refused, never answered at another one."""

from __future__ import annotations

import pytest
from backfill_support import engine, stored_rows

from stripe_sync_core.stripe_api import StripeApiError
from stripe_sync_emulator import StripeEmulator

PRE_BASIL = "2025-02-24.acacia"


@pytest.fixture(scope="module")
def emu():
    with StripeEmulator(seed=72, customers=25, start="2024-01-01", end="2025-01-01") as emulator:
        yield emulator


async def test_a_pinned_engine_stores_objects_at_its_version(clean_db, emu):
    async with engine(clean_db, emu, stripe_api_version=PRE_BASIL) as sync:
        await sync.process_until_done(["subscriptions", "invoices"])
        one = emu.objects("subscriptions")[0]["id"]
        await sync.sync_single_entity(one)
    invoices = stored_rows(clean_db, "invoices")
    assert invoices and all("total_tax_amounts" in i and "parent" not in i for i in invoices.values())
    by_line_type = {line["type"] for i in invoices.values() for line in i["lines"]["data"]}
    assert by_line_type <= {"subscription", "invoiceitem"} and by_line_type
    subscriptions = stored_rows(clean_db, "subscriptions")
    assert all("current_period_end" in s for s in subscriptions.values())
    assert all("current_period_end" not in item for s in subscriptions.values() for item in s["items"]["data"])


async def test_an_unmodelled_version_is_refused(clean_db, emu):
    async with engine(clean_db, emu, stripe_api_version="2022-11-15", max_retries=0) as sync:
        with pytest.raises(StripeApiError, match="Invalid Stripe API version: 2022-11-15") as err:
            await sync.sync_single_entity(emu.objects("customers")[0]["id"])
    assert err.value.kind == "invalid_input"
