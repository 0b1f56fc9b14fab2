"""Fault injection and counters: rate limiting (Stripe's presets), injected 5xx, latency,
webhook delivery faults, and request/delivery statistics."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Stripe's documented limits (https://docs.stripe.com/rate-limits): a global limit per account of
# 100 req/s in live mode and 25 req/s in test mode (sandbox), a default of 25 req/s per API
# endpoint (one "endpoint" = method + route, e.g. GET /v1/customers/{id}), and stricter ones for
# a few resources: Search and Files 20 req/s, payout creation 15 req/s. The Files API's reads share one
# bucket (a file object, its contents) as they share one limit.
PRESETS: dict[str, dict[str, float]] = {"live": {"global": 100.0}, "test": {"global": 25.0}}
ENDPOINT_DEFAULT = 25.0
ENDPOINT_LIMITS: dict[str, float] = {
    "POST /v1/payouts": 15.0,
    "GET /v1/files": 20.0,
    "POST /v1/files": 20.0,
}
SEARCH_LIMIT = 20.0  # any GET /v1/*/search
FILES_READ = "GET /v1/files"  # every GET /v1/files... route counts against this one bucket


def _scope(route: str) -> str:
    return FILES_READ if route.startswith(FILES_READ) else route


@dataclass
class RateLimitConfig:
    """``mode``: "off", "auto" (preset by the key's mode), "test", "live" or "custom" (``rate``)."""

    mode: str = "off"
    rate: float | None = None
    endpoint_limits: bool = True

    @classmethod
    def parse(cls, value: Any) -> RateLimitConfig:
        if value is None or value is False or value == "off" or value == "none" or value == 0:
            return cls("off")
        if isinstance(value, RateLimitConfig):
            return value
        if value is True or value in ("auto", "on", "stripe"):
            return cls("auto")
        if value in ("test", "live"):
            return cls(str(value))
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"rate_limit must be off, auto, test, live or a number, not {value!r}") from None
        # A custom rate is one plain bucket: predictable for tests.
        return cls("custom", rate, endpoint_limits=False)

    def describe(self) -> str:
        return f"{self.rate:g}/s" if self.mode == "custom" else self.mode


class _Bucket:
    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate  # one second of burst
        self.stamp = now

    def wait(self, now: float) -> float:
        """Refill to `now`; 0.0 if a token is there, else seconds until one is."""
        # A clock set back (a test's) means no time passed, not negative time.
        self.tokens = min(self.rate, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets per account (and per account + endpoint), as Stripe limits an account.

    `clock` gives the seconds the buckets refill by (`time.monotonic` by default): a test that passes
    its own decides when time passes, so what a burst gets does not depend on how fast the machine sends it.
    """

    def __init__(self, config: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def reset(self, config: RateLimitConfig | None = None) -> None:
        with self._lock:
            if config is not None:
                self.config = config
            self._buckets.clear()

    def check(self, account: str, livemode: bool, route: str) -> tuple[str, float] | None:
        """None when allowed, else (reason, retry_after_seconds)."""
        cfg = self.config
        if cfg.mode == "off":
            return None
        if cfg.mode == "custom":
            rate = float(cfg.rate or 1.0)
        else:
            preset = cfg.mode if cfg.mode != "auto" else ("live" if livemode else "test")
            rate = PRESETS[preset]["global"]
        now = self._clock()
        with self._lock:
            checks: list[tuple[str, str, float]] = [("global-rate", "*", rate)]
            if cfg.endpoint_limits:
                route = _scope(route)
                ep_rate = ENDPOINT_LIMITS.get(route)
                if ep_rate is None:
                    ep_rate = SEARCH_LIMIT if route.startswith("GET ") and route.endswith("/search") else ENDPOINT_DEFAULT
                if ep_rate < rate or route in ENDPOINT_LIMITS:
                    checks.append(("endpoint-rate", route, ep_rate))
            buckets = []
            for reason, scope, r in checks:
                b = self._buckets.get((f"{account} {livemode}", scope))
                if b is None or b.rate != r:
                    b = self._buckets[(f"{account} {livemode}", scope)] = _Bucket(r, now)
                wait = b.wait(now)
                if wait > 0:  # refused: no bucket pays for a request that is not served
                    return reason, wait
                buckets.append(b)
            for b in buckets:
                b.tokens -= 1.0
        return None


@dataclass
class Faults:
    """Everything that can be dialled at run time (constructor, CLI, control API, Python)."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    webhook_drop_rate: float = 0.0
    webhook_duplicate_rate: float = 0.0
    webhook_reorder_rate: float = 0.0
    burst_events: int = 0  # the next N events all get the same ``created`` second
    burst_second: int | None = None
    rng: random.Random = field(default_factory=random.Random)
    webhook_rng: random.Random = field(default_factory=random.Random)

    def as_dict(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate, "latency_ms": self.latency_ms,
            "webhook_drop_rate": self.webhook_drop_rate, "webhook_duplicate_rate": self.webhook_duplicate_rate,
            "webhook_reorder_rate": self.webhook_reorder_rate, "burst_events": self.burst_events,
        }

    def should_fail(self) -> bool:
        return self.error_rate > 0 and self.rng.random() < self.error_rate


class Stats:
    """Request and delivery counters (thread-safe; read with ``snapshot()``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_route: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            self.by_path: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            self.by_status: dict[str, int] = defaultdict(int)
            self.rate_limited = 0
            self.injected_errors = 0
            self.events_created = 0
            self.deliveries: dict[str, int] = defaultdict(int)

    def request(self, route: str, path: str, status: int) -> None:
        with self._lock:
            self.requests += 1
            s = str(status)
            self.by_route[route][s] += 1
            if len(self.by_path) < 10_000 or path in self.by_path:  # bounded: ids make paths unique
                self.by_path[path][s] += 1
            self.by_status[s] += 1
            if status == 429:
                self.rate_limited += 1

    def delivery(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.deliveries[what] += n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "by_status": dict(self.by_status),
                "by_route": {k: dict(v) for k, v in self.by_route.items()},
                "by_path": {k: dict(v) for k, v in self.by_path.items()},
                "rate_limited": self.rate_limited,
                "injected_errors": self.injected_errors,
                "events_created": self.events_created,
                "deliveries": {
                    "attempted": self.deliveries.get("attempted", 0),
                    "succeeded": self.deliveries.get("succeeded", 0),
                    "failed": self.deliveries.get("failed", 0),
                    "gave_up": self.deliveries.get("gave_up", 0),
                    "dropped": self.deliveries.get("dropped", 0),
                    "duplicated": self.deliveries.get("duplicated", 0),
                    "reordered": self.deliveries.get("reordered", 0),
                },
            }


def retry_after_header(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
