"""Applying webhook events: routing, signatures, ordering, deletions, duplicates and the options.

Real PostgreSQL, and the emulator as the Stripe API (objects fetched on ties, revalidation and related
entities come from it over HTTP).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from webhook_support import (
    WEBHOOK_SECRET,
    count,
    emu_api_post,
    emulator_entitlements,
    engine_config,
    event,
    mismatches,
    signed,
    stored_entitlements,
    truth,
    without,
)

from stripe_sync_core import StripeSync
from stripe_sync_core.database import UpsertRow
from stripe_sync_core.progress import RecordingSink
from stripe_sync_core.registry import ENTITLEMENT_SUMMARY_EVENT, REGISTRY, object_path, retrieve_expansions
from stripe_sync_core.webhooks import InvalidSignature, MalformedEvent
from stripe_sync_emulator import StripeEmulator

FIXTURES = json.loads((Path(__file__).parent / "data" / "stripe_fixtures.json").read_text())["resources"]


def _routed_fixture_types() -> list[tuple[str, str]]:
    """(table, event type) for each registry type with events and a sample object: `*.updated` if any."""
    found = []
    for entry in REGISTRY.values():
        if not entry.event_types or entry.fixture_key not in FIXTURES:
            continue
        kinds = [t for t in entry.event_types if t not in entry.deleted_event_types]
        updated = [t for t in kinds if t.endswith(".updated")]
        found.append((entry.table, (updated or kinds)[0]))
    return found


# -- routing -------------------------------------------------------------------------------------------


async def test_every_supported_sample_lands_in_its_table(engine: StripeSync) -> None:
    """Each sample object of a type with events, sent as a signed `*.updated` (or its nearest) event."""
    routed = _routed_fixture_types()
    assert len(routed) >= 25
    problems = [problem for table, event_type in routed
                if (problem := await _lands(engine, table, event_type)) is not None]
    assert problems == []


async def _lands(engine: StripeSync, table: str, event_type: str) -> str | None:
    entry = REGISTRY[table]
    obj = json.loads(json.dumps(FIXTURES[entry.fixture_key]))
    created = int(time.time())
    account = await engine.own_account_id()
    if entry.includable:
        # An event never carries the fields Stripe sends only when asked: the engine stores the object
        # fetched with them, so the sample must exist; an emulator object of the type stands in for it.
        assert entry.list_path is not None and entry.retrieve_path is not None
        obj["id"] = (await engine.stripe.get(entry.list_path, {"limit": 1}))["data"][0]["id"]
        result = await engine.process_webhook(*signed(event(event_type, obj, created)))
        fetched = await engine.stripe.get(object_path(entry.retrieve_path, id=obj["id"]),
                                          {"expand": retrieve_expansions(entry)})
        row = await engine.database.fetch_one(f"SELECT _raw_data FROM stripe.{table} WHERE id = %s", (obj["id"],))
        if result.outcome != "refetched" or row is None or row["_raw_data"] != fetched:
            return f"{event_type}: {result}"
        return None
    if event_type == ENTITLEMENT_SUMMARY_EVENT:
        obj = {"object": "entitlements.active_entitlement_summary", "customer": "cus_QXg1o8vcGmoR32",
               "livemode": False, "entitlements": {"object": "list", "data": [obj], "has_more": False, "url": "/x"}}
    if entry.deletion == "remove":
        # A row removed by an earlier deletion leaves no trace, so the engine asks Stripe about objects it
        # has never seen; these samples do not exist in the emulator: store an older state first.
        first = obj["entitlements"]["data"][0] if event_type == ENTITLEMENT_SUMMARY_EVENT else obj
        parent = obj.get("customer") if event_type == ENTITLEMENT_SUMMARY_EVENT else None
        await engine.database.upsert(entry, [UpsertRow({**first, "stale": True}, account,
                                                       datetime.fromtimestamp(created - 60, UTC), parent)])
    result = await engine.process_webhook(*signed(event(event_type, obj, created)))
    stored = FIXTURES[entry.fixture_key]
    row = await engine.database.fetch_one(f"SELECT _raw_data FROM stripe.{table} WHERE id = %s", (stored["id"],))
    logged = await engine.database.fetch_one("SELECT type, outcome FROM stripe._events WHERE id = %s",
                                             (result.event_id,))
    if result.outcome != "stored" or logged != {"type": event_type, "outcome": "stored"}:
        return f"{event_type}: {result}"
    if row is None or without(row["_raw_data"], "line_items") != without(stored, "line_items"):
        return f"{event_type}: the row in {table} is not the payload"
    return None


async def test_unknown_event_types_are_acknowledged_and_logged(engine: StripeSync) -> None:
    result = await engine.process_webhook(*signed(event("issuing_card.created", {"id": "ic_1", "object": "issuing.card"},
                                                        int(time.time()))))
    assert result.outcome == "ignored"
    assert await count(engine, "SELECT 1 FROM stripe._events WHERE outcome = 'ignored'") == 1


async def test_an_upcoming_invoice_without_id_is_skipped(engine: StripeSync) -> None:
    obj = without(FIXTURES["invoice"], "id")
    result = await engine.process_webhook(*signed(event("invoice.upcoming", obj, int(time.time()), "evt_upcoming")))
    assert result.outcome == "ignored" and "no id" in result.detail
    assert await count(engine, "SELECT 1 FROM stripe.invoices") == 0


async def test_a_duplicate_delivery_is_recognised(engine: StripeSync) -> None:
    delivery = signed(event("customer.updated", FIXTURES["customer"], int(time.time())))
    first = await engine.process_webhook(*delivery)
    again = await engine.process_webhook(*delivery)
    assert (first.outcome, again.outcome) == ("stored", "duplicate")
    assert await count(engine, "SELECT 1 FROM stripe._events") == 1


async def test_nul_characters_are_dropped_and_escaped_backslashes_kept(engine: StripeSync) -> None:
    customer = {**FIXTURES["customer"], "name": "a\x00b", "description": "literally \\u0000 here\\"}
    result = await engine.process_webhook(*signed(event("customer.updated", customer, int(time.time()))))
    assert result.outcome == "stored"
    row = await engine.database.fetch_one("SELECT name, description FROM stripe.customers")
    assert row == {"name": "ab", "description": "literally \\u0000 here\\"}


def _signed_text(text: str) -> tuple[bytes, str]:
    import hashlib
    import hmac

    body, now = text.encode(), int(time.time())
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={now},v1={digest}"


def _hostile_deliveries(now: int) -> dict[str, tuple[bytes, str]]:
    """Signed events PostgreSQL cannot take as they are: each would fail the same way on every retry."""
    customer = FIXTURES["customer"]

    def delivery(event_name: str, **fields: object) -> tuple[bytes, str]:
        return _signed_text(json.dumps(event("customer.updated", {**customer, **fields}, now, f"evt_{event_name}")))

    deep = json.dumps(event("customer.updated", {**customer, "id": "cus_deep"}, now, "evt_deep"))
    return {
        "nul_in_id": delivery("nulid", id="cus_a\x00b"),
        "lone_surrogate": delivery("surrogate", id="cus_sur", name="x\ud800y"),
        "nan": delivery("nan", id="cus_nan", balance=float("nan")),
        "infinity": delivery("inf", id="cus_inf", balance=float("-inf")),
        "beyond_bigint": delivery("big", id="cus_big", balance=10**30),
        "nested_5000_deep": _signed_text(deep.replace('"metadata": {}', '"metadata": {"a": ' + "[" * 5000
                                                      + "]" * 5000 + "}")),
    }


async def test_a_signed_event_that_cannot_be_stored_is_acknowledged_and_kept_as_a_dead_letter(
        engine: StripeSync) -> None:
    """Never an error that every retry repeats (Stripe would retry for three days, then disable the
    endpoint): the event is acknowledged, kept with its body byte for byte and the reason, and a
    redelivery is the same record; events around it are stored as usual."""
    now = int(time.time())
    hostile = _hostile_deliveries(now)
    assert '"metadata": {}' in json.dumps(FIXTURES["customer"])  # the deep case nests inside it
    for second, (name, delivery) in enumerate(hostile.items(), start=1):
        result = await engine.process_webhook(*delivery)
        assert result.outcome == "dead_letter", name
        good = event("customer.updated", FIXTURES["customer"], now + second, f"evt_ok_{name}")
        assert (await engine.process_webhook(*signed(good))).outcome == "stored"
    again = await engine.process_webhook(*hostile["nan"])
    assert again.outcome == "dead_letter"
    rows = await engine.database.fetch_all(
        "SELECT event_id, deliveries, reason, body FROM stripe._dead_letters ORDER BY id")
    assert [bytes(r["body"]) for r in rows] == [body for body, _ in hostile.values()]
    assert [r["event_id"] for r in rows] == ["evt_nulid", "evt_surrogate", "evt_nan", "evt_inf", "evt_big",
                                             "evt_deep"]
    assert [r["deliveries"] for r in rows] == [1, 1, 2, 1, 1, 1]
    assert "NaN" in rows[2]["reason"] and "bigint out of range" in rows[4]["reason"]
    assert "nested too deeply" in rows[5]["reason"]
    assert await count(engine, "SELECT 1 FROM stripe.customers") == 1  # the good events' customer
    from stripe_sync_core import status

    total, newest = await status.dead_letters(engine.database)
    assert total == 6 and newest[0]["event_id"] == "evt_deep" and newest[0]["body_bytes"] > 10_000


# -- refused deliveries ----------------------------------------------------------------------------------


async def _nothing_written(sync: StripeSync) -> None:
    assert await count(sync, "SELECT 1 FROM stripe._events") == 0
    assert await count(sync, "SELECT 1 FROM stripe.customers") == 0


async def test_a_bad_signature_is_refused(engine: StripeSync) -> None:
    payload, _ = signed(event("customer.updated", FIXTURES["customer"], int(time.time())))
    _, other = signed(event("customer.updated", FIXTURES["customer"], int(time.time())), "whsec_notOurSecret000")
    for signature in (other, "", "t=123,v1=abc", "garbage"):
        with pytest.raises(InvalidSignature):
            await engine.process_webhook(payload, signature)
    await _nothing_written(engine)


async def test_a_replayed_signature_older_than_300_seconds_is_refused(engine: StripeSync) -> None:
    payload, signature = signed(event("customer.updated", FIXTURES["customer"], int(time.time())),
                                timestamp=int(time.time()) - 301)
    with pytest.raises(InvalidSignature, match="tolerance"):
        await engine.process_webhook(payload, signature)
    await _nothing_written(engine)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"id": "evt_1"}', b"\xff\xfe",
                                  b'{"id": "evt_1", "type": "customer.updated", "created": 1, "data": {}}'])
async def test_a_malformed_body_is_refused(engine: StripeSync, body: bytes) -> None:
    import stripe

    text = body.decode("latin-1")
    signature = stripe.WebhookSignature.generate_signature_header(text, WEBHOOK_SECRET)
    with pytest.raises((MalformedEvent, InvalidSignature)):
        await engine.process_webhook(body, signature)
    await _nothing_written(engine)


# -- ordering ------------------------------------------------------------------------------------------


async def test_same_second_events_in_any_order_keep_the_latest_state(engine: StripeSync,
                                                                     emulator: StripeEmulator) -> None:
    emulator.clock.freeze()
    customer = emulator.create("customers", {"name": "first"})
    for name in ("second", "third", "fourth"):
        emulator.action("customers", customer["id"], "update", {"name": name})
    events = [e for e in emulator.events() if e["data"]["object"].get("id") == customer["id"]]
    assert len({e["created"] for e in events}) == 1  # one second: `created` cannot order them
    for ev in reversed(events):  # the latest first, the creation last
        await engine.process_event(ev)
    row = await engine.database.fetch_one("SELECT name, _raw_data FROM stripe.customers WHERE id = %s",
                                          (customer["id"],))
    assert row is not None and row["name"] == "fourth"
    assert row["_raw_data"] == truth(emulator, "customers", customer["id"])
    outcomes = [r["outcome"] for r in await engine.database.fetch_all(
        "SELECT outcome FROM stripe._events ORDER BY received_at")]
    assert outcomes == ["stored", "refetched", "refetched", "refetched"]


async def test_an_older_event_never_replaces_a_newer_row(engine: StripeSync) -> None:
    now = int(time.time())
    newer = {**FIXTURES["customer"], "name": "newer"}
    older = {**FIXTURES["customer"], "name": "older"}
    assert (await engine.process_event(event("customer.updated", newer, now))).outcome == "stored"
    assert (await engine.process_event(event("customer.updated", older, now - 5))).outcome == "stale"
    row = await engine.database.fetch_one("SELECT name FROM stripe.customers")
    assert row == {"name": "newer"}


async def test_a_deletion_is_flagged_and_survives_a_late_update(engine: StripeSync) -> None:
    now = int(time.time())
    customer = {**FIXTURES["customer"], "name": "kept"}
    await engine.process_event(event("customer.updated", customer, now - 10))
    deleted = await engine.process_event(
        event("customer.deleted", {"id": customer["id"], "object": "customer", "deleted": True}, now))
    late = await engine.process_event(event("customer.updated", {**customer, "name": "late"}, now - 5))
    assert (deleted.outcome, late.outcome) == ("deleted", "stale")
    row = await engine.database.fetch_one("SELECT name, deleted FROM stripe.customers")
    assert row == {"name": "kept", "deleted": True}  # the other fields are kept, unlike the TS engine


async def test_a_removed_tax_id_is_not_resurrected_by_a_late_creation(engine: StripeSync,
                                                                      emulator: StripeEmulator) -> None:
    customer = emulator.create("customers", {"name": "taxed"})
    tax_id = emu_api_post(emulator, f"/v1/customers/{customer['id']}/tax_ids", {"type": "eu_vat", "value": "DE1"})
    emulator.clock.advance(2)
    from webhook_support import emu_client

    emu_client(emulator).raw_request("delete", f"/v1/customers/{customer['id']}/tax_ids/{tax_id['id']}")
    events = {e["type"]: e for e in emulator.events() if e["type"].startswith("customer.tax_id")}
    assert (await engine.process_event(events["customer.tax_id.deleted"])).outcome == "deleted"
    late = await engine.process_event(events["customer.tax_id.created"])
    assert late.outcome == "deleted"  # asked Stripe: it is gone
    assert await count(engine, "SELECT 1 FROM stripe.tax_ids") == 0


async def test_subscription_items_removed_from_a_subscription_are_marked_deleted(engine: StripeSync) -> None:
    now = int(time.time())
    subscription = json.loads(json.dumps(FIXTURES["subscription"]))
    item = subscription["items"]["data"][0]
    extra = {**item, "id": "si_removedLater"}
    subscription["items"] = {**subscription["items"], "data": [item, extra], "has_more": False}
    await engine.process_event(event("customer.subscription.updated", subscription, now - 1))
    subscription["items"] = {**subscription["items"], "data": [item]}
    await engine.process_event(event("customer.subscription.updated", subscription, now))
    rows = await engine.database.fetch_all("SELECT id, deleted FROM stripe.subscription_items ORDER BY id")
    assert {r["id"]: r["deleted"] for r in rows} == {item["id"]: False, "si_removedLater": True}


async def test_items_gone_from_a_stored_subscription_are_marked_deleted_by_the_object_store(
        engine: StripeSync) -> None:
    """The same through the path of backfills and single-object syncs (`ObjectStore.store`), where one page
    of parents retires the children missing from their complete lists and leaves other parents' alone."""
    template = json.loads(json.dumps(FIXTURES["subscription"]))
    item = template["items"]["data"][0]

    def with_items(subscription_id: str, item_ids: list[str]) -> dict:
        items = [{**item, "id": item_id, "subscription": subscription_id} for item_id in item_ids]
        return {**template, "id": subscription_id, "items": {**template["items"], "data": items, "has_more": False}}

    store, account, observed = engine.context.store, "acct_objectStore", datetime.now(UTC)
    await store.store(REGISTRY["subscriptions"], [with_items("sub_changes", ["si_stays", "si_goes"]),
                                                  with_items("sub_elsewhere", ["si_other"])], account, observed)
    await store.store(REGISTRY["subscriptions"], [with_items("sub_changes", ["si_stays"])], account,
                      observed + timedelta(seconds=1))
    rows = await engine.database.fetch_all("SELECT id, deleted FROM stripe.subscription_items")
    assert {r["id"]: r["deleted"] for r in rows} == {"si_stays": False, "si_goes": True, "si_other": False}


async def test_a_stale_parents_children_are_not_written(engine: StripeSync) -> None:
    now = int(time.time())
    subscription = json.loads(json.dumps(FIXTURES["subscription"]))
    item = subscription["items"]["data"][0]
    subscription["items"] = {**subscription["items"], "data": [item], "has_more": False}
    await engine.process_event(event("customer.subscription.updated", subscription, now))
    older = {**subscription, "items": {**subscription["items"], "data": [{**item, "quantity": 99},
                                                                         {**item, "id": "si_onlyInTheOldState"}]}}
    outcome = await engine.process_event(event("customer.subscription.updated", older, now - 5))
    assert outcome.outcome == "stale"
    rows = await engine.database.fetch_all("SELECT id, quantity, deleted FROM stripe.subscription_items")
    assert [(r["id"], r["quantity"], r["deleted"]) for r in rows] == [(item["id"], item["quantity"], False)]


async def test_concurrent_parents_store_all_their_children(engine: StripeSync) -> None:
    now = int(time.time())
    template = json.loads(json.dumps(FIXTURES["subscription"]))
    item = template["items"]["data"][0]
    events = []
    for i in range(30):
        items = [{**item, "id": f"si_batch{i}_{k}", "subscription": f"sub_batch{i}"} for k in range(2)]
        subscription = {**template, "id": f"sub_batch{i}",
                        "items": {**template["items"], "data": items, "has_more": False}}
        events.append(event("customer.subscription.updated", subscription, now))
    outcomes = await asyncio.gather(*(engine.process_event(e) for e in events))
    assert {o.outcome for o in outcomes} == {"stored"}
    rows = await engine.database.fetch_all(
        "SELECT id, subscription FROM stripe.subscription_items WHERE NOT deleted ORDER BY id")
    assert {(r["id"], r["subscription"]) for r in rows} == {
        (f"si_batch{i}_{k}", f"sub_batch{i}") for i in range(30) for k in range(2)}


async def test_checkout_line_items_no_longer_in_the_session_are_removed(engine: StripeSync,
                                                                        emulator: StripeEmulator) -> None:
    now = int(time.time())
    session = emulator.objects("checkout_sessions")[0]
    await engine.process_event(event("checkout.session.completed", session, now - 1))
    rows = await engine.database.fetch_all("SELECT id, _raw_data FROM stripe.checkout_session_line_items ORDER BY id")
    assert len(rows) >= 2
    kept = rows[0]["_raw_data"]
    listed = {"object": "list", "data": [kept], "has_more": False, "url": "/v1/checkout/sessions/x/line_items"}
    await engine.process_event(event("checkout.session.completed", {**session, "line_items": listed}, now))
    left = await engine.database.fetch_all("SELECT id FROM stripe.checkout_session_line_items")
    assert [r["id"] for r in left] == [kept["id"]]


async def test_a_child_and_its_parent_in_one_batch_both_land(engine: StripeSync) -> None:
    """A refund's own event and its charge (embedding it) written together touch one row twice: the batch
    falls back to one event at a time, and both are stored."""
    now = int(time.time())
    refund = {**FIXTURES["refund"], "status": "succeeded"}
    charge = json.loads(json.dumps(FIXTURES["charge"]))
    charge["refunds"] = {"object": "list", "data": [{**refund, "status": "pending"}], "has_more": False}
    outcomes = await asyncio.gather(engine.process_event(event("refund.updated", refund, now)),
                                    engine.process_event(event("charge.refunded", charge, now - 1)))
    assert [o.outcome for o in outcomes] == ["stored", "stored"]
    row = await engine.database.fetch_one("SELECT status FROM stripe.refunds WHERE id = %s", (refund["id"],))
    assert row == {"status": "succeeded"}
    assert await engine.database.fetch_one("SELECT id FROM stripe.charges WHERE id = %s", (charge["id"],))


async def test_a_batch_of_many_kinds_lands_whole_through_a_few_statements_of_fixed_shape(
        engine: StripeSync) -> None:
    """Events of a dozen kinds written together go through one statement per bundle of eight kinds,
    whatever their order (so that each statement stays prepared), in one transaction: a poisonous event
    among them rolls the batch back, and the others are then stored one at a time. An event alone is
    written by its kind's own statement. (The writer is driven directly, so that each wave is one batch.)"""
    from stripe_sync_core.event_writer import BUNDLE_SIZE, EventWriter, PendingWrite

    kinds = [(table, event_type) for table, event_type in _routed_fixture_types()
             if not REGISTRY[table].includable and REGISTRY[table].deletion != "remove"
             and event_type != ENTITLEMENT_SUMMARY_EVENT and not REGISTRY[table].nested_lists][:12]
    assert len(kinds) == 12
    account = await engine.own_account_id()
    await engine.database.ensure_accounts([account])
    writer = EventWriter(engine.database)
    writer.remember_accounts({account})
    now = datetime.fromtimestamp(int(time.time()), UTC)

    def pending(tag: str, table: str, event_type: str, **fields: object) -> PendingWrite:
        obj = {**FIXTURES[REGISTRY[table].fixture_key], "id": f"x_{tag}_{table}", **fields}
        document = json.dumps(event(event_type, obj, int(now.timestamp()), f"evt_{tag}_{table}"))
        return PendingWrite(f"evt_{tag}_{table}", event_type, account, REGISTRY[table], obj["id"], now,
                            document, obj)

    bundles = -(-len(kinds) // BUNDLE_SIZE)
    for tag, order in (("a", kinds), ("b", kinds[::-1]), ("c", kinds[5:] + kinds[:5])):
        outcomes = await asyncio.gather(*(writer.write(pending(tag, *kind)) for kind in order))
        assert outcomes == ["stored"] * len(kinds), tag
        assert (writer.batches, writer.statement_shapes) == ("abc".index(tag) + 1, bundles), tag
    assert await writer.write(pending("e", *kinds[0])) == "stored"
    assert writer.statement_shapes == bundles + 1
    for table, _ in kinds:
        rows = await engine.database.fetch_all(f"SELECT id FROM stripe.{table} WHERE id LIKE 'x\\_%%'")
        tags = "abce" if table == kinds[0][0] else "abc"
        assert sorted(r["id"] for r in rows) == [f"x_{tag}_{table}" for tag in tags], table

    poison = pending("p", "customers", "customer.updated", balance=10**30)
    outcomes = await asyncio.gather(*(writer.write(pending("d", *kind)) for kind in kinds), writer.write(poison),
                                    return_exceptions=True)
    assert outcomes[:-1] == ["stored"] * len(kinds)
    assert "out of range" in str(outcomes[-1])
    assert await count(engine, "SELECT 1 FROM stripe._events WHERE id LIKE 'evt\\_d\\_%%'") == len(kinds)
    assert await count(engine, "SELECT 1 FROM stripe.customers WHERE id = 'x_p_customers'") == 0


async def test_a_parents_embedded_copy_never_replaces_a_childs_own_event_of_the_same_second(
        engine: StripeSync) -> None:
    now = int(time.time())
    refund = {**FIXTURES["refund"], "status": "succeeded"}
    charge = json.loads(json.dumps(FIXTURES["charge"]))
    charge["refunds"] = {"object": "list", "data": [{**refund, "status": "pending"}], "has_more": False}
    await engine.process_event(event("refund.updated", refund, now))
    assert (await engine.process_event(event("charge.refunded", charge, now))).outcome == "stored"
    row = await engine.database.fetch_one("SELECT status FROM stripe.refunds WHERE id = %s", (refund["id"],))
    assert row == {"status": "succeeded"}


# -- entitlements -----------------------------------------------------------------------------------------


async def test_the_entitlement_summary_replaces_the_customers_set(engine: StripeSync,
                                                                  emulator: StripeEmulator) -> None:
    features = [emulator.create("features", {"name": f"F{i}", "lookup_key": f"f{i}"}) for i in range(3)]
    product = emulator.create("products", {"name": "Pro"})
    price = emulator.create("prices", {"product": product["id"], "unit_amount": 900, "currency": "usd",
                                       "recurring": {"interval": "month"}})
    customer = emulator.create("customers", {"name": "entitled"})
    for feature in features:
        emu_api_post(emulator, f"/v1/products/{product['id']}/features", {"entitlement_feature": feature["id"]})
    emulator.clock.advance(5)
    emulator.create("subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]})
    emulator.clock.advance(5)
    from webhook_support import emu_api_get, emu_client

    attached = emu_api_get(emulator, f"/v1/products/{product['id']}/features")["data"]
    emu_client(emulator).raw_request("delete", f"/v1/products/{product['id']}/features/{attached[0]['id']}")
    summaries = [e for e in emulator.events() if e["type"] == ENTITLEMENT_SUMMARY_EVENT]
    assert [len(e["data"]["object"]["entitlements"]["data"]) for e in summaries] == [3, 2]

    for summary in summaries:
        await engine.process_event(summary)
    expected = emulator_entitlements(emulator, {customer["id"]})
    assert await stored_entitlements(engine) == expected
    assert len(expected[customer["id"]]) == 2
    # A late copy of the older summary changes nothing.
    late = await engine.process_event({**summaries[0], "id": summaries[0]["id"] + "_copy"})
    assert late.outcome == "stale"
    assert await stored_entitlements(engine) == expected


async def test_an_older_summary_after_an_empty_one_asks_stripe(engine: StripeSync) -> None:
    customer = "cus_QXg1o8vcGmoR32"  # unknown to the emulator: it has no entitlements there
    entitlement = FIXTURES["entitlements.active_entitlement"]
    now = int(time.time())

    def summary(data: list[dict], created: int) -> dict:
        return event(ENTITLEMENT_SUMMARY_EVENT, {"object": "entitlements.active_entitlement_summary",
                                                "customer": customer, "entitlements": {
                                                    "object": "list", "data": data, "has_more": False}},
                     created, f"evt_summary_{created}")

    await engine.database.ensure_accounts([await engine.own_account_id()])
    await engine.database.upsert(REGISTRY["active_entitlements"], [UpsertRow(
        entitlement, await engine.own_account_id(), datetime.fromtimestamp(now - 20, UTC), customer)])
    assert (await engine.process_event(summary([], now))).outcome == "stored"
    assert await stored_entitlements(engine) == {}
    late = await engine.process_event(summary([entitlement], now - 10))
    assert late.outcome == "refetched"
    assert await stored_entitlements(engine) == {}


# -- options --------------------------------------------------------------------------------------------


async def test_revalidation_stores_the_api_object_unless_the_payload_is_final(clean_db: str,
                                                                               emulator: StripeEmulator) -> None:
    customer = emulator.create("customers", {"name": "from the API"})
    config = engine_config(clean_db, emulator, revalidate_objects_via_stripe_api=(
        "customer", "payment_intents", "radar.early_fraud_warning", "charge", "widget"))
    async with StripeSync(config) as sync:
        stale = {**customer, "name": "from the payload"}
        result = await sync.process_event(event("customer.updated", stale, int(time.time())))
        assert result.outcome == "refetched"
        row = await sync.database.fetch_one("SELECT _raw_data FROM stripe.customers")
        assert row is not None and row["_raw_data"] == truth(emulator, "customers", customer["id"])
        final = {**FIXTURES["payment_intent"], "status": "succeeded", "description": "payload kept"}
        result = await sync.process_event(event("payment_intent.succeeded", final, int(time.time())))
        assert result.outcome == "stored"
        row = await sync.database.fetch_one("SELECT description FROM stripe.payment_intents")
        assert row == {"description": "payload kept"}


async def test_backfill_related_entities_fetches_missing_references(clean_db: str,
                                                                    emulator: StripeEmulator) -> None:
    subscription = emulator.objects("subscriptions")[0]
    ev = event("customer.subscription.updated", subscription, int(time.time()))
    async with StripeSync(engine_config(clean_db, emulator)) as sync:
        await sync.process_event(ev)
        assert await count(sync, "SELECT 1 FROM stripe.customers") == 0
    async with StripeSync(engine_config(clean_db, emulator, backfill_related_entities=True)) as sync:
        await sync.process_event({**ev, "id": ev["id"] + "_again"})
        row = await sync.database.fetch_one("SELECT _raw_data FROM stripe.customers WHERE id = %s",
                                            (subscription["customer"],))
        assert row is not None and row["_raw_data"] == truth(emulator, "customers", subscription["customer"])


async def test_auto_expand_lists_follows_every_page(clean_db: str, emulator: StripeEmulator) -> None:
    customer = emulator.create("customers", {"name": "many lines"})
    invoice = emulator.create("invoices", {"customer": customer["id"], "auto_advance": False})
    for i in range(120):
        emulator.create("invoiceitems", {"customer": customer["id"], "invoice": invoice["id"], "amount": 100 + i,
                                         "currency": "usd"})
    last = [e for e in emulator.events() if e["data"]["object"].get("id") == invoice["id"]][-1]
    assert last["data"]["object"]["lines"]["has_more"]
    async with StripeSync(engine_config(clean_db, emulator, auto_expand_lists=True)) as sync:
        await sync.process_event(last)
        row = await sync.database.fetch_one("SELECT _raw_data FROM stripe.invoices")
        assert row is not None
        lines = row["_raw_data"]["lines"]
        assert (len(lines["data"]), lines["has_more"]) == (120, False)
        assert len({line["id"] for line in lines["data"]}) == 120


async def test_checkout_line_items_are_listed_per_session(engine: StripeSync, emulator: StripeEmulator) -> None:
    session = emulator.objects("checkout_sessions")[0]
    assert "line_items" not in session
    await engine.process_event(event("checkout.session.completed", session, int(time.time())))
    expected = emulator.objects("checkout_line_items")
    rows = await engine.database.fetch_all(
        "SELECT id, checkout_session FROM stripe.checkout_session_line_items ORDER BY id")
    assert rows and {r["checkout_session"] for r in rows} == {session["id"]}
    assert {r["id"] for r in rows} <= {li["id"] for li in expected}


# -- bookkeeping -----------------------------------------------------------------------------------------


async def test_events_reach_the_progress_sink(clean_db: str, emulator: StripeEmulator) -> None:
    sink = RecordingSink()
    async with StripeSync(engine_config(clean_db, emulator), progress=sink) as sync:
        ev = event("customer.updated", FIXTURES["customer"], int(time.time()), "evt_sink")
        await sync.process_event(ev)
    assert ("event_received", ("evt_sink", "customer.updated", "stored", None)) in sink.calls


async def test_the_event_log_is_pruned_past_its_retention(clean_db: str, emulator: StripeEmulator) -> None:
    async with StripeSync(engine_config(clean_db, emulator, event_log_retention_days=7)) as sync:
        old = datetime.now(UTC) - timedelta(days=8)
        await sync.database.execute(
            "INSERT INTO stripe._events (id, type, outcome, received_at) "
            "SELECT 'evt_old_' || g, 'customer.updated', 'stored', %s FROM generate_series(1, 12) g", (old,))
        assert await sync.webhooks.prune_event_log(chunk=5) == 12  # in chunks, until none is left
        await sync.database.execute(
            "INSERT INTO stripe._events (id, type, outcome, received_at) VALUES ('evt_old', 'x', 'stored', %s)",
            (old,))
        await sync.process_event(event("customer.updated", FIXTURES["customer"], int(time.time()), "evt_new"))
        await sync.webhooks.close()  # the first event of a processor starts a pruning pass: let it finish
        rows = await sync.database.fetch_all("SELECT id FROM stripe._events")
        assert rows == [{"id": "evt_new"}]


async def test_secrets_stay_masked(engine: StripeSync, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await engine.process_webhook(*signed(event("customer.updated", FIXTURES["customer"], int(time.time()))))
    assert WEBHOOK_SECRET not in repr(engine.webhooks)
    assert WEBHOOK_SECRET not in caplog.text


async def test_connect_events_land_under_their_account(clean_db: str) -> None:
    with StripeEmulator(seed=11, customers=4, connected_accounts=1) as emu:
        [connected] = emu.connected_account_ids
        async with StripeSync(engine_config(clean_db, emu)) as sync:
            emu.clock.freeze()  # one second: ties are resolved through the API, as the connected account
            events = emu.mutate_random(15, account=connected)
            assert events and {e.get("account") for e in events} == {connected}
            for ev in reversed(events):
                await sync.process_event(ev)
            assert await mismatches(sync, emu, events, account=connected) == []
            assert await count(sync, "SELECT 1 FROM stripe.accounts WHERE id = %s", (connected,)) == 1
