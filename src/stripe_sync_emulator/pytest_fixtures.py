"""Reusable pytest fixtures. In a conftest.py::

    from stripe_sync_emulator.pytest_fixtures import (  # noqa: F401
        stripe_emulator, stripe_emulator_client, stripe_emulator_factory)

``stripe_emulator_factory(**kwargs)`` starts emulators (closed after the test); defaults: seed 1,
50 customers created in 2024, fast webhook retries. ``stripe_emulator`` is one such emulator and
``stripe_emulator_client`` a ``stripe.StripeClient`` for it with SDK retries off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .emulator import StripeEmulator

DEFAULT_START = 1_704_067_200  # 2024-01-01T00:00:00Z
DEFAULT_END = 1_735_689_599  # 2024-12-31T23:59:59Z


@pytest.fixture
def stripe_emulator_factory() -> Iterator[Callable[..., StripeEmulator]]:
    made: list[StripeEmulator] = []

    def make(**kwargs: Any) -> StripeEmulator:
        kwargs.setdefault("seed", 1)
        kwargs.setdefault("customers", 50)
        kwargs.setdefault("start", DEFAULT_START)
        kwargs.setdefault("end", DEFAULT_END)
        kwargs.setdefault("webhook_retry_base_delay", 0.05)
        kwargs.setdefault("webhook_retry_max_delay", 0.5)
        kwargs.setdefault("webhook_timeout", 5.0)
        emu = StripeEmulator(**kwargs).start()
        made.append(emu)
        return emu

    yield make
    for emu in made:
        emu.close()


@pytest.fixture
def stripe_emulator(stripe_emulator_factory: Callable[..., StripeEmulator]) -> StripeEmulator:
    return stripe_emulator_factory()


@pytest.fixture
def stripe_emulator_client(stripe_emulator: StripeEmulator) -> Any:
    import stripe

    return stripe.StripeClient(stripe_emulator.secret_key, base_addresses={"api": stripe_emulator.api_base},
                               max_network_retries=0)
