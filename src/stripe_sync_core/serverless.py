"""Ready webhook handlers for function platforms, answering like the listener (`listener.py`).

- AWS Lambda: `stripe_sync_core.serverless.lambda_handler`, behind API Gateway (REST API, payload
  format 1.0; HTTP API, 2.0) or a Function URL (2.0); base64 bodies decoded.
- Google Cloud Functions (Python, HTTP trigger): `cloud_function_handler(request)`, the Flask request
  the platform passes (`get_data()`, `headers`, `method`); it returns Flask's (body, status, headers).

Settings come from the environment, as for every command (`DATABASE_URL`, `STRIPE_API_KEY`,
`STRIPE_WEBHOOK_SECRET`). A warm instance reuses one engine and its pool: opened at the first delivery,
kept on an event loop thread of its own between invocations; a connection that died while the instance
was frozen is replaced and the delivery tried once more. Behind a pooler in transaction mode (the
usual URL for functions: Supabase's port 6543, RDS Proxy) the engine needs nothing of a session.

Answers: 200 once the event is committed; 400 for a bad, stale or replayed signature or a malformed
body (nothing written); 405 for a method other than POST; 413 over the size limit; 503 while the
database is unreachable or slow (Stripe redelivers); 500 for anything else, such as missing settings.
No web framework is imported here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import SyncConfig, load_config
from .errors import NotConfigured, StripeSyncError
from .event_writer import is_connection_error
from .listener import DEFAULT_MAX_BODY_BYTES, REQUEST_TIMEOUT_DB_TIMEOUTS
from .loop_thread import LoopThread
from .masking import mask_secrets_in
from .webhooks import WebhookError

if TYPE_CHECKING:
    from .sync import StripeSync

SIGNATURE_HEADER = "stripe-signature"
DB_TIMEOUT_SECONDS = 5.0


class FunctionNotConfigured(NotConfigured, RuntimeError):
    """A setting the function needs is missing (it has no embedded database to fall back on)."""


@dataclass(frozen=True)
class WebhookReply:
    """What a handler answers: an HTTP status and a JSON body."""

    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    @property
    def body(self) -> str:
        return json.dumps(self.payload)


class WebhookFunction:
    """One engine for the life of a function instance, shared by its invocations (and threads).

    `config` defaults to the environment's settings, read at the first delivery.
    """

    def __init__(self, config: SyncConfig | None = None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 db_timeout: float = DB_TIMEOUT_SECONDS) -> None:
        self.config = config
        self.max_body_bytes = max_body_bytes
        self.request_timeout = REQUEST_TIMEOUT_DB_TIMEOUTS * db_timeout
        """How long one delivery may take before it is answered 503 (Stripe retries it)."""
        self._lock = threading.Lock()
        self._thread: LoopThread | None = None
        self._sync: StripeSync | None = None

    def deliver(self, method: str, body: bytes, signature: str | None) -> WebhookReply:
        """Verify and store one delivery; the reply to send back."""
        if method.upper() != "POST":
            return WebhookReply(405, {"error": f"{method} is not allowed: Stripe delivers with POST"},
                                {"Content-Type": "application/json", "Allow": "POST"})
        if len(body) > self.max_body_bytes:
            return WebhookReply(413, {"error": f"body over {self.max_body_bytes} bytes"})
        try:
            thread, sync = self._engine()
            try:
                return self._process(thread, sync, body, signature or "")
            except Exception as error:
                if not is_connection_error(error):
                    raise
                # Connections the pool kept while the instance was frozen may be gone: drop the broken
                # ones, and try again (safe: a stored event is recognised as a duplicate).
                thread.run_blocking(sync.database.pool.check())
                return self._process(thread, sync, body, signature or "")
        except WebhookError as error:
            return WebhookReply(400, {"error": str(error)})
        except TimeoutError:
            return WebhookReply(503, {"error": f"not stored within {self.request_timeout:g} s (the database is "
                                               "slow or unreachable); retry later"})
        except Exception as error:
            if is_connection_error(error):
                return WebhookReply(503, {"error": "the database is unreachable; retry later"})
            message = str(error) if isinstance(error, StripeSyncError) else f"{type(error).__name__}: {error}"
            return WebhookReply(500, {"error": mask_secrets_in(message)})

    def _process(self, thread: LoopThread, sync: StripeSync, body: bytes, signature: str) -> WebhookReply:
        outcome = thread.run_blocking(self._bounded(sync, body, signature))
        return WebhookReply(200, {"received": True, "outcome": outcome.outcome})

    async def _bounded(self, sync: StripeSync, body: bytes, signature: str) -> Any:
        # As the listener: the write is left to finish or fail on its own after a 503.
        processing = asyncio.ensure_future(sync.process_webhook(body, signature))
        await asyncio.wait({processing}, timeout=self.request_timeout)
        if not processing.done():
            processing.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise TimeoutError
        return processing.result()

    def _engine(self) -> tuple[LoopThread, StripeSync]:
        with self._lock:
            if self._thread is None:
                self._thread = LoopThread("stripe-sync-function")
            if self._sync is None:
                from .sync import StripeSync

                config = self.config or load_config()
                if not config.database_url:
                    raise FunctionNotConfigured(
                        "DATABASE_URL is not set: a function needs its database's URL (behind a pooler, "
                        "the pooler's, e.g. Supabase's port 6543), it has no embedded database")
                sync = StripeSync(config)
                self._thread.run_blocking(sync.open())  # on failure the next delivery tries again
                self._sync = sync
            return self._thread, self._sync

    def close(self) -> None:
        """Close the engine and its thread (a test, or a platform's shutdown hook)."""
        with self._lock:
            sync, self._sync = self._sync, None
            thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            if sync is not None:
                thread.run_blocking(sync.close())
        finally:
            thread.stop()


_shared: WebhookFunction | None = None
_shared_lock = threading.Lock()


def shared_function() -> WebhookFunction:
    """The instance's one `WebhookFunction`, made at the first delivery (not at import)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WebhookFunction()
        return _shared


# -- AWS Lambda ----------------------------------------------------------------------------------------

def lambda_handler(event: Mapping[str, Any], context: object = None) -> dict[str, Any]:
    """AWS Lambda handler for API Gateway (payload format 1.0 or 2.0) and Function URL events."""
    return lambda_reply(shared_function(), event)


def lambda_reply(function: WebhookFunction, event: Mapping[str, Any]) -> dict[str, Any]:
    """Answer one Lambda HTTP event with `function`; the proxy-integration response."""
    if not isinstance(event, Mapping):
        reply = WebhookReply(400, {"error": "not an HTTP event (API Gateway or Function URL)"})
    else:
        method = event.get("httpMethod") or (event.get("requestContext") or {}).get("http", {}).get("method") or ""
        try:
            body = _lambda_body(event)
        except ValueError as error:
            reply = WebhookReply(400, {"error": str(error)})
        else:
            reply = function.deliver(str(method), body, header(event.get("headers"), SIGNATURE_HEADER))
    return {"statusCode": reply.status, "headers": reply.headers, "body": reply.body, "isBase64Encoded": False}


def _lambda_body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise ValueError("the event's body is not a string")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the event's body is marked base64 but is not") from None
    return body.encode()


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """A header by name, whatever its case (API Gateway 1.0 keeps the client's, 2.0 lowers it)."""
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return None if value is None else str(value)
    return None


# -- Google Cloud Functions ----------------------------------------------------------------------------

def cloud_function_handler(request: Any) -> tuple[str, int, dict[str, str]]:
    """Google Cloud Functions (HTTP) entry point: takes the platform's Flask request, returns Flask's
    (body, status, headers). Deploy it from a `main.py` that imports it under the entry point's name."""
    return cloud_function_reply(shared_function(), request)


def cloud_function_reply(function: WebhookFunction, request: Any) -> tuple[str, int, dict[str, str]]:
    """Answer one Flask-style request with `function`."""
    length = getattr(request, "content_length", None)
    if length is not None and length > function.max_body_bytes:
        reply = WebhookReply(413, {"error": f"body over {function.max_body_bytes} bytes"})
    else:
        reply = function.deliver(str(request.method), request.get_data(), request.headers.get("Stripe-Signature"))
    return reply.body, reply.status, reply.headers


__all__ = ["FunctionNotConfigured", "WebhookFunction", "WebhookReply", "cloud_function_handler",
           "cloud_function_reply", "lambda_handler", "lambda_reply", "shared_function"]
