"""Retrieve, 404s, deleted objects, expansion and embedded lists."""

from __future__ import annotations

import pytest
import stripe
from emulator_helpers import client_for, raw


def test_retrieve_404_and_deleted(stripe_emulator):
    emu = stripe_emulator
    client = client_for(emu)
    truth = emu.objects("customers")[3]
    got = client.v1.customers.retrieve(truth["id"])
    assert got.to_dict() == truth
    assert got.email == truth["email"] and got.created == truth["created"] and got.object == "customer"

    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.retrieve("cus_DoesNotExist12")
    assert err.value.http_status == 404
    assert err.value.code == "resource_missing" and err.value.param == "id"
    assert "No such customer" in str(err.value.user_message)

    deleted = client.v1.customers.delete(truth["id"])
    assert deleted.deleted is True
    again = client.v1.customers.retrieve(truth["id"])
    assert again.to_dict() == {"id": truth["id"], "object": "customer", "deleted": True}
    assert truth["id"] not in {c["id"] for c in emu.objects("customers")}
    assert truth["id"] not in {c.id for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()}

    # Ids of one emulator do not resolve in another account / seed.
    status, headers, body = raw(emu, "GET", "/v1/invoices/in_1000000XXXXXXXXXXXXXXXXXX")
    assert status == 404 and body["error"]["code"] == "resource_missing"
    assert headers["Request-Id"].startswith("req_")


def test_expand_on_retrieve_and_lists(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=60)
    client = client_for(emu)
    sub = emu.objects("subscriptions")[0]
    got = client.v1.subscriptions.retrieve(sub["id"], params={"expand": ["customer", "latest_invoice.customer",
                                                                        "items.data.price.product"]})
    assert got.customer.id == sub["customer"] and got.customer.object == "customer"
    assert got.latest_invoice.id == sub["latest_invoice"]
    assert got.latest_invoice.customer.id == sub["customer"]
    assert got["items"].data[0].price.product.object == "product"

    page = client.v1.subscriptions.list(params={"limit": 5, "expand": ["data.customer", "data.default_payment_method"]})
    for s in page.data:
        assert s.customer.object == "customer"
        assert s.default_payment_method is None or s.default_payment_method.object == "payment_method"

    charges = client.v1.charges.list(params={"limit": 10, "expand": ["data.balance_transaction", "data.payment_intent"]})
    ok = [c for c in charges.data if c.status == "succeeded"]
    assert ok and all(c.balance_transaction.object == "balance_transaction" for c in ok)
    assert all(c.payment_intent.latest_charge == c.id for c in charges.data)

    products = client.v1.products.list(params={"expand": ["data.default_price"]})
    assert all(p.default_price is None or p.default_price.product == p.id for p in products.data)

    # Includable lists: a sync engine can avoid one request per parent.
    customers = emu.objects("customers")
    tax_ids = emu.objects("tax_ids")
    page = client.v1.customers.list(params={"limit": 100, "expand": ["data.tax_ids"]})
    for c in page.data:
        assert [t.id for t in c.tax_ids.data] == [t["id"] for t in tax_ids if t["customer"] == c.id]
    assert len(page.data) == len(customers)

    sessions = emu.objects("checkout_sessions")
    page = client.v1.checkout.sessions.list(params={"limit": 100, "expand": ["data.line_items"]})
    assert len(page.data) == len(sessions)
    for s in page.data:
        items = list(client.v1.checkout.sessions.line_items.list(s.id, params={"limit": 100}).auto_paging_iter())
        assert [i.id for i in s.line_items.data] == [i.id for i in items][:10]
        assert s.line_items.has_more == (len(items) > 10)
        assert all(i.object == "item" and i.id.startswith("li_") for i in items)
    assert any(s.line_items.has_more for s in page.data)

    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.retrieve(customers[0]["id"], params={"expand": ["nonsense"]})
    assert err.value.param == "expand"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.list(params={"expand": ["tax_ids"]})  # lists need data.*


def test_embedded_lists_truncate_at_ten_with_full_lists_behind(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=80)
    client = client_for(emu)
    subs = emu.objects("subscriptions")
    big = [s for s in subs if s["items"]["has_more"]]
    assert big, "generation always includes a subscription with more than 10 items"
    s = big[0]
    assert len(s["items"]["data"]) == 10
    assert s["items"]["url"] == f"/v1/subscription_items?subscription={s['id']}"
    items = list(client.v1.subscription_items.list(params={"subscription": s["id"], "limit": 4}).auto_paging_iter())
    assert [i.id for i in items[:10]] == [i["id"] for i in s["items"]["data"]]
    assert len(items) > 10 and len({i.id for i in items}) == len(items)
    assert all(i.subscription == s["id"] for i in items)

    invoices = emu.objects("invoices")
    inv = next(i for i in invoices if i["lines"]["has_more"])
    lines = list(client.v1.invoices.line_items.list(inv["id"], params={"limit": 7}).auto_paging_iter())
    assert len(lines) > 10 and [ln.id for ln in lines[:10]] == [ln["id"] for ln in inv["lines"]["data"]]
    assert sum(ln.amount for ln in lines) == inv["total"] == inv["amount_due"]
    assert all(ln.invoice == inv["id"] for ln in lines)
    small = next(i for i in invoices if not i["lines"]["has_more"])
    assert sum(ln["amount"] for ln in small["lines"]["data"]) == small["total"]

    charges = emu.objects("charges")
    refunded = next(c for c in charges if c["refunds"]["data"])
    assert refunded["amount_refunded"] == sum(r["amount"] for r in refunded["refunds"]["data"])
    r = client.v1.refunds.retrieve(refunded["refunds"]["data"][0]["id"], params={"expand": ["balance_transaction"]})
    assert r.charge == refunded["id"] and r.balance_transaction.amount == -r.amount

    notes = emu.objects("credit_notes")
    cn = notes[0]
    lines = client.v1.credit_notes.line_items.list(cn["id"]).data
    assert sum(ln.amount for ln in lines) == cn["amount"] and all(ln.id.startswith("cnli_") for ln in lines)


def test_relations_are_consistent(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=60)
    ids = {t: {o["id"] for o in emu.objects(t)} for t in
           ("customers", "prices", "products", "invoices", "charges", "payment_intents", "payment_methods",
            "balance_transactions", "features", "subscriptions")}
    for s in emu.objects("subscriptions"):
        assert s["customer"] in ids["customers"]
        assert s["latest_invoice"] in ids["invoices"]
        for item in s["items"]["data"]:
            assert item["price"]["id"] in ids["prices"] and item["plan"]["id"] == item["price"]["id"]
    for p in emu.objects("products"):
        assert p["default_price"] in ids["prices"]
    for c in emu.objects("charges"):
        assert c["payment_intent"] in ids["payment_intents"] and c["payment_method"] in ids["payment_methods"]
        assert c["balance_transaction"] is None or c["balance_transaction"] in ids["balance_transactions"]
    for po in emu.objects("payouts"):
        assert po["balance_transaction"] in ids["balance_transactions"]
    for d in emu.objects("disputes"):
        assert d["charge"] in ids["charges"]
    for t in emu.objects("tax_ids"):
        assert t["customer"] in ids["customers"]
    for i in emu.objects("invoices"):
        sub = (i.get("parent") or {}).get("subscription_details", {}).get("subscription")
        assert sub is None or sub in ids["subscriptions"]
    ents = emu.objects("active_entitlements")
    assert ents and all(e["feature"] in ids["features"] for e in ents)
    plans = emu.objects("plans")
    assert plans and all(p["id"] in ids["prices"] and p["object"] == "plan" for p in plans)
    # Every type in the brief has data.
    counts = emu.counts()
    assert all(v > 0 for k, v in counts.items()), counts
