"""Calls to the Stripe API through the official SDK, with one shared request budget and retries.

The SDK's own retries are off: this module retries 429, 409 lock timeouts, 5xx and network errors with
exponential backoff and jitter, honouring `Retry-After` and `Stripe-Should-Retry`, so that every
caller (webhooks, backfill, single-object sync) gets the same behaviour and the same request budget.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import stripe

from .config import SyncConfig
from .database import parse_json
from .errors import ErrorKind, StripeSyncError
from .masking import mask_secrets_in

# Stripe's documented default read limits per second (live, test), and the default limit of each API
# endpoint (one method and route, e.g. GET /v1/customers/{id}), which counts against the global one too.
LIVE_REQUESTS_PER_SECOND = 100.0
TEST_REQUESTS_PER_SECOND = 25.0
ENDPOINT_REQUESTS_PER_SECOND = 25.0
RETRYABLE_STATUS = {409, 429, 500, 502, 503, 504}


class StripeApiError(StripeSyncError, RuntimeError):
    """A Stripe call failed for good (after retries, or not retryable). Secrets are masked.

    Its branch follows Stripe's answer: no answer, 429 or 5xx is `unavailable`; 401/403 (the key) is
    `not_configured`; any other 4xx is `invalid_input`.
    """

    def __init__(self, message: str, *, http_status: int | None = None, code: str | None = None) -> None:
        super().__init__(mask_secrets_in(message))
        self.http_status = http_status
        self.code = code

    @property
    def kind(self) -> ErrorKind:
        status = self.http_status
        if status is None or status == 429 or status >= 500:
            return "unavailable"
        if status in (401, 403):
            return "not_configured"
        return "invalid_input"


class StripeKeyMissing(StripeApiError):
    """No Stripe secret key is configured."""

    def __init__(self, message: str = "no Stripe secret key: set STRIPE_API_KEY or pass --stripe-key") -> None:
        super().__init__(message)

    @property
    def kind(self) -> ErrorKind:
        return "not_configured"


class ObjectNotFound(StripeApiError):
    """Stripe answered 404 for an object."""


request_priority: ContextVar[Callable[[], float] | None] = ContextVar("request_priority", default=None)
"""Who is asking, for a budget that cannot serve everyone at once: the higher, the sooner. The
backfill sets it to how much work is left behind the requesting endpoint; tasks inherit it."""


class RequestBudget:
    """A token bucket shared by every request of one engine: `rate` requests per second, bursts of `burst`.

    With `endpoint_rate` below `rate`, each endpoint also gets a bucket of its own, so that many
    requests to one endpoint wait their turn here instead of being answered 429 by Stripe.
    Requests that have to wait for the shared bucket are served highest `request_priority` first
    (then in arrival order): while endpoints compete for the global limit, the ones with the most
    work left keep their own limit's pace and no endpoint is left working alone at the end.
    """

    def __init__(self, rate: float, burst: float | None = None, *, endpoint_rate: float | None = None) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 4)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.granted = 0
        self.endpoint_rate = endpoint_rate if endpoint_rate and 0 < endpoint_rate < rate else None
        self._endpoints: dict[str, RequestBudget] = {}

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    async def acquire(self, endpoint: str | None = None) -> None:
        if self.unlimited:
            self.granted += 1
            return
        if endpoint is not None and self.endpoint_rate is not None:
            bucket = self._endpoints.get(endpoint)
            if bucket is None:
                bucket = self._endpoints[endpoint] = RequestBudget(self.endpoint_rate)
            await bucket.acquire()
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (the old one's waiters and timer died with it)
            self._loop, self._waiting, self._timer = loop, [], None
        self._refill()
        if not self._waiting and self._tokens >= 1:
            self._tokens -= 1
            self.granted += 1
            return
        priority = request_priority.get()
        turn: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (-(priority() if priority else 0.0), next(self._arrivals), turn))
        self._schedule()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted as it was cancelled: give the token back
                self._tokens += 1
                self.granted -= 1
                self._schedule()
            raise

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def _schedule(self) -> None:
        if self._timer is None and self._waiting:
            delay = max(0.0, (1 - self._tokens) / self.rate)
            assert self._loop is not None
            self._timer = self._loop.call_later(delay, self._grant)

    def _grant(self) -> None:
        self._timer = None
        self._refill()
        while self._waiting and self._tokens >= 1:
            _, _, turn = heapq.heappop(self._waiting)
            if turn.done():  # its request was cancelled while waiting
                continue
            self._tokens -= 1
            self.granted += 1
            turn.set_result(None)
        while self._waiting and self._waiting[0][2].done():
            heapq.heappop(self._waiting)
        self._schedule()


@dataclass
class ApiStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0


def stripe_request_budget(requests_per_second: float) -> RequestBudget:
    """The budget the engine keeps for `requests_per_second` (0 is unlimited): Stripe's limit per
    endpoint applies below it, whatever the global rate."""
    return RequestBudget(requests_per_second, endpoint_rate=ENDPOINT_REQUESTS_PER_SECOND)


def default_request_rate(config: SyncConfig) -> float:
    if config.max_requests_per_second is not None:
        return config.max_requests_per_second
    return LIVE_REQUESTS_PER_SECOND if config.livemode else TEST_REQUESTS_PER_SECOND


_ID_SEGMENT = re.compile(r"[^a-z_]")  # ids carry digits or capitals; route words do not


def endpoint_of(method: str, path: str) -> str:
    """`GET /v1/customers/{id}/tax_ids` for `GET /v1/customers/cus_123/tax_ids`: what Stripe limits per endpoint."""
    segments = path.split("?", 1)[0].split("/")
    return f"{method.upper()} " + "/".join(
        "{id}" if i > 2 and _ID_SEGMENT.search(segment) else segment for i, segment in enumerate(segments))


class StripeApi:
    """The engine's Stripe client: `get`, `post`, `delete`, `list_page` and `iterate` over list pages."""

    def __init__(self, config: SyncConfig, *, budget: RequestBudget | None = None) -> None:
        if not config.stripe_secret_key:
            raise StripeKeyMissing()
        self.config = config
        self._http, self.client = self._new_client()
        self.budget = budget or stripe_request_budget(default_request_rate(config))
        self.stats = ApiStats()
        self._sleep = asyncio.sleep

    def _new_client(self) -> tuple[stripe.AIOHTTPClient, stripe.StripeClient]:
        config = self.config
        base_addresses: dict[str, str | None] = {}
        if config.stripe_api_base:
            base_addresses = {"api": config.stripe_api_base, "connect": config.stripe_api_base,
                              "files": config.stripe_api_base}
        # aiohttp rather than the SDK's default httpx: about a fifth of the CPU per request, which
        # decides how fast a backfill of many small lists (one per customer) can go.
        http = stripe.AIOHTTPClient()
        client = stripe.StripeClient(
            config.stripe_secret_key or "",
            stripe_version=config.stripe_api_version,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            max_network_retries=0,
            http_client=http,
        )
        return http, client

    async def close(self) -> None:
        """Close the HTTP session (it belongs to the event loop that used it); usable again afterwards."""
        await self._http.close_async()
        self._http, self.client = self._new_client()

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None, *,
                      account: str | None = None, idempotency_key: str | None = None) -> dict:
        options: dict[str, Any] = {}
        if account:
            options["stripe_account"] = account
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        attempt = 0
        endpoint = endpoint_of(method, path)
        while True:
            await self.budget.acquire(endpoint)
            self.stats.requests += 1
            try:
                return await self._send(method, path, params or {}, options)
            except stripe.StripeError as error:
                status = error.http_status
                if status == 404:
                    raise ObjectNotFound(f"{method.upper()} {path}: {error.user_message or error}",
                                         http_status=404, code=error.code) from None
                delay = self._retry_delay(error, attempt)
                if delay is None:
                    raise StripeApiError(
                        f"Stripe answered {status or 'no response'} to {method.upper()} {path}: "
                        f"{error.user_message or error}", http_status=status, code=error.code,
                    ) from None
            attempt += 1
            self.stats.retries += 1
            await self._sleep(delay)

    async def _send(self, method: str, path: str, params: dict[str, Any], options: dict[str, Any]) -> dict:
        """One HTTP request through the SDK's requestor (headers, form encoding, connection reuse).

        The SDK's `raw_request_async` parses every body with the standard library into OrderedDicts
        and formats the whole body for a debug log line, which was half of a backfill's CPU in this
        process; a successful body is parsed here with orjson instead. Errors (and any SDK whose
        requestor lacks these methods) go through the SDK's own interpretation, so its exceptions,
        with status, code and headers, are what callers see.
        """
        requestor = getattr(self.client, "_requestor", None)
        prepare = getattr(requestor, "_args_for_request_with_retries", None)
        interpret = getattr(requestor, "_interpret_response", None)
        api_mode = "V2" if path.startswith("/v2") else "V1"
        prepared = None
        if prepare is not None and interpret is not None and hasattr(requestor, "_get_http_client"):
            try:
                prepared = prepare(method, path, params, options or None, base_address="api",
                                   api_mode=api_mode, usage=["raw_request"])
                method_, url, headers, post_data, max_retries, usage, _, _ = prepared
            except (TypeError, ValueError):  # another SDK release's private signature: the public way
                prepared = None
        if prepared is None:
            response = await self.client.raw_request_async(method, path, **params, **options)
            return response.data  # type: ignore[no-any-return]
        assert requestor is not None and interpret is not None
        body, status, response_headers = await requestor._get_http_client().request_with_retries_async(
            method_, url, headers, post_data, max_network_retries=max_retries, _usage=usage)
        if 200 <= status < 300:
            try:
                data = parse_json(body)
            except ValueError:
                data = None  # the SDK's interpretation raises its invalid-body error
            if isinstance(data, dict):
                return data
        response = interpret(body, status, response_headers, api_mode)  # raises on an error status
        return response.data  # type: ignore[no-any-return]

    def _retry_delay(self, error: stripe.StripeError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when the error is final."""
        if attempt >= self.config.max_retries:
            return None
        status = error.http_status
        headers = error.headers or {}
        should_retry = _header(headers, "Stripe-Should-Retry")
        if status == 429:
            self.stats.rate_limited += 1
        elif status is not None and status >= 500:
            self.stats.server_errors += 1
        if should_retry == "false":
            return None
        if should_retry != "true" and status is not None and status not in RETRYABLE_STATUS:
            return None
        base = self.config.initial_retry_delay_ms / 1000
        cap = self.config.max_retry_delay_ms / 1000
        delay = min(cap, base * 2 ** attempt) * (0.5 + random.random() / 2)
        retry_after = _header(headers, "Retry-After")
        if retry_after:
            try:
                delay = max(delay, min(cap, float(retry_after)))
            except ValueError:
                pass
        return delay

    async def get(self, path: str, params: dict[str, Any] | None = None, *, account: str | None = None) -> dict:
        return await self.request("get", path, params, account=account)

    async def post(self, path: str, params: dict[str, Any] | None = None, *, account: str | None = None,
                   idempotency_key: str | None = None) -> dict:
        return await self.request("post", path, params, account=account, idempotency_key=idempotency_key)

    async def delete(self, path: str, *, account: str | None = None) -> dict:
        return await self.request("delete", path, account=account)

    async def iterate(self, path: str, params: dict[str, Any] | None = None, *,
                      account: str | None = None, starting_after: str | None = None) -> AsyncIterator[dict]:
        """Every page of a list, newest first, following `starting_after`; yields the page objects."""
        query = {"limit": 100, **(params or {})}
        cursor = starting_after
        while True:
            page = await self.get(path, {**query, **({"starting_after": cursor} if cursor else {})},
                                  account=account)
            yield page
            data = page.get("data") or []
            if not page.get("has_more") or not data:
                return
            cursor = data[-1]["id"]


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers).items():
        if key.lower() == name.lower():
            return str(value).lower() if name != "Retry-After" else str(value)
    return None
