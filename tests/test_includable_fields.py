"""Fields Stripe sends only when asked (tiers, currency options, checkout line items' discounts and
taxes) are stored: backfill, single-object sync and webhook revalidation ask for them."""

from __future__ import annotations

import psycopg
import pytest
from backfill_support import engine, stored_rows

from stripe_sync_core.listing import plan_listings
from stripe_sync_core.registry import MAX_EXPAND_DEPTH, MAX_EXPANSIONS, REGISTRY, retrieve_expansions
from stripe_sync_emulator import StripeEmulator

TIERS = [
    {"flat_amount": None, "flat_amount_decimal": None, "unit_amount": 500, "unit_amount_decimal": "500", "up_to": 10},
    {"flat_amount": 100, "flat_amount_decimal": "100", "unit_amount": 400, "unit_amount_decimal": "400", "up_to": None},
]


@pytest.fixture(scope="module")
def emu():
    with StripeEmulator(seed=71, customers=20, start="2024-01-01", end="2025-01-01") as emulator:
        yield emulator


async def _catalog(sync) -> dict[str, dict]:
    """A tiered price with a currency option, and a checkout session with a discounted, taxed line."""
    api = sync.stripe
    product = await api.post("/v1/products", {"name": "Metered API"})
    tiered = await api.post("/v1/prices", {
        "currency": "usd", "product": product["id"], "billing_scheme": "tiered", "tiers_mode": "graduated",
        "recurring": {"interval": "month"},
        "tiers": [{"up_to": 10, "unit_amount": 500}, {"up_to": "inf", "unit_amount": 400, "flat_amount": 100}],
        "currency_options": {"eur": {"unit_amount": 450}}})
    flat = await api.post("/v1/prices", {"currency": "usd", "product": product["id"], "unit_amount": 1000})
    coupon = await api.post("/v1/coupons", {"percent_off": 10, "duration": "once"})
    amount_off = await api.post("/v1/coupons", {"amount_off": 500, "currency": "usd", "duration": "once",
                                                "currency_options": {"eur": {"amount_off": 450}}})
    rate = await api.post("/v1/tax_rates", {"display_name": "VAT", "percentage": 20, "inclusive": "false"})
    session = await api.post("/v1/checkout/sessions", {
        "mode": "payment", "success_url": "https://example.com/ok", "discounts": [{"coupon": coupon["id"]}],
        "line_items": [{"price": flat["id"], "quantity": 2, "tax_rates": [rate["id"]]}]})
    return {"tiered": tiered, "coupon": coupon, "amount_off": amount_off, "rate": rate, "session": session}


def _line_items_of(url: str, session_id: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT _raw_data FROM stripe.checkout_session_line_items WHERE checkout_session = %s", (session_id,))]


def _assert_discounted(items: list[dict], made: dict[str, dict]) -> None:
    [item] = items
    [discount] = item["discounts"]
    assert discount["amount"] == 200 and discount["discount"]["source"]["coupon"] == made["coupon"]["id"]
    [tax] = item["taxes"]
    assert (tax["amount"], tax["taxable_amount"], tax["rate"]["id"]) == (360, 1800, made["rate"]["id"])


async def test_backfill_stores_tiers_discounts_and_taxes(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        made = await _catalog(sync)
        await sync.process_until_done(["prices", "plans", "coupons", "checkout_sessions",
                                       "checkout_session_line_items"])
    price = stored_rows(clean_db, "prices")[made["tiered"]["id"]]
    assert price["tiers"] == TIERS
    assert price["currency_options"]["eur"]["unit_amount"] == 450 and "usd" in price["currency_options"]
    assert stored_rows(clean_db, "plans")[made["tiered"]["id"]]["tiers"] == TIERS
    others = [p for pid, p in stored_rows(clean_db, "prices").items() if pid != made["tiered"]["id"]]
    assert others and all("currency_options" in p and p.get("tiers") is None for p in others)
    _assert_discounted(_line_items_of(clean_db, made["session"]["id"]), made)
    coupons = stored_rows(clean_db, "coupons")
    assert coupons[made["amount_off"]["id"]]["currency_options"] == {"usd": {"amount_off": 500},
                                                                     "eur": {"amount_off": 450}}
    assert "currency_options" not in coupons[made["coupon"]["id"]]  # a percentage applies in every currency


async def test_single_object_sync_stores_them(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        made = await _catalog(sync)
        await sync.sync_single_entity(made["tiered"]["id"])
        await sync.sync_single_entity(made["session"]["id"])
    assert stored_rows(clean_db, "prices")[made["tiered"]["id"]]["tiers"] == TIERS
    _assert_discounted(_line_items_of(clean_db, made["session"]["id"]), made)


async def test_an_event_for_a_type_with_includable_fields_stores_the_fetched_object(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        made = await _catalog(sync)
        updated = await sync.stripe.post(f"/v1/prices/{made['tiered']['id']}", {"nickname": "Graduated"})
        assert "tiers" not in updated  # what the event carries too
        [event] = [e for e in emu.events() if e["type"] == "price.updated"
                   and e["data"]["object"]["id"] == made["tiered"]["id"]]
        outcome = await sync.process_event(event)
    assert outcome.outcome == "refetched"
    stored = stored_rows(clean_db, "prices")[made["tiered"]["id"]]
    assert stored["nickname"] == "Graduated" and stored["tiers"] == TIERS


def test_every_request_stays_within_stripes_expansion_limits():
    listings = plan_listings(REGISTRY)
    assert any("data.tiers" in listing.expand for listing in listings)
    assert any("data.line_items.data.discounts" in listing.expand for listing in listings)
    for paths in [listing.expand for listing in listings] + [retrieve_expansions(e) for e in REGISTRY.values()]:
        assert len(paths) <= MAX_EXPANSIONS
        assert all(len(p.split(".")) <= MAX_EXPAND_DEPTH for p in paths)
