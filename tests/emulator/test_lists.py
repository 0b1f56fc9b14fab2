"""Lists: cursor pagination both ways, created filters, limit validation, filters."""

from __future__ import annotations

import pytest
import stripe
from emulator_helpers import client_for, raw


def walk_forward(client: stripe.StripeClient, limit: int, **params: object) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        p = dict(params, limit=limit)
        if cursor:
            p["starting_after"] = cursor
        page = client.v1.customers.list(params=p)  # type: ignore[arg-type]
        assert len(page.data) <= limit
        ids += [c.id for c in page.data]
        if not page.has_more:
            return ids
        assert len(page.data) == limit
        cursor = page.data[-1].id


def walk_backward(client: stripe.StripeClient, limit: int, last: str) -> list[str]:
    ids: list[str] = []
    cursor = last
    while True:
        page = client.v1.customers.list(params={"limit": limit, "ending_before": cursor})
        ids = [c.id for c in page.data] + ids
        if not page.has_more:
            return ids
        assert len(page.data) == limit
        cursor = page.data[0].id


def test_pagination_both_ways_without_gaps_or_duplicates(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=260)
    client = client_for(emu)
    truth = [o["id"] for o in emu.objects("customers")]
    created = [o["created"] for o in emu.objects("customers")]
    assert len(truth) == 260
    # Newest first, ties (the burst seconds) broken by id, descending.
    keys = list(zip(created, truth, strict=True))
    assert keys == sorted(keys, reverse=True)
    assert len(set(created)) < len(created), "expected same-second bursts in the data"

    for limit in (100, 7):
        forward = walk_forward(client, limit)
        assert forward == truth
        backward = walk_backward(client, limit, truth[-1])
        assert backward + [truth[-1]] == truth

    first = client.v1.customers.list(params={"limit": 100})
    assert first.has_more and first.url == "/v1/customers" and first.object == "list"
    assert not client.v1.customers.list(params={"limit": 100, "ending_before": truth[0]}).data
    tail = client.v1.customers.list(params={"limit": 100, "starting_after": truth[-3]})
    assert [c.id for c in tail.data] == truth[-2:] and not tail.has_more
    assert sum(1 for _ in client.v1.customers.list(params={"limit": 50}).auto_paging_iter()) == 260


def test_created_filters(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=150)
    client = client_for(emu)
    objs = emu.objects("customers")
    t = objs[60]["created"]
    cases = {
        "gt": lambda c: c > t,
        "gte": lambda c: c >= t,
        "lt": lambda c: c < t,
        "lte": lambda c: c <= t,
    }
    for op, pred in cases.items():
        got = [c.id for c in client.v1.customers.list(params={"limit": 100, "created": {op: t}}).auto_paging_iter()]
        assert got == [o["id"] for o in objs if pred(o["created"])], op
    exact = [c.id for c in client.v1.customers.list(params={"created": t, "limit": 100}).data]
    assert exact == [o["id"] for o in objs if o["created"] == t] and exact
    lo, hi = objs[100]["created"], objs[20]["created"]
    got = [c.id for c in client.v1.customers.list(
        params={"limit": 100, "created": {"gte": lo, "lt": hi}}).auto_paging_iter()]
    assert got == [o["id"] for o in objs if lo <= o["created"] < hi]
    # Query-string form exactly as other SDKs send it.
    status, _, body = raw(emu, "GET", f"/v1/customers?created[gte]={lo}&created[lte]={lo}&limit=100")
    assert status == 200 and {c["created"] for c in body["data"]} == {lo}


@pytest.mark.parametrize("limit", [0, 101, "abc"])
def test_limit_is_validated(stripe_emulator, limit):
    client = client_for(stripe_emulator)
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.list(params={"limit": limit})  # type: ignore[typeddict-item]
    assert err.value.http_status == 400
    assert err.value.param == "limit"
    assert err.value.error is not None and err.value.error.type == "invalid_request_error"


def test_list_parameter_errors(stripe_emulator):
    client = client_for(stripe_emulator)
    first = client.v1.customers.list().data[0].id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.list(params={"starting_after": first, "ending_before": first})
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.list(params={"colour": "blue"})  # type: ignore[typeddict-unknown-key]
    assert err.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.subscription_items.list(params={})  # type: ignore[typeddict-item]
    assert err.value.param == "subscription"
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.entitlements.active_entitlements.list(params={})  # type: ignore[typeddict-item]
    assert err.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.list(params={"starting_after": "cus_doesnotexist00"})
    assert err.value.http_status == 404


def test_filters_match_ground_truth(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=80)
    client = client_for(emu)
    subs = emu.objects("subscriptions")
    default = [s.id for s in client.v1.subscriptions.list(params={"limit": 100}).auto_paging_iter()]
    assert default == [s["id"] for s in subs if s["status"] != "canceled"]
    every = [s.id for s in client.v1.subscriptions.list(params={"limit": 100, "status": "all"}).auto_paging_iter()]
    assert every == [s["id"] for s in subs] and len(every) > len(default)
    canceled = [s.id for s in client.v1.subscriptions.list(params={"status": "canceled", "limit": 100}).data]
    assert canceled == [s["id"] for s in subs if s["status"] == "canceled"]

    invoices = emu.objects("invoices")
    cus = invoices[0]["customer"]
    got = [i.id for i in client.v1.invoices.list(params={"customer": cus, "limit": 100}).auto_paging_iter()]
    assert got == [i["id"] for i in invoices if i["customer"] == cus]
    paid = [i.id for i in client.v1.invoices.list(params={"status": "paid", "limit": 100}).auto_paging_iter()]
    assert paid == [i["id"] for i in invoices if i["status"] == "paid"]

    sub = next(s for s in subs if s["items"]["data"])
    price = sub["items"]["data"][0]["price"]["id"]
    by_price = {s.id for s in client.v1.subscriptions.list(params={"price": price, "status": "all"}).auto_paging_iter()}
    assert sub["id"] in by_price
    assert by_price == {s["id"] for s in subs if any(i["price"]["id"] == price for i in s["items"]["data"])} or \
        sub["items"]["has_more"]

    charges = emu.objects("charges")
    refunded = next(c for c in charges if c["refunds"]["data"])
    refunds = [r.id for r in client.v1.refunds.list(params={"charge": refunded["id"]}).data]
    assert sorted(refunds) == sorted(r["id"] for r in refunded["refunds"]["data"])
    by_pi = client.v1.charges.list(params={"payment_intent": refunded["payment_intent"]}).data
    assert [c.id for c in by_pi] == [refunded["id"]]

    prices = emu.objects("prices")
    product = prices[0]["product"]
    got = [p.id for p in client.v1.prices.list(params={"product": product, "limit": 100}).data]
    assert got == [p["id"] for p in prices if p["product"] == product]
    recurring = [p.id for p in client.v1.prices.list(params={"type": "recurring", "limit": 100}).data]
    assert recurring == [p["id"] for p in prices if p["type"] == "recurring"]

    pms = emu.objects("payment_methods")
    owner = next(p["customer"] for p in pms if p["customer"])
    got = [p.id for p in client.v1.payment_methods.list(params={"customer": owner, "type": "card"}).data]
    assert got == [p["id"] for p in pms if p["customer"] == owner]
    assert [p.id for p in client.v1.customers.payment_methods.list(owner).data] == got
