"""The console's progress sink: engine calls (on the engine's thread) become Textual messages.

`post_message` is thread-safe, so the sink posts straight to its subscribers. Events are the one
high-volume stream: they go into a bounded buffer and subscribers get one `EventsArrived` per burst,
so 100,000 events cost the UI loop a few hundred messages, not 100,000.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from stripe_sync_core.masking import mask_secrets_in
from stripe_sync_core.progress import ProgressSink

from . import messages
from .clock import Clock, SystemClock

EVENT_BUFFER = 10_000


@dataclass(frozen=True)
class FeedEvent:
    """One webhook delivery seen by the listener."""

    at: datetime
    event_id: str
    event_type: str
    outcome: str
    status: int | None


class ConsoleSink(ProgressSink):
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._subscribers: list[MessagePump] = []
        self._lock = threading.Lock()
        self._events: deque[FeedEvent] = deque(maxlen=EVENT_BUFFER)
        self._events_signalled = False
        self.events_received = 0
        self.events_by_class: dict[str, int] = {"2xx": 0, "4xx": 0, "5xx": 0}
        self.requests_per_second: float | None = None

    def subscribe(self, target: MessagePump) -> None:
        with self._lock:
            if target not in self._subscribers:
                self._subscribers.append(target)

    def unsubscribe(self, target: MessagePump) -> None:
        with self._lock:
            if target in self._subscribers:
                self._subscribers.remove(target)

    def _post(self, message_type: type[Message], *args: Any) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for target in subscribers:
            target.post_message(message_type(*args))

    # -- ProgressSink --------------------------------------------------------------------------

    def run_started(self, run_id: int, objects: list[str], chunks: int) -> None:
        self._post(messages.RunStarted, run_id, list(objects), chunks)

    def chunk_started(self, run_id: int, object_name: str, chunk_id: int, created_gte: int | None,
                      created_lte: int | None) -> None:
        self._post(messages.ChunkStarted, run_id, object_name, chunk_id)

    def chunk_done(self, run_id: int, object_name: str, chunk_id: int, status: str, processed: int,
                   error: str | None = None) -> None:
        self._post(messages.ChunkCompleted, run_id, object_name, chunk_id, status, processed,
                   mask_secrets_in(error) if error else None)

    def run_done(self, run_id: int, summary: dict[str, Any]) -> None:
        self._post(messages.RunFinished, run_id, summary)

    def request_rate(self, requests_per_second: float) -> None:
        self.requests_per_second = requests_per_second

    def message(self, level: str, text: str) -> None:
        self._post(messages.EngineReported, level, mask_secrets_in(text))

    def event_received(self, event_id: str, event_type: str, outcome: str, status: int | None = None) -> None:
        event = FeedEvent(self.clock.now(), event_id, event_type, outcome, status)
        with self._lock:
            self._events.append(event)
            self.events_received += 1
            if status is not None:
                bucket = "2xx" if status < 300 else "4xx" if status < 500 else "5xx"
                self.events_by_class[bucket] += 1
            signal = not self._events_signalled
            self._events_signalled = True
        if signal:
            self._post(messages.EventsArrived)

    @property
    def events_waiting(self) -> int:
        """Events received but not yet taken by the feed."""
        with self._lock:
            return len(self._events)

    def drain_events(self) -> list[FeedEvent]:
        """Take every buffered event (oldest first) and re-arm the signal."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
            self._events_signalled = False
        return events
