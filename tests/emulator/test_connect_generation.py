"""Connect separation, deterministic generation, sizes and the time distribution."""

from __future__ import annotations

import json

import pytest
import stripe
from emulator_helpers import client_for

from stripe_sync_emulator import StripeEmulator, plan_sizes

DAY = 86400


def test_connect_accounts_have_separate_data_and_events(stripe_emulator_factory, webhook_receiver):
    emu = stripe_emulator_factory(customers=40, connected_accounts=2)
    client = client_for(emu)
    acct_a, acct_b = emu.connected_account_ids
    assert {a.id for a in client.v1.accounts.list().data} == {acct_a, acct_b}
    assert client.v1.accounts.retrieve(acct_a).id == acct_a
    assert client.v1.accounts.retrieve_current().id == emu.account_id
    assert client.v1.accounts.retrieve_current(options={"stripe_account": acct_a}).id == acct_a

    platform_ids = {c.id for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()}
    a_ids = {c.id for c in client.v1.customers.list(params={"limit": 100},
                                                     options={"stripe_account": acct_a}).auto_paging_iter()}
    b_ids = {c["id"] for c in emu.objects("customers", account=acct_b)}
    assert len(platform_ids) == 40 and a_ids and b_ids
    assert not (platform_ids & a_ids) and not (a_ids & b_ids)
    assert a_ids == {c["id"] for c in emu.objects("customers", account=acct_a)}
    some = next(iter(a_ids))
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.retrieve(some)  # a connected account's object is not on the platform
    assert client.v1.customers.retrieve(some, options={"stripe_account": acct_a}).id == some

    with pytest.raises(stripe.PermissionError) as err:
        client.v1.customers.list(options={"stripe_account": "acct_1NotConnectedAtAll"})
    assert err.value.http_status == 403

    receiver = webhook_receiver()
    ep = client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["customer.created"],
                                                    "connect": True})
    client.v1.customers.create(params={"email": "platform@example.com"})  # platform event: not for Connect
    made = client.v1.customers.create(params={"email": "conn@example.com"}, options={"stripe_account": acct_a})
    assert emu.wait_for_deliveries(10)
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], ep.secret)
    assert event.account == acct_a and event.data.object.id == made.id
    listed = client.v1.events.list(params={"limit": 1}, options={"stripe_account": acct_a}).data[0]
    assert listed.account == acct_a and listed.type == "customer.created"
    assert "account" not in client.v1.events.list(params={"limit": 1}).data[0].to_dict()


def _snapshot(emu: StripeEmulator) -> str:
    return json.dumps({t: emu.objects(t) for t in ("customers", "subscriptions", "invoices", "charges", "refunds",
                                                    "checkout_sessions", "prices", "balance_transactions",
                                                    "active_entitlements")}, sort_keys=True)


def test_generation_is_deterministic_per_seed():
    kw = {"customers": 40, "start": "2024-01-01", "end": "2024-12-31", "connected_accounts": 1}
    a = StripeEmulator(seed=7, **kw)
    b = StripeEmulator(seed=7, **kw)
    c = StripeEmulator(seed=8, **kw)
    assert _snapshot(a) == _snapshot(b)
    assert a.account_id == b.account_id and a.connected_account_ids == b.connected_account_ids
    assert a.secret_key == b.secret_key
    assert _snapshot(a) != _snapshot(c)
    assert not ({o["id"] for o in a.objects("customers")} & {o["id"] for o in c.objects("customers")})
    acct = a.connected_account_ids[0]
    assert json.dumps(a.objects("invoices", account=acct)) == json.dumps(b.objects("invoices", account=acct))


def test_sizes_scale_from_customers_and_can_be_pinned():
    sizes = plan_sizes(1000)
    assert sizes["customers"] == 1000 and sizes["invoices"] == 3000 and sizes["charges"] == 2500
    emu = StripeEmulator(seed=1, customers=30, sizes={"invoices": 7, "coupons": 9}, start="2024-01-01",
                         end="2024-06-01")
    counts = emu.counts()
    assert counts["customers"] == 30 and counts["invoices"] == 7 and counts["coupons"] == 9
    assert counts["payment_intents"] == counts["charges"]
    with pytest.raises(ValueError):
        StripeEmulator(customers=5, sizes={"invoice_lines": 3})


def test_created_spread_has_bursts_and_an_empty_month():
    start, end = 1_672_531_200, 1_735_689_599  # 2023-2024
    emu = StripeEmulator(seed=2, customers=3000, start=start, end=end)
    created = [c["created"] for c in emu.objects("customers")]
    assert min(created) == start and max(created) <= end
    per_second: dict[int, int] = {}
    for t in created:
        per_second[t] = per_second.get(t, 0) + 1
    assert max(per_second.values()) >= 100  # dense bursts in one second
    gap = emu.core.platform.extra["gap"]
    assert gap is not None and gap[1] - gap[0] >= 30 * DAY
    for name in ("customers", "invoices", "charges", "subscriptions"):
        assert not [o for o in emu.objects(name) if gap[0] <= o["created"] < gap[1]], name
    invoices = emu.objects("invoices")
    assert max(sum(1 for i in invoices if i["created"] == b) for b in emu.core.platform.extra["bursts"]) >= 300
