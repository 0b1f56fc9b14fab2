"""The function handlers (`stripe_sync_core.serverless`) invoked with each platform's documented request
shape, against the test database and events signed as the emulator signs its deliveries: AWS Lambda
behind API Gateway (REST API, payload format 1.0; HTTP API 2.0, base64 bodies) and a Function URL,
Google Cloud Functions with the Flask request it passes."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import flask
import psycopg
import pytest
from webhook_support import WEBHOOK_SECRET, PostgresProxy, engine_config

from stripe_sync_core import SyncConfig
from stripe_sync_core.serverless import (
    WebhookFunction,
    cloud_function_handler,
    cloud_function_reply,
    lambda_handler,
    lambda_reply,
    shared_function,
)
from stripe_sync_emulator import StripeEmulator
from stripe_sync_emulator.delivery import sign


@pytest.fixture
def function(clean_db: str, emulator: StripeEmulator) -> Iterator[WebhookFunction]:
    handler = WebhookFunction(engine_config(clean_db, emulator))
    yield handler
    handler.close()


def latest_event(emulator: StripeEmulator, object_id: str) -> dict:
    return [e for e in emulator.events() if e["data"]["object"].get("id") == object_id][-1]


def delivery(emulator: StripeEmulator, name: str = "Ada") -> tuple[dict, str, str]:
    """A customer created in the emulator: its event, the payload as delivered and its signature."""
    customer = emulator.create("customers", {"name": name})
    event = latest_event(emulator, customer["id"])
    payload = json.dumps(event)
    return event, payload, sign(payload, WEBHOOK_SECRET)


def api_gateway_v1(payload: str, signature: str, *, method: str = "POST") -> dict[str, Any]:
    """API Gateway REST API, Lambda proxy integration (payload format 1.0): headers as the client sent them."""
    return {"resource": "/webhooks", "path": "/webhooks", "httpMethod": method,
            "headers": {"Content-Type": "application/json", "Stripe-Signature": signature,
                        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
            "multiValueHeaders": {"Stripe-Signature": [signature]},
            "queryStringParameters": None, "pathParameters": None, "stageVariables": None,
            "requestContext": {"resourcePath": "/webhooks", "httpMethod": method, "stage": "prod"},
            "body": payload, "isBase64Encoded": False}


def http_api_v2(payload: str, signature: str, *, method: str = "POST", base64_body: bool = True) -> dict[str, Any]:
    """API Gateway HTTP API / Lambda Function URL (payload format 2.0): lower-case headers, and a body
    in base64 unless its content type is text."""
    body = base64.b64encode(payload.encode()).decode() if base64_body else payload
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
            "headers": {"content-type": "application/json", "stripe-signature": signature},
            "requestContext": {"accountId": "anonymous", "domainName": "abc.lambda-url.us-east-1.on.aws",
                               "http": {"method": method, "path": "/", "protocol": "HTTP/1.1",
                                        "sourceIp": "3.18.12.63", "userAgent": "Stripe/1.0"},
                               "requestId": "id", "routeKey": "$default", "stage": "$default"},
            "body": body, "isBase64Encoded": base64_body}


def stored_customers(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT id, name FROM stripe.customers").fetchall())


def connections(url: str) -> int:
    """Client connections to the test database, this one excluded."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchone()
        return int(row[0]) if row else 0


def test_lambda_events_of_every_shape_are_stored_by_one_warm_engine(function, clean_db, emulator) -> None:
    event, payload, signature = delivery(emulator, "Ada")
    reply = lambda_reply(function, api_gateway_v1(payload, signature))
    assert reply["statusCode"] == 200 and json.loads(reply["body"]) == {"received": True, "outcome": "stored"}
    assert reply["headers"]["Content-Type"] == "application/json"
    customer = event["data"]["object"]["id"]
    assert stored_customers(clean_db) == {customer: "Ada"}
    opened = connections(clean_db)

    for i, shape in enumerate((http_api_v2, lambda p, s: http_api_v2(p, s, base64_body=False))):
        emulator.action("customers", customer, "update", {"name": f"Ada {i}"})
        payload = json.dumps(latest_event(emulator, customer))
        reply = lambda_reply(function, shape(payload, sign(payload, WEBHOOK_SECRET)))
        assert reply["statusCode"] == 200, reply["body"]
        assert stored_customers(clean_db) == {customer: f"Ada {i}"}
    assert connections(clean_db) == opened  # the warm engine's pool, not a connection per invocation

    again = lambda_reply(function, api_gateway_v1(payload, sign(payload, WEBHOOK_SECRET)))
    assert again["statusCode"] == 200 and json.loads(again["body"])["outcome"] == "duplicate"


@pytest.mark.parametrize("case", ["bad signature", "no signature", "not json", "bad base64"])
def test_lambda_refuses_a_bad_delivery_with_400_and_writes_nothing(function, clean_db, emulator, case) -> None:
    _, payload, signature = delivery(emulator)
    event = {
        "bad signature": api_gateway_v1(payload, sign(payload, "whsec_someoneElsesSecret")),
        "no signature": {**http_api_v2(payload, signature), "headers": {"content-type": "application/json"}},
        "not json": http_api_v2("{not json", sign("{not json", WEBHOOK_SECRET)),
        "bad base64": {**http_api_v2(payload, signature), "body": "%%% not base64 %%%"},
    }[case]
    reply = lambda_reply(function, event)
    assert reply["statusCode"] == 400 and json.loads(reply["body"])["error"]
    assert stored_customers(clean_db) == {}


def test_lambda_answers_405_to_other_methods_and_413_over_the_size_limit(clean_db, emulator) -> None:
    handler = WebhookFunction(engine_config(clean_db, emulator), max_body_bytes=64)
    try:
        _, payload, signature = delivery(emulator)
        get = lambda_reply(handler, http_api_v2("", "", method="GET", base64_body=False))
        assert get["statusCode"] == 405 and get["headers"]["Allow"] == "POST"
        assert lambda_reply(handler, api_gateway_v1(payload, signature))["statusCode"] == 413
        assert stored_customers(clean_db) == {}
    finally:
        handler.close()


def test_a_connection_lost_while_the_instance_was_frozen_is_replaced(function, clean_db, emulator) -> None:
    _, payload, signature = delivery(emulator, "Ada")
    assert lambda_reply(function, api_gateway_v1(payload, signature))["statusCode"] == 200
    with psycopg.connect(clean_db, autocommit=True) as conn:  # what an idle timeout of the server does
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    _, payload, _ = delivery(emulator, "Grace")
    reply = lambda_reply(function, api_gateway_v1(payload, sign(payload, WEBHOOK_SECRET)))
    assert reply["statusCode"] == 200, reply["body"]
    assert sorted(stored_customers(clean_db).values()) == ["Ada", "Grace"]


async def test_an_unreachable_database_is_a_503_until_it_is_back(clean_db, emulator) -> None:
    proxy = await PostgresProxy(clean_db).start()
    handler = WebhookFunction(engine_config(proxy.url, emulator), db_timeout=0.5)
    try:
        _, payload, signature = delivery(emulator, "Ada")
        event = api_gateway_v1(payload, signature)
        assert (await asyncio.to_thread(lambda_reply, handler, event))["statusCode"] == 200
        await proxy.down()
        _, payload, _ = delivery(emulator, "Grace")
        event = api_gateway_v1(payload, sign(payload, WEBHOOK_SECRET))
        down = await asyncio.to_thread(lambda_reply, handler, event)
        assert down["statusCode"] == 503 and "retry later" in json.loads(down["body"])["error"]
        await proxy.up()
        for _ in range(100):  # Stripe's retries, sped up
            reply = await asyncio.to_thread(lambda_reply, handler, event)
            if reply["statusCode"] == 200:
                break
            assert reply["statusCode"] == 503
            await asyncio.sleep(0.1)
        assert reply["statusCode"] == 200
        assert sorted(stored_customers(clean_db).values()) == ["Ada", "Grace"]
    finally:
        await asyncio.to_thread(handler.close)
        await proxy.close()


def test_missing_settings_are_a_500_that_names_them(emulator) -> None:
    handler = WebhookFunction(SyncConfig(stripe_webhook_secret=WEBHOOK_SECRET))
    try:
        _, payload, signature = delivery(emulator)
        reply = lambda_reply(handler, api_gateway_v1(payload, signature))
        assert reply["statusCode"] == 500 and "DATABASE_URL" in json.loads(reply["body"])["error"]
    finally:
        handler.close()


def test_cloud_functions_flask_requests(function, clean_db, emulator) -> None:
    app = flask.Flask("function")
    event, payload, signature = delivery(emulator, "Ada")
    with app.test_request_context("/", method="POST", data=payload,
                                  headers={"Content-Type": "application/json", "Stripe-Signature": signature}):
        body, status, headers = cloud_function_reply(function, flask.request)
    assert status == 200 and json.loads(body)["outcome"] == "stored" and headers["Content-Type"] == "application/json"
    assert stored_customers(clean_db) == {event["data"]["object"]["id"]: "Ada"}
    with app.test_request_context("/", method="POST", data=payload, headers={"Stripe-Signature": "t=1,v1=00"}):
        assert cloud_function_reply(function, flask.request)[1] == 400
    with app.test_request_context("/", method="GET"):
        assert cloud_function_reply(function, flask.request)[1] == 405


def test_the_entry_points_read_the_environment_and_share_one_engine(clean_db, emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("STRIPE_SYNC_CONFIG", str(tmp_path / "absent.toml"))
    for name, value in engine_config(clean_db, emulator).child_environment({}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("stripe_sync_core.serverless._shared", None)
    try:
        _, payload, signature = delivery(emulator, "Ada")
        assert lambda_handler(http_api_v2(payload, signature), None)["statusCode"] == 200
        _, payload, _ = delivery(emulator, "Grace")
        with flask.Flask("function").test_request_context(
                "/", method="POST", data=payload, headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET)}):
            assert cloud_function_handler(flask.request)[1] == 200
        assert sorted(stored_customers(clean_db).values()) == ["Ada", "Grace"]
    finally:
        shared_function().close()
