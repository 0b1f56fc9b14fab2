"""Where a Sigma table's chunk of a new run starts: a full pass, or an incremental one from the
time column's high-water mark of the table's last complete chunk, less a window (Sigma data lands hours
late, and a changed row's time column moves: both are read again)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..runs import PlannedChunk
from .client import SigmaNeedsLiveKey
from .tables import SigmaTable

if TYPE_CHECKING:
    from ..config import SyncConfig
    from ..database import Database


def require_live_key(config: SyncConfig) -> None:
    """Stripe Sigma has no test-mode data: refuse a test key before asking Stripe anything."""
    if config.livemode is False:
        raise SigmaNeedsLiveKey()


async def high_water_mark(database: Database, account: str, table: SigmaTable) -> int | None:
    row = await database.fetch_one(
        "SELECT max(c.max_created) AS mark FROM stripe._sync_obj_runs c JOIN stripe._sync_runs r "
        "ON r.id = c.run_id WHERE r.account_id = %s AND c.object = %s AND c.status = 'complete'",
        (account, table.object))
    return row["mark"] if row else None


async def plan_sigma_chunk(database: Database, account: str, table: SigmaTable, *, full: bool,
                           window_hours: float) -> PlannedChunk:
    if table.time_column is None:
        return PlannedChunk(table.object, note="refreshed whole (no time column)")
    mark = None if full else await high_water_mark(database, account, table)
    if mark is None:
        return PlannedChunk(table.object, note="full pass")
    since = int(mark - window_hours * 3600)
    return PlannedChunk(table.object, created_gte=since, note=f"{table.time_column} from the last mark less the window")
