"""The worker processes the console starts (a backfill, the listener) run at a lower CPU priority than
the console, so that on a busy machine a key press is handled before their bulk work.

Lowering a child's priority needs no privilege; the kernel still gives them every cycle the console
does not want, so an idle console costs them nothing. Where priorities do not exist (or the child has
already gone) nothing changes.
"""

from __future__ import annotations

import os

BACKFILL_NICENESS = 10
"""How much nicer than the console a backfill worker runs: bulk work, paced by Stripe anyway."""

LISTENER_NICENESS = 5
"""How much nicer than the console the listener runs: less than a backfill, Stripe waits on its answers."""


def run_below_console(pid: int, niceness: int) -> None:
    """Give process `pid` the console's niceness plus `niceness` (at most 19, the lowest priority)."""
    try:
        own = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, own + niceness))
    except (AttributeError, OSError):  # no priorities here, or the child has already ended
        pass
