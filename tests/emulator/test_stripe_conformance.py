"""Differences from Stripe found by outside checks (issue 18): fields Stripe always or never sends,
includable fields, expansions and list filters other clients rely on."""

from __future__ import annotations

from urllib.parse import urlencode

from emulator_helpers import raw


def _get(emu, path: str, **params: object) -> dict:
    status, _, body = raw(emu, "GET", path + ("?" + urlencode(params, doseq=True) if params else ""))
    assert status == 200, body
    return body


def _post(emu, path: str, form: dict[str, str]) -> dict:
    status, _, body = raw(emu, "POST", path, body=urlencode(form))
    assert status == 200, body
    return body


def test_one_off_invoice_lines_name_their_invoice_item(stripe_emulator):
    lines = [line for inv in stripe_emulator.objects("invoices") for line in inv["lines"]["data"]]
    one_off = [ln for ln in lines if ln["parent"]["type"] == "invoice_item_details"]
    assert one_off, "the data set has manual invoices"
    for line in one_off:
        assert line["parent"]["invoice_item_details"]["invoice_item"].startswith("ii_")
    assert len({ln["parent"]["invoice_item_details"]["invoice_item"] for ln in one_off}) == len(one_off)


def test_no_livemode_where_stripe_sends_none(stripe_emulator):
    emu = stripe_emulator
    for path in ("/v1/refunds", "/v1/balance_transactions"):
        for obj in _get(emu, path, limit=20)["data"]:
            assert "livemode" not in obj, (path, obj["id"])
    sub = emu.objects("subscriptions")[0]
    for item in _get(emu, "/v1/subscription_items", subscription=sub["id"])["data"]:
        assert "livemode" not in item
    for item in sub["items"]["data"]:
        assert "livemode" not in item
    charge = next(c for c in emu.objects("charges") if c["status"] == "succeeded")
    refund = _post(emu, "/v1/refunds", {"charge": charge["id"], "amount": "1"})
    assert "livemode" not in refund
    assert "livemode" in _get(emu, "/v1/charges", limit=1)["data"][0]


def test_payout_destination_expands_to_the_bank_account(stripe_emulator):
    payouts = _get(stripe_emulator, "/v1/payouts", limit=3, **{"expand[]": "data.destination"})["data"]
    assert payouts
    for po in payouts:
        dest = po["destination"]
        assert dest["object"] == "bank_account" and dest["id"].startswith("ba_") and dest["last4"]


def test_balance_transactions_of_a_payout_are_those_it_settled(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=200)
    payouts = emu.objects("payouts")
    automatic = [po for po in payouts if po["automatic"]]
    assert automatic
    po = automatic[-1]
    settled = _get(emu, "/v1/balance_transactions", payout=po["id"], limit=100)["data"]
    assert po["balance_transaction"] in {bt["id"] for bt in settled}
    others = [bt for bt in settled if bt["id"] != po["balance_transaction"]]
    assert others and all(bt["type"] in ("charge", "refund", "transfer") for bt in others)
    assert all(bt["available_on"] <= po["created"] for bt in others)
    manual = next((p for p in payouts if not p["automatic"]), None)
    if manual is not None:
        own = _get(emu, "/v1/balance_transactions", payout=manual["id"])["data"]
        assert [bt["id"] for bt in own] == [manual["balance_transaction"]]


def test_tiers_and_currency_options_are_sent_only_when_expanded(stripe_emulator):
    emu = stripe_emulator
    prod = _post(emu, "/v1/products", {"name": "Metered"})
    price = _post(emu, "/v1/prices", {
        "currency": "usd", "product": prod["id"], "billing_scheme": "tiered", "tiers_mode": "graduated",
        "recurring[interval]": "month", "tiers[0][up_to]": "10", "tiers[0][unit_amount]": "500",
        "tiers[1][up_to]": "inf", "tiers[1][unit_amount]": "400", "tiers[1][flat_amount]": "100",
        "currency_options[eur][unit_amount]": "450"})
    assert "tiers" not in price and "currency_options" not in price
    assert "tiers" not in _get(emu, f"/v1/prices/{price['id']}")
    expanded = _get(emu, f"/v1/prices/{price['id']}", **{"expand[]": ["tiers", "currency_options"]})
    assert expanded["tiers"] == [
        {"flat_amount": None, "flat_amount_decimal": None, "unit_amount": 500, "unit_amount_decimal": "500", "up_to": 10},
        {"flat_amount": 100, "flat_amount_decimal": "100", "unit_amount": 400, "unit_amount_decimal": "400",
         "up_to": None}]
    assert set(expanded["currency_options"]) == {"usd", "eur"}
    assert expanded["currency_options"]["eur"]["unit_amount"] == 450
    listed = _get(emu, "/v1/prices", limit=5, **{"expand[]": ["data.tiers", "data.currency_options"]})["data"]
    assert listed[0]["id"] == price["id"] and listed[0]["tiers"] == expanded["tiers"]
    assert all("currency_options" in p for p in listed)
    plans = _get(emu, "/v1/plans", limit=5, **{"expand[]": "data.tiers"})["data"]
    assert plans[0]["id"] == price["id"] and plans[0]["tiers"] == expanded["tiers"]
    assert "tiers" not in _get(emu, "/v1/plans", limit=1)["data"][0]


def test_checkout_line_items_discounts_and_taxes(stripe_emulator):
    emu = stripe_emulator
    coupon = _post(emu, "/v1/coupons", {"percent_off": "10", "duration": "once"})
    rate = _post(emu, "/v1/tax_rates", {"display_name": "VAT", "percentage": "20", "inclusive": "false"})
    prod = _post(emu, "/v1/products", {"name": "Shirt"})
    price = _post(emu, "/v1/prices", {"currency": "usd", "product": prod["id"], "unit_amount": "1000"})
    cs = _post(emu, "/v1/checkout/sessions", {
        "mode": "payment", "success_url": "https://example.com", "discounts[0][coupon]": coupon["id"],
        "line_items[0][price]": price["id"], "line_items[0][quantity]": "2",
        "line_items[0][tax_rates][0]": rate["id"]})
    assert (cs["amount_subtotal"], cs["amount_total"]) == (2000, 2160)
    assert cs["total_details"] == {"amount_discount": 200, "amount_shipping": 0, "amount_tax": 360}
    url = f"/v1/checkout/sessions/{cs['id']}/line_items"
    plain = _get(emu, url)["data"][0]
    assert "discounts" not in plain and "taxes" not in plain and "livemode" not in plain
    item = _get(emu, url, **{"expand[]": ["data.discounts", "data.taxes"]})["data"][0]
    assert (item["amount_discount"], item["amount_tax"], item["amount_total"]) == (200, 360, 2160)
    [discount] = item["discounts"]
    assert discount["amount"] == 200 and discount["discount"]["source"] == {"coupon": coupon["id"], "type": "coupon"}
    [tax] = item["taxes"]
    assert tax["amount"] == 360 and tax["taxable_amount"] == 1800 and tax["rate"]["id"] == rate["id"]
    generated = stripe_emulator.objects("checkout_sessions")[-1]["id"]
    gen_item = _get(emu, f"/v1/checkout/sessions/{generated}/line_items",
                    **{"expand[]": ["data.discounts", "data.taxes"]})["data"][0]
    assert gen_item["discounts"] == [] and gen_item["taxes"] == []


def test_fields_newer_than_the_fixtures(stripe_emulator):
    emu = stripe_emulator
    expected = {"products": {"tax_details"}, "disputes": {"intended_submission_method"},
                "payment_intents": {"allowed_payment_method_types", "payment_record"},
                "setup_intents": {"allowed_payment_method_types"}, "checkout_sessions": {"allowed_payment_method_types"},
                "subscription_schedules": {"pause_schedules"}}
    for name, fields in expected.items():
        obj = emu.objects(name)[0]
        assert fields <= set(obj), name
    assert "current_trial" in emu.objects("subscriptions")[0]["items"]["data"][0]
    assert "subscription" not in emu.objects("invoices")[0]  # gone since basil: parent.subscription_details
    created = _post(emu, "/v1/payment_intents", {"amount": "500", "currency": "usd"})
    assert created["allowed_payment_method_types"] is None and created["payment_record"] is None


def test_expansions_deeper_than_four_levels_are_refused(stripe_emulator):
    ok = _get(stripe_emulator, "/v1/subscriptions", limit=1, **{"expand[]": "data.items.data.price"})
    assert ok["data"][0]["items"]["data"][0]["price"]["object"] == "price"
    status, _, body = raw(stripe_emulator, "GET", "/v1/subscriptions?limit=1&expand[]=data.items.data.price.product")
    assert status == 400 and "more than 4 levels" in body["error"]["message"]


def test_coupon_currency_options_only_when_expanded(stripe_emulator):
    emu = stripe_emulator
    coupon = _post(emu, "/v1/coupons", {"amount_off": "500", "currency": "usd", "duration": "once",
                                        "currency_options[eur][amount_off]": "450"})
    assert "currency_options" not in coupon
    got = _get(emu, f"/v1/coupons/{coupon['id']}", **{"expand[]": "currency_options"})
    assert got["currency_options"] == {"usd": {"amount_off": 500}, "eur": {"amount_off": 450}}
    percent = _post(emu, "/v1/coupons", {"percent_off": "5", "duration": "once"})
    assert "currency_options" not in _get(emu, f"/v1/coupons/{percent['id']}", **{"expand[]": "currency_options"})
