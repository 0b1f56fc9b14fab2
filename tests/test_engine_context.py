"""The engine as a library: parts built when it opens, options through its constructor, settings read in
one place, and no process-wide side effects (logging, garbage collector) it does not undo."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from backfill_support import FAST, engine_config

from stripe_sync_core import StripeSync, SyncConfig
from stripe_sync_core.backfill import BackfillOptions
from stripe_sync_core.gc_tuning import YOUNG_THRESHOLD, fewer_collections
from stripe_sync_core.log_filters import MaskStripeSecrets
from stripe_sync_core.progress import ProgressSink
from stripe_sync_core.sync import EngineNotOpen
from stripe_sync_emulator import StripeEmulator

SIDE_EFFECTS_PROBE = """
import gc, importlib, json, logging, pkgutil
def state():
    names = ["stripe", "pyngrok", "pyngrok.process", "pyngrok.process.ngrok", "pyngrok.ngrok", "pyngrok.installer",
             "stripe_sync_core.tunnel"]
    return {"gc": list(gc.get_threshold()),
            "loggers": {n: [len(logging.getLogger(n).filters), len(logging.getLogger(n).handlers)] for n in names}}
before = state()
import stripe_sync_core
for module in pkgutil.walk_packages(stripe_sync_core.__path__, "stripe_sync_core."):
    importlib.import_module(module.name)
print(json.dumps([before, state()]))
"""


def stripe_logger_masks() -> int:
    return sum(isinstance(f, MaskStripeSecrets) for f in logging.getLogger("stripe").filters)


def test_importing_the_engine_changes_no_logger_and_no_collector_setting() -> None:
    result = subprocess.run([sys.executable, "-c", SIDE_EFFECTS_PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    before, after = json.loads(result.stdout)
    assert after == before


async def test_an_open_engine_masks_sdk_secrets_and_leaves_no_filter_once_closed(clean_db: str) -> None:
    assert stripe_logger_masks() == 0
    first, second = StripeSync(SyncConfig(database_url=clean_db)), StripeSync(SyncConfig(database_url=clean_db))
    async with first:
        assert stripe_logger_masks() == 1
        async with second:
            assert stripe_logger_masks() == 1  # one filter, however many engines
        assert stripe_logger_masks() == 1  # the first engine is still open
    assert stripe_logger_masks() == 0
    await first.close()  # a second close releases nothing twice
    assert stripe_logger_masks() == 0


async def test_the_sdk_never_logs_a_signing_secret_while_an_engine_is_open(clean_db: str,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    async with StripeSync(SyncConfig(database_url=clean_db)):
        with caplog.at_level(logging.DEBUG, logger="stripe"):
            logging.getLogger("stripe").debug("response body %s", '{"secret": "whsec_abcdefghijklmnop1234"}')
    assert "whsec_abcdefghijklmnop1234" not in caplog.text
    assert "whsec_...1234" in caplog.text


class CollectorThresholds(ProgressSink):
    def __init__(self) -> None:
        self.seen: set[tuple[int, ...]] = set()

    def chunk_started(self, *args: object) -> None:
        self.seen.add(gc.get_threshold())


async def test_a_backfill_run_by_a_host_application_leaves_its_collector_alone(clean_db: str) -> None:
    before = gc.get_threshold()
    sink = CollectorThresholds()
    with StripeEmulator(seed=3, customers=40) as emu:
        config = engine_config(clean_db, emu.api_base, emu.secret_key)
        async with StripeSync(config, progress=sink, backfill_options=FAST) as sync:
            summary = await sync.process_until_done("customers")
    assert summary["customers"].stored == 40
    assert sink.seen == {before}
    assert gc.get_threshold() == before


def test_fewer_collections_is_an_opt_in_restored_by_its_last_holder() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)
        with fewer_collections():
            pass
        assert gc.get_threshold()[0] == max(before[0], YOUNG_THRESHOLD)
    assert gc.get_threshold() == before


async def test_backfill_options_come_through_the_constructor(clean_db: str) -> None:
    options = BackfillOptions(concurrency=3, trigger="nightly")
    async with StripeSync(SyncConfig(database_url=clean_db), backfill_options=options) as sync:
        assert sync.backfill.options is options


async def test_a_part_of_a_closed_engine_says_how_to_open_it(clean_db: str) -> None:
    sync = StripeSync(SyncConfig(database_url=clean_db))
    with pytest.raises(EngineNotOpen, match="async with StripeSync"):
        sync.backfill  # noqa: B018
    async with sync:
        assert sync.is_open
    with pytest.raises(EngineNotOpen):
        await sync.process_event({})


async def test_an_engine_reopened_after_close_works_again(clean_db: str) -> None:
    with StripeEmulator(seed=3, customers=5) as emu:
        sync = StripeSync(engine_config(clean_db, emu.api_base, emu.secret_key), backfill_options=FAST)
        for _ in range(2):
            async with sync:
                assert (await sync.process_until_done("customers", full=True))["customers"].stored == 5


async def test_without_a_url_the_database_comes_from_the_settings_loader(
        clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'database_url = "{clean_db}"\n')
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("STRIPE_SYNC_CONFIG", str(config_file))
    async with StripeSync(SyncConfig()) as sync:  # no URL given: the config file's, not the embedded server
        assert sync.database.url == clean_db
    monkeypatch.setenv("DATABASE_URL", clean_db + "&application_name=from-env")
    async with StripeSync() as sync:  # no settings at all: load_config (the environment over the file)
        assert sync.database.url.endswith("application_name=from-env")
