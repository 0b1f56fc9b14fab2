"""Stripe's query-runs API: create a run with SQL, poll it with backoff, download its CSV result.

`POST /v1/sigma/query_runs` (`sql`), `GET /v1/sigma/query_runs/{id}` until `succeeded` (or
`completed`, which Stripe's own examples show) and `GET <files base>/v1/files/{file}/contents`. Stripe
answers a table the account may not read with "tables which do not exist or are inaccessible [...]"
(at creation or as the run's error): that is `SigmaTableInaccessible`, which skips the table; any other
failed run is `SigmaQueryFailed` with Stripe's message.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import NotConfigured, StripeSyncError, Unavailable
from ..stripe_api import StripeApiError

if TYPE_CHECKING:
    from ..stripe_api import StripeApi

QUERY_RUNS = "/v1/sigma/query_runs"
FILES_BASE = "https://files.stripe.com"
DONE = ("succeeded", "completed")
IN_PROGRESS = ("pending", "running")
NO_LIVE_KEY = "Stripe Sigma has no test-mode data; use a live key (sk_live_... or rk_live_...)"
_INACCESSIBLE = re.compile(r"do not exist or are inaccessible", re.IGNORECASE)
_TEST_MODE = re.compile(r"testmode|test mode", re.IGNORECASE)


@dataclass(frozen=True)
class PollOptions:
    first_delay: float = 0.5
    """Seconds before the first look at a new run; each later wait is `factor` times longer, to `max_delay`."""
    factor: float = 1.5
    max_delay: float = 5.0
    timeout: float = 600.0
    """A run still in progress after so long fails the table (Stripe ends runs after a few minutes)."""


class SigmaNeedsLiveKey(NotConfigured, RuntimeError):
    """A test-mode key: Stripe Sigma has no test-mode data."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(NO_LIVE_KEY + (f" (Stripe: {detail})" if detail else ""))


class SigmaTableInaccessible(NotConfigured, RuntimeError):
    """The account cannot read the table (no Sigma subscription, a product not enabled): skipped."""


class SigmaQueryFailed(StripeSyncError, RuntimeError):
    """A query run ended `failed` (or canceled, timed out); the message is Stripe's."""


class SigmaQueryTimeout(Unavailable, RuntimeError):
    """A query run was still in progress when the engine stopped waiting."""


def _classify(message: str, run_id: str | None = None) -> StripeSyncError:
    if _INACCESSIBLE.search(message):
        return SigmaTableInaccessible(message)
    if _TEST_MODE.search(message):
        return SigmaNeedsLiveKey(message)
    where = f"Sigma query {run_id} failed" if run_id else "Sigma query refused"
    return SigmaQueryFailed(f"{where}: {message}")


class SigmaClient:
    def __init__(self, api: StripeApi, *, files_base: str | None = None, poll: PollOptions | None = None,
                 sleep=asyncio.sleep) -> None:
        self.api = api
        self.files_base = (files_base or api.config.stripe_api_base or FILES_BASE).rstrip("/")
        self.poll = poll or PollOptions()
        self._sleep = sleep

    async def run(self, sql: str, *, account: str | None = None) -> bytes:
        """The CSV result of `sql` (header line first)."""
        try:
            run = await self.api.post(QUERY_RUNS, {"sql": sql}, account=account)
        except StripeApiError as error:
            if error.http_status is not None and 400 <= error.http_status < 500 and error.http_status not in (401, 429):
                raise _classify(str(error)) from None
            raise
        run_id = str(run.get("id"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.poll.timeout
        delay = self.poll.first_delay
        while run.get("status") in IN_PROGRESS:
            if loop.time() + delay > deadline:
                raise SigmaQueryTimeout(f"Sigma query {run_id} still {run.get('status')} after "
                                        f"{self.poll.timeout:g} s; try again later")
            await self._sleep(delay)
            delay = min(delay * self.poll.factor, self.poll.max_delay)
            run = await self.api.get(f"{QUERY_RUNS}/{run_id}", account=account)
        status = run.get("status")
        if status not in DONE:
            failure = run.get("error")
            message = (failure.get("message") if isinstance(failure, dict) else failure) or f"status {status}"
            raise _classify(str(message), run_id)
        result = run.get("result") or {}
        file = result.get("file") if isinstance(result, dict) else None
        if isinstance(file, dict):
            file = file.get("id")
        if not file:
            raise SigmaQueryFailed(f"Sigma query {run_id} {status} without a result file")
        return await self.api.download(f"{self.files_base}/v1/files/{file}/contents", account=account)
