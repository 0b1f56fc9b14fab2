"""Events (/v1/events), webhook endpoints and signed, retried deliveries."""

from __future__ import annotations

import json
import time

import pytest
import stripe
from emulator_helpers import client_for

DAY = 86400


def wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_mutations_emit_events_with_previous_attributes(stripe_emulator):
    client = client_for(stripe_emulator)
    cus = client.v1.customers.create(params={"email": "a@example.com", "metadata": {"k": "v"}})
    client.v1.customers.update(cus.id, params={"name": "Ada", "metadata": {"k": "", "n": "1"}})
    events = client.v1.events.list(params={"limit": 3}).data
    assert [e.type for e in events[:2]] == ["customer.updated", "customer.created"]
    upd = events[0]
    assert upd.object == "event" and upd.id.startswith("evt_") and upd.api_version
    assert upd.data.object.id == cus.id and upd.data.object.name == "Ada"
    prev = upd.data.to_dict()["previous_attributes"]
    assert prev == {"name": None, "metadata": {"k": "v"}}
    assert upd.request.id and upd.request.id.startswith("req_") and upd.livemode is False
    assert "account" not in upd.to_dict()
    assert client.v1.events.retrieve(upd.id).id == upd.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve("evt_1000000NopeNopeNopeNope12")


def test_event_type_filters_and_wildcards(stripe_emulator):
    emu = stripe_emulator
    client = client_for(emu)
    emu.mutate_random(40)
    all_events = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    types = {e.type for e in all_events}
    assert len(types) > 5
    got = {e.type for e in client.v1.events.list(params={"type": "customer.*", "limit": 100}).auto_paging_iter()}
    assert got == {t for t in types if t.startswith("customer.")}
    pick = sorted(types)[:2]
    got_ids = [e.id for e in client.v1.events.list(params={"types": pick, "limit": 100}).auto_paging_iter()]
    assert got_ids == [e.id for e in all_events if e.type in pick]
    exact = client.v1.events.list(params={"type": pick[0], "limit": 100}).data
    assert exact and all(e.type == pick[0] for e in exact)
    # Newest first; created filters work on events too.
    keys = [(e.created, e.id) for e in all_events]
    assert keys == sorted(keys, reverse=True)
    t = all_events[-1].created
    assert len(client.v1.events.list(params={"created": {"gte": t}, "limit": 100}).data) == min(100, len(all_events))


def test_events_are_kept_thirty_days(stripe_emulator):
    emu = stripe_emulator
    client = client_for(emu)
    emu.clock.freeze(1_750_000_000)
    old = client.v1.customers.create(params={"email": "old@example.com"})
    old_event = client.v1.events.list(params={"limit": 1}).data[0]
    emu.clock.advance(20 * DAY)
    client.v1.customers.update(old.id, params={"name": "Later"})
    assert len(client.v1.events.list(params={"limit": 10}).data) == 2
    emu.clock.advance(11 * DAY)  # the first event is now 31 days old
    listed = client.v1.events.list(params={"limit": 10}).data
    assert [e.type for e in listed] == ["customer.updated"]
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.events.retrieve(old_event.id)
    assert err.value.http_status == 404
    assert len(emu.events()) == 1


def test_same_second_mutations_keep_their_order(stripe_emulator):
    emu = stripe_emulator
    client = client_for(emu)
    emu.clock.freeze(1_760_000_000)
    made = [client.v1.customers.create(params={"email": f"s{i}@example.com"}).id for i in range(5)]
    listed = client.v1.customers.list(params={"created": 1_760_000_000}).data
    assert [c.id for c in listed] == list(reversed(made))
    events = client.v1.events.list(params={"limit": 5}).data
    assert [e.data.object.id for e in events] == list(reversed(made))
    assert {e.created for e in events} == {1_760_000_000}


def test_webhook_endpoint_lifecycle(stripe_emulator):
    client = client_for(stripe_emulator)
    ep = client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"],
                                                    "description": "test", "metadata": {"a": "b"}})
    assert ep.secret.startswith("whsec_") and ep.status == "enabled" and ep.id.startswith("we_")
    got = client.v1.webhook_endpoints.retrieve(ep.id)
    assert "secret" not in got.to_dict() and got.url == "http://127.0.0.1:9/hook"
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [ep.id]
    assert "secret" not in client.v1.webhook_endpoints.list().data[0].to_dict()
    up = client.v1.webhook_endpoints.update(ep.id, params={"disabled": True, "enabled_events": ["customer.created"]})
    assert up.status == "disabled" and up.enabled_events == ["customer.created"]
    gone = client.v1.webhook_endpoints.delete(ep.id)
    assert gone.deleted is True
    assert client.v1.webhook_endpoints.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/x"})  # type: ignore[typeddict-item]


def test_signed_delivery_verifies_with_the_sdk(stripe_emulator, webhook_receiver):
    emu = stripe_emulator
    client = client_for(emu)
    receiver = webhook_receiver()
    ep = client.v1.webhook_endpoints.create(params={"url": receiver.url,
                                                    "enabled_events": ["customer.created", "customer.updated"]})
    cus = client.v1.customers.create(params={"email": "hook@example.com"})
    client.v1.products.create(params={"name": "not subscribed"})  # product.created: not delivered
    client.v1.customers.update(cus.id, params={"name": "Hooked"})
    assert emu.wait_for_deliveries(10)
    assert len(receiver.received) == 2
    types = []
    for headers, body in receiver.received:
        event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], ep.secret)
        types.append(event.type)
        assert event.data.object.id == cus.id
        assert headers["Content-Type"].startswith("application/json")
    assert types == ["customer.created", "customer.updated"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver.received[0][1], receiver.received[0][0]["Stripe-Signature"],
                                       "whsec_wrong")
    stats = emu.stats()["deliveries"]
    assert stats["attempted"] == 2 and stats["succeeded"] == 2
    # pending_webhooks drops to 0 once delivered.
    wait_for(lambda: client.v1.events.list(params={"limit": 1}).data[0].pending_webhooks == 0)


def test_redelivery_after_server_error(stripe_emulator, webhook_receiver):
    emu = stripe_emulator
    client = client_for(emu)
    receiver = webhook_receiver(statuses=[500, 503])
    ep = client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["*"]})
    client.v1.coupons.create(params={"percent_off": 10, "duration": "once"})
    assert emu.wait_for_deliveries(10)
    assert receiver.answered == [500, 503, 200]
    bodies = [json.loads(b) for _, b in receiver.received]
    assert len({b["id"] for b in bodies}) == 1 and bodies[0]["type"] == "coupon.created"
    for headers, body in receiver.received:
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], ep.secret)
    d = emu.stats()["deliveries"]
    assert d["attempted"] == 3 and d["failed"] == 2 and d["succeeded"] == 1


def test_unreachable_endpoint_gives_up_after_bounded_attempts(stripe_emulator_factory):
    emu = stripe_emulator_factory(webhook_max_attempts=3, webhook_retry_base_delay=0.01)
    client = client_for(emu)
    client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:1/nothing-listens", "enabled_events": ["*"]})
    client.v1.customers.create(params={"email": "x@example.com"})
    assert emu.wait_for_deliveries(10)
    d = emu.stats()["deliveries"]
    assert d["attempted"] == 3 and d["gave_up"] == 1 and d["succeeded"] == 0
    assert all(entry["error"] for entry in emu.deliveries())


def test_webhook_faults_drop_and_duplicate(stripe_emulator, webhook_receiver):
    emu = stripe_emulator
    client = client_for(emu)
    receiver = webhook_receiver()
    client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["customer.created"]})
    emu.set_webhook_faults(duplicate=1.0)
    client.v1.customers.create(params={"email": "dup@example.com"})
    assert emu.wait_for_deliveries(10)
    assert len(receiver.received) == 2 and receiver.received[0][1] == receiver.received[1][1]
    emu.set_webhook_faults(duplicate=0.0, drop=1.0)
    client.v1.customers.create(params={"email": "lost@example.com"})
    assert emu.wait_for_deliveries(10)
    assert len(receiver.received) == 2 and emu.stats()["deliveries"]["dropped"] == 1
    emu.set_webhook_faults(drop=0.0, reorder=0.5)
    for i in range(12):
        client.v1.customers.create(params={"email": f"r{i}@example.com"})
    assert emu.wait_for_deliveries(10)
    ids = [json.loads(b)["data"]["object"]["email"] for _, b in receiver.received[2:]]
    assert sorted(ids) == sorted(f"r{i}@example.com" for i in range(12)) and ids != [f"r{i}@example.com"
                                                                                      for i in range(12)]


def test_burst_gives_events_one_created_second(stripe_emulator):
    emu = stripe_emulator
    events = emu.mutate_random(15, burst=True)
    assert len(events) >= 15 and len({e["created"] for e in events}) == 1
