"""An asyncio event loop in a thread of its own, for callers whose own thread must not block on the
engine's work (a synchronous web framework, the console's UI loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """A daemon thread running an event loop; coroutines are handed to it from other threads."""

    def __init__(self, name: str = "stripe-sync-engine") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def is_current(self) -> bool:
        """True when called from the loop's own thread (where blocking on it would deadlock)."""
        return threading.current_thread() is self._thread

    @property
    def closed(self) -> bool:
        return self.loop.is_closed()

    def run_blocking(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the loop and wait for its result in the calling thread."""
        if self.is_current:
            coroutine.close()
            raise RuntimeError("cannot wait for the engine loop from its own thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop from another loop; cancelling the awaiting task cancels it there too."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and close it once its thread has ended. Safe to call twice."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=timeout)
        if not self._thread.is_alive():
            self.loop.close()
