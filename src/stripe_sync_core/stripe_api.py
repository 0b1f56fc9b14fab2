"""Calls to the Stripe API through the official SDK, with one shared request budget and retries.

The SDK's own retries are off: this module retries 429, 409 lock timeouts, 5xx and network errors with
exponential backoff and jitter, honouring `Retry-After` and `Stripe-Should-Retry`, so that every
caller (webhooks, backfill, single-object sync) gets the same behaviour and the same request budget.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import stripe

from .config import SyncConfig
from .database import parse_json
from .errors import ErrorKind, StripeSyncError
from .masking import mask_secrets_in
from .request_budget import (
    Budget,
    RequestBudget,
    SharedRequestBudget,
    account_scope,
    key_scope,
    lane,
)
from .request_budget import request_lane as request_lane  # re-exported: where callers found them first
from .request_budget import request_priority as request_priority

if TYPE_CHECKING:
    from .database import Database

# Stripe's documented default read limits per second (live, test), and the default limit of each API
# endpoint (one method and route, e.g. GET /v1/customers/{id}), which counts against the global one too.
LIVE_REQUESTS_PER_SECOND = 100.0
TEST_REQUESTS_PER_SECOND = 25.0
ENDPOINT_REQUESTS_PER_SECOND = 25.0
RETRYABLE_STATUS = {409, 429, 500, 502, 503, 504}
RATE_LIMITED_RETRIES = 25


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


STRIPE_API_BASE = "https://api.stripe.com"
REACH_TIMEOUT_SECONDS = 8.0
"""How long a command's first contact with Stripe may try before it says Stripe cannot be reached (the
whole command, process start included, then ends within 10 s)."""

_NETWORK_REASON = re.compile(r"\(Network error: ([^)]*)\)")


class StripeUnreachable(StripeApiError):
    """No answer from the Stripe API at its base URL (refused, reset, timed out): `unavailable`."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StripeKeyMissing(StripeApiError):
    """No Stripe secret key is configured."""

    def __init__(self, message: str = "no Stripe secret key: set STRIPE_API_KEY or pass --stripe-key") -> None:
        super().__init__(message)

    @property
    def kind(self) -> ErrorKind:
        return "not_configured"


class ObjectNotFound(StripeApiError):
    """Stripe answered 404 for an object."""


@dataclass
class ApiStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0


def stripe_request_budget(requests_per_second: float, database: Database | None = None,
                          scope: str | None = None) -> Budget:
    """The budget the engine keeps for `requests_per_second` (0 is unlimited): Stripe's limit per
    endpoint applies below it, whatever the global rate. With a database (and the account's `scope`)
    it is the account's budget shared by every process; without one, this process's own."""
    own = RequestBudget(requests_per_second, endpoint_rate=ENDPOINT_REQUESTS_PER_SECOND)
    if database is None or scope is None:
        return own
    return SharedRequestBudget(database, scope, requests_per_second, endpoint_rate=ENDPOINT_REQUESTS_PER_SECOND,
                               fallback=own)


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

    def __init__(self, config: SyncConfig, *, budget: Budget | None = None, database: Database | None = None) -> None:
        """`database` makes the request budget the account's, shared with every process using it;
        without it (or with an explicit `budget`) the budget is this client's own."""
        if not config.stripe_secret_key:
            raise StripeKeyMissing()
        self.config = config
        self.database = database
        self.budget_scope = (account_scope(config.stripe_account_id, config.livemode) if config.stripe_account_id
                             else key_scope(config.stripe_secret_key))
        self._http, self.client = self._new_client()
        self.budget = budget or stripe_request_budget(default_request_rate(config), database, self.budget_scope)
        self._account_budgets: dict[str, Budget] = {}
        """Connected accounts' budgets, by account id: Stripe counts a request made under `Stripe-Account`
        against that account's limit, not the platform's."""
        self.stats = ApiStats()
        self._sleep = asyncio.sleep

    @property
    def base_url(self) -> str:
        return self.config.stripe_api_base or STRIPE_API_BASE

    def _unreachable(self, method: str, path: str, error: BaseException,
                     waited: float | None = None) -> StripeUnreachable:
        """What to say when no answer came: the base URL asked and what to check, not the SDK's
        'contact support@stripe.com' (wrong for a mistyped --stripe-api-base or a local emulator)."""
        reason = self._network_reason(error, waited)
        return StripeUnreachable(
            f"cannot reach the Stripe API at {self.base_url} ({reason}) for {method.upper()} {path}: check "
            "--stripe-api-base / STRIPE_API_BASE and the network", reason=reason)

    def _network_reason(self, error: BaseException, waited: float | None = None) -> str:
        """`connection refused`, `no answer within 30 s`, a name that does not resolve ...: the cause the
        SDK wraps (it says only 'A ClientConnectorError was raised')."""
        if isinstance(error, TimeoutError):
            return f"no answer within {waited or self.config.request_timeout_seconds:g} s"
        cause: BaseException | None = error.__cause__ or error.__context__
        while cause is not None and (cause.__cause__ or cause.__context__) is not None \
                and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        cause = getattr(cause, "os_error", None) or cause  # aiohttp's connector error wraps the socket's
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__:
            return f"no answer within {waited or self.config.request_timeout_seconds:g} s"
        if cause is not None:
            text = str(getattr(cause, "os_error", None) or cause).strip()
            return text.splitlines()[0] if text else type(cause).__name__
        found = _NETWORK_REASON.search(str(error))
        return found.group(1) if found else type(error).__name__

    async def check_reachable(self, path: str = "/v1/account", *, timeout: float = REACH_TIMEOUT_SECONDS,
                              on_retry: Callable[[int, str, float], None] | None = None) -> dict:
        """A command's first contact: GET `path`, retrying network failures, 429 and 5xx only while
        `timeout` lasts (then `StripeUnreachable`, naming the base URL), telling `on_retry(attempt,
        reason, seconds left)` before each retry. A 401/403 fails at once (the key)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempt = 0
        while True:
            left = deadline - loop.time()
            with lane("interactive"):
                await self.budget.acquire(endpoint_of("get", path))
            self.stats.requests += 1
            try:
                return await asyncio.wait_for(self._send("get", path, {}, {}), max(0.1, left))
            except TimeoutError as error:
                failure: StripeApiError = self._unreachable("get", path, error, waited=max(0.1, left))
            except stripe.StripeError as error:
                status = error.http_status
                if status is None:
                    failure = self._unreachable("get", path, error)
                elif status == 429 or status >= 500:
                    failure = StripeApiError(f"Stripe answered {status} to GET {path}: {error.user_message or error}",
                                             http_status=status, code=error.code)
                else:
                    raise StripeApiError(f"Stripe answered {status} to GET {path}: {error.user_message or error}",
                                         http_status=status, code=error.code) from None
            attempt += 1
            left = deadline - loop.time()
            delay = min(self.config.initial_retry_delay_ms / 1000 * 2 ** (attempt - 1), 2.0)
            if left <= delay:
                raise failure
            if on_retry is not None:
                on_retry(attempt, failure.reason if isinstance(failure, StripeUnreachable) else str(failure), left)
            self.stats.retries += 1
            await self._sleep(delay)

    def set_request_rate(self, requests_per_second: float) -> None:
        """Replace the budget by one of `requests_per_second` (0 is unlimited), shared as the current one was."""
        shared = isinstance(self.budget, SharedRequestBudget)
        self.budget = stripe_request_budget(requests_per_second, self.database if shared else None,
                                            self.budget_scope)
        self._account_budgets.clear()  # made again at the new rate on their next request

    def account_known(self, account_id: str) -> None:
        """The key's account is `account_id`: from now on the budget is that account's (any key of it)."""
        self.budget_scope = account_scope(account_id, self.config.livemode)
        if isinstance(self.budget, SharedRequestBudget):
            self.budget.scope = self.budget_scope

    def budget_for(self, account: str | None) -> Budget:
        """The request budget a call under `Stripe-Account: account` draws on (None: the key's own account):
        a connected account's own, at the same rate, shared through the database as the key's is."""
        if not account:
            return self.budget
        budget = self._account_budgets.get(account)
        if budget is None:
            shared = isinstance(self.budget, SharedRequestBudget)
            budget = stripe_request_budget(self.budget.rate, self.database if shared else None,
                                           account_scope(account, self.config.livemode))
            self._account_budgets[account] = budget
        return budget

    def _new_client(self) -> tuple[stripe.AIOHTTPClient, stripe.StripeClient]:
        config = self.config
        base_addresses: dict[str, str | None] = {}
        if config.stripe_api_base:
            base_addresses = {"api": config.stripe_api_base, "connect": config.stripe_api_base,
                              "files": config.stripe_api_base}
        # aiohttp rather than the SDK's default httpx: about a fifth of the CPU per request, which
        # decides how fast a backfill of many small lists (one per customer) can go.
        http = stripe.AIOHTTPClient(timeout=config.request_timeout_seconds)
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
        await self.budget.close()
        for budget in self._account_budgets.values():
            await budget.close()
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
        budget = self.budget_for(account)
        while True:
            await budget.acquire(endpoint)
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
                    if status is None:
                        raise self._unreachable(method, path, error) from None
                    raise StripeApiError(
                        f"Stripe answered {status} to {method.upper()} {path}: "
                        f"{error.user_message or error}", http_status=status, code=error.code,
                    ) from None
            attempt += 1
            self.stats.retries += 1
            await self._sleep(delay)

    async def probe(self, path: str = "/v1/account", *, timeout: float) -> dict:
        """One GET in the interactive lane, answered within `timeout` once sent, never retried: does Stripe
        answer now? Waiting for a token of our own budget is not Stripe failing, so it is not timed."""
        with lane("interactive"):
            await self.budget.acquire(endpoint_of("get", path))
        self.stats.requests += 1
        try:
            return await asyncio.wait_for(self._send("get", path, {}, {}), timeout)
        except TimeoutError:
            raise StripeApiError(f"Stripe did not answer GET {path} within {timeout:g} s") from None
        except stripe.StripeError as error:
            raise StripeApiError(f"Stripe answered {error.http_status or 'no response'} to GET {path}: "
                                 f"{error.user_message or error}", http_status=error.http_status,
                                 code=error.code) from None

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
        """Seconds to wait before retrying, or None when the error is final.

        A 429 is Stripe asking to slow down, not a failure: in the bulk lane (a backfill) it gets
        `RATE_LIMITED_RETRIES` tries (or `max_retries`, when higher), so a storm of them cannot fail a
        chunk by bad luck (six 429s in a row ended a chunk and its run). Interactive calls keep
        `max_retries`, so a person waits no longer; `max_retries=0` still means no retry at all."""
        status = error.http_status
        limit = self.config.max_retries
        if status == 429 and limit > 0 and request_lane.get() == "bulk":
            limit = max(limit, RATE_LIMITED_RETRIES)
        if attempt >= limit:
            return None
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

    async def download(self, url: str, *, account: str | None = None) -> bytes:
        """GET a file's contents by full URL (Stripe serves them from its files host): the body as it
        came, through the SDK's HTTP client, with the request budget (the Files API's endpoint limit
        included) and the retries of `request`."""
        path = "/" + url.split("://", 1)[-1].split("/", 1)[-1]
        endpoint = endpoint_of("get", path)
        headers = {"Authorization": f"Bearer {self.config.stripe_secret_key}"}
        if self.config.stripe_api_version:
            headers["Stripe-Version"] = self.config.stripe_api_version
        if account:
            headers["Stripe-Account"] = account
        attempt = 0
        while True:
            await self.budget.acquire(endpoint)
            self.stats.requests += 1
            try:
                body, status, response_headers = await self._http.request_async("get", url, headers)
            except stripe.StripeError as error:  # no answer
                failure: stripe.StripeError = error
            else:
                if 200 <= status < 300:
                    return body
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
                try:
                    message = parse_json(text)["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    message = text[:300]
                failure = stripe.APIError(message, http_status=status, headers=dict(response_headers))
                if status == 404:
                    raise ObjectNotFound(f"GET {url}: {message}", http_status=404) from None
            delay = self._retry_delay(failure, attempt)
            if delay is None:
                if failure.http_status is None:
                    raise self._unreachable("get", url, failure) from None
                raise StripeApiError(f"Stripe answered {failure.http_status} to GET {url}: {failure.user_message or failure}",
                                     http_status=failure.http_status) from None
            attempt += 1
            self.stats.retries += 1
            await self._sleep(delay)

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
