"""The progress-sink protocol: how long work reports what it does, to whoever listens.

The console turns these calls into Textual messages, the headless CLI into progress bars or JSON lines,
tests into a list. Every method has a no-op default, so a sink implements only what it shows.
"""

from __future__ import annotations

from typing import Any


class ProgressSink:
    """Receives progress of runs, chunks and events. Methods must return quickly and never raise."""

    def run_started(self, run_id: int, objects: list[str], chunks: int) -> None: ...

    def chunk_started(self, run_id: int, object_name: str, chunk_id: int, created_gte: int | None,
                      created_lte: int | None) -> None: ...

    def objects_stored(self, run_id: int, object_name: str, chunk_id: int, count: int) -> None: ...

    def chunk_done(self, run_id: int, object_name: str, chunk_id: int, status: str, processed: int,
                   error: str | None = None) -> None: ...

    def objects_estimated(self, run_id: int, object_name: str, estimated_total: int) -> None:
        """A backfill's expected count of `object_name` objects changed (first pages measure their
        chunks' density): with `objects_stored`, what an ETA is made of."""

    def run_done(self, run_id: int, summary: dict[str, Any]) -> None: ...

    def request_rate(self, requests_per_second: float) -> None: ...

    def event_received(self, event_id: str, event_type: str, outcome: str, status: int | None = None) -> None: ...

    def message(self, level: str, text: str) -> None: ...


class RecordingSink(ProgressSink):
    """Keeps every call as (method, args): for tests and for replaying into a late listener."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattribute__(self, name: str) -> Any:
        if name in _SINK_METHODS:
            calls = object.__getattribute__(self, "calls")
            return lambda *args, **kwargs: calls.append((name, args + tuple(kwargs.values())))
        return object.__getattribute__(self, name)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


_SINK_METHODS = {name for name in vars(ProgressSink) if not name.startswith("_")}
