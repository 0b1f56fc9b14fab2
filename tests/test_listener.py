"""The embedded listener over real HTTP: the emulator's signed deliveries (with duplicates, reorders and
same-second bursts), status codes, a database outage, catch-up from /v1/events and the ngrok tunnel."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from fake_ngrok_support import FAKE_NGROK, fake_agent_pids
from pyngrok import installer
from webhook_support import (
    WEBHOOK_SECRET,
    PostgresProxy,
    count,
    emu_api_get,
    engine_config,
    event,
    mismatches,
    signed,
)

from stripe_sync_core import StripeSync
from stripe_sync_core.progress import RecordingSink
from stripe_sync_emulator import StripeEmulator

FIXTURES = json.loads((Path(__file__).parent / "data" / "stripe_fixtures.json").read_text())["resources"]
NGROK_TOKEN = "2fakeTokenForListenerTests_abcdef5678"


async def post(url: str, body: bytes, signature: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def get(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def deliveries_done(emu: StripeEmulator, timeout: float = 30.0) -> None:
    assert await asyncio.to_thread(emu.wait_for_deliveries, timeout), "deliveries still pending"


async def test_faulty_deliveries_end_equal_to_the_emulator(engine: StripeSync, emulator: StripeEmulator) -> None:
    emulator.set_webhook_faults(duplicate=0.2, reorder=0.3)
    sink = engine.progress
    assert isinstance(sink, RecordingSink)
    async with engine.listener(port=0, manage_webhook=True, catch_up=False) as listener:
        events = await asyncio.to_thread(emulator.mutate_random, 60, None, True)  # all in one second
        events += await asyncio.to_thread(emulator.mutate_random, 60)
        await deliveries_done(emulator)
        state = listener.state
    assert await mismatches(engine, emulator, events) == []
    assert state.received == state.ok > len(events)  # duplicates were delivered too, and acknowledged
    assert (state.client_errors, state.server_errors) == (0, 0)
    assert await count(engine, "SELECT 1 FROM stripe._events") == len(events)
    outcomes = await engine.database.fetch_all("SELECT DISTINCT outcome FROM stripe._events")
    assert {"stored", "refetched"} <= {r["outcome"] for r in outcomes}
    replies = [args for name, args in sink.calls if name == "event_received"]
    assert len(replies) == state.received and {args[3] for args in replies} == {200}
    assert any(args[2] == "duplicate" for args in replies)
    banner = [args[1] for name, args in sink.calls if name == "message"][0]
    # Registered at its own local URL (the emulator reaches it): no tunnel forwards to it.
    assert banner.startswith("Ready! Listening on http://127.0.0.1:") and "(webhook we_" in banner


async def test_status_codes(engine: StripeSync) -> None:
    async with engine.listener(port=0, catch_up=False, max_body_bytes=64 * 1024) as listener:
        url = listener.state.local_url
        assert url is not None
        now = int(time.time())
        ok_body, ok_signature = signed(event("customer.updated", FIXTURES["customer"], now))
        assert await post(url, ok_body, ok_signature) == (200, {"received": True, "outcome": "stored"})
        assert (await post(url, ok_body, ok_signature))[1]["outcome"] == "duplicate"

        other = signed(event("customer.updated", {**FIXTURES["customer"], "id": "cus_other"}, now))
        assert (await post(url, other[0], ok_signature))[0] == 400  # signature of another body
        assert (await post(url, other[0]))[0] == 400  # no signature
        replay = signed(event("customer.updated", {**FIXTURES["customer"], "id": "cus_replay"}, now),
                        timestamp=now - 400)
        status, reply = await post(url, *replay)
        assert status == 400 and "tolerance" in reply["error"]
        import stripe

        for body in (b"{oops", b'{"id": "evt_x", "type": "customer.updated"}'):
            header = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)
            assert (await post(url, body, header))[0] == 400
        big = event("customer.updated", {**FIXTURES["customer"], "id": "cus_big", "description": "x" * 70_000}, now)
        assert (await post(url, *signed(big)))[0] == 413

        unknown = signed(event("issuing_card.created", {"id": "ic_1", "object": "issuing.card"}, now))
        assert await post(url, *unknown) == (200, {"received": True, "outcome": "ignored"})
        upcoming = {k: v for k, v in FIXTURES["invoice"].items() if k != "id"}
        assert (await post(url, *signed(event("invoice.upcoming", upcoming, now, "evt_up"))))[1]["outcome"] == "ignored"

        status, health = await get(url.replace("/webhooks", "/healthz"))
        assert status == 200 and health["database"] == "ok"
        # Through the tunnel (the ngrok agent forwards from loopback, adding X-Forwarded-For): liveness only.
        async with aiohttp.ClientSession() as session, \
                session.get(url.replace("/webhooks", "/healthz"), headers={"X-Forwarded-For": "203.0.113.9"}) as reply:
            assert (reply.status, await reply.json()) == (200, {"status": "ok"})
        state = listener.state
        assert (state.received, state.ok, state.client_errors, state.server_errors) == (10, 4, 6, 0)
    assert await count(engine, "SELECT 1 FROM stripe.customers") == 1  # nothing from the refused ones
    assert await count(engine, "SELECT 1 FROM stripe._events") == 3


async def test_a_hostile_refused_body_costs_a_bounded_scan_and_never_raises(engine: StripeSync, caplog) -> None:
    """Unsigned bodies built to hurt a parser (nesting 100,000 deep, megabytes of JSON) are refused with
    400, logged without a traceback, written nowhere; the feed shows the id a body claims, untrusted."""
    sink = engine.progress
    assert isinstance(sink, RecordingSink)
    async with engine.listener(port=0, catch_up=False) as listener:
        url = listener.state.local_url
        assert url is not None
        nested = b'{"id": "evt_nested", "type": "customer.updated", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        large = json.dumps({"id": "evt_large", "type": "charge.updated",
                            "data": {"object": {"items": [{"n": i} for i in range(150_000)]}}}).encode()
        for body in (nested, b"[" * 100_000, large, b"\xff\xfe" * 1000):
            status, reply = await post(url, body, "t=1,v1=00")
            assert status == 400, reply
        # Signed but unstorable (a NaN): acknowledged as a dead letter, not a 5xx Stripe would retry.
        nan = event("customer.updated", {**FIXTURES["customer"], "balance": float("nan")}, int(time.time()), "evt_nan")
        assert await post(url, *signed(nan)) == (200, {"received": True, "outcome": "dead_letter"})
        assert listener.state.server_errors == 0
    assert not [r for r in caplog.records if r.exc_info], "a refused body logged a traceback"
    claimed = [(args[0], args[1]) for name, args in sink.calls if name == "event_received"]
    assert claimed == [("evt_nested", "customer.updated"), ("-", "-"), ("evt_large", "charge.updated"), ("-", "-"),
                       ("evt_nan", "customer.updated")]
    assert await count(engine, "SELECT 1 FROM stripe._events") == 0
    assert await count(engine, "SELECT 1 FROM stripe._dead_letters") == 1


async def test_a_frozen_database_is_answered_503_within_a_bound_and_nothing_is_lost(clean_db: str,
                                                                                  emulator: StripeEmulator) -> None:
    """The database stops answering without closing anything (SIGSTOP, a partition): a delivery is not
    held for as long as the freeze lasts but answered 503 within two db_timeouts, and once the
    database answers again the redelivery stores it."""
    proxy = await PostgresProxy(clean_db).start()
    try:
        async with StripeSync(engine_config(proxy.url, emulator)) as sync, \
                sync.listener(port=0, catch_up=False, db_timeout=0.5) as listener:
            url = listener.state.local_url
            assert url is not None and listener.request_timeout == 1.0
            now = int(time.time())
            first = signed(event("customer.updated", {**FIXTURES["customer"], "id": "cus_before"}, now, "evt_before"))
            assert (await post(url, *first))[0] == 200
            proxy.freeze()
            frozen = signed(event("customer.updated", {**FIXTURES["customer"], "id": "cus_frozen"}, now, "evt_frozen"))
            answers = await asyncio.gather(*(post(url, *frozen) for _ in range(3)))
            assert all(status == 503 and "retry later" in reply["error"] for status, reply in answers), answers
            proxy.thaw()
            status, reply = await post(url, *frozen)
            assert status == 200 and reply["outcome"] in ("stored", "duplicate")
            assert await count(sync, "SELECT 1 FROM stripe.customers WHERE id = 'cus_frozen'") == 1
    finally:
        proxy.thaw()
        await proxy.close()


async def test_nothing_is_lost_while_the_database_is_down(clean_db: str, emulator: StripeEmulator) -> None:
    proxy = await PostgresProxy(clean_db).start()
    try:
        async with StripeSync(engine_config(proxy.url, emulator)) as sync, \
                sync.listener(port=0, manage_webhook=True, catch_up=False, db_timeout=0.5) as listener:
            await proxy.down()
            events = await asyncio.to_thread(emulator.mutate_random, 25)
            deadline = time.monotonic() + 20
            while listener.state.server_errors < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert listener.state.server_errors >= 5 and listener.state.ok == 0
            status, health = await get(listener.state.local_url.replace("/webhooks", "/healthz"))
            assert (status, health["database"]) == (503, "unreachable")
            statuses = {d["status"] for d in emulator.deliveries()}
            assert statuses <= {503}, statuses

            await proxy.up()
            await deliveries_done(emulator, 60)
            assert await mismatches(sync, emulator, events) == []
            assert await count(sync, "SELECT 1 FROM stripe._events") == len(events)
    finally:
        await proxy.close()


async def test_catch_up_applies_events_missed_while_down(engine: StripeSync, emulator: StripeEmulator) -> None:
    first = await asyncio.to_thread(emulator.mutate_random, 10)
    for ev in first:  # as if delivered while the listener ran
        await engine.process_event(ev)
    emulator.clock.advance(2)
    missed = await asyncio.to_thread(emulator.mutate_random, 30)  # no endpoint: nobody hears of these
    listener = engine.listener(port=0)
    state = await listener.start()
    try:
        catch_up = state.catch_up
        assert catch_up.state == "done" and not catch_up.backfill_recommended
        assert catch_up.applied == len(missed)
        assert await mismatches(engine, emulator, first + missed) == []
    finally:
        await listener.stop()


async def test_catch_up_covers_connected_accounts_under_their_own_header(clean_db: str) -> None:
    with StripeEmulator(seed=8, customers=5, connected_accounts=1) as emu:
        connected = emu.connected_account_ids[0]
        async with StripeSync(engine_config(clean_db, emu)) as sync:
            first_own = await asyncio.to_thread(emu.mutate_random, 5)
            first_connected = await asyncio.to_thread(emu.mutate_random, 5, connected)
            for ev in first_own + first_connected:  # delivered while the listener ran
                await sync.process_event(ev)
            emu.clock.advance(2)
            missed_own = await asyncio.to_thread(emu.mutate_random, 5)
            missed_connected = await asyncio.to_thread(emu.mutate_random, 12, connected)
            listener = sync.listener(port=0)
            state = await listener.start()
            await listener.stop()
            assert state.catch_up.state == "done", state.catch_up.message
            assert state.catch_up.applied == len(missed_own) + len(missed_connected)
            assert "across 2 accounts" in state.catch_up.message
            assert await mismatches(sync, emu, first_own + missed_own) == []
            assert await mismatches(sync, emu, first_connected + missed_connected, account=connected) == []


async def test_catch_up_recommends_a_backfill_beyond_stripes_retention(engine: StripeSync) -> None:
    sink = engine.progress
    assert isinstance(sink, RecordingSink)
    listener = engine.listener(port=0)
    state = await listener.start()
    await listener.stop()
    assert state.catch_up.state == "skipped" and state.catch_up.backfill_recommended

    old = datetime.now(UTC) - timedelta(days=45)
    await engine.database.execute(
        "INSERT INTO stripe._events (id, type, account_id, event_created, outcome) VALUES (%s, %s, %s, %s, %s)",
        ("evt_long_ago", "customer.updated", await engine.own_account_id(), old, "stored"))
    state = await listener.start()
    await listener.stop()
    assert state.catch_up.state == "done" and state.catch_up.backfill_recommended
    assert "backfill" in state.catch_up.message
    assert any(name == "message" and args[0] == "warning" and "backfill" in args[1] for name, args in sink.calls)


# -- the tunnel ----------------------------------------------------------------------------------------


@pytest.fixture
def fake_ngrok(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert os.access(FAKE_NGROK, os.X_OK), f"{FAKE_NGROK} is missing or not executable"
    for var in ("STRIPE_SYNC_NGROK_PATH", "NGROK_AUTHTOKEN", "FAKE_NGROK_VALID_TOKENS", "PYNGROK_NGROK_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyngrok tried to download ngrok")

    monkeypatch.setattr(installer, "install_ngrok", no_download)
    yield str(FAKE_NGROK)
    leftovers = fake_agent_pids()
    for pid in leftovers:
        os.kill(pid, 9)
    assert leftovers == [], "fake ngrok agents left running"


@pytest.mark.parametrize("remove_on_exit", [False, True])
async def test_the_tunnel_exposes_the_listener_and_closes_with_it(engine: StripeSync, emulator: StripeEmulator,
                                                                   fake_ngrok: str, remove_on_exit: bool) -> None:
    listener = engine.listener(port=0, ngrok_auth_token=NGROK_TOKEN, ngrok_path=fake_ngrok,
                               remove_webhook_on_exit=remove_on_exit, catch_up=False)
    state = await listener.start()
    try:
        assert state.public_url and state.public_url.startswith("https://")
        assert state.webhook_url == f"{state.public_url}/webhooks"
        [endpoint] = emu_api_get(emulator, "/v1/webhook_endpoints")["data"]
        assert (endpoint["id"], endpoint["url"]) == (state.webhook_id, state.webhook_url)
        assert len(fake_agent_pids()) == 1
        status, _ = await get(state.local_url.replace("/webhooks", "/healthz"))
        assert status == 200
    finally:
        await listener.stop()
    assert fake_agent_pids() == [] and not state.running
    remaining = emu_api_get(emulator, "/v1/webhook_endpoints")["data"]
    assert len(remaining) == (0 if remove_on_exit else 1)
    assert len(await engine.list_managed_webhooks()) == (0 if remove_on_exit else 1)
    assert NGROK_TOKEN not in repr(listener.state)
