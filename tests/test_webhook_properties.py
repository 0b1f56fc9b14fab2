"""Properties of the webhook endpoint and the event parser, for any input (Hypothesis).

Whatever the body and the signature header, `process_webhook` either applies a signed, well-formed
event (an outcome: the listener answers 2xx) or refuses with a `WebhookError` (400): never another
exception, which the listener would answer with a 5xx that Stripe retries for days. Nothing is
written unless the delivery is signed and valid.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_support import WEBHOOK_SECRET, engine_config

from stripe_sync_core.blocking import BlockingStripeSync
from stripe_sync_core.registry import EVENT_TYPES
from stripe_sync_core.webhooks import WebhookError

OUTCOMES = {"stored", "stale", "duplicate", "ignored", "deleted", "refetched", "dead_letter", "unchanged"}
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
event_types = st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=30)
ids = st.text(max_size=30) | st.from_regex(r"(cus|ch|in|sub|evt|pi|re)_[A-Za-z0-9]{1,20}", fullmatch=True)


@st.composite
def event_like(draw: Any) -> dict:
    """Something shaped like a Stripe event, any field possibly wrong."""
    obj = draw(st.dictionaries(st.sampled_from(["id", "object", "customer", "amount", "created", "metadata",
                                                "deleted", "items", "lines"]), json_values, max_size=6))
    if draw(st.booleans()):
        obj["id"] = draw(ids)
    event: dict[str, Any] = {"id": draw(ids), "object": "event", "type": draw(event_types),
                             "created": draw(st.integers(min_value=-(2**40), max_value=2**40) | json_values),
                             "data": {"object": obj} if draw(st.booleans()) else draw(json_values)}
    for key in draw(st.sets(st.sampled_from(list(event)), max_size=2)):
        del event[key]
    if draw(st.booleans()):
        event["account"] = draw(ids | json_values)
    return event


def _sign(body: bytes, timestamp: int | None = None) -> str:
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


@pytest.fixture
def sync(clean_db, emulator):
    """The engine behind a blocking facade: Hypothesis drives plain functions."""
    with BlockingStripeSync(engine_config(clean_db, emulator)) as engine:
        yield engine


def _rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM stripe.{table}").fetchone()[0]


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=2000) | st.builds(lambda e: json.dumps(e).encode(), event_like()),
       signature=st.text(max_size=120) | st.builds(lambda t: f"t={t},v1=" + "0" * 64, st.integers()))
def test_any_unsigned_body_is_refused_and_writes_nothing(sync, clean_db, body: bytes, signature: str) -> None:
    try:
        sync.process_webhook(body, signature)
    except WebhookError:
        pass
    else:
        raise AssertionError(f"accepted an unsigned delivery: {body[:80]!r} {signature!r}")
    assert _rows(clean_db, "_events") == _rows(clean_db, "_dead_letters") == 0


@PROPERTY_SETTINGS
@given(event=event_like(), ascii_only=st.booleans())
def test_any_signed_event_ends_in_an_outcome_or_a_400(sync, event: dict, ascii_only: bool) -> None:
    body = json.dumps(event, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        result = sync.process_webhook(body, _sign(body))
    except WebhookError:
        return
    assert result.outcome in OUTCOMES, result


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=500))
def test_any_signed_bytes_end_in_an_outcome_or_a_400(sync, body: bytes) -> None:
    try:
        result = sync.process_webhook(body, _sign(body))
    except WebhookError:
        return
    assert result.outcome in OUTCOMES, result
