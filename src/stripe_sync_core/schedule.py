"""A job that fires once per interval across every process of one database (`stripe._service_lease`).

Time is cut into slots of `interval` seconds by the database server's clock (slot = epoch // interval,
so processes on machines with skewed clocks agree). `claim` inserts the row of the current slot; the one
process whose insert creates it runs the job, the others see it taken. Each call is one statement in its
own transaction: no session state, no advisory lock, so it works through a transaction-mode pooler and a
process that dies holds nothing (its slot simply ran, or failed, once). `finish` records the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import InvalidInput

if TYPE_CHECKING:
    from .database import Database

class InvalidInterval(InvalidInput, ValueError):
    """A schedule's interval is not a positive number of seconds."""


KEEP_SLOTS = 1000
"""Rows kept per job (older slots are pruned by the claim that wins a slot)."""

_CLAIM = """
WITH slot AS (SELECT floor(extract(epoch FROM now()) / %(interval)s)::bigint AS n),
claimed AS (
    INSERT INTO stripe._service_lease (job, slot, holder) SELECT %(job)s, n, %(holder)s FROM slot
    ON CONFLICT (job, slot) DO NOTHING
    RETURNING slot, acquired_at
),
pruned AS (
    DELETE FROM stripe._service_lease
    WHERE job = %(job)s AND slot < (SELECT n FROM slot) - %(keep)s AND EXISTS (SELECT 1 FROM claimed)
)
SELECT slot, acquired_at FROM claimed
"""


@dataclass(frozen=True)
class SlotClaim:
    job: str
    slot: int
    acquired_at: datetime


class Schedule:
    """Claims of one job's slots for one holder (a `serve` process)."""

    def __init__(self, database: Database, job: str, interval_seconds: float, holder: str) -> None:
        if not interval_seconds > 0:
            raise InvalidInterval(f"a schedule's interval must be more than 0 seconds (got {interval_seconds})")
        self.database = database
        self.job = job
        self.interval = float(interval_seconds)
        self.holder = holder

    async def claim(self) -> SlotClaim | None:
        """The current slot, when this call is the first to take it across every process; else None."""
        row = await self.database.fetch_one(
            _CLAIM, {"interval": self.interval, "job": self.job, "holder": self.holder, "keep": KEEP_SLOTS})
        return SlotClaim(self.job, int(row["slot"]), row["acquired_at"]) if row else None

    async def finish(self, claim: SlotClaim, outcome: str) -> None:
        await self.database.execute(
            "UPDATE stripe._service_lease SET finished_at = now(), outcome = %s WHERE job = %s AND slot = %s",
            (outcome[:500], claim.job, claim.slot))

    async def seconds_to_next_slot(self) -> float:
        """How long until the next slot begins, by the server's clock."""
        row = await self.database.fetch_one(
            "SELECT %(interval)s - mod(extract(epoch FROM now())::numeric, %(interval)s::numeric) AS left",
            {"interval": self.interval})
        return float(row["left"]) if row else self.interval

    async def history(self, limit: int = 20) -> list[dict]:
        """The job's newest slots: who ran them, when, and how they ended."""
        return await self.database.fetch_all(
            "SELECT slot, holder, acquired_at, finished_at, outcome FROM stripe._service_lease "
            "WHERE job = %s ORDER BY slot DESC LIMIT %s", (self.job, limit))
