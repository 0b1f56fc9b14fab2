"""A local emulator of the part of Stripe's REST API that a Stripe→Postgres sync engine uses.

    from stripe_sync_emulator import StripeEmulator
    with StripeEmulator(seed=1, customers=200) as emu:
        client = stripe.StripeClient(emu.secret_key, base_addresses={"api": emu.api_base})
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cli import add_emulator_arguments, run_from_args
    from .clock import Clock, StepClock
    from .core import DEFAULT_API_VERSION
    from .delivery import sign
    from .emulator import StripeEmulator, tune_gc
    from .generation import CATALOG, RATIOS, plan_sizes

# Loaded on first use (PEP 562): the project CLI imports `stripe_sync_emulator.cli` to build its
# parser, which must not cost the emulator's import (aiohttp, the generators).
_EXPORTS: dict[str, str] = {
    "add_emulator_arguments": "cli", "run_from_args": "cli", "Clock": "clock", "StepClock": "clock",
    "DEFAULT_API_VERSION": "core",
    "sign": "delivery", "StripeEmulator": "emulator", "tune_gc": "emulator", "CATALOG": "generation",
    "RATIOS": "generation", "plan_sizes": "generation",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "CATALOG",
    "Clock",
    "DEFAULT_API_VERSION",
    "RATIOS",
    "StepClock",
    "StripeEmulator",
    "add_emulator_arguments",
    "plan_sizes",
    "run_from_args",
    "sign",
    "tune_gc",
]
