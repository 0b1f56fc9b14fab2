"""How a backfill cuts an object's `created` range into chunks that workers fetch independently.

Two modes. *Fixed*: calendar windows (`day`, `week`, `month`) or N days, planned up front. *Automatic*:
a range starts as one chunk; when its first page shows the range is dense, the part below that page
is split into pieces that other workers take, and each piece decides again on its own first page.
Dense bursts therefore end up in many small chunks and empty stretches cost one request each.

Bounds are inclusive Unix seconds, as Stripe's `created[gte]` / `created[lte]`; None is open.
Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import InvalidInput

DAY = 86_400
FIXED_UNITS = {"day": 1, "week": 7}


class InvalidChunkSpec(InvalidInput, ValueError):
    """`chunk` is not auto, day, week, month or a positive number of days."""


class InvalidDate(InvalidInput, ValueError):
    """A range bound is neither a date (YYYY-MM-DD) nor an ISO timestamp."""


def parse_created_bound(text: str | None, *, end: bool = False) -> int | None:
    """A `created` bound from what a person types: a date `YYYY-MM-DD` is a whole UTC day (its first
    second, or its last with `end`), an ISO timestamp is that moment (UTC when it names no zone).
    None or blank is an open bound. The CLI's --since/--until and the console's form both use this."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidDate(f"invalid date {text!r}: use YYYY-MM-DD or an ISO timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and len(text) == 10:  # a plain date includes that whole day
        return int(moment.timestamp()) + DAY - 1
    return int(moment.timestamp())


@dataclass(frozen=True)
class ChunkSpec:
    """How to cut ranges: automatically, or into fixed windows of `days` days or calendar months."""

    days: int | None = None
    months: bool = False

    @property
    def automatic(self) -> bool:
        return self.days is None and not self.months

    def __str__(self) -> str:
        if self.automatic:
            return "auto"
        if self.months:
            return "month"
        return {1: "day", 7: "week"}.get(self.days or 0, f"{self.days}d")


@dataclass(frozen=True)
class SplitLimits:
    """When automatic chunking splits a range, and into how many pieces at most."""

    target_objects: int = 1000
    """Split when more objects than this are expected below a range's first page."""
    max_pieces: int = 16


def parse_chunk_spec(value: str | int | None) -> ChunkSpec:
    """`None`/`auto`, `day`, `week`, `month`, or N days as an int or `"N"` / `"Nd"`."""
    if value is None or value == "auto":
        return ChunkSpec()
    if value == "month":
        return ChunkSpec(months=True)
    if isinstance(value, str) and value in FIXED_UNITS:
        return ChunkSpec(days=FIXED_UNITS[value])
    text = str(value).strip().removesuffix("d")
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise InvalidChunkSpec(f"invalid chunk {value!r}: auto, day, week, month or a number of days")
    return ChunkSpec(days=int(text))


def fixed_windows(spec: ChunkSpec, low: int, high: int) -> list[tuple[int, int]]:
    """Contiguous inclusive windows covering [low, high], aligned to UTC days or calendar months."""
    if spec.automatic:
        raise ValueError("fixed_windows needs a fixed chunk spec")
    if high < low:
        return []
    windows: list[tuple[int, int]] = []
    start = low
    while start <= high:
        next_start = _next_boundary(spec, start)
        windows.append((start, min(high, next_start - 1)))
        start = next_start
    return windows


def _next_boundary(spec: ChunkSpec, moment: int) -> int:
    day = datetime.fromtimestamp(moment, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if spec.months:
        year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
        return int(day.replace(year=year, month=month, day=1).timestamp())
    assert spec.days is not None
    # Windows of N days count from the Unix epoch, so two plans of the same range agree.
    days_since_epoch = int(day.timestamp()) // DAY
    return (days_since_epoch - days_since_epoch % spec.days + spec.days) * DAY


@dataclass(frozen=True)
class Split:
    """The outcome of a dense first page: the chunk keeps [keep_gte, its top]; pieces cover below."""

    keep_gte: int
    pieces: list[tuple[int | None, int]]
    estimated_remaining: int


def estimate_remaining(page_count: int, newest: int, oldest: int, floor: int | None) -> int:
    """Objects expected below a full page, assuming the page's density holds down to `floor`."""
    if floor is None or floor >= oldest:
        return 0
    density = page_count / max(1, newest - oldest + 1)
    return math.ceil(density * (oldest - floor))


def plan_split(*, gte: int | None, newest: int, oldest: int, page_count: int, floor: int | None,
               target: int, max_pieces: int) -> Split | None:
    """Split the range below a full first page when more than `target` objects are expected there.

    `newest` / `oldest` are the `created` of the page's first and last objects; `floor` is the lowest `created` worth assuming (the chunk's lower bound, or
    the account's creation for an open one). The lowest piece keeps the chunk's own lower bound, so an
    open range stays open and nothing older than `floor` can be missed.
    """
    low = gte if gte is not None else floor
    if low is None or low >= oldest:
        return None
    expected = estimate_remaining(page_count, newest, oldest, low)
    if expected <= target:
        return None
    span = oldest - low  # seconds in [low, oldest - 1]
    count = max(2, min(max_pieces, math.ceil(expected / target), span))
    if count < 2:
        return None
    edges = [low + span * i // count for i in range(count + 1)]
    pieces: list[tuple[int | None, int]] = [
        (edges[i], edges[i + 1] - 1) for i in range(count) if edges[i + 1] > edges[i]]
    pieces[0] = (gte, pieces[0][1])
    # Newest first: workers take pieces in order and the recent past is what people look at first.
    pieces.reverse()
    return Split(keep_gte=oldest, pieces=pieces, estimated_remaining=expected)
