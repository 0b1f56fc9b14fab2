"""Keys and modes, rate limiting, injected errors, latency, stats and the control API."""

from __future__ import annotations

import base64
import time

import pytest
import stripe
from emulator_helpers import client_for, control, raw

from stripe_sync_emulator import StepClock


def test_keys_and_modes(stripe_emulator):
    emu = stripe_emulator
    status, headers, body = raw(emu, "GET", "/v1/customers", key=None)
    assert status == 401 and body["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in body["error"]["message"] and headers["Request-Id"].startswith("req_")
    for bad in ("pk_test_123", "sk_prod_abc", "nonsense"):
        status, _, body = raw(emu, "GET", "/v1/customers", key=bad)
        assert status == 401 and "Invalid API Key" in body["error"]["message"]
    with pytest.raises(stripe.AuthenticationError):
        client_for(emu, key="sk_bogus_x").v1.customers.list()

    # Any test key sees the same account, in test mode; live keys flip livemode.
    other = client_for(emu, key="sk_test_someone_else").v1.customers.list(params={"limit": 3}).data
    mine = client_for(emu).v1.customers.list(params={"limit": 3}).data
    assert [c.id for c in other] == [c.id for c in mine] and not mine[0].livemode
    assert client_for(emu, key="rk_test_restricted").v1.customers.list(params={"limit": 1}).data[0].livemode is False
    live = client_for(emu, key="sk_live_abc").v1.customers.list(params={"limit": 1}).data[0]
    assert live.livemode is True and live.id == mine[0].id
    cus = client_for(emu, key="sk_live_abc").v1.customers.create(params={"email": "live@example.com"})
    assert cus.livemode is True
    assert client_for(emu, key="sk_live_abc").v1.events.list(params={"limit": 1}).data[0].livemode is True

    # Basic auth with the key as user name, as Stripe accepts.
    token = base64.b64encode(f"{emu.secret_key}:".encode()).decode()
    status, _, body = raw(emu, "GET", "/v1/customers?limit=2", key=None, headers={"Authorization": f"Basic {token}"})
    assert status == 200 and len(body["data"]) == 2


def test_only_the_accepted_keys_are_valid_when_asked(stripe_emulator_factory):
    """`accept_keys="own"` makes a wrong key fail offline as it does on Stripe (401 on every call)."""
    emu = stripe_emulator_factory(customers=3, accept_keys="own")
    for key in (emu.secret_key, emu.live_secret_key, emu.restricted_key):
        assert raw(emu, "GET", "/v1/customers?limit=1", key=key)[0] == 200
    status, _, body = raw(emu, "GET", "/v1/customers", key="sk_test_someone_else_1234")
    message = body["error"]["message"]
    assert status == 401 and message.startswith("Invalid API Key provided: sk_test_*") and message.endswith("1234")
    assert "someone" not in message
    listed = stripe_emulator_factory(customers=3, accept_keys=["sk_test_listed_abcd"])
    assert raw(listed, "GET", "/v1/account", key="sk_test_listed_abcd")[0] == 200
    assert raw(listed, "GET", "/v1/account", key=listed.secret_key)[0] == 401
    with pytest.raises(ValueError, match="accept_keys"):
        stripe_emulator_factory(accept_keys="none")


def test_rate_limit_answers_429_like_stripe(stripe_emulator_factory):
    ticks = StepClock()  # time passes when the test says, not as fast or slow as the machine sends
    emu = stripe_emulator_factory(rate_limit=5, rate_limit_clock=ticks)
    statuses = []
    for _ in range(12):
        status, headers, body = raw(emu, "GET", "/v1/customers?limit=1")
        statuses.append(status)
        if status == 429:
            assert headers["Stripe-Should-Retry"] == "true" and int(headers["Retry-After"]) >= 1
            assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "rate_limit"
    assert statuses == [200] * 5 + [429] * 7  # a second's worth of burst, then nothing until time passes
    with pytest.raises(stripe.RateLimitError) as err:
        client_for(emu).v1.customers.list()
    assert err.value.http_status == 429 and err.value.error is not None and err.value.error.code == "rate_limit"
    assert emu.stats()["rate_limited"] == 8
    ticks.advance(0.5)  # tokens come back at 5 a second: two and a half
    assert [raw(emu, "GET", "/v1/customers?limit=1")[0] for _ in range(3)] == [200, 200, 429]
    emu.set_rate_limit(None)
    assert all(raw(emu, "GET", "/v1/customers?limit=1")[0] == 200 for _ in range(20))


def _burst(emu, path: str, key: str, n: int) -> list[int]:
    return [raw(emu, "GET", path, key=key)[0] for _ in range(n)]


def test_rate_limit_presets(stripe_emulator_factory):
    ticks = StepClock()
    emu = stripe_emulator_factory(rate_limit="auto", rate_limit_clock=ticks)
    # Test mode: 25 requests per second, a second's worth at once.
    assert _burst(emu, "/v1/customers?limit=1", emu.secret_key, 40) == [200] * 25 + [429] * 15
    # Live mode: 100/s globally but 25/s per endpoint (Stripe's documented default).
    assert _burst(emu, "/v1/events?limit=1", "sk_live_x", 30) == [200] * 25 + [429] * 5
    status, headers, _ = raw(emu, "GET", "/v1/events?limit=1", key="sk_live_x")
    assert status == 429 and headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    # Other endpoints share the account's 100 a second; a refused request costs no bucket anything.
    assert _burst(emu, "/v1/customers?limit=1", "sk_live_x", 25) == [200] * 25
    assert _burst(emu, "/v1/products?limit=1", "sk_live_x", 25) == [200] * 25
    assert _burst(emu, "/v1/prices?limit=1", "sk_live_x", 30) == [200] * 25 + [429] * 5
    status, headers, _ = raw(emu, "GET", "/v1/plans?limit=1", key="sk_live_x")
    assert status == 429 and headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    ticks.advance(1.0)  # a second later each bucket is full again
    assert _burst(emu, "/v1/events?limit=1", "sk_live_x", 26) == [200] * 25 + [429]
    assert _burst(emu, "/v1/customers?limit=1", emu.secret_key, 26) == [200] * 25 + [429]


def test_injected_server_errors_are_deterministic(stripe_emulator_factory):
    def run(emu) -> list[int]:
        return [raw(emu, "GET", "/v1/customers?limit=1")[0] for _ in range(40)]

    a = stripe_emulator_factory(error_rate=0.3)
    first = run(a)
    b = stripe_emulator_factory(error_rate=0.3)
    assert run(b) == first
    assert 4 <= first.count(500) <= 24 and first.count(200) + first.count(500) == 40
    status, headers, body = raw(a, "GET", "/v1/customers")
    a.set_error_rate(1.0)
    status, headers, body = raw(a, "GET", "/v1/customers")
    assert status == 500 and body["error"]["type"] == "api_error" and headers["Stripe-Should-Retry"] == "true"
    with pytest.raises(stripe.APIError):
        client_for(a).v1.customers.list()
    # The SDK's own retries get through once the fault clears.
    a.set_error_rate(0.0)
    assert client_for(a, max_network_retries=2).v1.customers.list().data
    assert a.stats()["injected_errors"] >= 5


def test_latency(stripe_emulator_factory):
    emu = stripe_emulator_factory(latency_ms=80)
    t0 = time.perf_counter()
    raw(emu, "GET", "/v1/customers?limit=1")
    assert time.perf_counter() - t0 >= 0.08  # the delay is a floor, whatever the machine's load
    # Turned off: were a minute of delay still on, the request would outlast `raw`'s 10 s timeout.
    emu.set_latency(60_000)
    emu.set_latency(0)
    assert raw(emu, "GET", "/v1/customers?limit=1")[0] == 200


def test_stats_and_control_api(stripe_emulator):
    emu = stripe_emulator
    client = client_for(emu)
    client.v1.customers.list()
    cid = client.v1.customers.list().data[0].id
    client.v1.customers.retrieve(cid)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.retrieve("cus_nothing0000000")
    stats = control(emu, "stats")
    assert stats["by_route"]["GET /v1/customers"] == {"200": 2}
    assert stats["by_route"]["GET /v1/customers/{id}"] == {"200": 1, "404": 1}
    assert stats["by_path"][f"/v1/customers/{cid}"] == {"200": 1}
    assert stats == emu.stats() or stats["requests"] == 4
    control(emu, "stats/reset", {})
    assert emu.stats()["requests"] == 0

    info = control(emu, "info")
    assert info["account_id"] == emu.account_id and info["api_base"] == emu.api_base
    counts = control(emu, "counts")
    assert counts["customers"] == len(emu.objects("customers"))
    objs = control(emu, "objects/customers?limit=3")
    assert objs["count"] == counts["customers"] and len(objs["data"]) == 3

    faults = control(emu, "faults", {"error_rate": 1.0, "latency_ms": 0})
    assert faults["error_rate"] == 1.0
    assert raw(emu, "GET", "/v1/customers")[0] == 500
    control(emu, "faults", {"error_rate": 0, "rate_limit": "off"})
    assert raw(emu, "GET", "/v1/customers")[0] == 200

    frozen = control(emu, "clock", {"freeze": True, "at": 1_800_000_000})
    assert frozen["now"] == 1_800_000_000 and frozen["frozen"]
    assert client.v1.customers.create(params={"email": "t@example.com"}).created == 1_800_000_000
    control(emu, "clock", {"advance": 60})
    assert emu.clock.time() == 1_800_000_060
    control(emu, "clock", {"unfreeze": True})
    assert not emu.clock.frozen

    mutated = control(emu, "mutate", {"n": 5})
    assert len(mutated["events"]) >= 5
    charge = emu.objects("charges")[0]["id"]
    dispute = control(emu, "objects/disputes", {"charge": charge})
    assert dispute["object"] == "dispute" and dispute["charge"] == charge
    assert client.v1.events.list(params={"limit": 1}).data[0].type == "charge.dispute.created"
    efw = control(emu, "objects/early_fraud_warnings", {"charge": charge})
    assert client.v1.radar.early_fraud_warnings.retrieve(efw["id"]).charge == charge
    review = control(emu, "objects/reviews", {"charge": charge})
    assert client.v1.reviews.retrieve(review["id"]).open is True
    status, _, body = raw(emu, "GET", "/v1/nope")
    assert status == 404 and "Unrecognized request URL" in body["error"]["message"]
