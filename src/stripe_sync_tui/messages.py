"""Messages: past-tense facts that workers and the progress sink post; only handlers touch widgets."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from stripe_sync_core.results import BackfillResult

from .problems import Problem


@dataclass
class EngineConnected(Message):
    account_id: str
    account_name: str | None
    livemode: bool | None


@dataclass
class ConnectionFailed(Message):
    problem: Problem


@dataclass
class HealthChecked(Message):
    database_ok: bool
    stripe_ok: bool | None
    detail: str = ""


@dataclass
class OperationFailed(Message):
    """A worker's call failed; `what` says which operation, in the operator's words."""

    what: str
    problem: Problem


# -- from the progress sink (the engine's thread); posted to each subscriber, so they never bubble --


@dataclass
class RunStarted(Message, bubble=False):
    run_id: int
    objects: list[str]
    chunks: int


@dataclass
class ChunkStarted(Message, bubble=False):
    run_id: int
    object_name: str
    chunk_id: int


@dataclass
class ChunkCompleted(Message, bubble=False):
    run_id: int
    object_name: str
    chunk_id: int
    status: str
    processed: int
    error: str | None


@dataclass
class RunFinished(Message, bubble=False):
    run_id: int
    summary: BackfillResult


@dataclass
class BackfillStopped(Message, bubble=False):
    """The backfill worker ended without finishing: cancelled (not an Exception) or failed."""

    error: BaseException


@dataclass
class EventsArrived(Message, bubble=False):
    """New events wait in the sink's buffer; the feed drains it (one message per burst, not per event)."""


@dataclass
class RequestRateMeasured(Message, bubble=False):
    requests_per_second: float


@dataclass
class EngineReported(Message, bubble=False):
    level: str
    text: str
