"""Injectable clock: every timestamp the emulator writes comes from here, so tests can freeze time."""

from __future__ import annotations

import threading
import time


class Clock:
    """Real time by default; can be frozen, set, or shifted (``advance``) by tests."""

    def __init__(self, frozen_at: float | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen: float | None = frozen_at
        self._offset = 0.0

    def now(self) -> float:
        """Current emulator time as a float epoch."""
        frozen = self._frozen
        if frozen is not None:
            return frozen
        return time.time() + self._offset

    def time(self) -> int:
        """Current emulator time as integer seconds (Stripe's ``created`` resolution)."""
        return int(self.now())

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def freeze(self, at: float | None = None) -> None:
        """Stop the clock at ``at`` (default: the current emulator time)."""
        with self._lock:
            self._frozen = self.now() if at is None else float(at)

    def set(self, at: float) -> None:
        """Freeze at an absolute epoch."""
        self.freeze(at)

    def unfreeze(self) -> None:
        """Let time run again from the frozen instant (keeps the shift, so time never jumps back)."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - time.time()
                self._frozen = None

    def reset(self) -> None:
        """Back to plain real time."""
        with self._lock:
            self._frozen = None
            self._offset = 0.0

    def advance(self, seconds: float) -> None:
        """Move time forward (works frozen or running)."""
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
            else:
                self._offset += seconds


class StepClock:
    """A clock for the rate limiter's buckets (`StripeEmulator(rate_limit_clock=...)`) that moves only when
    read, by `step` seconds each time (once per limited request), or when `advance` says: what a burst of
    requests gets then depends on how many they are, not on how fast a busy machine sends them."""

    def __init__(self, step: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = 0.0
        self.step = step

    def __call__(self) -> float:
        with self._lock:
            self._now += self.step
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
