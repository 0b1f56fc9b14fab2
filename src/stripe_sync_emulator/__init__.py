"""A local emulator of the part of Stripe's REST API that a Stripe→Postgres sync engine uses.

    from stripe_sync_emulator import StripeEmulator
    with StripeEmulator(seed=1, customers=200) as emu:
        client = stripe.StripeClient(emu.secret_key, base_addresses={"api": emu.api_base})
"""

from .cli import add_emulator_arguments, run_from_args
from .clock import Clock
from .core import DEFAULT_API_VERSION
from .delivery import sign
from .emulator import StripeEmulator, tune_gc
from .generation import CATALOG, RATIOS, plan_sizes

__all__ = [
    "CATALOG",
    "Clock",
    "DEFAULT_API_VERSION",
    "RATIOS",
    "StripeEmulator",
    "add_emulator_arguments",
    "plan_sizes",
    "run_from_args",
    "sign",
    "tune_gc",
]
