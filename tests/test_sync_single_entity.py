"""Single-entity sync: the type from the id prefix (every prefix of the registry), fetch, store."""

from __future__ import annotations

import pytest
from backfill_support import EMULATOR_TYPE, FaultProxy, engine, list_requests, stored_rows

from stripe_sync_core.registry import (
    REGISTRY,
    UnexpectedObject,
    UnknownObjectType,
    object_path,
    object_type_for_id,
    retrieve_expansions,
)
from stripe_sync_core.results import SingleSyncResult
from stripe_sync_core.stripe_api import ObjectNotFound, endpoint_of
from stripe_sync_emulator import StripeEmulator

PREFIXES = sorted({(prefix, table) for table, entry in REGISTRY.items() for prefix in entry.id_prefixes})


async def _session_of(sync, emu: StripeEmulator, line_item_id: str) -> dict:
    for session in emu.objects("checkout_sessions"):
        items = await sync.stripe.get(f"/v1/checkout/sessions/{session['id']}/line_items", {"limit": 100})
        if any(item["id"] == line_item_id for item in items["data"]):
            return session
    raise AssertionError(f"no session has {line_item_id}")


def _example(emu: StripeEmulator, prefix: str, table: str) -> dict | None:
    if table == "accounts":
        return {"id": emu.account_id}
    for obj in emu.objects(EMULATOR_TYPE.get(table, table)):
        if obj["id"].startswith(prefix) and object_type_for_id(obj["id"]).table == table:
            return obj
    return None


@pytest.fixture(scope="module")
def emu():
    with StripeEmulator(seed=70, customers=60, start="2024-01-01", end="2025-01-01") as emulator:
        yield emulator


@pytest.mark.parametrize(("prefix", "table"), PREFIXES, ids=[p for p, _ in PREFIXES])
async def test_every_prefix_is_fetched_from_its_endpoint_and_stored(clean_db, emu, prefix, table):
    entry = REGISTRY[table]
    example = _example(emu, prefix, table)
    async with engine(clean_db, emu) as sync:
        if example is None:  # the emulator makes none of these (legacy ids): Stripe's 404 is the answer
            missing = f"{prefix}Missing0000001"
            assert entry.retrieve_path is not None
            route = endpoint_of("get", entry.retrieve_path.format(id=missing))
            before = list_requests(emu, route)
            with pytest.raises(ObjectNotFound):
                await sync.sync_single_entity(missing)
            assert list_requests(emu, route) == before + 1
            return
        if entry.retrieve_path is None:  # line items: reached through their checkout session
            session = await _session_of(sync, emu, example["id"])
            with pytest.raises(ObjectNotFound, match="sync its checkout_sessions instead"):
                await sync.sync_single_entity(example["id"])
            await sync.sync_single_entity(session["id"])
            result = await sync.sync_single_entity(example["id"])
            assert result == SingleSyncResult(example["id"], table, "stored")
            assert stored_rows(clean_db, table)[example["id"]] == example
            return
        result = await sync.sync_single_entity(example["id"])
        expand = retrieve_expansions(entry)  # the whole object: with the fields Stripe sends only when asked
        fetched = await sync.stripe.get(entry.retrieve_path.format(id=example["id"]), {"expand": expand} if expand else None)
    assert result == SingleSyncResult(example["id"], table, "stored")
    stored = stored_rows(clean_db, table)[example["id"]]
    if table == "checkout_sessions":  # stored with its line items, which the session's children come from
        assert stored.pop("line_items")["object"] == "list"
    assert stored == fetched


async def test_a_deleted_object_is_recorded_as_deleted(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        customer = await sync.stripe.post("/v1/customers", {"email": "short-lived@example.com"})
        assert (await sync.sync_single_entity(customer["id"])).outcome == "stored"
        await sync.stripe.delete(f"/v1/customers/{customer['id']}")
        assert (await sync.sync_single_entity(customer["id"])).outcome == "deleted"
    row = stored_rows(clean_db, "customers")[customer["id"]]
    assert row["deleted"] is True and row["email"] == "short-lived@example.com"


async def test_a_long_subscription_is_stored_with_every_item(clean_db, emu):
    long = next((s for s in emu.objects("subscriptions") if s["items"]["has_more"]), None)
    assert long is not None, "the emulator's data set should hold a subscription with more than 10 items"
    async with engine(clean_db, emu) as sync:
        await sync.sync_single_entity(long["id"])
    items = [row for row in stored_rows(clean_db, "subscription_items").values()
             if row["subscription"] == long["id"]]
    assert len(items) > 10


async def test_an_unknown_prefix_is_a_clear_error(clean_db, emu):
    async with engine(clean_db, emu) as sync:
        with pytest.raises(UnknownObjectType, match="cannot tell the object type"):
            await sync.sync_single_entity("zzz_123")


async def test_an_id_that_is_not_an_id_is_refused_and_ids_stay_one_path_segment(clean_db, emu):
    hostile = "cus_x/../../charges/" + emu.objects("charges")[0]["id"]
    async with engine(clean_db, emu) as sync:
        for given in (hostile, "cus_a b", "cus_x%2F..", "cus_\u0000x", ""):
            with pytest.raises(UnknownObjectType, match="not a Stripe object id"):
                await sync.sync_single_entity(given)
    assert stored_rows(clean_db, "customers") == {} and stored_rows(clean_db, "charges") == {}
    assert object_path("/v1/customers/{id}", id=hostile) == "/v1/customers/cus_x%2F..%2F..%2Fcharges%2F" + hostile[20:]
    assert object_path("/v1/customers/{id}/tax_ids?limit=100", id="cus_?a=b") == "/v1/customers/cus_%3Fa%3Db/tax_ids?limit=100"


async def test_an_object_of_another_type_than_asked_is_not_stored(clean_db, emu):
    """Stripe (here a proxy in front of the emulator) answers a customer's URL with a charge."""
    customer, charge = emu.objects("customers")[0]["id"], emu.objects("charges")[0]["id"]
    async with FaultProxy(emu.api_base, rewrite=lambda path: path.replace(f"/v1/customers/{customer}",
                                                                          f"/v1/charges/{charge}")) as proxy:
        async with engine(clean_db, emu, api_base=proxy.url) as sync:
            with pytest.raises(UnexpectedObject, match=f"asked Stripe for customer '{customer}', got 'charge'"):
                await sync.sync_single_entity(customer)
    assert stored_rows(clean_db, "customers") == {} and stored_rows(clean_db, "charges") == {}
