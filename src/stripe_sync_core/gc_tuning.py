"""Fewer garbage collections during bulk work: an opt-in of the program, never of the library.

The collector's thresholds belong to the whole interpreter, so the engine never touches them on its
own; the headless CLI (and the benchmarks) turn this on around a backfill.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, ...] = ()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """While held: collect young objects every 50,000 allocations instead of 700.

    A parsed page is thousands of dicts and lists that live until the page is written; with the
    default threshold the collector traverses each of them several times (a tenth of a backfill's
    CPU). Memory stays bounded by the pages in flight. Nested or concurrent holders share one setting,
    restored when the last of them ends.
    """
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = gc.get_threshold()
            if _saved[0] and _saved[0] < YOUNG_THRESHOLD:
                gc.set_threshold(YOUNG_THRESHOLD, *_saved[1:])
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _saved:
                gc.set_threshold(*_saved)
