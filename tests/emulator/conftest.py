"""Fixtures for the emulator's own tests: emulators (see stripe_sync_emulator.pytest_fixtures) and a
webhook receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from emulator_helpers import WebhookReceiver


@pytest.fixture
def webhook_receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    made: list[WebhookReceiver] = []

    def make(statuses: list[int] | None = None) -> WebhookReceiver:
        r = WebhookReceiver(statuses).start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
