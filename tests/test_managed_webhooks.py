"""Managed webhook endpoints against the emulator's `/v1/webhook_endpoints` and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest
import stripe
from webhook_support import (
    emu_api_get,
    emu_api_post,
    emu_client,
    engine_config,
)

from stripe_sync_core import StripeSync
from stripe_sync_core.managed_webhooks import (
    MANAGED_BY,
    ManagedWebhookError,
    default_enabled_events,
)
from stripe_sync_emulator import StripeEmulator

URL = "https://example.test/stripe-webhooks"


def endpoints(emu: StripeEmulator) -> list[dict]:
    return emu_api_get(emu, "/v1/webhook_endpoints", {"limit": 100})["data"]


async def test_eight_concurrent_callers_end_with_one_endpoint(clean_db: str, emulator: StripeEmulator) -> None:
    engines = [StripeSync(engine_config(clean_db, emulator, pool_max_size=2)) for _ in range(8)]
    for sync in engines:
        await sync.open()
    try:
        found = await asyncio.gather(*(sync.find_or_create_managed_webhook(URL) for sync in engines))
    finally:
        for sync in engines:
            await sync.close()
    assert len({webhook["id"] for webhook in found}) == 1
    assert [e["id"] for e in endpoints(emulator)] == [found[0]["id"]]
    async with StripeSync(engine_config(clean_db, emulator)) as sync:
        assert [w["id"] for w in await sync.list_managed_webhooks()] == [found[0]["id"]]


async def test_an_endpoint_is_reused_and_replaced_when_gone_or_disabled(engine: StripeSync,
                                                                        emulator: StripeEmulator) -> None:
    first = await engine.find_or_create_managed_webhook(URL)
    assert (await engine.find_or_create_managed_webhook(URL))["id"] == first["id"]
    assert first["enabled_events"] == default_enabled_events()

    emu_client(emulator).raw_request("delete", f"/v1/webhook_endpoints/{first['id']}")
    second = await engine.find_or_create_managed_webhook(URL)
    assert second["id"] != first["id"]

    emu_api_post(emulator, f"/v1/webhook_endpoints/{second['id']}", {"disabled": "true"})
    third = await engine.find_or_create_managed_webhook(URL, ["customer.updated"])
    assert third["id"] != second["id"] and third["enabled_events"] == ["customer.updated"]
    assert [e["id"] for e in endpoints(emulator)] == [third["id"]]
    assert [w["id"] for w in await engine.list_managed_webhooks()] == [third["id"]]


async def test_orphan_cleanup_spares_foreign_and_user_endpoints(engine: StripeSync,
                                                                emulator: StripeEmulator) -> None:
    ours = await engine.managed_webhooks.deployment_id()
    users = emu_api_post(emulator, "/v1/webhook_endpoints", {"url": "https://user.test/hook",
                                                             "enabled_events": ["*"]})
    foreign = emu_api_post(emulator, "/v1/webhook_endpoints", {
        "url": "https://other.test/hook", "enabled_events": ["*"],
        "metadata": {"managed_by": MANAGED_BY, "deployment_id": "dep_someoneElse00000"}})
    orphan = emu_api_post(emulator, "/v1/webhook_endpoints", {
        "url": "https://crashed.test/hook", "enabled_events": ["*"],
        "metadata": {"managed_by": MANAGED_BY, "deployment_id": ours}})
    kept = await engine.find_or_create_managed_webhook(URL)  # also cleans up

    remaining = {e["id"] for e in endpoints(emulator)}
    assert remaining == {users["id"], foreign["id"], kept["id"]}
    assert orphan["id"] not in remaining
    assert await engine.managed_webhooks.cleanup_orphans() == []


async def test_create_get_delete_and_refusals(engine: StripeSync, emulator: StripeEmulator) -> None:
    created = await engine.create_managed_webhook(URL, ["customer.created", "customer.updated"])
    with pytest.raises(ManagedWebhookError, match="already exists"):
        await engine.create_managed_webhook(URL)
    fetched = await engine.get_managed_webhook(created["id"])
    assert fetched == created
    endpoint = emu_api_get(emulator, f"/v1/webhook_endpoints/{created['id']}")
    assert endpoint["metadata"] == {"managed_by": MANAGED_BY,
                                    "deployment_id": await engine.managed_webhooks.deployment_id()}

    users = emu_api_post(emulator, "/v1/webhook_endpoints", {"url": "https://user.test/x", "enabled_events": ["*"]})
    with pytest.raises(ManagedWebhookError, match="not a webhook managed by this deployment"):
        await engine.delete_managed_webhook(users["id"])

    await engine.delete_managed_webhook(created["id"])
    assert await engine.get_managed_webhook(created["id"]) is None
    assert [e["id"] for e in endpoints(emulator)] == [users["id"]]


async def test_secrets_are_masked_in_reprs_and_logs(engine: StripeSync, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    webhook = await engine.find_or_create_managed_webhook(URL)
    secret = webhook.signing_secret
    assert secret.startswith("whsec_") and len(secret) > 20
    assert webhook["secret"] == f"whsec_...{secret[-4:]}"
    for shown in (repr(webhook), str(webhook), repr(await engine.list_managed_webhooks()), caplog.text):
        assert secret not in shown
    row = await engine.database.fetch_one("SELECT secret FROM stripe._managed_webhooks")
    assert row == {"secret": secret}  # the full secret is kept where signatures are checked


async def test_the_deployment_id_is_stable(clean_db: str, emulator: StripeEmulator) -> None:
    async with StripeSync(engine_config(clean_db, emulator)) as a, StripeSync(engine_config(clean_db, emulator)) as b:
        assert await a.managed_webhooks.deployment_id() == await b.managed_webhooks.deployment_id()
        assert re.fullmatch(r"dep_[0-9a-f]{16}", await a.managed_webhooks.deployment_id())


def test_the_default_events_are_all_subscribable() -> None:
    """Stripe refuses an endpoint whose `enabled_events` names an unknown type: check them against the SDK."""
    params = Path(stripe.__file__).parent / "params" / "_webhook_endpoint_create_params.py"
    accepted = set(re.findall(r'"([a-z_]+(?:\.[a-z_]+)+)"', params.read_text()))
    assert set(default_enabled_events()) <= accepted
