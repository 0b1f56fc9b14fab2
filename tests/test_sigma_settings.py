"""Sigma's settings and command line: ENABLE_SIGMA, page size, `--sigma`, table names; the Files API's
own limit in the request budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from stripe_sync_core.backfill import tables_for
from stripe_sync_core.config import ConfigError, load_config
from stripe_sync_core.request_budget import RequestBudget, SharedRequestBudget, bucket_capacity
from stripe_sync_core.sigma import sigma_objects
from stripe_sync_core.sigma.query import BadCursorValue, page_query
from stripe_sync_core.sigma.tables import UnknownSigmaTable, sigma_table
from stripe_sync_tui.cli import main

FILES = "GET /v1/files/{id}/contents"


def test_enable_sigma_from_the_environment_the_file_and_the_flag(tmp_path: Path):
    toml = tmp_path / "config.toml"
    toml.write_text("sigma_page_size = 500\nsigma_window_hours = 6\n")
    config = load_config(config_path=toml, environ={"ENABLE_SIGMA": "true"})
    assert config.enable_sigma is True and config.sigma_page_size == 500 and config.sigma_window_hours == 6
    assert load_config(config_path=toml, environ={"ENABLE_SIGMA": "0"}).enable_sigma is False
    assert load_config({"enable_sigma": True}, config_path=toml, environ={"ENABLE_SIGMA": "false"}).enable_sigma
    assert load_config(config_path=tmp_path / "none.toml", environ={}).sigma_page_size == 10_000
    with pytest.raises(ConfigError, match="ENABLE_SIGMA must be true or false"):
        load_config(config_path=toml, environ={"ENABLE_SIGMA": "maybe"})
    toml.write_text("sigma_page_size = 0\n")
    with pytest.raises(ConfigError, match="sigma_page_size"):
        load_config(config_path=toml, environ={})


def test_sigma_tables_by_name_all_of_them_and_with_all():
    assert tables_for("sigma.invoice_line_items") == ["sigma.invoice_line_items"]
    assert tables_for("sigma") == sigma_objects() and len(sigma_objects()) == 187
    registry_only = tables_for("all")
    assert not any(t.startswith("sigma.") for t in registry_only)
    assert tables_for("all", sigma=True) == registry_only + sigma_objects()
    assert tables_for(["customers", "sigma.charges"]) == ["customers", "sigma.charges"]
    with pytest.raises(UnknownSigmaTable, match="unknown Sigma table 'sigma.nope'"):
        tables_for("sigma.nope")


def test_an_unknown_sigma_table_on_the_command_line_exits_2_saying_so(capsys):
    assert main(["--headless", "backfill", "sigma.nope", "--sigma", "--stripe-key", "sk_live_x1"]) == 2
    assert "unknown Sigma table 'sigma.nope'" in capsys.readouterr().err


def test_keyset_queries_and_their_literals():
    charges = sigma_table("charges")
    assert page_query(charges, after=None, since=None, page_size=10) == \
        "SELECT * FROM charges ORDER BY id ASC LIMIT 10"
    assert page_query(charges, after=["ch_1'x"], since=None, page_size=10) == \
        "SELECT * FROM charges WHERE ((id > 'ch_1''x')) ORDER BY id ASC LIMIT 10"
    # Incremental: from the time column, ordered by (time column, key).
    assert page_query(charges, after=["2026-01-02 03:04:05.600", "ch_9"], since=86_400, page_size=5) == (
        "SELECT * FROM charges WHERE batch_timestamp >= timestamp '1970-01-02 00:00:00.000' AND "
        "((batch_timestamp > timestamp '2026-01-02 03:04:05.600') OR "
        "(batch_timestamp = timestamp '2026-01-02 03:04:05.600' AND id > 'ch_9')) "
        "ORDER BY batch_timestamp, id ASC LIMIT 5")
    cau = sigma_table("cau_fees")  # a double in the key: Trino's scientific notation is a number too
    assert "billing_amount > 1.0E-4" in page_query(cau, after=["card_1", "1.0E-4", "txn_1"], since=None, page_size=1)
    with pytest.raises(BadCursorValue):
        page_query(cau, after=["card_1", "1; DROP TABLE x", "txn_1"], since=None, page_size=1)
    assert page_query(sigma_table("price_tiers"), after=None, since=None, page_size=10) == \
        "SELECT * FROM price_tiers", "a table without a trustworthy cursor is read whole"


async def test_the_files_api_is_paced_at_its_own_20_per_second():
    budget = RequestBudget(100.0, endpoint_rate=25.0)
    await budget.acquire(FILES)
    await budget.acquire("GET /v1/customers")
    assert budget._endpoints[FILES].rate == 20.0
    assert budget._endpoints["GET /v1/customers"].rate == 25.0


async def test_the_shared_budget_keeps_the_files_api_bucket_at_20_per_second(db):
    budget = SharedRequestBudget(db, "acct_files live", 100.0, endpoint_rate=25.0)
    for _ in range(30):
        await budget.acquire(FILES)
    row = await db.fetch_one("SELECT tokens FROM stripe._request_budget WHERE scope = 'acct_files live' "
                             "AND bucket = %s", (FILES,))
    assert row is not None and row["tokens"] <= bucket_capacity(20.0)
    assert budget.granted == 30
