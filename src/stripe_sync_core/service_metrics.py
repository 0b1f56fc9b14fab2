"""`serve`'s Prometheus metrics, in a registry of the service's own (nothing process-wide).

Two kinds: what this process did (webhook deliveries by outcome, HTTP requests, Stripe requests, 429s and
retries, sync runs by trigger and outcome), counted as it happens; and what the database holds (rows per
table, open runs, webhook lag), read when scraped, the same from any `serve` process of the database. They
are read again only when older than `DATABASE_COST_FACTOR` times what reading them took, so counting the
rows of a large database never takes more than a tenth of the time between scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .progress import ProgressSink

if TYPE_CHECKING:
    from .context import EngineContext
    from .results import VerifyResult

PREFIX = "stripe_sync"
DATABASE_COST_FACTOR = 10
LAG_WINDOW_SECONDS = 300
"""Webhook lag is measured over the events received in the last five minutes."""

_LAG = f"""
SELECT count(*) AS events,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99,
       max(lag) AS max
FROM (SELECT extract(epoch FROM received_at - event_created)::float8 AS lag FROM stripe._events
      WHERE received_at > now() - interval '{LAG_WINDOW_SECONDS} seconds' AND event_created IS NOT NULL) recent
"""


class ServiceMetrics(ProgressSink):
    """The service's metrics; also a progress sink (webhook deliveries and runs count themselves)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.events = Counter(f"{PREFIX}_webhook_events", "Webhook deliveries answered, by outcome and HTTP status",
                              ["outcome", "status"], registry=registry)
        self.http_requests = Counter(f"{PREFIX}_http_requests", "HTTP requests served, by route and status",
                                     ["route", "status"], registry=registry)
        self.http_seconds = Histogram(f"{PREFIX}_http_request_duration_seconds", "Time to answer, by route",
                                      ["route"], registry=registry,
                                      buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.in_flight = Gauge(f"{PREFIX}_http_requests_in_flight", "Requests being answered", registry=registry)
        self.syncs = Counter(f"{PREFIX}_sync_runs", "Syncs run by this process, by trigger and outcome",
                             ["trigger", "outcome"], registry=registry)
        self.sync_running = Gauge(f"{PREFIX}_sync_running", "Syncs running in this process, by trigger",
                                  ["trigger"], registry=registry)
        self.last_sync_success = Gauge(f"{PREFIX}_last_sync_success_timestamp_seconds",
                                       "When a sync of this process last finished without errors",
                                       registry=registry)
        self.last_sync_seconds = Gauge(f"{PREFIX}_last_sync_duration_seconds", "How long the last sync took",
                                       registry=registry)
        self.verify_drift = Gauge(f"{PREFIX}_verify_drift_rows",
                                  "Rows the last scheduled verify found differing from Stripe, by type and kind",
                                  ["object", "kind"], registry=registry)
        self.last_verify = Gauge(f"{PREFIX}_last_verify_timestamp_seconds", "When the last scheduled verify ended",
                                 registry=registry)
        self.draining = Gauge(f"{PREFIX}_draining", "1 while the service drains after SIGTERM", registry=registry)
        self.up = Gauge(f"{PREFIX}_up", "1 while the service answers webhooks", registry=registry)
        self._ctx: EngineContext | None = None
        self._database_cache: tuple[float, float, list[Metric]] | None = None
        """When the database figures were read, how long that took, and the figures."""
        registry.register(_Collector(self))

    def attach(self, ctx: EngineContext) -> None:
        """Read Stripe request counters and database figures from this engine from now on."""
        self._ctx = ctx

    # -- the progress sink ----------------------------------------------------------------------

    def event_received(self, event_id: str, event_type: str, outcome: str, status: int | None = None) -> None:
        self.events.labels(outcome, str(status) if status is not None else "applied").inc()

    # -- exposition ------------------------------------------------------------------------------

    def verified(self, results: Iterable[VerifyResult]) -> None:
        for result in results:
            for kind in ("missing", "deleted", "changed", "stale"):
                self.verify_drift.labels(result.object, kind).set(getattr(result, kind))
        self.last_verify.set(time.time())

    async def render(self) -> bytes:
        """The metrics in Prometheus' text format (database figures refreshed when stale)."""
        await self._refresh_database()
        return generate_latest(self.registry)

    def stripe_metrics(self) -> list[Metric]:
        stats = self._ctx.stripe_client.stats if self._ctx is not None and self._ctx.stripe_client else None
        found: list[Metric] = []
        for name, help_text, attribute in (
                ("stripe_requests", "Requests sent to Stripe (each attempt)", "requests"),
                ("stripe_rate_limited", "Stripe answers 429 (rate limited)", "rate_limited"),
                ("stripe_retries", "Stripe requests retried", "retries"),
                ("stripe_server_errors", "Stripe answers 5xx", "server_errors")):
            metric = CounterMetricFamily(f"{PREFIX}_{name}", help_text)
            metric.add_metric([], float(getattr(stats, attribute, 0) if stats is not None else 0))
            found.append(metric)
        return found

    def database_metrics(self) -> list[Metric]:
        return self._database_cache[2] if self._database_cache is not None else []

    async def _refresh_database(self) -> None:
        ctx = self._ctx
        if ctx is None:
            return
        started = time.monotonic()
        if self._database_cache is not None:
            read_at, cost, _ = self._database_cache
            if started - read_at < cost * DATABASE_COST_FACTOR:
                return
        from .status import open_runs, table_row_counts

        up = GaugeMetricFamily(f"{PREFIX}_database_up", "1 when the database answered the last scrape")
        found: list[Metric] = [up]
        try:
            counts = await table_row_counts(ctx.database)
            runs = await open_runs(ctx.database)
            lag = await ctx.database.fetch_one(_LAG)
        except Exception as error:
            ctx.log.warning("metrics: cannot read the database: %s", error)
            up.add_metric([], 0)
            self._database_cache = (started, time.monotonic() - started, found)
            return
        up.add_metric([], 1)
        rows = GaugeMetricFamily(f"{PREFIX}_rows", "Rows stored per table", labels=["table"])
        for table, count in counts.items():
            rows.add_metric([table], count)
        opened = GaugeMetricFamily(f"{PREFIX}_open_runs", "Backfill runs not closed yet (every process)")
        opened.add_metric([], len(runs))
        lag_metric = GaugeMetricFamily(
            f"{PREFIX}_webhook_lag_seconds",
            f"Seconds from an event's creation in Stripe to its arrival, over the last {LAG_WINDOW_SECONDS} s",
            labels=["quantile"])
        received = GaugeMetricFamily(f"{PREFIX}_webhook_lag_events",
                                     f"Events the lag is measured over (received in the last {LAG_WINDOW_SECONDS} s)")
        received.add_metric([], float(lag["events"]) if lag else 0)
        for quantile in ("p50", "p99", "max"):
            value = lag.get(quantile) if lag else None
            if value is not None:
                lag_metric.add_metric([{"p50": "0.5", "p99": "0.99", "max": "1"}[quantile]], float(value))
        found += [rows, opened, lag_metric, received]
        self._database_cache = (started, time.monotonic() - started, found)


class _Collector:
    """Figures read when scraped rather than counted as they happen."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics.stripe_metrics()
        yield from self.metrics.database_metrics()

    def describe(self) -> list[Any]:
        return []
