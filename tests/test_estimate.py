"""The request budget against real Stripe: per-customer lists are cut where Stripe allows, and a plan
says how long a full backfill takes at the key's limits (100 req/s live, 25 test, 25 per endpoint)."""

from __future__ import annotations

import pytest
from backfill_support import engine

from stripe_sync_core.estimate import estimate_backfill, estimate_from_stripe, key_limits
from stripe_sync_emulator import StripeEmulator

ENTITLEMENTS = "GET /v1/entitlements/active_entitlements"
PAYMENT_METHODS = "GET /v1/customers/{id}/payment_methods"


def test_per_customer_lists_set_the_pace_of_a_large_live_account():
    rate, per_endpoint = key_limits(livemode=True)
    assert (rate, per_endpoint) == (100, 25)
    tables = ["customers", "payment_methods", "active_entitlements", "invoices"]
    estimate = estimate_backfill(tables, {"customers": 10_000, "invoices": 50_000}, requests_per_second=rate,
                                 endpoint_requests_per_second=per_endpoint)
    loads = {load.endpoint: load.requests for load in estimate.endpoints}
    assert loads == {"GET /v1/customers": 100, PAYMENT_METHODS: 10_000, ENTITLEMENTS: 10_000, "GET /v1/invoices": 500}
    assert estimate.requests == 20_600
    # 20,600 requests at 100/s take 206 s, but one endpoint's 10,000 at 25/s take 400 s
    assert estimate.seconds == 400.0 and estimate.bottleneck in (PAYMENT_METHODS, ENTITLEMENTS)

    without = estimate_backfill(tables, {"customers": 10_000, "invoices": 50_000}, requests_per_second=rate,
                                endpoint_requests_per_second=per_endpoint, children_absent=["active_entitlements"])
    assert without.requests == 10_600 and ENTITLEMENTS not in {load.endpoint for load in without.endpoints}

    test_key = estimate_backfill(["invoices"], {"invoices": 50_000}, requests_per_second=25,
                                 endpoint_requests_per_second=25)
    assert (test_key.seconds, test_key.bottleneck) == (20.0, "all endpoints")


@pytest.mark.parametrize("features", [0, None])
async def test_entitlements_are_asked_per_customer_only_when_the_account_has_features(clean_db, features):
    sizes = {"features": 0} if features == 0 else None
    emu = StripeEmulator(seed=5, customers=8, start="2025-01-01", end="2025-03-31", rate_limit="off",
                         sizes=sizes).start()
    try:
        async with engine(clean_db, emu) as sync:
            account = await sync.get_current_account()
            planned = await estimate_from_stripe(sync.stripe, sync.database, ["customers", "active_entitlements"],
                                                 livemode=False, floor=account.get("created"))
            emu.reset_stats()
            await sync.process_until_done(["customers", "active_entitlements"])
        asked = emu.stats()["by_route"].get(ENTITLEMENTS, {}).get("200", 0)
        customers = len(emu.objects("customers"))
        [count] = [c for c in planned.counts if c.table == "customers"]
        assert (count.objects, count.source) == (customers, "listed")  # one page held them all
        if features == 0:
            assert asked == 0 and planned.children_absent == ("active_entitlements",)
            assert planned.requests == 1  # one page of customers, nothing per customer
        else:
            assert asked == customers > 0 and planned.children_absent == ()
            assert planned.requests == 1 + customers
    finally:
        emu.close()
