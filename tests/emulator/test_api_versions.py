"""``Stripe-Version``: objects rendered at the version asked for, or the version refused."""

from __future__ import annotations

import pytest
from emulator_helpers import raw

from stripe_sync_emulator import DEFAULT_API_VERSION, StripeEmulator

PRE_BASIL = "2025-02-24.acacia"


def _get(emu: StripeEmulator, path: str, version: str | None = None) -> tuple[int, dict[str, str], dict]:
    return raw(emu, "GET", path, headers={"Stripe-Version": version} if version else None)


def test_default_version_answers_and_says_so(stripe_emulator):
    status, headers, body = _get(stripe_emulator, "/v1/invoices?limit=1")
    assert status == 200 and headers["Stripe-Version"] == DEFAULT_API_VERSION
    inv = body["data"][0]
    assert "total_taxes" in inv and "total_tax_amounts" not in inv and "paid" not in inv


@pytest.mark.parametrize("version", ["2022-11-15", "2099-01-01.zinnia", "yesterday"])
def test_unmodelled_versions_are_refused_like_stripe_refuses_a_bad_one(stripe_emulator, version):
    status, headers, body = _get(stripe_emulator, "/v1/customers?limit=1", version)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(f"Invalid Stripe API version: {version}")
    assert headers["Request-Id"].startswith("req_")


def test_pre_basil_invoices_lines_and_subscriptions(stripe_emulator_factory):
    emu = stripe_emulator_factory(customers=80)
    status, headers, body = _get(emu, "/v1/invoices?limit=50&expand[]=data.total_tax_amounts.tax_rate", PRE_BASIL)
    assert status == 200 and headers["Stripe-Version"] == PRE_BASIL
    for inv in body["data"]:
        assert "parent" not in inv and "total_taxes" not in inv
        assert inv["total_tax_amounts"] == [] and inv["paid"] == (inv["status"] == "paid")
        for line in inv["lines"]["data"]:
            assert "parent" not in line and "pricing" not in line and "taxes" not in line
            assert line["type"] in ("subscription", "invoiceitem")
            if line["type"] == "subscription":
                assert line["subscription_item"].startswith("si_") and inv["subscription"] == line["subscription"]
            else:
                assert line["invoice_item"].startswith("ii_")
            assert line["price"]["object"] == "price"
    default = _get(emu, "/v1/invoices?limit=50")[2]["data"]
    by_sub = {inv["id"]: ((inv["parent"] or {}).get("subscription_details") or {}).get("subscription") for inv in default}
    assert {inv["id"]: inv["subscription"] for inv in body["data"]} == by_sub

    subs = _get(emu, "/v1/subscriptions?limit=5", PRE_BASIL)[2]["data"]
    for sub in subs:
        item = sub["items"]["data"][0]
        assert "current_period_end" not in item
        default_item = _get(emu, f"/v1/subscription_items/{item['id']}")[2]
        assert sub["current_period_end"] == default_item["current_period_end"]
    current = _get(emu, "/v1/subscriptions?limit=1")[2]["data"][0]
    assert "current_period_end" not in current and "current_period_end" in current["items"]["data"][0]

    promo = _get(emu, "/v1/promotion_codes?limit=1", PRE_BASIL)[2]["data"][0]
    assert promo["coupon"]["object"] == "coupon" and "promotion" not in promo


def test_events_keep_the_version_they_were_created_at(stripe_emulator):
    emu = stripe_emulator
    cus = emu.objects("customers")[0]
    status, _, _ = raw(emu, "POST", "/v1/subscriptions", body=f"customer={cus['id']}&items[0][price]="
                       + next(p["id"] for p in emu.objects("prices") if p["recurring"] and p["active"]),
                       headers={"Stripe-Version": PRE_BASIL})
    assert status == 200
    events = _get(emu, "/v1/events?type=customer.subscription.created", PRE_BASIL)[2]["data"]
    assert events and events[0]["api_version"] == DEFAULT_API_VERSION
    sub = events[0]["data"]["object"]
    assert "current_period_end" not in sub and "current_period_end" in sub["items"]["data"][0]


def test_an_unmodelled_default_version_is_refused_at_start():
    with pytest.raises(ValueError, match="not modelled"):
        StripeEmulator(customers=0, api_version="2022-11-15")
