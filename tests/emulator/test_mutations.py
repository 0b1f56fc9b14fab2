"""Writes through the SDK: side effects and events, idempotency, random mutations."""

from __future__ import annotations

import uuid

import pytest
import stripe
from emulator_helpers import client_for, raw


def types_since(client: stripe.StripeClient, n: int) -> list[str]:
    return [e.type for e in reversed(client.v1.events.list(params={"limit": n}).data)]


def test_subscription_lifecycle_and_entitlements(stripe_emulator):
    emu = stripe_emulator
    client = client_for(emu)
    feature = client.v1.entitlements.features.create(params={"name": "Exports", "lookup_key": "exports"})
    product = client.v1.products.create(params={"name": "Gold", "default_price_data": {
        "currency": "usd", "unit_amount": 4200, "recurring": {"interval": "month"}}})
    assert product.default_price.startswith("price_")
    client.v1.products.features.create(product.id, params={"entitlement_feature": feature.id})
    cus = client.v1.customers.create(params={"email": "sub@example.com"})
    before = len(emu.events())
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "default_payment_method": "pm_card_visa",
                                                 "items": [{"price": product.default_price, "quantity": 2}]})
    assert sub.status == "active" and sub["items"].data[0].quantity == 2
    new_types = [e["type"] for e in emu.events()[before:]]
    assert new_types[0] == "customer.subscription.created"
    for t in ("invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded",
              "payment_intent.succeeded", "charge.succeeded", "entitlements.active_entitlement_summary.updated"):
        assert t in new_types, t
    summary = emu.events()[-1]
    assert summary["type"] == "entitlements.active_entitlement_summary.updated"
    assert summary["data"]["object"]["customer"] == cus.id
    assert [e["feature"]["id"] for e in summary["data"]["object"]["entitlements"]["data"]] == [feature.id]
    ents = client.v1.entitlements.active_entitlements.list(params={"customer": cus.id}).data
    assert [e.feature for e in ents] == [feature.id] and ents[0].lookup_key == "exports"
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert inv.status == "paid" and inv.amount_paid == 8400 and inv.lines.data[0].amount == 8400

    item = sub["items"].data[0]
    updated = client.v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 5}],
                                                             "metadata": {"plan": "gold"}})
    assert updated["items"].data[0].quantity == 5
    ev = client.v1.events.list(params={"limit": 1, "type": "customer.subscription.updated"}).data[0]
    prev = ev.data.to_dict()["previous_attributes"]
    assert prev["metadata"] == {} and prev["items"]["data"][0]["quantity"] == 2
    assert client.v1.subscription_items.retrieve(item.id).quantity == 5

    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled" and canceled.canceled_at
    assert types_since(client, 2) == ["customer.subscription.deleted",
                                      "entitlements.active_entitlement_summary.updated"]
    assert client.v1.entitlements.active_entitlements.list(params={"customer": cus.id}).data == []
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert sub.id not in {s.id for s in client.v1.subscriptions.list(params={"customer": cus.id}).data}
    assert sub.id in {s.id for s in client.v1.subscriptions.list(params={"customer": cus.id, "status": "all"}).data}
    assert emu.get("subscriptions", sub.id)["status"] == "canceled"


def test_payments_refunds_and_invoices(stripe_emulator):
    client = client_for(stripe_emulator)
    cus = client.v1.customers.create(params={"email": "pay@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    assert pm.customer == cus.id and types_since(client, 1) == ["payment_method.attached"]
    pi = client.v1.payment_intents.create(params={"amount": 5000, "currency": "usd", "customer": cus.id,
                                                  "payment_method": pm.id, "confirm": True})
    assert pi.status == "succeeded" and pi.latest_charge.startswith("ch_")
    charge = client.v1.charges.retrieve(pi.latest_charge, params={"expand": ["balance_transaction"]})
    assert charge.amount == 5000 and charge.balance_transaction.fee > 0
    refund = client.v1.refunds.create(params={"charge": charge.id, "amount": 1500})
    assert refund.status == "succeeded" and refund.balance_transaction.startswith("txn_")
    assert types_since(client, 2) == ["refund.created", "charge.refunded"]
    ev = client.v1.events.list(params={"limit": 1}).data[0]
    assert ev.data.object.amount_refunded == 1500
    assert ev.data.to_dict()["previous_attributes"]["amount_refunded"] == 0
    after = client.v1.charges.retrieve(charge.id)
    assert after.refunds.data[0].id == refund.id and not after.refunded
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={"charge": charge.id, "amount": 9999})
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_intents.create(params={"amount": 5000, "currency": "usd",
                                                 "payment_method": "pm_card_chargeDeclined", "confirm": True})
    assert err.value.code == "card_declined" and err.value.http_status == 402

    client.v1.invoice_items.create(params={"customer": cus.id, "amount": 700, "currency": "usd"})
    inv = client.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include"})
    assert inv.status == "draft" and inv.total == 700 and len(inv.lines.data) == 1
    client.v1.invoice_items.create(params={"customer": cus.id, "amount": 300, "currency": "usd", "invoice": inv.id})
    assert client.v1.invoices.retrieve(inv.id).total == 1000
    inv = client.v1.invoices.finalize_invoice(inv.id)
    assert inv.status == "open" and inv.number
    inv = client.v1.invoices.pay(inv.id, params={"payment_method": pm.id})
    assert inv.status == "paid" and inv.amount_remaining == 0
    note = client.v1.credit_notes.create(params={"invoice": inv.id, "lines": [
        {"type": "invoice_line_item", "invoice_line_item": inv.lines.data[0].id, "amount": 200}]})
    assert note.amount == 200 and note.type == "post_payment" and types_since(client, 2)[0] == "credit_note.created"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(inv.id)
    other = client.v1.invoices.create(params={"customer": cus.id})
    assert client.v1.invoices.delete(other.id).deleted
    assert types_since(client, 1) == ["invoice.deleted"]


def test_catalog_and_customer_objects(stripe_emulator):
    client = client_for(stripe_emulator)
    coupon = client.v1.coupons.create(params={"id": "SPRING25", "percent_off": 25, "duration": "once"})
    assert coupon.id == "SPRING25" and client.v1.coupons.retrieve("SPRING25").percent_off == 25
    promo = client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": "SPRING25"},
                                                     "code": "SPRING"})
    assert promo.code == "SPRING"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.create(params={"id": "SPRING25", "percent_off": 5, "duration": "once"})
    plan = client.v1.plans.create(params={"amount": 900, "currency": "usd", "interval": "month",
                                          "product": {"name": "Plan product"}})
    assert plan.object == "plan" and client.v1.prices.retrieve(plan.id).unit_amount == 900
    assert "plan.created" in types_since(client, 3) and "price.created" in types_since(client, 3)
    assert client.v1.plans.delete(plan.id).deleted
    rate = client.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 21.0, "inclusive": False})
    assert rate.percentage == 21.0
    cus = client.v1.customers.create(params={"email": "tax@example.com", "tax_id_data": [
        {"type": "eu_vat", "value": "NL123456789B01"}]})
    tax_ids = client.v1.customers.tax_ids.list(cus.id).data
    assert len(tax_ids) == 1 and types_since(client, 1) == ["customer.tax_id.created"]
    client.v1.customers.tax_ids.delete(cus.id, tax_ids[0].id)
    assert types_since(client, 1) == ["customer.tax_id.deleted"]
    seti = client.v1.setup_intents.create(params={"customer": cus.id, "payment_method": "pm_card_visa",
                                                  "confirm": True})
    assert seti.status == "succeeded"
    assert "setup_intent.succeeded" in types_since(client, 3)
    assert client.v1.customers.payment_methods.list(cus.id).data[0].id == seti.payment_method
    session = client.v1.checkout.sessions.create(params={"mode": "payment", "success_url": "https://example.com",
                                                         "line_items": [{"price": client.v1.prices.list().data[0].id,
                                                                         "quantity": 2}]})
    assert session.status == "open" and session.url
    done = stripe_emulator.complete_checkout_session(session.id)
    assert done["status"] == "complete" and done["payment_intent"]
    assert types_since(client, 1) == ["checkout.session.completed"]
    payout = client.v1.payouts.create(params={"amount": 1000, "currency": "usd"})
    assert payout.status == "pending" and types_since(client, 1) == ["payout.created"]


def test_idempotency_keys(stripe_emulator):
    emu = stripe_emulator
    client = client_for(emu)
    key = str(uuid.uuid4())
    a = client.v1.customers.create(params={"email": "once@example.com"}, options={"idempotency_key": key})
    b = client.v1.customers.create(params={"email": "once@example.com"}, options={"idempotency_key": key})
    assert a.id == b.id
    assert len([c for c in emu.objects("customers") if c["email"] == "once@example.com"]) == 1
    assert len([e for e in emu.events() if e["type"] == "customer.created"]) == 1
    with pytest.raises(stripe.IdempotencyError) as err:
        client.v1.customers.create(params={"email": "other@example.com"}, options={"idempotency_key": key})
    assert err.value.http_status == 400
    status, headers, body = raw(emu, "POST", "/v1/customers", body="email=once%40example.com",
                                headers={"Idempotency-Key": key})
    assert status == 200 and body["id"] == a.id and headers["Idempotent-Replayed"] == "true"
    event = emu.events()[-1]
    assert event["request"]["idempotency_key"] == key


def test_form_encoding_as_other_sdks_send_it(stripe_emulator):
    emu = stripe_emulator
    price = emu.objects("plans")[0]["id"]
    cus = emu.objects("customers")[0]["id"]
    body = (f"customer={cus}&items[0][price]={price}&items[0][quantity]=3&metadata[order]=42"
            "&expand[]=customer&expand[]=latest_invoice")
    status, _, sub = raw(emu, "POST", "/v1/subscriptions", body=body)
    assert status == 200, sub
    assert sub["items"]["data"][0]["quantity"] == 3 and sub["metadata"] == {"order": "42"}
    assert sub["customer"]["id"] == cus and sub["latest_invoice"]["object"] == "invoice"
    status, _, ep = raw(emu, "POST", "/v1/webhook_endpoints",
                        body="url=http%3A%2F%2F127.0.0.1%3A9%2Fx&enabled_events[0]=invoice.paid&enabled_events[1]=charge.succeeded")
    assert status == 200 and ep["enabled_events"] == ["invoice.paid", "charge.succeeded"]
    status, _, err = raw(emu, "POST", "/v1/customers", body="favourite_colour=blue")
    assert status == 400 and err["error"]["code"] == "parameter_unknown" and err["error"]["param"] == "favourite_colour"


def test_mutate_random_goes_through_the_api(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=60, connected_accounts=1)
    before = emu.counts()
    events = emu.mutate_random(60)
    assert len(events) >= 60
    types = {e["type"] for e in events}
    assert {"customer.created", "customer.updated", "payment_intent.succeeded"} <= types
    assert len(types) >= 15
    after = emu.counts()
    assert after != before
    client = client_for(emu)
    listed = [c.id for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()]
    assert listed == [c["id"] for c in emu.objects("customers")]
    api_events = [e.id for e in client.v1.events.list(params={"limit": 100}).auto_paging_iter()]
    assert sorted(api_events) == sorted(e["id"] for e in emu.events())
    # The same seed makes the same random changes.
    twin = stripe_emulator_factory(customers=60, connected_accounts=1)
    assert [e["type"] for e in twin.mutate_random(60)] == [e["type"] for e in events]
    acct = emu.connected_account_ids[0]
    conn_events = emu.mutate_random(5, account=acct)
    assert conn_events and all(e["account"] == acct for e in conn_events)
