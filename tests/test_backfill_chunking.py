"""Chunk planning: fixed calendar windows, and automatic splits driven by a first page's density."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stripe_sync_core.chunking import (
    DAY,
    ChunkSpec,
    InvalidChunkSpec,
    estimate_remaining,
    fixed_windows,
    parse_chunk_spec,
    plan_split,
)
from stripe_sync_core.listing import plan_listings


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def assert_contiguous(windows: list[tuple[int, int]], low: int, high: int) -> None:
    assert windows[0][0] == low and windows[-1][1] == high
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert start == end + 1


@pytest.mark.parametrize(("value", "spec"), [
    (None, ChunkSpec()), ("auto", ChunkSpec()), ("day", ChunkSpec(days=1)), ("week", ChunkSpec(days=7)),
    ("month", ChunkSpec(months=True)), (3, ChunkSpec(days=3)), ("10", ChunkSpec(days=10)),
    ("14d", ChunkSpec(days=14)),
])
def test_chunk_specs_parse(value, spec):
    assert parse_chunk_spec(value) == spec
    assert parse_chunk_spec(str(spec)) == spec  # what a run records reads back the same


@pytest.mark.parametrize("value", [0, -2, "fortnight", "1.5", True, "d"])
def test_invalid_chunk_specs_are_refused(value):
    with pytest.raises(InvalidChunkSpec, match="auto, day, week, month or a number of days"):
        parse_chunk_spec(value)


def test_day_windows_are_aligned_to_utc_midnight_and_cover_the_range():
    low, high = ts("2024-03-01T15:00:00"), ts("2024-03-04T02:00:00")
    windows = fixed_windows(ChunkSpec(days=1), low, high)
    assert windows == [
        (low, ts("2024-03-02T00:00:00") - 1),
        (ts("2024-03-02T00:00:00"), ts("2024-03-03T00:00:00") - 1),
        (ts("2024-03-03T00:00:00"), ts("2024-03-04T00:00:00") - 1),
        (ts("2024-03-04T00:00:00"), high),
    ]


def test_week_and_n_day_windows():
    low, high = ts("2024-01-01T00:00:00"), ts("2024-03-31T23:59:59")
    weeks = fixed_windows(ChunkSpec(days=7), low, high)
    assert_contiguous(weeks, low, high)
    assert all(end - start + 1 <= 7 * DAY for start, end in weeks)
    assert 13 <= len(weeks) <= 14
    tens = fixed_windows(ChunkSpec(days=10), low, high)
    assert_contiguous(tens, low, high)
    assert all((end + 1) % (10 * DAY) == 0 for _, end in tens[:-1])  # aligned on the epoch


def test_month_windows_follow_the_calendar():
    low, high = ts("2023-11-15T00:00:00"), ts("2024-02-10T00:00:00")
    windows = fixed_windows(ChunkSpec(months=True), low, high)
    assert [datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d") for start, _ in windows] == [
        "2023-11-15", "2023-12-01", "2024-01-01", "2024-02-01"]
    assert_contiguous(windows, low, high)


def test_a_single_second_is_one_window():
    assert fixed_windows(ChunkSpec(days=1), 1000, 1000) == [(1000, 1000)]
    assert fixed_windows(ChunkSpec(days=1), 1000, 999) == []


def test_a_sparse_range_is_not_split():
    # 100 objects over 100 days, 10 days left below: about 10 more expected.
    assert plan_split(gte=0, newest=200 * DAY, oldest=100 * DAY, page_count=100, floor=None,
                      target=1000, max_pieces=16) is None


def test_a_dense_first_page_splits_the_range_below_it():
    # 100 objects in the newest day of a 365-day range: ~36,400 expected below.
    low, top = ts("2024-01-01T00:00:00"), ts("2024-12-31T00:00:00")
    oldest = top - DAY + 1
    split = plan_split(gte=low, newest=top, oldest=oldest, page_count=100, floor=None, target=1000,
                       max_pieces=16)
    assert split is not None
    assert split.keep_gte == oldest  # the chunk keeps what its first page covered
    assert len(split.pieces) == 16
    assert split.pieces[0][1] == oldest - 1 and split.pieces[-1][0] == low  # newest piece first
    assert_contiguous(sorted(split.pieces), low, oldest - 1)
    assert split.estimated_remaining == estimate_remaining(100, top, oldest, low)


def test_an_open_range_splits_down_to_the_floor_and_keeps_its_lowest_piece_open():
    floor, top = ts("2023-01-01T00:00:00"), ts("2024-01-01T00:00:00")
    split = plan_split(gte=None, newest=top, oldest=top - 3600, page_count=100, floor=floor, target=1000,
                       max_pieces=8)
    assert split is not None and len(split.pieces) == 8
    assert split.pieces[-1][0] is None  # older than the account: still covered
    assert split.pieces[-2][0] is not None


def test_a_burst_in_one_second_cannot_be_split_further():
    # Everything on the page shares one second and nothing is below it.
    assert plan_split(gte=5000, newest=5000, oldest=5000, page_count=100, floor=None, target=10,
                      max_pieces=16) is None
    # One second below: at most one piece per second.
    split = plan_split(gte=4999, newest=5000, oldest=5000, page_count=100, floor=None, target=10,
                       max_pieces=16)
    assert split is not None and split.pieces == [(4999, 4999)]


def test_children_are_served_by_their_parents_listing():
    listings = {listing.root.table: listing for listing in plan_listings(
        ["customers", "tax_ids", "payment_methods", "active_entitlements", "subscription_items",
         "checkout_session_line_items"])}
    assert set(listings) == {"customers", "subscriptions", "checkout_sessions"}
    customers = listings["customers"]
    assert customers.expand == ["data.tax_ids"]
    assert [c.table for c in customers.per_parent] == ["payment_methods", "active_entitlements"]
    assert listings["subscriptions"].expand == []  # items are embedded without asking
    assert listings["subscriptions"].child_tables == ["subscription_items"]
    # the line items, with the fields Stripe sends only when asked (their discounts and taxes)
    assert listings["checkout_sessions"].expand == ["data.line_items", "data.line_items.data.discounts",
                                                    "data.line_items.data.taxes"]
    params = listings["subscriptions"].page_params(10, 20, "sub_1")
    assert params == {"limit": 100, "status": "all", "created": {"gte": 10, "lte": 20},
                      "starting_after": "sub_1"}


def test_a_created_bound_is_a_whole_day_or_an_exact_moment_in_cli_and_console_alike():
    from stripe_sync_core.chunking import InvalidDate, parse_created_bound

    day = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp())
    assert parse_created_bound("2025-03-01") == day
    assert parse_created_bound("2025-03-01", end=True) == day + 86_399  # the whole last day
    assert parse_created_bound("2025-03-01T12:00:00") == day + 43_200  # no zone: UTC
    assert parse_created_bound("2025-03-01T12:00:00+01:00", end=True) == day + 39_600  # a moment, not a day
    assert parse_created_bound("  ") is None and parse_created_bound(None) is None
    for bad in ("yesterday", "2025-13-01", "01/03/2025"):
        with pytest.raises(InvalidDate, match="invalid date"):
            parse_created_bound(bad)


def test_the_plan_preview_is_the_backfills_own_planning_without_stripe():
    from stripe_sync_core.backfill import preview_chunks

    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2025, 3, 31, 23, 59, 59, tzinfo=UTC).timestamp())
    auto = preview_chunks(["customers", "invoices"], start, end, "auto", now=end)
    assert [(c.object, c.created_gte, c.created_lte) for c in auto] == [
        ("customers", start, end), ("invoices", start, end)]
    months = preview_chunks("customers", start, end, "month", now=end)
    assert len(months) == 3 and months[0].created_lte == end and months[-1].created_gte == start  # newest first
    assert all(c.status == "pending" for c in months)
    subscriptions = preview_chunks(["subscriptions", "subscription_items"], None, None, None, now=end)
    assert [c.note for c in subscriptions] == ["with subscription_items"]  # its items ride on it
