"""The console's engine bridge keeps what the CLI keeps."""

from __future__ import annotations

from stripe_sync_core import ProgressSink, SyncConfig
from stripe_sync_core.stripe_api import StripeApi
from stripe_sync_tui.engine import ConsoleEngine

LIVE_KEY = "sk_live_" + "a" * 24


async def test_the_consoles_request_budget_keeps_stripes_per_endpoint_limit(clean_db: str) -> None:
    config = SyncConfig(database_url=clean_db, stripe_secret_key=LIVE_KEY, stripe_api_base="http://127.0.0.1:9")
    cli_budget = StripeApi(config.with_overrides(max_requests_per_second=80)).budget
    engine = ConsoleEngine(config, ProgressSink())
    try:
        await engine.thread.run(engine.sync.open())  # no account read: nothing answers at that base URL
        await engine.set_request_budget(80)
        console_budget = engine.sync.stripe.budget
    finally:
        engine.close()
    assert (console_budget.rate, console_budget.endpoint_rate) == (cli_budget.rate, cli_budget.endpoint_rate)
    assert console_budget.endpoint_rate == 25  # Stripe's per-endpoint limit, below the 80/s asked for
