"""How values read on screen: durations, counts, timestamps, masked secrets, colour by meaning.

Colours are theme variables named by meaning (STYLE.md): running $primary, done or 2xx $success,
retrying or 4xx $warning, failed or 5xx $error, pending $text-muted. Rich markup can't read theme
variables, so the console resolves them through `ConsoleApp.colour` at render time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from stripe_sync_core.masking import mask_database_url, mask_secret, mask_secrets_in

__all__ = ["mask_database_url", "mask_secret", "mask_secrets_in"]

STATUS_MEANING: dict[str, str] = {
    "running": "primary",
    "complete": "success",
    "enabled": "success",
    "done": "success",
    "ready": "success",
    "retrying": "warning",
    "starting": "warning",
    "stopping": "warning",
    "catching up": "warning",
    "interrupted": "warning",
    "disabled": "warning",
    "error": "error",
    "failed": "error",
    "pending": "text-muted",
    "stopped": "text-muted",
}


def meaning_of_status(status: str) -> str:
    return STATUS_MEANING.get(status, "foreground")


def meaning_of_http(status: int | None) -> str:
    if status is None:
        return "text-muted"
    if status < 300:
        return "success"
    if status < 500:
        return "warning"
    return "error"


def count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def rate(per_second: float | None) -> str:
    if per_second is None:
        return "–"
    return f"{per_second:,.1f}/s" if per_second < 100 else f"{per_second:,.0f}/s"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def timestamp(value: datetime | int | None) -> str:
    """UTC, to the second: operators compare these with Stripe's dashboard and logs."""
    if value is None:
        return "–"
    if isinstance(value, int):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def day(value: int | None) -> str:
    if value is None:
        return "…"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d")


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "–"
    return duration(max(0.0, (now - value).total_seconds())) + " ago"


def mode_label(livemode: bool | None) -> str:
    return {True: "LIVE", False: "test", None: "no key"}[livemode]


def clip(text: str | None, width: int) -> str:
    if not text:
        return ""
    text = mask_secrets_in(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def stored(objects: int, child_rows: int) -> str:
    """Objects and the child rows stored through them, never added together: a subscription item is a
    row of its own table but not an object the run listed."""
    text = f"{objects:,} objects"
    return f"{text} + {child_rows:,} child rows" if child_rows else text


def child_tables() -> frozenset[str]:
    """Tables stored only through a parent (a backfill result counts their rows apart)."""
    from stripe_sync_core.backfill import tables_for
    from stripe_sync_core.listing import plan_listings

    return frozenset(child for listing in plan_listings(tables_for("all")) for child in listing.child_tables)


def stored_in(results: Mapping[str, Any]) -> str:
    """What a backfill result stored: objects (roots and applied events) apart from child rows."""
    children = child_tables()
    objects = sum(r.stored for table, r in results.items() if table not in children)
    child_rows = sum(r.stored for table, r in results.items() if table in children)
    return stored(objects, child_rows)
